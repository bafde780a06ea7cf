"""Time series of one place on one grid: the dated images a temporal pair is drawn from.

A :class:`TimeSeries` is the images of one place, ordered in time, that share one pixel grid
(CRS, transform, size). Two sources are built in:

* :func:`biomassters_series`: a BioMassters chip (Nascetti et al., NeurIPS 2023 D&B) --
  ``<chip>/<chip>_S2_MM.tif``, 11 bands uint16 (10 Sentinel-2 L2A reflectance bands x 10,000 and
  the cloud probability 0-100, 255 = missing), ``MM`` = 00 for September ... 11 for August of one
  season, no CRS (each chip is its own 256x256 grid). A pixel is **clear** when its cloud
  probability is ``<= cloud_threshold``, not 255, and some reflectance band is non-zero (the rule
  of :mod:`terradiff.carbon.biomassters`); a month whose clear fraction is below
  ``min_clear_fraction`` is skipped (cloudy or empty, e.g. the published ``000aa810_S2_09.tif``
  holds data in 0.2 % of its pixels). The year is unknown: a month is ``month`` only (no
  ``day_of_year``), and its time is ``MM / 12`` years after the season's September.
* :func:`scene_series`: a folder of GeoTIFFs of one place whose file names carry the date
  (:func:`terradiff.data.dates.date_from_name`): ``yyyymmdd`` (NAIP
  ``m_4709963_se_14_1_20190904.tif``: year, month, day of year) or a bare year (Landsat
  ``1985.tif``: year only). Nodata pixels are invalid.

**Grid check.** With ``align="strict"`` (the default) every image must have the first image's
CRS, transform and size, else a :class:`~terradiff.errors.DataError` names both files, what
differs and the fix. With ``align="reference"`` images on another grid are resampled (bilinear,
:class:`rasterio.vrt.WarpedVRT`) onto the grid of the series' first image; pixels outside an
image's footprint are invalid. The five NAIP tiles of ``scenes/opengeos-naip`` need it: their
origins differ by up to 3 m (less than a 5 m pixel) and two are one row taller.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terradiff.data.dates import date_from_name
from terradiff.data.paired import check_same_grid
from terradiff.data.raster import BIOMASSTERS_S2_BANDS, inspect_raster, read_raster
from terradiff.errors import DataError

__all__ = [
    "BIOMASSTERS_MONTHS",
    "DatedImage",
    "TimeSeries",
    "biomassters_series",
    "clear_pixels",
    "read_series_image",
    "scene_series",
]

#: BioMassters month index ``MM`` -> calendar month (00 = September ... 11 = August).
BIOMASSTERS_MONTHS: tuple[int, ...] = tuple((m + 8) % 12 + 1 for m in range(12))
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CLOUD_BAND = 11
_MISSING_CLOUD = 255
_ALIGN = ("strict", "reference")


@dataclass(frozen=True)
class DatedImage:
    """One image of a time series.

    Attributes:
        path: The file.
        label: The date as people write it (``"2019-09-04"``, ``"1985"``, ``"03 (Dec)"``).
        date: The raw metadata keys known for it (``year``, ``month``, ``day_of_year``; see
            :mod:`terradiff.data.metadata`).
        time: Its position on the series' time axis in decimal years (ordering and the years
            between two dates).
        clear_fraction: Fraction of pixels that hold clear data (1 for scenes without a cloud
            band: their nodata is masked per pixel instead).
    """

    path: Path
    label: str
    date: dict[str, int]
    time: float
    clear_fraction: float = 1.0


@dataclass(frozen=True)
class TimeSeries:
    """Dated images of one place on one grid (see the module docstring).

    Attributes:
        place: The place's name (chip id, folder name).
        images: The usable images, oldest first.
        bands: 1-based band indices read from each file.
        band_names: Their names.
        dtype: The files' data type (picks the default scaling).
        height, width: The grid's size.
        crs, transform: The grid's georeferencing (None / identity for BioMassters chips).
        align: ``"strict"`` or ``"reference"``.
        cloud_threshold: Cloud probability above which a pixel is cloudy (BioMassters), or None
            for files without a cloud band.
        skipped: Images left out as cloudy or empty, with their clear fraction.
    """

    place: str
    images: tuple[DatedImage, ...]
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    dtype: str
    height: int
    width: int
    crs: Any
    transform: Any
    align: str = "strict"
    cloud_threshold: float | None = None
    skipped: tuple[DatedImage, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> list[str]:
        """The date labels of :attr:`images`."""
        return [image.label for image in self.images]


def clear_pixels(stack: np.ndarray, cloud_threshold: float) -> np.ndarray:
    """Clear pixels ``[H, W]`` of one 11-band BioMassters image ``[11, H, W]``: cloud probability
    ``<= cloud_threshold`` and not 255 (missing), and some non-zero reflectance."""
    cloud = stack[_CLOUD_BAND - 1]
    has_data = (stack[: _CLOUD_BAND - 1] > 0).any(axis=0)
    return (cloud != _MISSING_CLOUD) & (cloud <= cloud_threshold) & has_data


def _check_grid(first: Path, other: Path, align: str) -> None:
    if align == "reference":
        return
    try:
        check_same_grid(first, other)
    except DataError as err:
        raise DataError(
            f"{err}; or, for a time series, pass align='reference' to resample every date onto "
            f"the grid of {first.name}"
        ) from err


def _check_align(align: str) -> None:
    if align not in _ALIGN:
        raise DataError(f"align must be one of {list(_ALIGN)}, got {align!r}")


def biomassters_series(
    chip_dir: str | os.PathLike[str],
    *,
    cloud_threshold: float = 50.0,
    min_clear_fraction: float = 0.8,
) -> TimeSeries:
    """The monthly Sentinel-2 images of one BioMassters chip, cloudy and empty months skipped.

    Args:
        chip_dir: The chip's folder (``<chip>/<chip>_S2_MM.tif``).
        cloud_threshold: A pixel is cloudy above this cloud probability (0-100).
        min_clear_fraction: Months with a smaller fraction of clear pixels are skipped.

    Raises:
        DataError: No S2 file, a file with another band count, a file name whose ``MM`` is not
            00-11, or fewer than two usable months (listing each month's clear fraction).
    """
    folder = Path(chip_dir)
    if not folder.is_dir():
        raise DataError(f"BioMassters chip folder not found: {folder}")
    if not 0.0 <= cloud_threshold <= 100.0:
        raise DataError(f"cloud_threshold must be in 0..100, got {cloud_threshold}")
    if not 0.0 <= min_clear_fraction <= 1.0:
        raise DataError(f"min_clear_fraction must be in [0, 1], got {min_clear_fraction}")
    files = sorted(folder.glob("*_S2_[0-9][0-9].tif"))
    if not files:
        raise DataError(
            f"no Sentinel-2 files <chip>_S2_MM.tif in {folder}; is it a BioMassters chip folder?"
        )
    usable, skipped = [], []
    for path in files:
        index = int(path.stem[-2:])
        if index > 11:
            raise DataError(f"{path}: month index {index:02d} is not 00-11 (00 = September)")
        stack = read_raster(path).array
        if stack.shape[0] != _CLOUD_BAND:
            raise DataError(
                f"{path} has {stack.shape[0]} bands; a BioMassters S2 file has 11 (10 "
                "reflectance bands and the cloud probability)"
            )
        _check_grid(files[0], path, "strict")
        month = BIOMASSTERS_MONTHS[index]
        image = DatedImage(
            path=path,
            label=f"{index:02d} ({_MONTH_ABBR[month - 1]})",
            date={"month": month},
            time=index / 12.0,
            clear_fraction=float(clear_pixels(stack, cloud_threshold).mean()),
        )
        (usable if image.clear_fraction >= min_clear_fraction else skipped).append(image)
    if len(usable) < 2:
        listed = ", ".join(f"{i.label}: {i.clear_fraction:.0%}" for i in [*usable, *skipped])
        raise DataError(
            f"chip {folder.name}: fewer than two months have >= {min_clear_fraction:.0%} clear "
            f"pixels (cloud probability <= {cloud_threshold:g}): {listed}. Lower "
            "min_clear_fraction, raise cloud_threshold, or leave the chip out"
        )
    info = inspect_raster(files[0])
    return TimeSeries(
        place=folder.name,
        images=tuple(usable),
        bands=tuple(range(1, _CLOUD_BAND)),
        band_names=BIOMASSTERS_S2_BANDS[: _CLOUD_BAND - 1],
        dtype=info.dtype,
        height=info.height,
        width=info.width,
        crs=info.crs,
        transform=info.transform,
        cloud_threshold=float(cloud_threshold),
        skipped=tuple(skipped),
    )


def _scene_date(path: Path, pattern: str | None) -> dict[str, int]:
    patterns = [pattern] if pattern else ["yyyymmdd", "year"]
    for name in patterns:
        found = date_from_name(path, name)
        if found:
            return found
    raise DataError(
        f"{path}: no date in the file name (tried the patterns {patterns}); name the files by "
        "date (e.g. 20190904.tif or 2015.tif) or pass date_pattern"
    )


def _decimal_year(date: dict[str, int]) -> float:
    year = date["year"]
    if "day_of_year" in date:
        days = 366 if dt.date(year, 12, 31).timetuple().tm_yday == 366 else 365
        return year + (date["day_of_year"] - 1) / days
    if "month" in date:
        return year + (date["month"] - 1) / 12.0
    return float(year)


def _label(date: dict[str, int]) -> str:
    if "day_of_year" in date:
        day = dt.date(date["year"], 1, 1) + dt.timedelta(days=date["day_of_year"] - 1)
        return day.isoformat()
    if "month" in date:
        return f"{date['year']}-{date['month']:02d}"
    return str(date["year"])


def scene_series(
    folder: str | os.PathLike[str],
    *,
    bands: Sequence[int] | None = None,
    date_pattern: str | None = None,
    align: str = "strict",
    suffixes: Sequence[str] = (".tif", ".tiff"),
) -> TimeSeries:
    """The dated GeoTIFFs of one place (one folder), oldest first.

    Args:
        folder: The folder; every raster in it is one date of the place.
        bands: 1-based bands to read (default all).
        date_pattern: A :data:`~terradiff.data.dates.DATE_PATTERNS` name or a regular
            expression; default: ``yyyymmdd``, else a bare ``year``.
        align: ``"strict"``: every file on the first file's grid, else an error naming both
            files; ``"reference"``: resample onto it.

    Raises:
        DataError: No raster, a name without a date, two files of the same date, other band
            counts, or (``"strict"``) another grid.
    """
    _check_align(align)
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"time-series folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes and p.is_file())
    if len(files) < 2:
        raise DataError(
            f"{root} holds {len(files)} raster(s) ({', '.join(suffixes)}); a time series needs "
            "at least two dates of the same place"
        )
    images = []
    for path in files:
        date = _scene_date(path, date_pattern)
        if "year" not in date:
            raise DataError(f"{path}: the file name gives no year; the pattern must match one")
        images.append(DatedImage(path, _label(date), date, _decimal_year(date)))
    images.sort(key=lambda image: image.time)
    for a, b in itertools.pairwise(images):
        if a.time == b.time:
            raise DataError(f"{a.path} and {b.path} have the same date {a.label}; keep one")
    first = inspect_raster(images[0].path)
    for image in images[1:]:
        info = inspect_raster(image.path)
        if info.count != first.count:
            raise DataError(
                f"{image.path} has {info.count} bands, {images[0].path} has {first.count}; "
                "every date must be the same product"
            )
        _check_grid(images[0].path, image.path, align)
    selected = tuple(range(1, first.count + 1)) if bands is None else tuple(int(b) for b in bands)
    bad = [b for b in selected if not 1 <= b <= first.count]
    if bad:
        raise DataError(f"bands {bad} are not in 1..{first.count} ({images[0].path})")
    return TimeSeries(
        place=root.name,
        images=tuple(images),
        bands=selected,
        band_names=tuple(first.band_names[b - 1] for b in selected),
        dtype=first.dtype,
        height=first.height,
        width=first.width,
        crs=first.crs,
        transform=first.transform,
        align=align,
    )


def read_series_image(series: TimeSeries, image: DatedImage) -> tuple[np.ndarray, np.ndarray]:
    """``(array [C, H, W] in the file's units, valid [H, W])`` of one image on the series' grid.

    Valid: not nodata, inside the image's footprint (``align="reference"``) and, for
    BioMassters, clear (see :func:`clear_pixels`).
    """
    if series.cloud_threshold is not None:
        stack = read_raster(image.path).array
        valid = clear_pixels(stack, series.cloud_threshold)
        return stack[[b - 1 for b in series.bands]], valid
    info = inspect_raster(image.path)
    same = (
        (info.height, info.width) == (series.height, series.width)
        and info.crs == series.crs
        and info.transform.almost_equals(series.transform, precision=1e-6)
    )
    if same:
        data = read_raster(image.path, bands=list(series.bands))
        return data.array, data.valid_mask
    import rasterio  # where used: training on JPEGs imports this module, not rasterio (issue 16)
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with (
        rasterio.open(image.path) as src,
        WarpedVRT(
            src,
            crs=series.crs,
            transform=series.transform,
            width=series.width,
            height=series.height,
            resampling=Resampling.bilinear,
        ) as vrt,
    ):
        array = vrt.read(list(series.bands))
        valid = vrt.dataset_mask() != 0
    return array, valid
