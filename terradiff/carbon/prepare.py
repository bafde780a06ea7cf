"""BioMassters chips -> paired rasters (image, carbon target, forest mask) for training.

:func:`prepare_biomassters` writes, per chip, ``<out>/<chip>/image.tif`` (the cloud-aware
Sentinel-2 composite, 10 bands of surface reflectance with band names, nodata where no month was
clear), ``target.tif`` (carbon density in Mg C/ha, nodata where the biomass is missing) and
``mask.tif`` (forest 255 / other 0), and a ``manifest.json`` recording the months used, each
month's clear fraction and the forest fraction. Any other paired rasters a user has take the same
form and train the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from terradiff.carbon.biomassters import (
    S2_BANDS,
    assess_months,
    composite_chip,
    read_carbon_target,
)
from terradiff.carbon.stock import binarize_mask
from terradiff.data.raster import write_raster
from terradiff.errors import ConfigError, DataError
from terradiff.io import atomic_write_text

log = logging.getLogger(__name__)

NODATA = -9999.0


@dataclass(frozen=True)
class PreparedChip:
    """The three rasters of one prepared chip."""

    chip: str
    image: Path
    target: Path
    mask: Path


def prepare_biomassters(
    root: str | Path,
    out_dir: str | Path,
    *,
    chips: list[str] | None = None,
    method: Literal["best_month", "median"] = "median",
    cloud_threshold: float = 50.0,
    min_clear_fraction: float = 0.5,
    months: list[int] | None = None,
    carbon_fraction: float = 0.5,
    overwrite: bool = False,
) -> list[PreparedChip]:
    """Composite, convert and write every chip of a BioMassters folder (see the module docstring).

    Chips with no usable month are skipped and listed in the manifest and in one warning; if no
    chip is usable the error lists why for each.

    Returns:
        The prepared chips, in chip order.

    Raises:
        ConfigError: ``cloud_threshold`` outside 0-100 or ``min_clear_fraction`` outside 0-1
            (a cloud probability of 150 called every pixel clear; a fraction of 2 refused every
            month).
        DataError: no chip folder, or no chip could be prepared.
    """
    if not 0.0 <= cloud_threshold <= 100.0:  # also NaN
        raise ConfigError(
            f"--cloud-threshold {cloud_threshold} (cloud_threshold from Python): the cloud band "
            "is a probability in percent; give a value from 0 to 100, e.g. 50"
        )
    if not 0.0 <= min_clear_fraction <= 1.0:
        raise ConfigError(
            f"--min-clear {min_clear_fraction} (min_clear_fraction from Python): the share of "
            "clear pixels a month needs; give a fraction from 0 to 1, e.g. 0.5"
        )
    root, out_dir = Path(root), Path(out_dir)
    names = chips or sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"no chip folders under {root}")
    prepared: list[PreparedChip] = []
    manifest: dict[str, Any] = {
        "source": str(root),
        "method": method,
        "cloud_threshold": cloud_threshold,
        "min_clear_fraction": min_clear_fraction,
        "carbon_fraction": carbon_fraction,
        "bands": list(S2_BANDS),
        "chips": {},
        "skipped": {},
    }
    for name in names:
        chip_dir = root / name
        try:
            image = composite_chip(
                chip_dir,
                method,
                cloud_threshold=cloud_threshold,
                min_clear_fraction=min_clear_fraction,
                months=months,
            )
        except DataError as error:
            manifest["skipped"][name] = str(error)
            continue
        target = read_carbon_target(chip_dir, carbon_fraction)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        paths = PreparedChip(name, folder / "image.tif", folder / "target.tif", folder / "mask.tif")
        write_raster(
            paths.image,
            image.reflectance,
            nodata=NODATA,
            valid_mask=image.valid,
            band_names=list(S2_BANDS),
            overwrite=overwrite,
        )
        write_raster(
            paths.target,
            target.carbon[None],
            nodata=NODATA,
            valid_mask=target.valid,
            band_names=["carbon_MgC_per_ha"],
            overwrite=overwrite,
        )
        write_raster(
            paths.mask,
            binarize_mask(target.forest)[None],
            band_names=["forest"],
            overwrite=overwrite,
        )
        prepared.append(paths)
        manifest["chips"][name] = {
            "months": list(image.months),
            "clear_fraction": {
                q.name: round(q.clear_fraction, 4) for q in assess_months(chip_dir, cloud_threshold)
            },
            "valid_image_fraction": round(float(image.valid.mean()), 4),
            "forest_fraction": round(float(target.forest.mean()), 4),
            "mean_carbon_forest": round(float(target.carbon[target.forest].mean()), 3)
            if target.forest.any()
            else 0.0,
        }
    if manifest["skipped"]:
        log.warning(
            "skipped %d chip(s) with no usable month: %s",
            len(manifest["skipped"]),
            ", ".join(manifest["skipped"]),
        )
    if not prepared:
        reasons = "; ".join(manifest["skipped"].values())
        raise DataError(f"no chip under {root} could be prepared: {reasons}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return prepared
