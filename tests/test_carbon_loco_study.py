"""The pure parts of ``scripts/carbon_loco_study.py`` (issue 14, carbon leave-one-chip-out)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scripts.carbon_loco_study import (
    MODELS,
    block_stats,
    choice_lines,
    class_mean_map,
    class_means,
    ensemble_choice,
    load_chip,
    make_folds,
    partial_banner,
    prediction_choice,
    reading,
    split_columns,
    summarise,
    write_fold_data,
    write_report,
)


def test_class_mean_baseline() -> None:
    chip = {
        "carbon": np.array([[10.0, 30.0], [0.0, 2.0]]),
        "forest": np.array([[True, True], [False, False]]),
        "valid": np.array([[True, True], [True, False]]),
    }
    chip["forest"] &= chip["valid"]
    means = class_means([chip])
    assert means == {"all": pytest.approx(40 / 3), "forest": 20.0, "nonforest": 0.0}
    test_forest = np.array([[False, True], [True, True]])
    np.testing.assert_allclose(class_mean_map(means, test_forest), [[0.0, 20.0], [20.0, 20.0]])


def test_folds_keep_test_chip_out_of_training() -> None:
    folds = make_folds(["c", "a", "b"])
    assert [f["test"] for f in folds] == ["a", "b", "c"]
    for fold in folds:
        assert fold["test"] not in fold["train"] and len(fold["train"]) == 2
    fit, val = split_columns(256, 0.25, 8)
    assert (fit.start, fit.stop, val.start, val.stop) == (0, 184, 192, 256)
    assert not set(fit) & set(val)
    with pytest.raises(ValueError):
        split_columns(8, 0.5, 8)


def _write_chip(folder: Path, seed: int) -> None:
    from terradiff.data.raster_write import write_raster

    folder.mkdir(parents=True)
    columns = np.tile(np.arange(32, dtype=np.float32), (16, 1))  # target = column index
    image = np.random.default_rng(seed).uniform(0, 0.3, (3, 16, 32)).astype(np.float32)
    write_raster(folder / "image.tif", image, band_names=["B2", "B3", "B4"])
    write_raster(folder / "target.tif", columns[None])
    write_raster(folder / "mask.tif", (columns[None] % 2).astype(np.uint8) * 255)


def test_fold_data_validation_disjoint_from_training(tmp_path: Path) -> None:
    for i, name in enumerate(("a", "b", "t")):
        _write_chip(tmp_path / "chips" / name, i)
    fold = make_folds(["a", "b", "t"])[2]
    args = SimpleNamespace(val_fraction=0.25, val_gap=2)
    names = write_fold_data(tmp_path / "chips", fold, tmp_path / "fold", args)
    assert names == {"fit": ["a_fit", "b_fit"], "val": ["a_val", "b_val"]}
    assert not (tmp_path / "fold" / "t_fit").exists()  # the test chip is never copied
    fit, val = (load_chip(tmp_path / "fold" / n) for n in ("a_fit", "a_val"))
    assert set(np.unique(fit["carbon"])) == set(range(22))  # columns 0-21, 22-23 the gap
    assert set(np.unique(val["carbon"])) == set(range(24, 32))
    assert fit["forest"].sum() == 16 * 11  # the mask crop follows the same columns


def _synthetic_results(rng: np.random.Generator) -> dict:
    truth = rng.uniform(0, 100, (64, 64))
    mask = np.ones_like(truth, dtype=bool)
    cells = {}
    for chip in ("a", "b"):
        constant = np.full_like(truth, truth.mean())
        cells[f"{chip}/constant/seed0"] = {"blocks": block_stats(constant, truth, mask, 16)}
        for seed in range(2):  # rf: nearly perfect; regression: as noisy as the constant
            good = truth + rng.normal(0, 2, truth.shape)
            bad = constant + rng.normal(0, 1, truth.shape)
            cells[f"{chip}/rf/seed{seed}"] = {"blocks": block_stats(good, truth, mask, 16)}
            cells[f"{chip}/regression/seed{seed}"] = {"blocks": block_stats(bad, truth, mask, 16)}
    for cell in cells.values():
        cell["blocks"] = cell["blocks"].tolist()
    return {
        "cells": cells,
        "folds": [{"test": "a", "train": ["b"]}, {"test": "b", "train": ["a"]}],
        "budget": {
            "val_fraction": 0.25,
            "val_gap": 8,
            "rf_depths": [6, None],
            "max_pixels": 100,
            "regression_steps": 3,
            "iidm_steps": 3,
            "checkpoints": 1,
            "ddim_steps": 2,
            "seeds": 2,
            "block": 16,
            "resamples": 300,
        },
        "data": {
            "chips": {
                c: {"files": [6], "used": [6], "forest_fraction": 1.0, "mean_carbon_forest": 50.0}
                for c in ("a", "b")
            }
        },
        "commands": ["python scripts/carbon_loco_study.py --seeds 2"],
    }


def test_report_ranks_only_separated_intervals(tmp_path: Path) -> None:
    results = _synthetic_results(np.random.default_rng(0))
    summary = summarise(results, SimpleNamespace(resamples=300))
    assert set(summary) == {"a", "b", "pooled"}
    pooled = summary["pooled"]
    assert pooled["rf"]["rmse_minus_constant"]["high"] < 0  # separated: rf is better
    text = "\n".join(reading(pooled))
    assert "RF > " in text  # rf's interval is apart from the others: ranked
    assert "UNet regression ≈ constant (training mean)" in text or (
        "constant (training mean) ≈ UNet regression" in text
    )  # overlapping intervals: not ranked
    assert "- RF: better than the constant (RMSE difference" in text
    assert "UNet regression: not distinguishable from the constant" in text
    assert "rmse_minus_class_mean" not in pooled["rf"]  # no per-class row in this synthetic set
    assert "- RF better than UNet regression (RMSE difference" in text  # learned pair, paired
    (tmp_path / "reading.md").write_text("## Reading\n\nhand-written")
    assert "rmse_seed_interval" in summary["a"]["rf"]  # seed spread per fold
    write_report(results, summary, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "not distinguishable" in readme and "Seasonal mismatch" in readme
    assert readme.index("hand-written") < readme.index("## Choices made on validation")
    assert "| RF | 2 |" in readme and (tmp_path / "rmse.png").is_file()


def test_partial_snapshot_says_so_until_every_cell_is_measured() -> None:
    chips = {"a": {}, "b": {}}
    full = {
        f"{c}/{m}/seed{s}": {}
        for c in chips
        for m in MODELS
        for s in range(1 if m in ("constant", "class_mean") else 2)
    }
    learned = len(MODELS) - 2
    assert len(full) == 2 * (2 + 2 * learned)  # naive rows once, the learned rows per seed
    results = {"cells": dict(full), "budget": {"seeds": 2}, "data": {"chips": chips}}
    assert partial_banner(results) == []
    del results["cells"]["b/iidm_x0/seed1"]
    assert f"{len(full) - 1} of {len(full)} cells measured" in partial_banner(results)[0]


def _iidm_cell(chosen: int, scores: dict[int, float]) -> dict:
    return {"choice": {"step": chosen, "val_rmse_by_step": {str(k): v for k, v in scores.items()}}}


def test_iidm_target_is_chosen_by_validation_rmse_of_the_chosen_checkpoints() -> None:
    cells = {
        "a/iidm/seed0": _iidm_cell(400, {200: 50.0, 400: 46.0}),
        "a/iidm_x0/seed0": _iidm_cell(200, {200: 40.0, 400: 41.0}),  # chosen step, not last
        "b/iidm/seed0": _iidm_cell(400, {400: 44.0}),
        "b/iidm_x0/seed0": _iidm_cell(400, {400: 45.0}),
        "b/iidm/seed1": _iidm_cell(400, {400: 10.0}),  # no x0 partner: not a pair, left out
        "b/rf/seed0": {"choice": {"max_depth": "12"}},
    }
    choice = prediction_choice(cells)
    assert choice is not None
    assert choice["pairs"] == ["a/seed0", "b/seed0"]
    assert choice["mean_val_rmse"] == {"eps": 45.0, "x0": 42.5}
    assert choice["x0_minus_eps"] == [-6.0, 1.0] and choice["x0_lower_in"] == 1
    assert (choice["chosen_row"], choice["chosen_target"]) == ("iidm_x0", "x0")
    text = "\n".join(choice_lines(choice))
    assert "x0 lower in 1 of 2" in text and "**x0**" in text
    # eps wins when its mean is lower; nothing to choose before a pair exists
    cells["a/iidm_x0/seed0"] = _iidm_cell(200, {200: 60.0})
    assert prediction_choice(cells)["chosen_target"] == "eps"
    assert prediction_choice({"a/iidm/seed0": cells["a/iidm/seed0"]}) is None
    assert choice_lines(None) == []


def test_an_ensemble_row_keeps_its_one_sample_rows_checkpoint() -> None:
    base = {"choice": {"step": 100, "checkpoint": "ckpt/step_100", "val_rmse_by_step": {
        "100": 39.0, "200": 43.0}}}  # fmt: skip
    choice = ensemble_choice(base, 4, 35.5)
    assert choice["step"] == 100 and choice["checkpoint"] == "ckpt/step_100"
    assert choice["val_rmse_by_step"] == {"100": 35.5} and choice["val_rmse_one_sample"] == 39.0
    assert choice["members"] == 4
    # not an IIDM target: the eps/x0 choice ignores it
    cells = {"a/iidm/seed0": base, "a/iidm_x0/seed0": base, "a/iidm_x0_mean4/seed0": {
        "choice": choice}}  # fmt: skip
    assert prediction_choice(cells)["pairs"] == ["a/seed0"]
