"""Helpers of the change-detection tests: a small LEVIR-CD copy and tiny configs trained by CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.data.levir import LEVIR_FOLDERS

#: The LEVIR-CD tiles of the small copy: every training tile and two test tiles (one of them
#: without change would make F1 trivially 0 or 1, test_2_0000_0000 has change).
TEST_TILES = ("test_2_0000_0000", "test_7_0256_0512")

TINY_MODEL = {
    "base_channels": 8,
    "channel_mults": [1, 2, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [],
    "num_groups": 4,
    "head_channels": 8,
    "dropout": 0.0,
}
TINY_TRAIN = {
    "batch_size": 4,
    "lr": 1e-3,
    "warmup_steps": 1,
    "mixed_precision": "no",
    "progress": False,
    "log_every": 1,
    "sample_every": 10_000,
}


def levir_copy(levir: Path, root: Path) -> Path:
    """A LEVIR-CD folder under ``root`` linking the real training tiles and :data:`TEST_TILES`."""
    out = root / "levir-small"
    for folder in LEVIR_FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
        for source in sorted((levir / folder).glob("*.png")):
            if source.stem.startswith(("train_", "val_")) or source.stem in TEST_TILES:
                (out / folder / source.name).symlink_to(source)
    return out


def train(config: dict[str, Any], path: Path, *extra: str) -> Path:
    """Write ``config`` to ``path`` and train it with ``terradiff train``; the run folder."""
    path.write_text(yaml.safe_dump(config))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", str(path), *extra]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    return Path(config["output_dir"])


def generator_config(levir: Path, run: Path, steps: int = 2) -> dict[str, Any]:
    """A tiny unconditional generator on the A and B images of LEVIR-CD's training tiles."""
    return {
        "name": "levir-generator-tiny",
        "task": "generation",
        "seed": 1,
        "output_dir": str(run),
        "data": {
            "kind": "folder",
            "root": str(levir),
            "include": ["A/train_*", "A/val_*", "B/train_*", "B/val_*"],
            "image_size": 32,
        },
        "model": TINY_MODEL,
        "diffusion": {"num_timesteps": 500},
        "train": {**TINY_TRAIN, "max_steps": steps},
    }


def change_config(
    levir: Path, run: Path, method: str, steps: int = 3, **section: Any
) -> dict[str, Any]:
    """A tiny change config of ``method`` on 32 px LEVIR-CD crops (2 per training pair)."""
    return {
        "name": f"levir-{method}-tiny",
        "task": "change",
        "seed": 2,
        "output_dir": str(run),
        "data": {"kind": "levir_cd", "root": str(levir), "image_size": 32, "crops_per_image": 2},
        "model": TINY_MODEL,
        "change": {"method": method, **section},
        "train": {**TINY_TRAIN, "max_steps": steps},
    }
