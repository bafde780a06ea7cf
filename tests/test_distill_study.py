"""The pure parts of ``scripts/distill_study.py``: the regression-UNet baseline row (same scenes
checked), per-size speed targets, the rendered report (extrapolated figures labelled) and its
PSNR differences with paired intervals over images (or "no interval" for rows without them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import distill_speed as ds

from scripts.distill_study import (
    evaluate_regression_if_needed,
    regression_quality,
    scene_differences,
    speed_targets,
    weights_note,
    write_report,
)

BICUBIC = {"psnr": 23.04, "ssim": 0.4993, "ssim_y": 0.5522, "mae": 0.1078, "rmse": 0.1549}
SCENES = {"n": 32, "image_size": 144, "scale": 4.0, "split": "test", "real_images": "aid"}


def _row(psnr: float, params: int = 85131, **changes: Any) -> dict[str, Any]:
    model = {"psnr": psnr, "ssim": 0.5, "ssim_y": 0.55, "mae": 0.107}
    return {"model": model, "bicubic": dict(BICUBIC), "parameters": params, **SCENES, **changes}


def _rows() -> dict[str, Any]:
    return {
        "teacher": _row(22.87, 3371146),
        "student": _row(23.10),
        "student_none": _row(23.39),
    }


def _sizes() -> dict[int, list[dict[str, Any]]]:
    sizes = {}
    for size, (ddim, reg, student) in {64: (0.6, 0.03, 0.015), 512: (157.0, 7.5, 1.0)}.items():
        rows = [
            ds.timing_row(ds.SR3_DDIM, [ddim], 1679779),
            ds.timing_row(ds.SR3_DDPM, [ddim * 5], 1679779, measured_steps=10),
            ds.timing_row(ds.REGRESSION, [reg], 1678915),
            ds.timing_row(ds.TEACHER, [reg * 2], 3371146),
            ds.timing_row("aid-student-x4", [student] * 5, 85131),
            ds.missing_row("aid-student-x4-none", "run not found at runs/distill/x"),
        ]
        sizes[size] = ds.add_speedups(rows)
    return sizes


def test_scene_differences_needs_same_protocol_and_same_bicubic_metrics() -> None:
    assert scene_differences(_row(23.6), _row(22.0)) == []
    assert any("n:" in d for d in scene_differences(_row(19.5, n=2), _row(22.0)))
    moved = _row(23.6)
    moved["bicubic"]["psnr"] = 22.55
    assert any("bicubic psnr" in d for d in scene_differences(moved, _row(22.0)))
    bare = _row(23.6)
    bare["bicubic"] = {}
    assert "no bicubic metrics to compare" in scene_differences(bare, _row(22.0))


def test_regression_quality_comes_from_the_sr_study_only_on_the_same_scenes() -> None:
    rows = _rows()
    same = regression_quality(rows, {"regression_x4": _row(23.63, 1678915)})
    assert same["row"]["model"]["psnr"] == 23.63 and "the same 32 scenes" in same["source"]
    other = regression_quality(rows, {"regression_x4": _row(23.63, image_size=64)})
    assert other["row"] is None and other["differences"]
    assert regression_quality(rows, {})["row"] is None
    rows["regression"] = _row(23.5, 1678915)
    assert regression_quality(rows, {})["source"] == "re-evaluated on this study's crops"


def test_no_re_evaluation_without_the_run(tmp_path: Path) -> None:
    rows = _rows()
    args = argparse.Namespace(
        sr_results=tmp_path / "none.json", sr_runs=tmp_path / "runs", n=2, image_size=64
    )
    evaluate_regression_if_needed(rows, args)  # rows differ from nothing, no run: nothing
    assert "regression" not in rows


def test_speed_targets_are_stated_per_size_only() -> None:
    lines = speed_targets(_sizes(), "1")
    assert "64 px: 40x, 512 px: 157x -- reached at 512 px only; NOT reached at 64 px" in lines[0]
    assert "1 thread(s)" in lines[0]
    assert "regression UNet" in lines[1] and "64 px: 2.0x, 512 px: 7.5x" in lines[1]
    assert "not measured" in speed_targets({}, "?")[0]


def _write(tmp_path: Path, bench: dict[str, Any]) -> str:
    results = {
        "machine": "test machine",
        "runs": {
            "teacher": {
                "steps": 600,
                "batch_size": 8,
                "parameters": 3371146,
                "train_minutes": 47.4,
                "final_loss": -4.0,
            }
        },
        "rows": _rows(),
        "discussion": "## Reading the results\n\n- stored text",
    }
    sr = {"rows": {"regression_x4": _row(23.63, 1678915), "sr3_ddpm": _row(19.48, n=2)}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "sr.json").write_text(json.dumps(sr))
    args = argparse.Namespace(
        out=tmp_path,
        bench=tmp_path / "bench.json",
        sr_results=tmp_path / "sr.json",
        image_size=144,
        seed_results=None,
    )
    write_report(results, args)
    return (tmp_path / "README.md").read_text()


def test_report_has_the_regression_row_per_size_speed_and_labelled_extrapolation(
    tmp_path: Path,
) -> None:
    bench = {
        "machine": "bench machine",
        "date": "2026-12-01",
        "threads": 1,
        "per_size": {str(s): {"lr_size": s // 4, "rows": r} for s, r in _sizes().items()},
    }
    text = _write(tmp_path, bench)
    lines = text.splitlines()
    regression = next(line for line in lines if line.startswith("| regression UNet"))
    assert "| 23.63 |" in regression and "| 7.50 |" in regression and "| 21x |" in regression
    student = next(line for line in lines if line.startswith("| student, MSE + MMD |"))
    assert "| 157x |" in student and "| 7.5x |" in student and "| -0.53 |" in student
    assert "78,500x (extrapolated from 10 measured steps)" in student  # vs DDPM-1000, 512 px
    ddpm = [line for line in lines if line.startswith("| SR3 DDPM-1000")]
    assert "other scenes" in ddpm[0]
    assert all("(extrapolated from 10 measured steps)" in line for line in ddpm)
    assert "**64x64 output**" in text and "**512x512 output**" in text
    assert "run not found at runs/distill/x" in text
    assert "Strongest one-pass baseline: regression UNet" in text
    assert "the same 32 scenes" in text
    targets = text[text.index("## Targets") :]
    assert "64 px: 40x, 512 px: 157x -- reached at 512 px only" in targets
    assert text.rstrip().endswith("- stored text")


def test_timings_of_architecture_identical_runs_are_said_to_be_so(tmp_path: Path) -> None:
    trained = {"aid-sr3-x4": {"run": "runs/sr/aid-sr3-x4", "step": 800}}
    assert weights_note(trained) == []
    short = {**trained, "aid-student-x4": {"run": "/tmp/arch/distill/aid-student-x4", "step": 1}}
    note = " ".join(weights_note(short))
    assert "trained for 1 step(s) (1 of 2 models)" in note and "only speed" in note
    bench = {
        "machine": "m",
        "date": "d",
        "threads": 1,
        "per_size": {str(s): {"lr_size": s // 4, "rows": r} for s, r in _sizes().items()},
        "weights": short,
    }
    assert "architecture-identical runs" in _write(tmp_path, bench)


def test_report_reads_the_earlier_bench_format(tmp_path: Path) -> None:
    old = {
        "machine": "old machine",
        "date": "2026-11-26",
        "args": {"threads": "1"},
        "per_image_512": [
            {"model": ds.SR3_DDIM, "seconds": 151.5, "parameters": 1679779},
            {
                "model": ds.SR3_DDPM,
                "seconds": 7079.4,
                "parameters": 1679779,
                "note": "extrapolated from 10 measured steps",
            },
            {"model": "aid-student-x4", "seconds": 0.966, "parameters": 85131},
        ],
    }
    text = _write(tmp_path, old)
    assert "7,079.4 (extrapolated from 10 measured steps)" in text
    assert "7,329x (extrapolated from 10 measured steps)" in text
    assert "512 px: 157x -- reached at every measured size" in text
    assert "not measured (no timing of it)" in text


@pytest.mark.parametrize("missing", ["bench", "sr"])
def test_report_without_a_bench_or_sr_json(tmp_path: Path, missing: str) -> None:
    _write(tmp_path, {"machine": "m", "date": "d", "per_size": {}})
    (tmp_path / ("bench.json" if missing == "bench" else "sr.json")).unlink()
    args = argparse.Namespace(
        out=tmp_path,
        bench=tmp_path / "bench.json",
        sr_results=tmp_path / "sr.json",
        image_size=144,
        seed_results=None,
    )
    write_report(
        {"machine": "m", "runs": {}, "rows": _rows(), "discussion": ""},
        args,
    )
    text = (tmp_path / "README.md").read_text()
    assert "## Targets" in text and "Strongest one-pass baseline" in text


NO_INTERVAL = (
    "PSNR differences to bicubic and to the regression UNet: no interval: per-image values not "
    "stored in this run."
)
BICUBIC_PER_IMAGE = [20.0 + 0.5 * i for i in range(8)]  # scenes of very different difficulty


def _per_image(
    row: dict[str, Any], gains: list[float], bicubic: list[float] | None = None
) -> dict[str, Any]:
    """``row`` with per-image PSNR of 8 scenes: bicubic's, and model = bicubic + gain."""
    bicubic = bicubic or BICUBIC_PER_IMAGE
    row["per_image"] = {
        "image": [f"Beach/beach_{i}.jpg" for i in range(8)],
        "model": {"psnr": [b + g for b, g in zip(BICUBIC_PER_IMAGE, gains, strict=True)]},
        "bicubic": {"psnr": list(bicubic)},
    }
    return row


