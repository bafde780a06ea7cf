"""BioMassters chips: cloud-aware Sentinel-2 compositing and carbon-density targets.

A BioMassters chip (Nascetti et al., NeurIPS 2023 Datasets and Benchmarks) is a folder
``<chip>/`` with monthly Sentinel-2 L2A images ``<chip>_S2_MM.tif`` (11 bands, uint16: the 10
reflectance bands of :data:`S2_BANDS` x 10,000 and the cloud probability 0-100, 255 = missing;
``MM`` = 00 for September ... 11 for August) and the LiDAR above-ground biomass
``<chip>_agbm.tif`` (float32, t/ha), all on one 256x256 grid at 10 m without a CRS.

Months are often cloudy or empty: :func:`assess_months` measures each month's clear fraction from
the cloud band and the values; :func:`composite_chip` picks the clearest month or takes the
per-pixel median of the clear observations.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from terradiff.carbon.stock import carbon_from_biomass
from terradiff.data.raster import read_raster
from terradiff.errors import DataError

S2_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
"""The reflectance bands of a BioMassters S2 file, in file order (band 11 is the cloud band)."""
CLOUD_BAND = 11
MISSING_CLOUD = 255
EMPTY_FRACTION = 0.01
"""A month with data in fewer pixels than this is empty."""
MONTH_NAMES: tuple[str, ...] = (
    "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"
)  # fmt: skip
"""Month index ``MM`` of a file name -> calendar month (00 = September)."""

_S2_FILE = re.compile(r"_S2_(\d{2})\.tif$", re.IGNORECASE)


@dataclass(frozen=True)
class MonthQuality:
    """How usable one monthly image of a chip is.

    Attributes:
        month: the file's month index (0 = September).
        path: the file.
        clear_fraction: pixels neither cloudy (probability > threshold) nor missing.
        empty: (almost) no data: under 1% of the pixels have a reflectance and a cloud value
            (the published ``000aa810_S2_09.tif`` has data in 0.2% of its pixels).
    """

    month: int
    path: Path
    clear_fraction: float
    empty: bool

    @property
    def name(self) -> str:
        """``"MM (Mon)"``, e.g. ``"08 (May)"``."""
        return f"{self.month:02d} ({MONTH_NAMES[self.month]})"


def month_files(chip_dir: str | Path) -> dict[int, Path]:
    """``{month index: path}`` of the chip's Sentinel-2 files."""
    folder = Path(chip_dir)
    if not folder.is_dir():
        raise DataError(f"BioMassters chip folder not found: {folder}")
    found = {int(m.group(1)): p for p in sorted(folder.iterdir()) if (m := _S2_FILE.search(p.name))}
    if not found:
        raise DataError(
            f"no Sentinel-2 files (<chip>_S2_MM.tif) in {folder}; is it a BioMassters chip?"
        )
    return found


def _clear_pixels(stack: np.ndarray, path: Path, cloud_threshold: float) -> np.ndarray:
    """Clear pixels of one 11-band image: not missing, not cloudy, some reflectance."""
    if stack.shape[0] != len(S2_BANDS) + 1:
        raise DataError(
            f"{path} has {stack.shape[0]} bands; a BioMassters S2 file has 11 "
            f"({', '.join(S2_BANDS)}, cloud probability)"
        )
    cloud = stack[CLOUD_BAND - 1]
    has_data = (stack[: len(S2_BANDS)] > 0).any(axis=0)
    return (cloud != MISSING_CLOUD) & (cloud <= cloud_threshold) & has_data


def assess_months(chip_dir: str | Path, cloud_threshold: float = 50.0) -> list[MonthQuality]:
    """The clear fraction of every month of a chip (cloud probability <= ``cloud_threshold``)."""
    out = []
    for month, path in month_files(chip_dir).items():
        stack = read_raster(path).array
        clear = _clear_pixels(stack, path, cloud_threshold)
        has_data = (stack[: len(S2_BANDS)] > 0).any(axis=0) & (
            stack[CLOUD_BAND - 1] != MISSING_CLOUD
        )
        empty = bool(has_data.mean() < EMPTY_FRACTION)
        out.append(MonthQuality(month, path, float(clear.mean()), empty))
    return out


