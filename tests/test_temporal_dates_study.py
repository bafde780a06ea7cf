"""The split and helpers of ``scripts/temporal_dates_study.py`` (issue 17, held-out dates)."""

from __future__ import annotations

from pathlib import Path

from scripts.temporal_dates_study import (
    TEST_DATES,
    VALIDATION_DATES,
    choice_text,
    copy_months,
    date_overrides,
    month_gains,
    month_lines,
    months_text,
)
from scripts.temporal_study import usable_series
from terradiff.config_loading import apply_override


def test_every_test_month_is_a_training_target_elsewhere_and_never_validated(
    shared_data: Path,
) -> None:
    """The design's promise on the real chips: each held-out month is usable (and not held out)
    at another chip, so a month embedding can learn it; validation and test months differ."""
    series = {s.place: s for s in usable_series(shared_data / "biomassters")}
    assert set(TEST_DATES) == set(series) == set(VALIDATION_DATES)
    for place, labels in TEST_DATES.items():
        assert set(labels) <= set(series[place].labels), place
        assert not set(labels) & set(VALIDATION_DATES[place]), place
        for label in labels:
            elsewhere = [
                other
                for other, s in series.items()
                if other != place and label in s.labels and label not in TEST_DATES[other]
            ]
            assert elsewhere, f"{label} of {place} is a training target nowhere else"


def test_copy_months_leaves_out_the_test_months(shared_data: Path, tmp_path: Path) -> None:
    series = usable_series(shared_data / "biomassters")[:1]  # one chip keeps the copy small
    place = series[0].place
    folder, sidecar = copy_months(series, TEST_DATES, tmp_path / "copy")
    copied = sorted(p.name for p in (folder / place).glob("*.tif"))
    kept = [
        image.path.name
        for label, image in zip(series[0].labels, series[0].images, strict=True)
        if label not in TEST_DATES[place]
    ]
    assert copied == sorted(kept) and len(kept) == len(series[0].labels) - len(TEST_DATES[place])
    rows = sidecar.read_text().splitlines()
    assert rows[0] == "path,month" and len(rows) == len(kept) + 1


def test_date_overrides_give_the_mapping_back() -> None:
    raw: dict = {}
    for override in date_overrides(TEST_DATES):
        apply_override(raw, override)
    assert raw["temporal"] == {"holdout": "date", "test_dates": TEST_DATES}


def test_report_helpers() -> None:
    assert months_text({"a": ["01 (Oct)", "02 (Nov)"], "b": ["03 (Dec)"]}) == (
        "a 01 (Oct), 02 (Nov); b 03 (Dec)"
    )
    assert choice_text({}) == "pending"
    assert choice_text({"after": {"gain": -0.5, "windows": 12}}) == "after -0.50 dB (12 windows)"


def test_month_lines_weight_each_held_out_month_equally() -> None:
    """Two months, one with many windows: the equal-weight mean is the plain mean of the months'
    gains (seeds averaged first), not the window-weighted one."""

    def run(seed_gains: dict[str, float]) -> dict:
        months = {
            label: {
                "model": 30.0 + gain,
                "persistence": 30.0,
                "windows": 100 if "Jun" in label else 5,
            }
            for label, gain in seed_gains.items()
        }
        return {"target": "after", "breakdown": {"target_date": months}}

    results = {
        "validation": {"chosen": "after"},
        "runs": {
            "regression/seed0": run({"a 09 (Jun)": 4.0, "a 05 (Feb)": -2.0}),
            "regression/seed1": run({"a 09 (Jun)": 2.0, "a 05 (Feb)": -1.0}),
        },
    }
    assert month_gains(results, "regression") == {
        "a 09 (Jun)": [4.0, 2.0],
        "a 05 (Feb)": [-2.0, -1.0],
    }
    text = "\n".join(month_lines(results))
    assert "| regression | -1.50 | +3.00 | +0.75 | -1.50 to +3.00 |" in text
    assert month_lines({"runs": {}}) == []