def test_report_without_per_image_values_says_no_interval(tmp_path: Path) -> None:
    text = _write(tmp_path, {"machine": "m", "date": "d", "per_size": {}})
    assert NO_INTERVAL in text
    assert "| PSNR - bicubic |" not in text and "paired" not in text
    assert "no interval over images: differences of a few tenths of a dB" in text


def _write_with_per_image(tmp_path: Path, regression: dict[str, Any]) -> str:
    rows = _rows()
    _per_image(rows["teacher"], [-0.1] * 8)
    _per_image(rows["student"], [0.6, 0.4] * 4)
    _per_image(rows["student_none"], [1.0, -1.0] * 4)
    results = {"machine": "m", "runs": {}, "rows": rows, "discussion": ""}
    sr = {"rows": {"regression_x4": regression}}
    (tmp_path / "sr.json").write_text(json.dumps(sr))
    args = argparse.Namespace(
        out=tmp_path,
        bench=tmp_path / "none.json",
        sr_results=tmp_path / "sr.json",
        image_size=144,
        seed_results=None,
    )
    write_report(results, args)
    return (tmp_path / "README.md").read_text()


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_prints_paired_intervals_to_bicubic_and_to_the_regression_unet(
    tmp_path: Path,
) -> None:
    regression = _per_image(_row(23.63, 1678915), [0.5] * 8)
    text = _write_with_per_image(tmp_path, regression)
    assert NO_INTERVAL not in text
    assert "data root, bicubic metrics and per-image bicubic PSNR identical" in text
    assert "PSNR differences on the same scenes: mean and 95% interval" in text
    reg = _line(text, "| regression UNet (SR study, one pass) | +0.50 ± 0.00 dB over 8 images")
    assert reg.endswith("is better (the interval is above 0) | - |")
    teacher = _line(text, "| single-step teacher | -0.10 ± 0.00 dB over 8 images")
    assert "bicubic is better (the interval is below 0)" in teacher
    assert teacher.endswith(
        "| -0.60 ± 0.00 dB over 8 images: regression UNet is better (the interval is below 0) |"
    )
    student = _line(text, "| student, MSE + MMD | +0.50")
    assert "student, MSE + MMD is better (the interval is above 0)" in student
    assert student.endswith("not distinguishable (the interval holds 0) |")  # +-0.1 around 0
    none = _line(text, "| student, no distillation | +0.00")
    assert none.count("not distinguishable (the interval holds 0)") == 2
    assert "the intervals above are over images only" in text
    assert "no interval over images" not in text


