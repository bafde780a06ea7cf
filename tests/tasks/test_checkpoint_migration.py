"""Checkpoints written before methods had their own config sections (config.json format 1) load.

Format 1 stored every method's keys in ``sr``/``carbon`` (the flat sections of terradiff <= bd42a4a)
and a student's adapter widths in the band record; :func:`migrate_checkpoint_config` keeps the
keys of the saved method and moves the widths into ``sr.adapter_channels``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.state import AcceleratorState

from terradiff.config import config_from_dict
from terradiff.errors import CheckpointError
from terradiff.tasks import build_task, load_task, migrate_checkpoint_config
from terradiff.train import Trainer
from tests.helpers import tiny_config

# the flat sections as terradiff wrote them before methods had classes (defaults of bd42a4a)
FLAT_SR = {
    "method": "regression",
    "scale": 4.0,
    "degradation": "bicubic",
    "train_scales": [1.5, 4.0],
    "render_channels": 32,
    "uncertainty_weight": 1.0,
    "alpha_weight": 1.0,
    "tv_weight": 0.1,
    "power_window": 7,
    "lpips_weight": 0.0,
    "lpips_weights": None,
    "adversarial_weight": 0.0,
    "teacher": None,
    "distill": "mse_mmd",
    "mmd_weight": 0.1,
    "student_channels": 16,
    "student_mults": [1, 2],
    "student_blocks": 1,
    "fs_conv": True,
    "ds_conv": True,
    "global_aggregation": True,
}


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def _as_format_1(checkpoint: Path, section: str, flat: dict[str, Any]) -> None:
    """Rewrite a checkpoint's config.json as terradiff wrote it before config_format 2."""
    path = checkpoint / "config.json"
    saved = json.loads(path.read_text())
    saved.pop("config_format")
    saved["config"][section] = {**flat, **saved["config"][section]}
    path.write_text(json.dumps(saved))


def test_a_format_1_super_resolution_checkpoint_loads_with_its_weights(
    tmp_path: Path, sample_data: Path
) -> None:
    raw = tiny_config(tmp_path / "run", sample_data, max_steps=2)
    raw["task"] = "super_resolution"
    raw["sr"] = {"method": "regression", "scale": 4}
    result = Trainer(build_task(config_from_dict(raw)), tmp_path / "run").fit()
    assert result.checkpoint is not None
    current, _ = load_task(result.checkpoint, use_ema=False)
    _as_format_1(result.checkpoint, "sr", FLAT_SR)
    with pytest.raises(Exception, match="unknown key"):  # format 1 does not validate as is
        config_from_dict(json.loads((result.checkpoint / "config.json").read_text())["config"])
    old, _ = load_task(result.checkpoint, use_ema=False)
    assert type(old.method) is type(current.method)
    assert old.config.to_dict() == current.config.to_dict()
    for key, value in current.net.state_dict().items():
        assert torch.equal(value, old.net.state_dict()[key])


def test_a_format_1_carbon_section_keeps_only_its_methods_keys() -> None:
    saved = {
        "config": {
            "task": "carbon",
            "data": {"root": "x", "kind": "paired"},
            "carbon": {"method": "vae", "vae_beta": 0.5, "vgg_layout": "vgg16", "ensemble": 4},
        },
        "bands": {"count": 10, "names": [], "scaling": "none"},
    }
    raw, bands = migrate_checkpoint_config(saved)
    assert raw["carbon"] == {"method": "vae", "vae_beta": 0.5}
    assert config_from_dict(raw).carbon.vae_beta == 0.5  # type: ignore[union-attr]
    assert saved["config"]["carbon"]["vgg_layout"] == "vgg16"  # the input is not modified
    assert bands == saved["bands"]


def test_a_format_1_students_adapter_widths_move_into_its_section() -> None:
    saved = {
        "config": {"task": "super_resolution", "data": {"root": "x"}, "sr": {**FLAT_SR}},
        "bands": {"count": 3, "names": ["r", "g", "b"], "teacher_features": [64, 32, 0]},
    }
    saved["config"]["sr"].update({"method": "student", "teacher": "runs/teacher"})
    raw, bands = migrate_checkpoint_config(saved)
    assert raw["sr"]["adapter_channels"] == [64, 32, 0] and "teacher_features" not in bands
    assert "power_window" not in raw["sr"] and raw["sr"]["student_channels"] == 16
    config = config_from_dict(raw)
    assert config.sr.adapter_channels == [64, 32, 0]  # type: ignore[union-attr]


def test_a_checkpoint_config_that_is_not_ours_is_named() -> None:
    with pytest.raises(CheckpointError, match="not a terradiff checkpoint config"):
        migrate_checkpoint_config([1, 2], "x/config.json")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="not a terradiff checkpoint config"):
        migrate_checkpoint_config({}, "x/config.json")
    saved = {"config": {"sr": {"method": "sr4"}}, "bands": {}}
    with pytest.raises(CheckpointError, match="'sr4' is not a registered method"):
        migrate_checkpoint_config(saved, "x/config.json")
