"""Report numbers: extrapolated values labelled, overlapping intervals not ranked (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terradiff.report_format import (
    compare,
    extrapolated,
    format_interval,
    format_ranking,
    format_value,
    interval_from_samples,
    intervals_overlap,
    is_extrapolated,
    ranking,
    value_of,
)


def _render(results: dict) -> str:
    """A small report as a study script would write it, every number read from ``results``."""
    lines = ["| sampler | seconds / image |", "|---|---|"]
    for name, seconds in results["timing"].items():
        lines.append(f"| {name} | {format_value(seconds, 1, ' s')} |")
    psnr = results["psnr"]
    lines += ["", "PSNR (dB): " + format_ranking(ranking(psnr))]
    lines.append(compare("student", psnr["student"], "teacher", psnr["teacher"]))
    lines.append(compare("student", psnr["student"], "bicubic", psnr["bicubic"]))
    return "\n".join(lines) + "\n"


def test_a_synthetic_results_json_renders_with_labels_and_without_false_ranks(
    tmp_path: Path,
) -> None:
    results = {
        "timing": {"DDIM-20": 14.16, "DDPM-1000": extrapolated(7079.0, 20)},
        "psnr": {
            "teacher": {"mean": 22.87, "low": 22.60, "high": 23.14, "n": 3},
            "student": {"mean": 23.10, "low": 22.95, "high": 23.25, "n": 3},
            "bicubic": {"mean": 21.50, "low": 21.40, "high": 21.60, "n": 3},
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    report = _render(json.loads(path.read_text()))

    assert "| DDPM-1000 | 7,079.0 s (extrapolated from 20 measured steps) |" in report
    assert "| DDIM-20 | 14.2 s |" in report  # a measured value carries no label
    # teacher and student overlap: one group, never "student > teacher"
    assert "student ≈ teacher > bicubic" in report
    assert "not distinguishable" in report and "student > teacher" not in report
    assert "student 23.10 ± 0.15 vs teacher 22.87 ± 0.27: not distinguishable" in report
    assert "student 23.10 ± 0.15 vs bicubic 21.50 ± 0.10: student is better" in report


def test_extrapolated_records_round_trip_through_json() -> None:
    record = json.loads(json.dumps(extrapolated(12.5, 50)))
    assert is_extrapolated(record) and value_of(record) == 12.5
    assert not is_extrapolated(12.5) and value_of(12.5) == 12.5
    with pytest.raises(ValueError, match=">= 1"):
        extrapolated(1.0, 0)


def test_intervals_overlap_touching_counts() -> None:
    a = {"mean": 1.0, "low": 0.5, "high": 1.5}
    assert intervals_overlap(a, {"mean": 2.0, "low": 1.5, "high": 2.5})
    assert not intervals_overlap(a, {"mean": 2.0, "low": 1.6, "high": 2.5})


def test_lower_is_better_and_separated_intervals_rank() -> None:
    rmse = {
        "constant": {"mean": 43.9, "low": 43.0, "high": 44.8},
        "iidm": {"mean": 44.0, "low": 43.2, "high": 44.9},
        "vae": {"mean": 41.2, "low": 40.5, "high": 41.9},
    }
    assert ranking(rmse, higher_is_better=False) == [["vae"], ["constant", "iidm"]]
    sentence = compare("iidm", rmse["iidm"], "constant", rmse["constant"], higher_is_better=False)
    assert sentence.endswith("not distinguishable (the intervals overlap)")
    assert compare("vae", rmse["vae"], "iidm", rmse["iidm"], higher_is_better=False).endswith(
        "vae is better"
    )
    assert format_ranking([["a"], ["b"]]) == "a > b"


def test_interval_from_samples_and_asymmetric_formatting() -> None:
    iv = interval_from_samples([1.0, 2.0, 3.0])
    assert iv["mean"] == pytest.approx(2.0) and iv["n"] == 3
    assert iv["high"] - 2.0 == pytest.approx(2.0 - iv["low"])
    assert iv["high"] == pytest.approx(2.0 + 4.302653 / 3**0.5, rel=1e-5)  # t(0.975, 2) sd/sqrt(n)
    assert format_interval(interval_from_samples([5.0])).endswith("(one run: no interval)")
    assert format_interval({"mean": 1.0, "low": 0.5, "high": 2.0}, 1) == "1.0 [0.5, 2.0]"
    assert format_value({"mean": 1.0, "low": 0.9, "high": 1.1}, 2) == "1.00 ± 0.10"
