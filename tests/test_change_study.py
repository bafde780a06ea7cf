"""The pure parts of ``scripts/change_study.py`` (issue 17, change detection)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.change_study import (
    aid_generator_lines,
    bootstrap_f1,
    f1_of,
    naive_counts,
    paired_difference,
    paired_lines,
    seed_summary,
    tile_counts,
    verdict,
)


def test_f1_from_counts() -> None:
    assert f1_of({"tp": 3, "fp": 1, "fn": 2}) == pytest.approx(6 / 9)
    assert f1_of({"tp": 0, "fp": 0, "fn": 0}) == 0.0


def test_bootstrap_interval_holds_the_pooled_f1() -> None:
    windows = [
        {"tp": 30, "fp": 10, "fn": 5, "tn": 100},
        {"tp": 2, "fp": 20, "fn": 10, "tn": 100},
        {"tp": 15, "fp": 5, "fn": 5, "tn": 100},
    ]
    result = bootstrap_f1(windows, resamples=500)
    assert result["f1"] == pytest.approx(f1_of({"tp": 47, "fp": 35, "fn": 20}))
    assert result["low"] <= result["f1"] <= result["high"] and result["low"] < result["high"]
    same = bootstrap_f1([windows[0]] * 3, resamples=100)
    assert same["low"] == pytest.approx(same["high"])  # identical tiles: no spread


def test_seed_summary_and_verdict() -> None:
    summary = seed_summary(
        [{m: v for m in ("f1", "iou", "precision", "recall")} for v in (0.4, 0.6)]
    )
    assert summary["f1"]["mean"] == pytest.approx(0.5) and summary["f1"]["n"] == 2
    wide = {"low": 0.3, "high": 0.7}
    assert verdict({"low": 0.8, "high": 0.9}, wide).endswith("target met")
    assert "not met" in verdict({"low": 0.1, "high": 0.2}, wide)
    assert verdict({"low": 0.5, "high": 0.9}, wide).startswith("not distinguishable")


def _evaluation(rows: list[tuple[int, int, int, int]]) -> dict:
    return {"per_window": [dict(zip(("tp", "fp", "fn", "tn"), r, strict=True)) for r in rows]}


def test_paired_difference_resamples_the_same_tiles_for_both_sides() -> None:
    a = tile_counts([_evaluation([(30, 10, 5, 100), (2, 20, 10, 100)])] * 2)
    assert a.tolist() == [[60, 20, 10], [4, 40, 20]]  # two seeds pooled per tile
    same = paired_difference(a, a.copy(), resamples=200)
    assert same["difference"] == 0.0 and same["low"] == same["high"] == 0.0  # paired: no spread
    better = a.copy()
    better[:, 0] += 10  # more true positives on every tile
    d = paired_difference(better, a, resamples=500)
    expected = f1_of(dict(zip(("tp", "fp", "fn"), better.sum(0), strict=True))) - f1_of(
        dict(zip(("tp", "fp", "fn"), a.sum(0), strict=True))
    )
    assert d["difference"] == pytest.approx(expected) and 0 < d["low"] <= d["high"]


def test_naive_counts_call_every_pixel_change() -> None:
    naive = naive_counts(_evaluation([(3, 1, 2, 10)]))
    assert np.array_equal(naive, [[5, 11, 0]])


def test_paired_lines_say_when_an_interval_holds_zero() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},
        "supervised_unet/seed0": {"evaluation": _evaluation(tiles)},
    }
    text = "\n".join(paired_lines(runs))
    assert "U-Net - DDPM-CD: +0.0 [+0.0, +0.0] (the interval holds 0" in text
    assert "DDPM-CD - naive all-change" in text
    assert paired_lines({"ddpm_cd/seed0": runs["ddpm_cd/seed0"]}) == []


def test_paired_lines_add_the_aid_generator_when_it_has_runs() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    better = [(34, 6, 1, 104), (10, 12, 2, 108), (19, 1, 1, 104)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},
        "supervised_unet/seed0": {"evaluation": _evaluation(tiles)},
    }
    assert "AID generator" not in "\n".join(paired_lines(runs))
    runs["ddpm_cd_aid/seed0"] = {"evaluation": _evaluation(better)}
    runs["ddpm_cd_aid/seed1"] = {"evaluation": _evaluation(better)}
    lines = [line for line in paired_lines(runs) if line.startswith("- DDPM-CD (AID generator)")]
    assert [line.split(":")[0] for line in lines] == [
        "- DDPM-CD (AID generator) - DDPM-CD",
        "- DDPM-CD (AID generator) - U-Net",
        "- DDPM-CD (AID generator) - naive all-change",
    ]
    assert all("holds 0" not in line for line in lines[:2])  # better on every tile: separated
    # pooling two identical seeds leaves F1 unchanged, so the naive comparison does not move
    one_seed = dict(runs)
    del one_seed["ddpm_cd_aid/seed1"]
    naive_line = [line for line in paired_lines(one_seed) if "AID generator) - naive" in line]
    assert naive_line == lines[2:]


def test_aid_generator_lines_describe_the_run_once_trained() -> None:
    assert aid_generator_lines(None) == []
    text = aid_generator_lines(
        {"steps": 2000, "batch_size": 16, "train_minutes": 31.5, "final_loss": 0.03}
    )[0]
    assert "2000 steps of batch 16" in text and "31.5 min" in text and "0.0300" in text
