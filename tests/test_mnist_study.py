"""The pure parts of scripts/mnist_guidance_study.py on tiny inputs (no training, no sampling)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import mnist_guidance_study as study


def test_bootstrap_accuracy_brackets_the_accuracy() -> None:
    target = np.arange(100) % 10
    predicted = target.copy()
    predicted[:20] = (predicted[:20] + 1) % 10  # 80% right
    row = study.bootstrap_accuracy(predicted, target, resamples=500, seed=0)
    assert row["accuracy"] == pytest.approx(0.8)
    assert row["low"] < 0.8 < row["high"] and row["n"] == 100
    assert row["low"] > 0.6 and row["high"] < 0.95
    assert study.bootstrap_accuracy(target, target, resamples=50)["low"] == 1.0
    with pytest.raises(ValueError):
        study.bootstrap_accuracy([1, 2], [1])


def test_intervals_and_scale_choice() -> None:
    a, b, c = {"low": 0.1, "high": 0.2}, {"low": 0.3, "high": 0.4}, {"low": 0.15, "high": 0.35}
    assert study.intervals_separate(a, b) and not study.intervals_separate(a, c)
    val = {"0.0": {"accuracy": 0.1}, "3.0": {"accuracy": 0.9}, "1.0": {"accuracy": 0.9}}
    assert study.choose_scale(val) == "1.0"  # a tie goes to the smaller scale


def _results() -> dict:
    def acc(x: float) -> dict:
        return {"accuracy": x, "low": x - 0.05, "high": x + 0.05, "n": 100}

    def row(x: float, fid: float) -> dict:
        return {
            "accuracy": acc(x),
            "fid": {"value": fid, "low": fid - 1, "high": fid + 1, "n": 100},
            "kid": {"mean": 0.01, "std": 0.001, "subset_size": 100},
        }

    return {
        "machine": "test",
        "settings": {
            "per_class": 10,
            "val_per_class": 5,
            "steps": 4,
            "test_seed": 1,
            "val_seed": 2,
            "bootstrap": 100,
            "fid_bootstrap": 10,
        },
        "training": {
            "config": "c.yaml",
            "parameters": 1000,
            "drop_prob": 0.1,
            "steps": 10,
            "batch_size": 4,
            "train_digits": 8000,
            "train_minutes": 0.1,
            "final_loss": 0.5,
        },
        "classifier": {
            "architecture": "a CNN",
            "epochs": 1,
            "batch_size": 8,
            "lr": 0.001,
            "augmentation": "none",
            "train_digits": 8000,
            "train_seconds": 1.0,
            "test_accuracy": acc(0.98),
        },
        "real_reference": {
            "fid": {"value": 1.0, "low": 0.5, "high": 1.5, "n": 100},
            "kid": {"mean": 0.0, "std": 0.001},
        },
        "validation": {"0.0": acc(0.1), "1.0": acc(0.7), "3.0": acc(0.9)},
        "test": {"0.0": row(0.11, 30.0), "1.0": row(0.72, 10.0), "3.0": row(0.91, 12.0)},
    }


def test_table_and_report_come_from_the_results(tmp_path: Path) -> None:
    results = _results()
    table = study.results_table(results)
    assert len(table) == 2 + 3 and "| 3 | 91.0% [86.0%, 96.0%]" in table[-1]
    study.write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "Selected on validation: s = 3" in text and "**not met**" in text
    assert "10 steps x batch 4" in text


def test_precision_recall_rows_and_their_cells(tmp_path: Path) -> None:
    """Generated features equal to a real subset: precision and recall 1 with a point interval;
    features far from every real one: 0. Rows measured before the columns existed show '-'."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 8))
    order = np.random.default_rng(0).permutation(200)[:50]
    same = study.precision_recall_row(real[order], real, resamples=100)
    assert same["real_subset"] == 50
    assert same["precision"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert same["recall"]["value"] == 1.0
    far = study.precision_recall_row(real[:50] + 100.0, real, resamples=100)
    assert far["precision"]["value"] == far["recall"]["value"] == 0.0
    results = _results()
    results["test"]["3.0"]["precision_recall"] = far
    table = study.results_table(results)
    assert table[-1].endswith("| 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] |")
    assert table[-2].endswith("| - | - |")
    results["real_reference"]["precision_recall"] = same
    study.write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "precision | recall 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00]" in text
    assert "From s = 1" not in text  # s = 1 has no precision/recall: no bullet
    results["test"]["1.0"]["precision_recall"] = same
    study.write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert (
        "From s = 1 to s = 3: precision falls (1.00 -> 0.00); recall falls (1.00 -> 0.00)" in text
    )
    assert "Guidance buys fidelity with diversity" in text


def test_random_shift_keeps_shape_and_background() -> None:
    x = torch.full((3, 1, 32, 32), -1.0)
    x[:, :, 10:20, 10:20] = 1.0
    out = study.random_shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.sum() == x.sum()
