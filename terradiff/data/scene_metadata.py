"""Metadata read from a georeferenced raster: GSD, centre latitude/longitude, date, cloud cover.

The raw keys of :mod:`terradiff.data.metadata` that a GeoTIFF's header can give:

* ``gsd``: the ground size of the centre pixel, ``sqrt(width_m * height_m)`` in metres (the side
  of a square of the same area), measured on the WGS84 ellipsoid after transforming the centre
  pixel's corners to EPSG:4326. So it is right for any CRS: projected in metres (UTM: within
  0.1 % of the pixel size, the UTM scale factor), in feet, Web Mercator (where the nominal pixel
  size overstates the ground size by ``1 / cos(lat)``), and geographic (degrees: a degree of
  longitude is ``cos(lat)`` times shorter than one of latitude, at the centre latitude).
* ``lat``, ``lon``: the image centre (``transform @ (width / 2, height / 2)``) transformed to
  EPSG:4326 with :func:`rasterio.warp.transform`.
* ``year``, ``month``, ``day_of_year``: from a caller's file-name pattern
  (:func:`terradiff.data.dates.date_from_name`) when it matches, else from the first readable
  acquisition-date tag of :data:`DATE_TAGS` (GDAL metadata, e.g. ``ACQUISITIONDATE``), else from
  ``TIFFTAG_DATETIME`` (the TIFF standard's "date and time of image creation": often the
  processing date, hence last; ``use_tiff_datetime=False`` skips it).
* ``cloud_cover``: from a tag of :data:`CLOUD_TAGS` (percent), when present.

A raster without a CRS (JPEG/PNG, BioMassters chips) gives no ``gsd``/``lat``/``lon``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from terradiff.data.dates import date_fields, date_from_name, parse_date
from terradiff.data.raster import open_raster
from terradiff.errors import DataError, RasterError

#: Tags (GDAL default metadata domain, any case) read as the acquisition date, in this order.
DATE_TAGS: tuple[str, ...] = (
    "ACQUISITIONDATE",
    "ACQUISITION_DATE",
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATETIME",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
    "DATETIME_ORIGINAL",
)
#: The TIFF standard's creation-date tag, read last (see the module docstring).
TIFF_DATETIME_TAG = "TIFFTAG_DATETIME"
#: Tags read as the cloud cover in percent, in this order.
CLOUD_TAGS: tuple[str, ...] = (
    "CLOUD_COVER",
    "CLOUDCOVER",
    "CLOUDY_PIXEL_PERCENTAGE",
    "CLOUD_COVERAGE_ASSESSMENT",
)

#: WGS84 semi-major axis (m) and first eccentricity squared.
WGS84_A = 6_378_137.0
WGS84_E2 = 6.694_379_990_14e-3


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of latitude and of longitude at latitude ``lat`` on WGS84.

    ``pi / 180`` times the meridional radius of curvature ``M = a (1 - e2) / (1 - e2 sin^2)^1.5``
    and the parallel's radius ``N cos(lat)``, ``N = a / sqrt(1 - e2 sin^2)``.
    """
    phi = math.radians(lat)
    w = 1.0 - WGS84_E2 * math.sin(phi) ** 2
    meridional = WGS84_A * (1.0 - WGS84_E2) / w**1.5
    parallel = WGS84_A / math.sqrt(w) * math.cos(phi)
    return math.radians(1.0) * meridional, math.radians(1.0) * parallel


