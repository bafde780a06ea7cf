"""The pure parts of ``scripts/temporal_study.py`` (issue 17, temporal generation)."""

from __future__ import annotations

import pytest

from scripts.temporal_study import (
    breakdown,
    held_out_targets,
    ranking_lines,
    seed_summary,
    verdict,
)


def _window(place: str, source: str, target: str, model: float, persistence: float) -> dict:
    return {
        "place": place,
        "source_date": source,
        "target_date": target,
        "model_psnr_visible": model,
        "persistence_psnr_visible": persistence,
    }


def test_breakdown_averages_each_group() -> None:
    windows = [
        _window("a", "00 (Sep)", "10 (Jul)", 30.0, 28.0),
        _window("a", "01 (Oct)", "10 (Jul)", 32.0, 26.0),
        _window("b", "00 (Sep)", "11 (Aug)", 20.0, 21.0),
    ]
    groups = breakdown(windows)
    assert groups["place"]["a"] == {"model": 31.0, "persistence": 27.0, "windows": 2}
    assert groups["target_date"]["a 10 (Jul)"]["windows"] == 2
    assert groups["source_date"]["b 00 (Sep)"]["model"] == 20.0
    runs = {"x/seed0": {"breakdown": groups}}
    assert held_out_targets(runs) == "a: 10 (Jul); b: 11 (Aug)"
    assert held_out_targets({}) == "(none measured yet)"


def test_seed_summary_and_verdict() -> None:
    gain = seed_summary([1.5, 2.5])
    assert gain["mean"] == pytest.approx(2.0) and gain["std"] == pytest.approx(0.7071, abs=1e-4)
    assert verdict(gain).startswith("target met")
    assert "mean only" in verdict(seed_summary([0.5, 2.0]))
    assert "worse than persistence" in verdict(seed_summary([-2.0, -1.5]))
    assert verdict(seed_summary([0.2])).startswith("**not met**")


def test_ranking_only_when_intervals_separate() -> None:
    gains = {
        "a": seed_summary([2.0, 2.2]),
        "b": seed_summary([0.0, 0.2]),
        "c": seed_summary([0.1, 1.9]),
    }
    lines = ranking_lines(gains)
    assert "- a > b" in lines
    assert "- a vs c: not distinguishable" in lines
    assert "- b vs c: not distinguishable" in lines
