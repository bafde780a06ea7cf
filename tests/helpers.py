"""Helpers shared by tests: a tiny experiment config on the bundled real AID sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def tiny_config(run_dir: Path, sample_data: Path, **train: Any) -> dict[str, Any]:
    """A small UNet on 32x32 crops of the bundled real AID sample (3 classes)."""
    return {
        "name": "tiny",
        "seed": 3,
        "output_dir": str(run_dir),
        "data": {
            "root": str(sample_data / "aid"),
            "image_size": 32,
            "classes": ["Forest", "Beach", "Desert"],
            "max_images": 48,
        },
        "model": {
            "base_channels": 16,
            "channel_mults": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [16],
            "num_groups": 8,
            "head_channels": 16,
            "dropout": 0.1,
        },
        "diffusion": {"num_timesteps": 200},
        "train": {
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_steps": 2,
            "mixed_precision": "no",
            "progress": False,
            "log_every": 1,
            "sample_every": 10_000,
            "keep_checkpoints": 5,
            **train,
        },
    }


def validate_stac_core(path: Path) -> dict:
    """The STAC Item at ``path``, validated against pystac's bundled STAC core schema (offline:
    extension schemas would be downloaded, which tests never do)."""
    from pystac import STACObjectType
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    data = json.loads(Path(path).read_text())
    JsonSchemaSTACValidator().validate_core(data, STACObjectType.ITEM, data["stac_version"])
    return data


def train_tiny_sr(root: Path, method: str, **sections: Any) -> Path:
    """A x4 super-resolution model (``sr.method`` ``method``) trained 2 steps through
    ``terradiff train`` on the bundled AID sample; ``sections`` replace config sections (e.g.
    ``sample={"sampler": "ddim", "steps": 2}``). Returns the run folder."""
    import yaml
    from accelerate.state import AcceleratorState

    from terradiff.cli import main
    from tests.conftest import SAMPLE_DATA

    config = tiny_config(root / "run", SAMPLE_DATA, max_steps=2)
    config.update(task="super_resolution", sr={"method": method, "scale": 4}, **sections)
    path = root / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    AcceleratorState._reset_state(reset_partial_state=True)
    if main(["train", str(path)]) != 0:
        raise RuntimeError(f"training the tiny {method} model failed")
    return root / "run"
