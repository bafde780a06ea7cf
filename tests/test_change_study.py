"""The pure parts of ``scripts/change_study.py`` (issue 17, change detection)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.change_study import (
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
