"""The pure parts of ``scripts/temporal_study.py`` (issue 17, temporal generation)."""

from __future__ import annotations

import pytest

from scripts.temporal_study import (
    abandoned_lines,
    breakdown,
    choose_prediction,
    column_cut,
    in_columns,
    method_runs,
    prediction_lines,
    ranking_lines,
    row_labels,
    seed_summary,
    validation_gain,
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


def test_validation_strip_and_test_region_do_not_overlap() -> None:
    """Validation runs hold out the right 40% and are scored left of the test region (the right
    25%), which no model trains on; windows are [top, left, height, width]."""
    assert (column_cut(256, 0.4), column_cut(256, 0.25)) == (154, 192)
    assert in_columns([0, 154, 32, 32], 154, 192) and not in_columns([0, 186, 32, 32], 154, 192)
    windows = [
        {"window": [0, 154, 32, 32], "model_psnr_visible": 30.0, "persistence_psnr_visible": 29.0},
        {"window": [0, 192, 32, 32], "model_psnr_visible": 0.0, "persistence_psnr_visible": 29.0},
    ]
    assert validation_gain(windows, (154, 192)) == {"gain": 1.0, "windows": 1}
    record = {"validation": {"runs": {"after": {"gain": -3.5}, "change": {"gain": -3.9}}}}
    assert "after -3.50 dB; change -3.90 dB" in " ".join(abandoned_lines(record))
    assert abandoned_lines(None) == []


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
    single = ranking_lines({"a": seed_summary([2.0]), "b": seed_summary([0.0])})
    assert single[-1] == "- a vs b: not ranked (one seed of one of them so far)"
    assert "- a vs c: not distinguishable" in lines
    assert "- b vs c: not distinguishable" in lines


def test_runs_shown_are_those_of_the_validation_choices() -> None:
    runs = {
        "regression/seed0": {"target": "after"},
        "regression/seed1": {"target": "change"},
        "concat/seed0": {"target": "after"},  # before the prediction choice: eps
        "concat/seed1": {"target": "change", "prediction": "x0"},
        "controlnet/seed0": {"target": "after", "prediction": "x0"},
        "controlnet/seed1": {"target": "after"},
    }
    results = {
        "runs": runs,
        "validation": {
            "chosen": "after",
            "prediction": {"chosen_target": "change", "chosen": "x0"},
        },
    }
    assert method_runs(results, "regression") == [runs["regression/seed0"]]
    assert method_runs(results, "concat") == [runs["concat/seed1"]]
    assert method_runs(results, "controlnet") == [runs["controlnet/seed0"]]
    runs["concat_mean/seed1"] = {"target": "change", "prediction": "x0", "members": 4}
    assert method_runs(results, "concat_mean") == [runs["concat_mean/seed1"]]
    assert row_labels(4)["concat_mean"].endswith("mean of 4 samples")
    assert list(row_labels())[:3] == ["regression", "concat", "controlnet"]
    before = {"runs": runs, "validation": {"chosen": "after"}}
    assert method_runs(before, "concat") == [runs["concat/seed0"]]


def test_prediction_choice_keeps_the_first_records_and_picks_the_best_pair() -> None:
    gains = {"eps": -24.1, "x0": -0.35, "v": -1.0}
    first = {k: {"gain": g, "windows": 9} for k, g in gains.items()}
    change = {f"change/{k}": {"gain": g + 0.5, "windows": 9} for k, g in gains.items()}
    results = {
        "validation": {
            "columns": [154, 192],
            "prediction": {"target": "after", "runs": {**first, **change}},
        }
    }
    saved = []
    chosen = choose_prediction(None, None, results, lambda: saved.append(1))  # type: ignore[arg-type]
    assert chosen == ("change", "x0") and saved
    record = results["validation"]["prediction"]
    assert "target" not in record and set(record["runs"]) == {
        f"{t}/{p}" for t in ("after", "change") for p in ("eps", "x0", "v")
    }
    text = " ".join(prediction_lines(record))
    assert "after/x0: -0.35 dB" in text and "Chosen: **change/x0**" in text
