"""Tests of terradiff.data.scene_metadata on the real scenes, checked against independent values.

The references do not use the module's method (corners through PROJ, then WGS84 radii):
* NAIP: the USGS quarter-quadrangle in the file name (``m_4709963_se``) bounds the centre;
* EuroSAT (UTM 29N): a spherical transverse-Mercator inverse locates the centre to ~0.2 deg;
* EPSG:4326 Landsat: the bounds give the centre; pixel sizes in metres from the usual series for
  the length of a degree (111132.92 - 559.82 cos 2phi + ..., 111412.84 cos phi - 93.5 cos 3phi).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from terradiff.data.scene_metadata import (
    metres_per_degree,
    read_scene_metadata,
)
from terradiff.errors import RasterError


def _degree_lengths(lat: float) -> tuple[float, float]:
    """Metres per degree of latitude and longitude (the series of the US NGA / Wikipedia)."""
    phi = math.radians(lat)
    lat_m = 111_132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
    lon_m = 111_412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi) + 0.118 * math.cos(5 * phi)
    return lat_m, lon_m


def _naip_quarter_quad(name: str) -> tuple[float, float, float, float]:
    """``(south, north, west, east)`` of the USGS quarter quadrangle of a NAIP file name.

    ``m_DDddd CC_q``: the 1x1 degree block with SE corner ``DD`` N / ``ddd`` W, its 7.5' cell
    ``CC`` (1..64, numbered from the NW corner, west to east), and quarter ``q`` (ne/nw/se/sw).
    """
    block = name.split("_")[1]
    lat0, lon0, cell = int(block[:2]), int(block[2:5]), int(block[5:7])
    row, col = divmod(cell - 1, 8)
    north = lat0 + 1 - row / 8
    west = -(lon0 + 1) + col / 8
    quarter = name.split("_")[2]
    north -= 0.0625 if quarter[0] == "s" else 0.0
    west += 0.0625 if quarter[1] == "e" else 0.0
    return north - 0.0625, north, west, west + 0.0625


def _utm_inverse_sphere(easting: float, northing: float, zone: int) -> tuple[float, float]:
    """``(lon, lat)`` of a northern UTM point on a sphere (Snyder 1987, eq. 8-6/8-7)."""
    radius, k0 = 6_371_000.0, 0.9996
    x, y = (easting - 500_000.0) / (k0 * radius), northing / (k0 * radius)
    lat = math.asin(math.sin(y) / math.cosh(x))
    lon = -183.0 + 6.0 * zone + math.degrees(math.atan2(math.sinh(x), math.cos(y)))
    return lon, math.degrees(lat)


def test_naip_gsd_and_centre(shared_data: Path) -> None:
    for path in sorted((shared_data / "scenes" / "opengeos-naip").glob("*.tif")):
        scene = read_scene_metadata(path, date_pattern="yyyymmdd")
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 26914 and src.res == (5.0, 5.0)
        # 5 m UTM pixels near the central meridian (-99): ground size 5 / 0.9996
        assert scene.values["gsd"] == pytest.approx(5.0 / 0.9996, rel=5e-4)
        south, north, west, east = _naip_quarter_quad(path.name)
        assert (south, west) == (47.0, -99.1875)
        assert south < scene.values["lat"] < north and west < scene.values["lon"] < east
        assert scene.date_source == "file name" and scene.values["year"] >= 2009


def test_eurosat_chip_gsd_and_centre(shared_data: Path) -> None:
    path = sorted((shared_data / "eurosat-ms" / "train" / "AnnualCrop").glob("*.tif"))[0]
    scene = read_scene_metadata(path)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32629 and src.res == pytest.approx((10.0, 10.0), abs=0.01)
        x, y = src.transform @ (src.width / 2, src.height / 2)
    assert scene.values["gsd"] == pytest.approx(10.0, rel=3e-3)
    lon, lat = _utm_inverse_sphere(x, y, zone=29)
    assert scene.values["lon"] == pytest.approx(lon, abs=0.2)
    assert scene.values["lat"] == pytest.approx(lat, abs=0.25)
    assert set(scene.values) == {"gsd", "lat", "lon"}  # no date in the chip or its name


def test_geographic_landsat_converts_degrees_at_the_centre_latitude(shared_data: Path) -> None:
    for path in (
        shared_data / "scenes" / "opengeos-landsat" / "2015.tif",
        shared_data / "scenes" / "localtileserver" / "landsat.tif",
    ):
        scene = read_scene_metadata(path, date_pattern="year")
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 4326
            left, bottom, right, top = src.bounds
            xres, yres = src.res
        assert scene.values["lon"] == pytest.approx((left + right) / 2, abs=1e-9)
        assert scene.values["lat"] == pytest.approx((bottom + top) / 2, abs=1e-9)
        lat_m, lon_m = _degree_lengths(scene.values["lat"])
        width_m, height_m = scene.pixel_size_m
        assert width_m == pytest.approx(xres * lon_m, rel=1e-4)
        assert height_m == pytest.approx(yres * lat_m, rel=1e-4)
        assert scene.values["gsd"] == pytest.approx(math.sqrt(width_m * height_m))
    # landsat.tif: 30 m pixels stored in degrees at 40.8 N: 22.7 m east-west, 29.9 m north-south
    assert scene.pixel_size_m == pytest.approx((22.74, 29.93), abs=0.01)
    assert "year" not in scene.values  # "landsat.tif" has no year


def test_metres_per_degree_matches_the_series() -> None:
    for lat in (0.0, 23.5, 45.0, 60.0, 89.0):
        assert metres_per_degree(lat) == pytest.approx(_degree_lengths(lat), rel=1e-5)


def _write(path: Path, crs: CRS | None, transform: Affine, tags: dict[str, str]) -> Path:
    profile = {"driver": "GTiff", "width": 8, "height": 6, "count": 1, "dtype": "uint8"}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.zeros((1, 6, 8), np.uint8))
            dst.update_tags(**tags)
    return path


def test_web_mercator_pixels_are_shrunk_by_cos_lat(tmp_path: Path) -> None:
    y60 = 6_378_137.0 * math.log(math.tan(math.pi / 4 + math.radians(60) / 2))
    path = _write(tmp_path / "tile.tif", CRS.from_epsg(3857), Affine(10, 0, 0, 0, -10, y60), {})
    scene = read_scene_metadata(path)
    assert scene.values["lat"] == pytest.approx(60.0, abs=1e-3)
    assert scene.values["gsd"] == pytest.approx(10.0 * math.cos(math.radians(60)), rel=4e-3)


def test_dates_from_tags_and_their_order(tmp_path: Path) -> None:
    utm = CRS.from_epsg(32633)
    grid = Affine(10, 0, 500_000, 0, -10, 4_650_000)
    tags = {"TIFFTAG_DATETIME": "2023:01:02 03:04:05", "acquisitionDate": "2021-06-15"}
    path = _write(tmp_path / "s2_20200101.tif", utm, grid, {**tags, "CLOUD_COVER": "12.5"})
    scene = read_scene_metadata(path)
    assert scene.date_source == "ACQUISITIONDATE"
    assert {k: scene.values[k] for k in ("year", "month", "day_of_year", "cloud_cover")} == {
        "year": 2021,
        "month": 6,
        "day_of_year": 166,
        "cloud_cover": 12.5,
    }
    assert read_scene_metadata(path, date_pattern="yyyymmdd").values["year"] == 2020  # name first
    only_tiff = _write(tmp_path / "b.tif", utm, grid, {"TIFFTAG_DATETIME": "2023:01:02 03:04:05"})
    assert read_scene_metadata(only_tiff).values["month"] == 1
    assert read_scene_metadata(only_tiff).date_source == "TIFFTAG_DATETIME"
    assert "year" not in read_scene_metadata(only_tiff, use_tiff_datetime=False).values
    garbled = _write(tmp_path / "c.tif", utm, grid, {"ACQUISITIONDATE": "yesterday"})
    assert "year" not in read_scene_metadata(garbled).values  # an unreadable tag is no date


def test_files_without_crs_give_no_location(shared_data: Path, tmp_path: Path) -> None:
    jpeg = next((shared_data / "aid" / "Airport").glob("*.jpg"))
    assert read_scene_metadata(jpeg).values == {}
    plain = _write(tmp_path / "plain_2018.tif", None, Affine.identity(), {})
    scene = read_scene_metadata(plain, date_pattern="year")
    assert scene.values == {"year": 2018} and scene.pixel_size_m is None
    with pytest.raises(RasterError, match="not found"):
        read_scene_metadata(tmp_path / "missing.tif")