@dataclass(frozen=True)
class Composite:
    """A cloud-aware Sentinel-2 image of a chip.

    Attributes:
        reflectance: ``[10, H, W]`` float32 surface reflectance (DN / 10,000) of :data:`S2_BANDS`.
        valid: ``[H, W]`` pixels with at least one clear observation.
        months: the month indices used.
        method: ``"best_month"`` or ``"median"``.
    """

    reflectance: np.ndarray
    valid: np.ndarray
    months: tuple[int, ...]
    method: str


def composite_chip(
    chip_dir: str | Path,
    method: Literal["best_month", "median"] = "median",
    *,
    cloud_threshold: float = 50.0,
    min_clear_fraction: float = 0.5,
    months: list[int] | None = None,
) -> Composite:
    """A cloud-aware image of a chip from its monthly Sentinel-2 files.

    Args:
        chip_dir: the chip's folder.
        method: ``"best_month"``: the single month with the largest clear fraction;
            ``"median"``: per pixel, the median of the clear observations of all usable months.
        cloud_threshold: a pixel is cloudy above this cloud probability (0-100).
        min_clear_fraction: months with a smaller clear fraction are not used.
        months: restrict to these month indices (e.g. the growing season ``[8, 9, 10, 11]``).

    Raises:
        DataError: no month of the chip is usable (the message lists each month's clear fraction
            and how to relax the thresholds).
    """
    if method not in ("best_month", "median"):
        raise DataError(f"unknown composite method {method!r}; use 'best_month' or 'median'")
    quality = [
        q for q in assess_months(chip_dir, cloud_threshold) if months is None or q.month in months
    ]
    usable = [q for q in quality if not q.empty and q.clear_fraction >= min_clear_fraction]
    if not usable:
        listed = ", ".join(
            f"{q.name}: {'empty' if q.empty else f'{q.clear_fraction:.0%} clear'}" for q in quality
        )
        raise DataError(
            f"chip {Path(chip_dir).name}: no month has >= {min_clear_fraction:.0%} clear pixels "
            f"(cloud probability <= {cloud_threshold:g}): {listed or 'no month selected'}. Lower "
            "min_clear_fraction, raise cloud_threshold, or leave the chip out"
        )
    if method == "best_month":
        usable = [max(usable, key=lambda q: (q.clear_fraction, -q.month))]
    stacks, clears = [], []
    for q in usable:
        stack = read_raster(q.path).array
        clears.append(_clear_pixels(stack, q.path, cloud_threshold))
        stacks.append(stack[: len(S2_BANDS)].astype(np.float32) / 10_000.0)
    data = np.stack(stacks)  # [M, 10, H, W]
    clear = np.stack(clears)  # [M, H, W]
    if method == "best_month":
        reflectance = np.where(clear[0][None], data[0], np.nan)
    else:
        masked = np.where(clear[:, None], data, np.nan)
        with warnings.catch_warnings():  # pixels with no clear month are marked invalid
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            reflectance = np.nanmedian(masked, axis=0)
    valid = clear.any(axis=0)
    reflectance = np.nan_to_num(reflectance, nan=0.0).astype(np.float32)
    return Composite(reflectance, valid, tuple(q.month for q in usable), method)


@dataclass(frozen=True)
class CarbonTarget:
    """The carbon-density target of a chip.

    Attributes:
        carbon: ``[H, W]`` float32 carbon density in Mg C/ha (AGB x carbon fraction).
        forest: ``[H, W]`` forest mask (AGB > 0).
        valid: ``[H, W]`` pixels with a finite target.
    """

    carbon: np.ndarray
    forest: np.ndarray
    valid: np.ndarray


def read_carbon_target(chip_dir: str | Path, carbon_fraction: float = 0.5) -> CarbonTarget:
    """Carbon density and forest mask of a chip from its ``<chip>_agbm.tif`` (t/ha)."""
    folder = Path(chip_dir)
    paths = sorted(folder.glob("*_agbm.tif"))
    if len(paths) != 1:
        raise DataError(
            f"expected one biomass file <chip>_agbm.tif in {folder}, found {len(paths)}"
        )
    data = read_raster(paths[0])
    agb = data.array[0].astype(np.float64)
    valid = data.valid_mask & np.isfinite(agb) & (agb >= 0)
    carbon = np.where(valid, carbon_from_biomass(np.nan_to_num(agb), carbon_fraction), 0.0)
    return CarbonTarget(carbon.astype(np.float32), valid & (agb > 0), valid)
