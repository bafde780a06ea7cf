"""scripts/sr_ensemble_study.py: sizes read as their own rows, reproduction check, the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from scripts import sr_ensemble_study as study


def _committed(key: str, seed: int) -> dict[str, Any]:
    path = study.SETTINGS_ROWS / f"{study.TEST_MODELS[key].row_name(seed)}.json"
    return json.loads(path.read_text())["row"]


def _ensemble_row(key: str, seed: int, gains: dict[int, float]) -> dict[str, Any]:
    """The committed one-draw row, with a curve whose size ``n`` is ``gains[n]`` dB above it
    image by image (size 1 the committed draw itself)."""
    row = copy.deepcopy(_committed(key, seed))
    first = row["per_image"]["model"]
    row["ensemble_curve"] = {}
    for size, gain in gains.items():
        per_image = {**first, "psnr": [v + gain for v in first["psnr"]]}
        mean = sum(per_image["psnr"]) / len(per_image["psnr"])
        row["ensemble_curve"][str(size)] = {
            "model": {**row["model"], "psnr": mean},
            "per_image": per_image,
        }
    row["per_image"]["model"] = row["ensemble_curve"][str(max(gains))]["per_image"]
    row["model"] = {**row["ensemble_curve"][str(max(gains))]["model"], "seconds_per_image": 9.0}
    row["calibration"] = {"mean_ratio": 1.3, "mean_rmse": 0.1, "mean_spread": 0.07}
    return row


def _save(out: Path, key: str, seed: int, row: dict[str, Any]) -> None:
    record = {
        "key": key,
        "seed": seed,
        "row": row,
        "reproduction": study.reproduction(row, key, seed),
        "machine": "test machine",
    }
    path = study.row_path(out, key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_one_size_is_the_row_of_that_many_draws() -> None:
    row = _ensemble_row("sr3", 0, {1: 0.0, 2: 0.5, 4: 0.8})
    two = study.one_size(row, 2)
    assert two["per_image"]["model"]["psnr"] == row["ensemble_curve"]["2"]["per_image"]["psnr"]
    assert two["per_image"]["bicubic"] == row["per_image"]["bicubic"]
    assert two["model"]["psnr"] == pytest.approx(row["ensemble_curve"]["1"]["model"]["psnr"] + 0.5)


def test_the_first_draw_is_checked_against_the_committed_row() -> None:
    row = _ensemble_row("sr3", 1, {1: 0.0, 2: 0.4})
    assert study.reproduction(row, "sr3", 1) == {
        "compared": True,
        "max_abs_psnr_difference": 0.0,
        "mean_psnr_difference": 0.0,
    }
    shifted = _ensemble_row("sr3", 1, {1: 0.25, 2: 0.4})
    gap = study.reproduction(shifted, "sr3", 1)
    assert gap["max_abs_psnr_difference"] == pytest.approx(0.25)
    assert gap["mean_psnr_difference"] == pytest.approx(0.25)
    shifted["per_image"]["image"] = list(reversed(shifted["per_image"]["image"]))
    with pytest.raises(RuntimeError, match="not the test scenes"):
        study.reproduction(shifted, "sr3", 1)


def test_the_report_reads_each_size_against_bicubic_over_seeds(tmp_path: Path) -> None:
    """Gains fixed per size: the mean of 8 (+1.5 dB on each draw's -1.35) is read above
    bicubic, the one draw below it; the curve figure is drawn."""
    gains = {1: 0.0, 2: 0.9, 4: 1.3, 8: 1.5}
    for seed in study.SEEDS:
        _save(tmp_path, "sr3", seed, _ensemble_row("sr3", seed, gains))
    results = study.write_report(tmp_path)
    text = (tmp_path / "README.md").read_text()
    summary = results["models"]["sr3"]
    one, eight = summary["minus_bicubic"][1], summary["minus_bicubic"][8]
    assert one["over_seeds"]["high"] < 0 < eight["over_seeds"]["low"]
    assert "SR3, validation choice, mean of 8 - bicubic" in text
    assert "mean of 8 is better" in text
    assert "## implicit, validation choice" in text and "Not measured yet." in text
    assert (tmp_path / "ensemble_curve.png").stat().st_size > 0
    assert "| 0 | 1.30 |" in text  # the calibration table
