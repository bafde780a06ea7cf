"""``benchmarks/bench_precision.py``: bf16 against fp32 at inference on checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from terradiff.checkpoint import save_checkpoint
from terradiff.config import config_from_dict
from terradiff.tasks.generation import GenerationTask
from terradiff.tasks.super_resolution import SuperResolutionTask
from tests.helpers import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_precision import format_row, main


def _checkpoint(task: GenerationTask | SuperResolutionTask, folder: Path) -> Path:
    with torch.no_grad():  # zero-initialised output layers would make both formats agree
        for p in task.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(folder, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return folder


def test_both_kinds_are_compared_at_both_precisions(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real AID images, untrained nets: each row ran fp32 and bf16 (recorded), has paired
    differences with intervals, and the JSON holds what was printed."""
    monkeypatch.setenv("TERRADIFF_CACHE", str(tmp_path / "cache"))
    raw = tiny_config(tmp_path / "sr", sample_data)
    raw.update(task="super_resolution", sr={"method": "regression", "scale": 2})
    raw["data"].update(split="train", holdout_fraction=0.3)
    sr = _checkpoint(SuperResolutionTask(config_from_dict(raw)), tmp_path / "sr_ckpt")
    raw = tiny_config(tmp_path / "gen", sample_data)
    generation = _checkpoint(GenerationTask(config_from_dict(raw)), tmp_path / "gen_ckpt")
    out = tmp_path / "precision.json"
    args = ["--sr", str(sr), "--generation", str(generation), "--n", "4", "--paired", "3"]
    result = main([*args, "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    sr_row, generation_row = result["rows"]
    for row in result["rows"]:
        assert row["ran"] == {"fp32": "fp32", "bf16": "bf16"}
        assert all(s > 0 for s in row["seconds_per_image"].values())
        assert format_row(row)[0].startswith(row["checkpoint"])
    psnr = sr_row["psnr_bf16_minus_fp32"]
    assert psnr["n"] == 4 and psnr["low"] <= psnr["mean"] <= psnr["high"]
    assert sr_row["psnr"]["fp32"] != sr_row["psnr"]["bf16"]
    difference = generation_row["mean_abs_difference_levels"]
    assert difference["n"] == 3 and 0 < difference["low"] <= difference["high"]
    assert generation_row["max_abs_difference_levels"] > 0
    assert set(generation_row["fid"]) == {"fp32", "bf16"}


def test_a_checkpoint_is_required() -> None:
    with pytest.raises(SystemExit):
        main([])