def _to_lonlat(crs: Any, xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    from rasterio.warp import transform as warp_transform

    lons, lats = warp_transform(crs, "EPSG:4326", xs, ys)
    return list(lons), list(lats)


def centre_lonlat(transform: Any, crs: Any, width: int, height: int) -> tuple[float, float]:
    """``(lon, lat)`` in degrees (WGS84) of the centre of a ``width`` x ``height`` grid."""
    x, y = transform @ (width / 2.0, height / 2.0)
    lons, lats = _to_lonlat(crs, [x], [y])
    lon = lons[0] if -180.0 <= lons[0] <= 180.0 else (lons[0] + 180.0) % 360.0 - 180.0
    return float(lon), float(lats[0])


def pixel_ground_size(transform: Any, crs: Any, width: int, height: int) -> tuple[float, float]:
    """``(width_m, height_m)``: the ground size of the centre pixel in metres (see the module
    docstring): the distances from its corner to the next corners along a row and a column."""
    col, row = width / 2.0, height / 2.0
    points = [transform @ (col, row), transform @ (col + 1, row), transform @ (col, row + 1)]
    lons, lats = _to_lonlat(crs, [p[0] for p in points], [p[1] for p in points])
    sizes = []
    for k in (1, 2):
        m_lat, m_lon = metres_per_degree((lats[0] + lats[k]) / 2.0)
        dlon = (lons[k] - lons[0] + 180.0) % 360.0 - 180.0
        sizes.append(math.hypot((lats[k] - lats[0]) * m_lat, dlon * m_lon))
    return sizes[0], sizes[1]


@dataclass
class SceneMetadata:
    """What :func:`scene_metadata` found in one raster.

    Attributes:
        values: raw metadata keys (``gsd``, ``lat``, ``lon``, ``year``, ``month``,
            ``day_of_year``, ``cloud_cover``) that the file gave; absent keys were not found.
        width, height: the raster's size in pixels.
        pixel_size_m: ``(width_m, height_m)`` of the centre pixel, None without a CRS.
        date_source: where the date came from (``"file name"``, a tag name), None without one.
    """

    values: dict[str, float] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    pixel_size_m: tuple[float, float] | None = None
    date_source: str | None = None


def _date_from_tags(tags: dict[str, str], names: Sequence[str]) -> tuple[dict[str, int], str]:
    upper = {k.upper(): v for k, v in tags.items()}
    for name in names:
        if name in upper:
            try:
                return date_fields(parse_date(upper[name])), name
            except DataError:
                continue  # an unreadable tag is no date; try the next one
    return {}, ""


def _cloud_from_tags(tags: dict[str, str]) -> float | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for name in CLOUD_TAGS:
        try:
            value = float(upper[name])
        except (KeyError, ValueError):
            continue
        if 0.0 <= value <= 100.0:
            return value
    return None


def scene_metadata(
    src: Any,
    *,
    date_pattern: str | re.Pattern[str] | None = None,
    use_tiff_datetime: bool = True,
) -> SceneMetadata:
    """The metadata of an open rasterio dataset (see the module docstring).

    Args:
        src: An open rasterio dataset (:func:`terradiff.data.raster.open_raster`).
        date_pattern: A file-name date pattern for :func:`terradiff.data.dates.date_from_name`
            (a preset name such as ``"yyyymmdd"`` or a regex with named groups), tried first.
        use_tiff_datetime: Fall back to ``TIFFTAG_DATETIME`` when no other date is found.

    Raises:
        RasterError: a CRS that cannot be transformed to EPSG:4326.
        ConfigError: a bad ``date_pattern``.
        DataError: a file name that the pattern matches with an impossible date.
    """
    out = SceneMetadata(width=int(src.width), height=int(src.height))
    if src.crs is not None:
        from rasterio.errors import RasterioError

        try:
            lon, lat = centre_lonlat(src.transform, src.crs, src.width, src.height)
            size = pixel_ground_size(src.transform, src.crs, src.width, src.height)
        except (RasterioError, ValueError) as err:
            raise RasterError(
                f"{src.name}: cannot transform its CRS {src.crs} to longitude/latitude: {err}; "
                "give gsd/lat/lon in a metadata sidecar instead"
            ) from err
        if all(math.isfinite(v) for v in (lon, lat, *size)) and size[0] > 0 and size[1] > 0:
            out.pixel_size_m = size
            out.values.update(gsd=math.sqrt(size[0] * size[1]), lat=lat, lon=lon)
    tags = dict(src.tags())
    date: dict[str, int] = {}
    if date_pattern is not None:
        date = date_from_name(os.path.basename(str(src.name)), date_pattern)
        out.date_source = "file name" if date else None
    if not date:
        names = [*DATE_TAGS, TIFF_DATETIME_TAG] if use_tiff_datetime else list(DATE_TAGS)
        date, found = _date_from_tags(tags, names)
        out.date_source = found or None
    out.values.update({k: float(v) for k, v in date.items()})
    cloud = _cloud_from_tags(tags)
    if cloud is not None:
        out.values["cloud_cover"] = cloud
    return out


def read_scene_metadata(
    path: str | os.PathLike[str],
    *,
    date_pattern: str | re.Pattern[str] | None = None,
    use_tiff_datetime: bool = True,
) -> SceneMetadata:
    """:func:`scene_metadata` of the raster at ``path`` (header only, no pixels read).

    Raises:
        RasterError: a missing or unreadable file, or an untransformable CRS.
    """
    with open_raster(path) as src:
        return scene_metadata(src, date_pattern=date_pattern, use_tiff_datetime=use_tiff_datetime)


__all__ = [
    "CLOUD_TAGS",
    "DATE_TAGS",
    "TIFF_DATETIME_TAG",
    "WGS84_A",
    "WGS84_E2",
    "SceneMetadata",
    "centre_lonlat",
    "metres_per_degree",
    "pixel_ground_size",
    "read_scene_metadata",
    "scene_metadata",
]
