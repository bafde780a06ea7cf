"""The pure parts of ``scripts/change_study.py`` (issue 17, change detection)."""

from __future__ import annotations

import pytest

from scripts.change_study import bootstrap_f1, f1_of, seed_summary, verdict


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