def test_no_interval_to_a_regression_row_of_other_images(tmp_path: Path) -> None:
    # same protocol and bicubic means, but one image's bicubic PSNR differs: the per-image check
    # finds other crops, so no difference to that row is printed
    moved_bicubic = list(BICUBIC_PER_IMAGE)
    moved_bicubic[3] = 25.0
    moved = _per_image(_row(23.63, 1678915), [0.5] * 8, moved_bicubic)
    teacher = _per_image(_rows()["teacher"], [-0.1] * 8)
    assert scene_differences(moved, teacher) == ["per-image bicubic PSNR differs"]
    renamed = _per_image(_row(23.63, 1678915), [0.5] * 8)
    renamed["per_image"]["image"][0] = "Forest/forest_1.jpg"
    assert scene_differences(renamed, teacher) == ["per-image: other image files"]
    text = _write_with_per_image(tmp_path, moved)
    table = text.split("PSNR differences on the same scenes")[1]
    assert "| regression UNet (SR study, one pass) |" not in table
    line = _line(text, "| single-step teacher | -0.10")
    assert line.endswith("| no interval: the regression UNet's row is on other scenes |")
    assert "the SR study's row is on other crops (per-image bicubic PSNR differs)" in text


def test_the_teacher_study_is_read_when_it_has_run(tmp_path: Path) -> None:
    from scripts.distill_study import teacher_study_lines

    assert teacher_study_lines(tmp_path / "absent.json") == []
    interval = {"mean": 0.2, "low": 0.1, "high": 0.3, "n": 3}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"comparisons": {"reg_200 - none_200": {"over_seeds": interval}}}))
    (line,) = teacher_study_lines(path)
    assert "regression-UNet teacher - no teacher, 200 steps +0.20 ± 0.10 dB" in line
    assert "1,000 steps" not in line  # not measured: left out
