"""The pure parts of ``scripts/carbon_kd_study.py`` (carbon IIDM compression, chosen on val)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.carbon_kd_study import (
    DRAWS,
    KD_UNET_GRID,
    choose_steps,
    report_lines,
    summarise,
)
from terradiff.carbon.intervals import block_stats


def test_choose_steps_takes_the_lowest_mean_validation_rmse() -> None:
    choice = choose_steps({"50": [40.0, 42.0], "100": [39.0, 41.0], "200": [45.0, 41.0]})
    assert choice["steps"] == 100
    assert choice["mean_val_rmse"]["100"] == pytest.approx(40.0)
    assert not choice["at_grid_edge"]


def test_choose_steps_breaks_a_tie_towards_fewer_steps_and_flags_the_grid_edge() -> None:
    assert choose_steps({"200": [40.0], "100": [40.0]})["steps"] == 100
    assert choose_steps({"50": [41.0], "400": [40.0]})["at_grid_edge"]
    with pytest.raises(ValueError, match="no validation"):
        choose_steps({})


def test_the_grid_is_increasing_and_draws_are_several() -> None:
    assert list(KD_UNET_GRID) == sorted(set(KD_UNET_GRID))
    assert DRAWS >= 2


def _cells(seeds: list[int], noise: dict[str, float]) -> dict:
    """Test-chip cells: each model's map is the truth plus Gaussian noise of its own size."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, size=(64, 64))
    forest = np.ones_like(truth, dtype=bool)
    cells: dict = {}
    for name in ("constant", "forest_mean"):
        cells[name] = {
            "blocks": [block_stats(np.full_like(truth, 50.0), truth, forest, 32).tolist()]
        }
    for s in seeds:
        for name, sigma in noise.items():
            blocks, metrics = [], []
            for _ in range(DRAWS):
                stats = block_stats(truth + rng.normal(0, sigma, truth.shape), truth, forest, 32)
                blocks.append(stats.tolist())
                totals = stats.sum(0)
                metrics.append({"rmse": float(np.sqrt(totals[2] / totals[0]))})
            cells[f"s{s}/{name}"] = {"blocks": blocks, "metrics": metrics}
    return cells


def test_summarise_pairs_students_with_the_teacher_and_the_naive_maps() -> None:
    cells = _cells([0, 1, 2], {"teacher": 5.0, "kd_vgg": 5.0, "kd_unet": 15.0})
    summary = summarise(cells, [0, 1, 2], resamples=200)
    assert set(summary) == {"constant", "forest_mean", "teacher", "kd_vgg", "kd_unet"}
    teacher, unet, vgg = summary["teacher"], summary["kd_unet"], summary["kd_vgg"]
    assert teacher["rmse"] == pytest.approx(5.0, rel=0.05)
    assert unet["rmse_minus_teacher"]["low"] > 5.0  # 15 vs 5: clearly worse
    assert vgg["rmse_minus_teacher"]["low"] < 0.0 < vgg["rmse_minus_teacher"]["high"]
    assert teacher["rmse_minus_constant"]["high"] < 0.0  # the constant is far off
    assert "rmse_minus_teacher" not in teacher
    assert len(unet["rmse_per_seed"]) == 3
    assert unet["rmse_minus_teacher_seeds"]["mean"] == pytest.approx(10.0, rel=0.05)


def test_summarise_skips_a_model_missing_for_a_seed() -> None:
    cells = _cells([0, 1], {"teacher": 5.0, "kd_vgg": 5.0})
    del cells["s1/kd_vgg"]
    assert "kd_vgg" not in summarise(cells, [0, 1], resamples=50)


def test_report_renders_the_choice_table_and_reading() -> None:
    cells = _cells([0, 1, 2], {"teacher": 5.0, "kd_vgg": 5.0, "kd_unet": 15.0})
    results = {
        "commands": ["python scripts/carbon_kd_study.py"],
        "machine_measured": "test CPU",
        "teachers": {str(s): {"train_minutes": 10.0} for s in range(3)},
        "choice": choose_steps({"50": [44.0], "100": [43.0], "200": [43.5], "400": [44.5]}),
        "summary": summarise(cells, [0, 1, 2], resamples=100),
        "parameters": {
            "teacher": {"total": 1_000_000, "extractor": 100_000},
            "kd_vgg": {"total": 901_000, "extractor": 1_000},
            "kd_unet": {"total": 200_000, "extractor": 100_000},
        },
        "speed": {
            "teacher": {"seconds": [2.0, 2.2, 2.1], "median": 2.1},
            "kd_vgg": {"seconds": [2.0, 2.0, 2.0], "median": 2.0},
            "kd_unet": {"seconds": [1.0, 1.1, 1.05], "median": 1.05},
            "threads": 2,
        },
    }
    text = "\n".join(report_lines(results))
    assert "Chosen: **100 steps**" in text
    assert "the grid's edge" not in text
    assert "UNet 9.0x smaller, whole model 5.00x" in text
    assert "extractor 100.0x smaller, whole model 1.11x" in text
    assert "| 1,000,000 (100,000) |" in text
    assert "| IIDM + KD-UNet | 1.05 |" in text and "2.00x" in text
    assert "the teacher is better" in text  # KD-UNet at noise 15 against the teacher's 5
    assert "\n".join(report_lines({"commands": []})).startswith("# Carbon IIDM compression")
