"""The pure parts of ``benchmarks/bench_distill.py`` and ``benchmarks/distill_speed.py``: timing
rows, per-size speed-ups, extrapolated figures labelled, missing runs, the earlier JSON format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_distill
import distill_speed as ds

from terradiff.report_format import is_extrapolated, value_of


def _sizes() -> dict[int, list[dict]]:
    """Two sizes of synthetic timings: SR3 DDIM-20, DDPM-1000 (2 measured steps), regression,
    student; one missing run."""
    sizes = {}
    for size, (ddim, ddpm, reg, student) in {
        64: (1.0, 0.01, 0.05, 0.02),
        512: (150.0, 1.4, 7.5, 1.0),
    }.items():
        rows = [
            ds.timing_row(ds.SR3_DDIM, [ddim, ddim * 1.1, ddim * 0.9], 1000),
            ds.timing_row(ds.SR3_DDPM, [ddpm], 1000, measured_steps=2),
            ds.timing_row(ds.REGRESSION, [reg] * 5, 900),
            ds.timing_row("aid-student-x4", [student, student * 2, student * 3], 85),
            ds.missing_row("aid-student-x4-mse", "run not found at runs/distill/x"),
        ]
        sizes[size] = ds.add_speedups(rows)
    return sizes


def test_spread_gives_median_min_max_and_quartiles() -> None:
    stats = ds.spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats == {"median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0, "n": 5}
    one = ds.spread([0.5])
    assert one["median"] == one["q1"] == one["q3"] == 0.5
    with pytest.raises(ValueError):
        ds.spread([])


def test_timing_row_keeps_median_spread_and_raw_times() -> None:
    row = ds.timing_row("m", [3.0, 1.0, 2.0], 10)
    assert row["seconds"] == 2.0 and row["seconds_min"] == 1.0 and row["seconds_max"] == 3.0
    assert row["repeats"] == 3 and row["times"] == [3.0, 1.0, 2.0]


def test_an_extrapolated_row_is_a_structured_record_everywhere() -> None:
    row = ds.timing_row(ds.SR3_DDPM, [0.02, 0.04], 10, measured_steps=10)
    for key in ("seconds", "seconds_min", "seconds_max", "seconds_q1", "seconds_q3"):
        assert is_extrapolated(row[key]) and row[key]["extrapolated_from_steps"] == 10
    assert value_of(row["seconds"]) == pytest.approx(0.03 * 100)
    assert value_of(row["seconds_max"]) == pytest.approx(4.0)
    assert row["times"] == [0.02, 0.04]  # the measured short runs, not scaled


def test_speedups_are_per_size_and_extrapolated_when_either_side_is() -> None:
    sizes = _sizes()
    student = ds.find_row(sizes[512], "aid-student-x4")
    assert student["speedup_vs_sr3_ddim_20"] == pytest.approx(150.0 / 2.0)
    assert student["speedup_vs_aid_regression_x4"] == pytest.approx(7.5 / 2.0)
    ddpm = student["speedup_vs_sr3_ddpm_1000"]
    assert is_extrapolated(ddpm) and value_of(ddpm) == pytest.approx(700.0 / 2.0)
    small = ds.find_row(sizes[64], "aid-student-x4")
    assert small["speedup_vs_sr3_ddim_20"] == pytest.approx(1.0 / 0.04)
    sr3 = ds.find_row(sizes[64], ds.SR3_DDPM)
    assert is_extrapolated(sr3["speedup_vs_sr3_ddim_20"])
    assert ds.speedup_key(ds.SR3_DDPM) not in sr3  # no ratio to itself
    assert "seconds" not in ds.find_row(sizes[64], "aid-student-x4-mse")
    by_size = ds.speedups_by_size(sizes, "aid-student-x4", ds.REGRESSION)
    assert list(by_size) == [64, 512] and by_size[64] == pytest.approx(0.05 / 0.04)


def test_speed_table_labels_extrapolated_figures_and_missing_runs() -> None:
    text = "\n".join(ds.speed_table(_sizes(), {ds.REGRESSION: "regression UNet"}))
    assert "**64x64 output** (16x16 LR input, x4)" in text
    assert "**512x512 output** (128x128 LR input, x4)" in text
    ddpm_lines = [line for line in text.splitlines() if line.startswith("| SR3 DDPM-1000")]
    assert "| 5.00 (extrapolated from 2 measured steps) |" in ddpm_lines[0]  # 64 px
    assert "| 700.0 (extrapolated from 2 measured steps) |" in ddpm_lines[1]  # 512 px
    student_line = [line for line in text.splitlines() if line.startswith("| aid-student-x4 ")]
    assert "| 75x |" in student_line[1]  # 512 px, vs DDIM-20
    assert "350x (extrapolated from 2 measured steps)" in student_line[1]
    assert "| 1.00-3.00 |" in student_line[1]
    assert "run not found at runs/distill/x" in text
    assert "| regression UNet |" in text


def test_format_helpers() -> None:
    assert ds.format_speedup(157.2) == "157x" and ds.format_speedup(2.34) == "2.3x"
    assert ds.format_speedup(0.0213) == "0.021x" and ds.format_speedup(None) == "-"
    assert ds.format_seconds(0.01234) == "0.0123" and ds.format_seconds(7079.41) == "7,079.4"


def test_the_earlier_json_format_is_read_with_its_note_turned_into_a_record() -> None:
    old = {
        "per_image_512": [
            {"model": ds.SR3_DDIM, "seconds": 150.0, "parameters": 1},
            {
                "model": ds.SR3_DDPM,
                "seconds": 7000.0,
                "parameters": 1,
                "note": "extrapolated from 10 measured steps",
            },
            {"model": "aid-student-x4", "seconds": 1.0, "parameters": 1},
        ]
    }
    sizes = ds.per_size(old)
    assert list(sizes) == [512]
    student = ds.find_row(sizes[512], "aid-student-x4")
    assert student["speedup_vs_sr3_ddim_20"] == pytest.approx(150.0)
    assert is_extrapolated(student["speedup_vs_sr3_ddpm_1000"])
    new = {"per_size": {"64": {"lr_size": 16, "rows": _sizes()[64]}}}
    assert list(ds.per_size(json.loads(json.dumps(new)))) == [64]


def test_bench_arguments_sizes_and_inputs(tmp_path: Path) -> None:
    args = bench_distill.parse_args(["--sizes", "512", "64", "128", "--repeats", "2"])
    assert args.sizes == [64, 128, 512] and args.repeats == 2 and args.sampler_repeats is None
    assert bench_distill.parse_args([]).sizes == [64, 128, 256, 512]
    assert bench_distill.parse_args([]).repeats >= 5
    with pytest.raises(SystemExit):
        bench_distill.parse_args(["--sizes", "100"])
    hr = torch.arange(512 * 512, dtype=torch.float32).reshape(1, 1, 512, 512)
    crop = bench_distill.hr_at(hr, 64)
    assert crop.shape[-1] == 64 and crop[0, 0, 0, 0] == hr[0, 0, 224, 224]
    assert "run not found" in str(bench_distill.run_problem(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    assert "no checkpoint" in str(bench_distill.run_problem(tmp_path / "empty"))
    times = bench_distill.time_calls(lambda: None, 3)
    assert len(times) == 3 and all(t >= 0 for t in times)
