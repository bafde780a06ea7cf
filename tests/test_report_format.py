"""Report numbers: extrapolated values labelled, overlapping intervals not ranked (issue 14)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from terradiff.report_format import (
    compare,
    difference_reading,
    extrapolated,
    format_interval,
    format_ranking,
    format_value,
    interval_from_samples,
    intervals_overlap,
    is_extrapolated,
    paired_bootstrap,
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


def test_paired_bootstrap_of_identical_values_is_zero_width_at_zero() -> None:
    values = [23.1, 19.4, 30.2, 25.0, 21.7]
    out = paired_bootstrap(values, values, resamples=500)
    assert (out["mean"], out["low"], out["high"]) == (0.0, 0.0, 0.0)
    assert out["n"] == 5 and out["level"] == 0.95 and out["resamples"] == 500
    assert difference_reading(out, "model", "bicubic").startswith("not distinguishable")


def test_paired_bootstrap_of_a_constant_shift_is_that_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(23.0, 3.0, 40)  # images of very different difficulty
    out = paired_bootstrap(reference + 0.7, reference, resamples=500)
    for key in ("mean", "low", "high"):
        assert out[key] == pytest.approx(0.7, abs=1e-9)
    assert difference_reading(out, "model", "bicubic") == (
        "model is better (the interval is above 0)"
    )
    assert difference_reading(out, "model", "bicubic", higher_is_better=False) == (
        "bicubic is better (the interval is above 0)"
    )


def test_paired_bootstrap_known_cases() -> None:
    # two images, differences 1 and 0: a replicate mean is 0, 0.5 or 1 with probability 1/4,
    # 1/2, 1/4, so the 2.5% and 97.5% percentiles are exactly 0 and 1
    out = paired_bootstrap([1.0, 5.0], [0.0, 5.0], resamples=4000)
    assert (out["mean"], out["low"], out["high"]) == (0.5, 0.0, 1.0)
    # many images: the percentile interval approaches mean +- 1.96 sd / sqrt(n) (plug-in sd)
    rng = np.random.default_rng(1)
    difference = rng.normal(0.3, 1.0, 400)
    out = paired_bootstrap(difference, np.zeros(400), resamples=20000, seed=2)
    half = 1.959964 * difference.std() / math.sqrt(400)
    assert out["mean"] == pytest.approx(difference.mean())
    assert out["low"] == pytest.approx(difference.mean() - half, abs=0.05 * half)
    assert out["high"] == pytest.approx(difference.mean() + half, abs=0.05 * half)


def test_paired_bootstrap_pairs_the_images_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    bicubic = rng.normal(23.0, 3.0, 32)
    model = bicubic + 0.3 + rng.normal(0.0, 0.1, 32)
    paired = paired_bootstrap(model, bicubic)
    assert 0.0 < paired["low"] < paired["mean"] < paired["high"] < 0.6
    # unpaired, the two means' intervals overlap: only pairing shows the 0.3 dB
    assert intervals_overlap(
        interval_from_samples(list(model)), interval_from_samples(list(bicubic))
    )
    assert paired_bootstrap(model, bicubic) == paired
    assert paired_bootstrap(model, bicubic, seed=1) != paired


def test_paired_bootstrap_drops_non_finite_pairs_and_refuses_bad_input() -> None:
    out = paired_bootstrap([1.0, float("nan"), float("inf"), 3.0], [0.0, 1.0, float("inf"), 2.0])
    assert out["n"] == 2 and out["mean"] == 1.0
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no pair"):
        paired_bootstrap([float("nan")], [1.0])
    below = {"mean": -0.4, "low": -0.6, "high": -0.2}
    assert difference_reading(below, "a", "b") == "b is better (the interval is below 0)"
    assert difference_reading({"mean": 0.2, "low": 0.0, "high": 0.4}, "a", "b").startswith("not")


def test_format_interval_signed() -> None:
    assert format_interval({"mean": 0.5, "low": 0.0, "high": 1.0}, signed=True) == "+0.50 ± 0.50"
    assert (
        format_interval({"mean": -0.5, "low": -0.6, "high": -0.2}, 2, " dB", signed=True)
        == "-0.50 dB [-0.60, -0.20]"
    )
