"""Helpers of the temporal-generation tests: tiny configs on the real BioMassters chips, trained
through `terradiff train` (the CLI), and a date-conditioned generator for the ControlNet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from terradiff.data.temporal import BIOMASSTERS_MONTHS
from tests.change_helpers import TINY_MODEL, TINY_TRAIN, train

__all__ = ["generator_config", "temporal_config", "train"]


def temporal_config(
    biomassters: Path, run: Path, method: str, steps: int = 3, **section: Any
) -> dict[str, Any]:
    """A tiny ``temporal`` config of ``method`` on 32 px crops of every BioMassters chip (the
    last usable month of each chip held out)."""
    config: dict[str, Any] = {
        "name": f"temporal-{method}-tiny",
        "task": "temporal",
        "seed": 0,
        "output_dir": str(run),
        "data": {
            "kind": "temporal",
            "root": str(biomassters),
            "scaling": "sentinel2",
            "image_size": 32,
            "crops_per_image": 1,
            "rgb_bands": [2, 1, 0],
        },
        "temporal": {"method": method, "test_dates": 1, **section},
        "model": TINY_MODEL,
        "diffusion": {"num_timesteps": 200},
        "sample": {"steps": 2},
        "train": {**TINY_TRAIN, "max_steps": steps},
    }
    if method == "controlnet":  # the generator's model and diffusion are used
        config.pop("model")
        config.pop("diffusion")
    return config


def generator_config(biomassters: Path, run: Path, steps: int = 2) -> dict[str, Any]:
    """A tiny generation model of the BioMassters S2 months conditioned on the calendar month
    (a JSON sidecar gives each file's month: ``MM`` 00 is September)."""
    sidecar = run.parent / "months.json"
    months = {
        str(f): {"month": BIOMASSTERS_MONTHS[int(f.stem[-2:])]}
        for f in sorted(biomassters.glob("*/*_S2_[0-9][0-9].tif"))
    }
    sidecar.write_text(json.dumps(months))
    return {
        "name": "biomassters-month-generator-tiny",
        "task": "generation",
        "seed": 1,
        "output_dir": str(run),
        "data": {
            "kind": "geotiff_chips",
            "root": str(biomassters),
            "include": ["*_S2_*.tif"],
            "bands": list(range(1, 11)),
            "scaling": "sentinel2",
            "image_size": 32,
        },
        "condition": {"metadata": ["month"], "metadata_sidecar": str(sidecar)},
        "model": TINY_MODEL,
        "diffusion": {"num_timesteps": 200},
        "train": {**TINY_TRAIN, "max_steps": steps},
    }
