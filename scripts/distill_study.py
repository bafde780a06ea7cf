"""The distillation study of issue 5 (SlimDiffSR): trains, measures, writes ``reports/distill``.

Models (all x4 on real AID scenes, 64x64 HR crops, the SR study's hash split; configs in
``configs/distill/``):

- the single-step teacher (``aid_single_step_x4.yaml``: uncertainty estimator + noise-level head
  + one denoising step of the SR3-sized UNet);
- the light student (``aid_student_x4.yaml``) distilled with MSE + 0.1 MMD, and its ablations:
  the paper's Table 6 (no distillation / MSE only / MSE + MMD) and Table 7 (without the
  frequency-separable convs, without the direction-separable convs, without query-driven global
  aggregation -- each replaced by standard 3x3 convs or nothing).

Measured: PSNR, SSIM, SSIM-Y, MAE beside bicubic on 32 held-out scenes (144x144 centre crops, the
SR study's protocol: ``terradiff.sr_evaluate.evaluate_super_resolution``); parameters; seconds per
output image at 64, 128, 256 and 512 px from ``benchmarks/bench_distill.py`` (run it first; its
JSON is read, with SR3's DDIM-20 and DDPM-1000 -- the latter extrapolated and labelled so -- and
the SR study's regression UNet timed in the same run). The multi-step SR3 model's and the
regression UNet's quality come from ``reports/sr/results.json`` after a check that they were
measured on the same crops (same count, size, split, data root and bicubic metrics, and the same
per-image files and bicubic PSNR where both rows store them); if the regression UNet's were not,
it is re-evaluated here from ``--sr-runs`` (when that run exists). Rows that store per-image values
get the PSNR difference to bicubic and to the regression UNet with a 95% paired bootstrap interval
over the images (``scripts/sr_intervals.py``); rows measured before that print "no interval".

Example (the committed report; 1 thread each, nothing else running)::

    python scripts/distill_study.py && \
        python benchmarks/bench_distill.py --json benchmarks/results/distill.json && \
        python scripts/distill_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.distill_speed import (  # noqa: E402
    REGRESSION,
    SR3_DDIM,
    SR3_DDPM,
    TEACHER,
    find_row,
    format_seconds,
    format_speedup,
    per_size,
    speed_table,
    speedup_key,
    speedups_by_size,
)
from scripts.seed_study import COMPARISONS as SEED_COMPARISONS  # noqa: E402
from scripts.seed_study import SEED_RESULTS, seed_summary_lines  # noqa: E402
from scripts.sr_intervals import (  # noqa: E402
    NO_PER_IMAGE,
    difference_text,
    method_sentence,
    paired_difference,
    per_image,
    per_image_differences,
)
from scripts.study_common import open_results, read_losses, train  # noqa: E402
from terradiff.data.degrade import make_lr, upsample_to  # noqa: E402
from terradiff.evaluate import real_dataset  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.report_format import format_interval, value_of  # noqa: E402
from terradiff.sr_evaluate import evaluate_super_resolution  # noqa: E402
from terradiff.tasks import load_task  # noqa: E402
from terradiff.tasks.registry import method_class  # noqa: E402
from terradiff.viz import save_comparison_figure, save_loss_curves  # noqa: E402

TEACHER_RUN = ("teacher", Path("configs/distill/aid_single_step_x4.yaml"), [])
STUDENT = Path("configs/distill/aid_student_x4.yaml")
STUDENTS: dict[str, tuple[str, list[str]]] = {
    "student": ("aid-student-x4", []),
    "student_mse": ("aid-student-x4-mse", ["sr.distill=mse"]),
    "student_none": ("aid-student-x4-none", ["sr.distill=none"]),
    "student_no_fs": ("aid-student-x4-no-fs", ["sr.fs_conv=false"]),
    "student_no_ds": ("aid-student-x4-no-ds", ["sr.ds_conv=false"]),
    "student_no_ga": ("aid-student-x4-no-ga", ["sr.global_aggregation=false"]),
}
LABELS = {
    "regression": "regression UNet (SR study, one pass)",
    "teacher": "single-step teacher",
    "student": "student, MSE + MMD",
    "student_mse": "student, MSE",
    "student_none": "student, no distillation",
    "student_no_fs": "student w/o FS conv",
    "student_no_ds": "student w/o DS conv",
    "student_no_ga": "student w/o global aggregation",
}
BENCH_NAMES = {
    "regression": REGRESSION,
    "teacher": TEACHER,
    **{k: v[0] for k, v in STUDENTS.items()},
}
BENCH_LABELS = {SR3_DDIM: SR3_DDIM, SR3_DDPM: SR3_DDPM}
BENCH_LABELS.update({BENCH_NAMES[k]: LABELS[k] for k in BENCH_NAMES})
SR_REGRESSION_ROW = "regression_x4"  # reports/sr/results.json
SCENE_KEYS = ("n", "image_size", "scale", "split", "real_images")
BICUBIC_KEYS = ("psnr", "ssim", "ssim_y", "psnr_y", "mae", "rmse")


def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def scene_differences(row: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """How the evaluation of ``row`` differs from that of ``reference`` (empty: the same images).

    Two rows of ``evaluate_super_resolution`` saw the same HR crops when their number, crop size,
    scale, split and data root agree and their bicubic metrics (a function of the crops alone)
    are equal to float rounding; where both store per-image values, also their image files and
    bicubic PSNR image by image (:func:`~scripts.sr_intervals.per_image_differences`).
    """
    found = [
        f"{k}: {row.get(k)!r} vs {reference.get(k)!r}"
        for k in SCENE_KEYS
        if row.get(k) != reference.get(k)
    ]
    mine, theirs = row.get("bicubic", {}), reference.get("bicubic", {})
    for key in BICUBIC_KEYS:
        a, b = mine.get(key), theirs.get(key)
        if a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-6):
            found.append(f"bicubic {key}: {a:.6g} vs {b:.6g}")
    if not any(k in mine and k in theirs for k in BICUBIC_KEYS):
        found.append("no bicubic metrics to compare")
    return found + per_image_differences(row, reference)


def reference_row(rows: dict[str, Any]) -> dict[str, Any]:
    """This study's own evaluation (the teacher's, else any), whose images the others must share."""
    return rows.get("teacher") or next(iter(rows.values()), {})


def regression_quality(rows: dict[str, Any], sr_rows: dict[str, Any]) -> dict[str, Any]:
    """The regression UNet's quality row and where it comes from: re-evaluated here
    (``rows["regression"]``), or the SR study's row when it saw the same images."""
    if "regression" in rows:
        return {"row": rows["regression"], "source": "re-evaluated on this study's crops"}
    sr_row = sr_rows.get(SR_REGRESSION_ROW)
    if sr_row is None:
        return {"row": None, "source": f"no {SR_REGRESSION_ROW} row in the SR study's results"}
    differences = scene_differences(sr_row, reference_row(rows))
    if differences:
        return {
            "row": None,
            "source": "the SR study's row is on other crops (" + "; ".join(differences) + ")",
            "differences": differences,
        }
    checked = "split, data root and bicubic metrics identical)"
    if per_image(sr_row, "bicubic") and per_image(reference_row(rows), "bicubic"):
        checked = "split, data root, bicubic metrics and per-image bicubic PSNR identical)"
    return {
        "row": sr_row,
        "source": f"reports/sr/results.json, the same {sr_row['n']} scenes (count, crop size, "
        + checked,
        "differences": [],
    }


def _speed(sizes: dict[int, list[dict[str, Any]]], size: int | None, name: str) -> dict[str, Any]:
    return find_row(sizes.get(size, []), name) if size is not None else {}


def _quality_row(
    label: str,
    quality: dict[str, Any] | None,
    params: int | None,
    speed: dict[str, Any],
    deltas: tuple[Any, Any],
) -> str:
    q = quality or {}
    seconds = "run not found" if "missing" in speed else format_seconds(speed.get("seconds"))
    ratios = [format_speedup(speed.get(speedup_key(r))) for r in (SR3_DDIM, SR3_DDPM, REGRESSION)]
    cells = [
        _fmt(q.get("psnr")),
        _fmt(q.get("ssim"), 4),
        _fmt(q.get("ssim_y"), 4),
        _fmt(q.get("mae"), 4),
        "-" if params is None else f"{params / 1e6:.3f} M",
        seconds,
        *ratios,
        *[_fmt(d) if d is not None else "-" for d in deltas],
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def _threads(bench: dict[str, Any] | None) -> str:
    if not bench:
        return "?"
    return str(bench.get("threads", bench.get("args", {}).get("threads", "?")))


def _by_size(values: dict[int, Any]) -> str:
    return ", ".join(f"{size} px: {format_speedup(v)}" for size, v in values.items())


def weights_note(weights: dict[str, dict[str, Any]]) -> list[str]:
    """Says which weights were timed when they are not the trained runs' (a forward pass costs
    the same whatever the weight values, so architecture-identical runs of a few training
    steps are timed when the trained runs are not on the timing machine)."""
    short = {name: w["step"] for name, w in weights.items() if w.get("step", 0) < 100}
    if not short:
        return []
    steps = sorted(set(short.values()))
    return [
        "",
        f"The timed networks are architecture-identical runs of the same configs trained for "
        f"{', '.join(map(str, steps))} step(s) ({len(short)} of {len(weights)} models), not the "
        "trained runs of the quality table: a forward pass costs the same whatever the weight "
        "values (no data-dependent branch), so only speed is read from them.",
    ]


def speed_targets(sizes: dict[int, list[dict[str, Any]]], threads: str) -> list[str]:
    """The speed lines of "Targets": the student's speed-up over SR3 DDIM-20 (target 100x) and
    over the regression UNet at each measured output size, and nowhere else."""
    student = BENCH_NAMES["student"]
    ddim = speedups_by_size(sizes, student, SR3_DDIM)
    regression = speedups_by_size(sizes, student, REGRESSION)
    if not ddim:
        verdict = "not measured"
    else:
        reached = [s for s, v in ddim.items() if value_of(v) >= 100]
        missed = [f"{s} px" for s in ddim if s not in reached]
        if not missed:
            verdict = "reached at every measured size"
        elif not reached:
            verdict = "NOT reached at any measured size"
        else:
            verdict = (
                f"reached at {', '.join(f'{s} px' for s in reached)} only; NOT reached at "
                + ", ".join(missed)
            )
    lines = [
        "- Speed: >= 100x faster than the multi-step SR3 model at its default steps (DDIM-20 in "
        f"its config), one output image, {threads} thread(s): "
        + (f"{_by_size(ddim)} -- {verdict}." if ddim else "not measured."),
        "- Speed against the strongest one-pass baseline, the regression UNet (no target; below "
        "1x the student is slower): "
        + (f"{_by_size(regression)}." if regression else "not measured (no timing of it)."),
    ]
    return lines


def baseline_lines(
    rows: dict[str, Any],
    regression: dict[str, Any],
    sizes: Any,
    seed_results: Path | None = None,
) -> list[str]:
    """The reading the numbers allow about the baselines (generated, so it cannot go stale);
    with ``seed_results`` (the seed study's ``results.json``), the readings over seeds."""
    bicubic = reference_row(rows).get("bicubic", {})
    candidates = {"bicubic": bicubic.get("psnr")}
    if regression["row"] is not None:
        candidates[LABELS["regression"]] = regression["row"]["model"]["psnr"]
    if "teacher" in rows:
        candidates[LABELS["teacher"]] = rows["teacher"]["model"]["psnr"]
    candidates = {k: v for k, v in candidates.items() if v is not None}
    lines = []
    if candidates:
        best = max(candidates, key=lambda k: candidates[k])
        lines.append(
            f"- **Strongest one-pass baseline: {best}** ({candidates[best]:.2f} dB PSNR; "
            "candidates: " + ", ".join(f"{k} {v:.2f} dB" for k, v in candidates.items()) + ")."
        )
    student = rows.get("student", {}).get("model")
    if student and regression["row"] is not None:
        gap = student["psnr"] - regression["row"]["model"]["psnr"]
        faster = speedups_by_size(sizes, BENCH_NAMES["student"], REGRESSION)
        lines.append(
            f"- The distilled student ({student['psnr']:.2f} dB) is {gap:+.2f} dB against the "
            f"regression UNet and {student['psnr'] - bicubic.get('psnr', float('nan')):+.2f} dB "
            "against bicubic; its speed-up over the regression UNet: "
            + (_by_size(faster) if faster else "not measured")
            + (". Its case is size and speed, not quality." if gap < 0 else ".")
        )
    if "teacher" in rows and "student_none" in rows and student and "psnr" in bicubic:
        lines.append(
            f"- The teacher scores {rows['teacher']['model']['psnr'] - bicubic['psnr']:+.2f} dB "
            "against bicubic; the same student trained without distillation "
            f"{rows['student_none']['model']['psnr'] - student['psnr']:+.2f} dB against the "
            "distilled one."
        )
    seeds = seed_summary_lines(
        ["teacher", "student", "student_none"], SEED_COMPARISONS, path=seed_results
    )
    if seeds:
        lines.append(
            "- Over 3 training seeds (`reports/seeds/README.md`: every network trained again with "
            "seeds 1 and 2, each student distilled from the teacher of its seed; Student-t 95% "
            "interval over the seeds, on the same scenes):"
        )
        lines += ["  " + line for line in seeds]
        lines += teacher_study_lines()
    elif any(per_image(row, "model") for row in rows.values()):
        lines.append(
            "- One training seed per model: the intervals above are over images only, so a "
            "difference whose interval excludes 0 is established for these images and these "
            "trained weights, not across training runs."
        )
    else:
        lines.append(
            "- One training seed per model and no interval over images: differences of a few "
            "tenths of a dB are not established."
        )
    return lines


TEACHER_STUDY = REPO / "reports" / "distill_teacher" / "results.json"


def teacher_study_lines(path: Path = TEACHER_STUDY) -> list[str]:
    """The reading of ``reports/distill_teacher`` (the student distilled from the regression
    UNet, and trained longer), when it has run."""
    if not path.is_file():
        return []
    comparisons = json.loads(path.read_text())["comparisons"]
    pairs = (
        ("reg_200 - single_step_200", "regression-UNet teacher - diffusion teacher, 200 steps"),
        ("reg_200 - none_200", "regression-UNet teacher - no teacher, 200 steps"),
        ("reg_1000 - none_1000", "regression-UNet teacher - no teacher, 1,000 steps"),
        ("teacher - none_1000", "regression UNet - the student trained alone for 1,000 steps"),
    )
    parts = [
        f"{label} {format_interval(comparisons[key]['over_seeds'], 2, ' dB', signed=True)}"
        for key, label in pairs
        if comparisons.get(key)
    ]
    if not parts:
        return []
    return [
        "- With a better teacher and a longer budget (`reports/distill_teacher/README.md`, the "
        "same student, 3 seeds): " + "; ".join(parts) + "."
    ]


def difference_lines(rows: dict[str, Any], regression: dict[str, Any]) -> list[str]:
    """PSNR - bicubic (each row's own bicubic) and PSNR - regression UNet (only when it is on
    the same scenes: ``regression["row"]`` is set) with paired intervals over images; one
    "no interval" line when no row stores per-image values."""
    reg_row = regression["row"]
    keys = [k for k in ("teacher", *STUDENTS) if k in rows]
    entries = ([("regression", reg_row)] if reg_row is not None else []) + [
        (k, rows[k]) for k in keys
    ]
    if not any(per_image(row, "model") for _, row in entries):
        return ["", f"PSNR differences to bicubic and to the regression UNet: {NO_PER_IMAGE}."]
    lines = [
        "",
        f"PSNR differences on the same scenes: {method_sentence()}.",
        "",
        "| model | PSNR - bicubic | PSNR - regression UNet |",
        "|---|---|---|",
    ]
    reg_name = LABELS["regression"].split(" (")[0]
    for key, row in entries:
        to_bicubic = difference_text(paired_difference(row), LABELS[key], "bicubic")
        if key == "regression":
            to_regression = "-"
        elif reg_row is None or scene_differences(row, reg_row):
            to_regression = "no interval: the regression UNet's row is on other scenes"
        else:
            interval = paired_difference(row, reg_row, reference_side="model")
            to_regression = difference_text(interval, LABELS[key], reg_name)
        lines.append(f"| {LABELS[key]} | {to_bicubic} | {to_regression} |")
    return lines


def write_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """``reports/distill/README.md`` from ``results.json`` and the benchmark JSON."""
    rows, runs = results["rows"], results["runs"]
    bench = json.loads(args.bench.read_text()) if args.bench.is_file() else None
    sizes = per_size(bench) if bench else {}
    size = max(sizes) if sizes else None
    sr = json.loads(args.sr_results.read_text()) if args.sr_results.is_file() else {}
    sr_rows = sr.get("rows", {})
    teacher = rows.get("teacher", {}).get("model", {})
    teacher_params = runs["teacher"]["parameters"] if "teacher" in runs else None
    regression = regression_quality(rows, sr_rows)
    reg_model = regression["row"]["model"] if regression["row"] is not None else {}
    lines = [
        "# Single-step distilled super-resolution (issue 5, SlimDiffSR in pixel space)",
        "",
        f"Made by the commands in `scripts/distill_study.py`'s docstring. Machine: "
        f"{results['machine']}; training and quality ran on the CPU (GPU timings: BENCHMARKS.md).",
        "",
        "**What was trained, on what, for how long.** x4 super-resolution of real AID aerial "
        "scenes (RGB, 64x64 HR crops, anti-aliased bicubic LR; 90% of the scenes by a stable "
        "hash, the other 10% are the test images). Every network was trained for minutes on CPU "
        "(table below) -- far from the budgets of the paper; the numbers show what this "
        "pipeline does at this budget, not the paper's results.",
        "",
        "| model | steps x batch | params | train minutes | final loss |",
        "|---|---|---|---|---|",
    ]
    for key, run in runs.items():
        lines.append(
            f"| {LABELS[key]} | {run['steps']} x {run['batch_size']} | "
            f"{run['parameters'] / 1e6:.3f} M | {run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    n = reference_row(rows).get("n", "?")
    lines += [
        "",
        f"## Quality and speed ({n} held-out scenes, {args.image_size}x{args.image_size} centre "
        + (
            f"crops; seconds per {size}x{size} output, the median of the speed table below)"
            if size
            else "crops; no speed benchmark JSON)"
        ),
        "",
        f"| model | PSNR | SSIM | SSIM-Y | MAE | params | s / {size or '-'}^2 | vs SR3 DDIM-20 | "
        "vs SR3 DDPM-1000 | vs regression UNet | PSNR - teacher's | PSNR - regression's |",
        "|---" * 12 + "|",
    ]
    bicubic = reference_row(rows).get("bicubic", {})
    lines.append(_quality_row("bicubic", bicubic, None, {}, (None, None)))
    reg_params = (regression["row"] or {}).get("parameters")
    reg_speed = _speed(sizes, size, REGRESSION)
    reg_label = LABELS["regression"] + ("" if regression["row"] else " (quality: see below)")
    reg_params = reg_params or reg_speed.get("parameters")
    reg_delta = reg_model["psnr"] - teacher["psnr"] if reg_model and teacher else None
    lines.append(_quality_row(reg_label, reg_model, reg_params, reg_speed, (reg_delta, None)))
    for key, label in (("sr3_ddim", SR3_DDIM), ("sr3_ddpm", SR3_DDPM)):
        if key in sr_rows:
            other = scene_differences(sr_rows[key], reference_row(rows))
            note = f"reports/sr; n={sr_rows[key]['n']}" + ("; other scenes" if other else "")
            lines.append(
                _quality_row(
                    f"{label} ({note})",
                    sr_rows[key]["model"],
                    sr_rows[key]["parameters"],
                    _speed(sizes, size, label),
                    (None, None),
                )
            )
    for key in ("teacher", *STUDENTS):
        if key not in rows:
            continue
        m = rows[key]["model"]
        delta = m["psnr"] - teacher["psnr"] if teacher and key != "teacher" else None
        vs_reg = m["psnr"] - reg_model["psnr"] if reg_model else None
        speed = _speed(sizes, size, BENCH_NAMES[key])
        lines.append(_quality_row(LABELS[key], m, rows[key]["parameters"], speed, (delta, vs_reg)))
    lines += ["", f"Regression UNet quality: {regression['source']}."]
    lines += difference_lines(rows, regression)
    if bench:
        lines += [
            "",
            f"## Speed at each output size ({_threads(bench)} thread(s))",
            "",
            "`terradiff super-resolve` feeds x4 models LR tiles of 64 px by default (256 px "
            "outputs); smaller outputs are smaller tiles, 512 px one whole image, where SR3's "
            "attention (quadratic in the pixel count) dominates. Speed-ups are per size: "
            "read each at its size only.",
            "",
            *speed_table(sizes, BENCH_LABELS),
            f"Timings: `benchmarks/bench_distill.py`, {bench['machine']}, {bench['date']}.",
            *weights_note(bench.get("weights", {})),
        ]
    lines += ["", "## Table 6 analog: distillation losses", ""]
    lines += _ablation(rows, ("student_none", "student_mse", "student"))
    lines += ["", "## Table 7 analog: the light modules", ""]
    lines += _ablation(rows, ("student", "student_no_fs", "student_no_ds", "student_no_ga"))
    lines += ["", "## Baselines", "", *baseline_lines(rows, regression, sizes, args.seed_results)]
    lines += ["", "## Targets", ""]
    if "student" in rows and teacher:
        student = rows["student"]
        drop = teacher["psnr"] - student["model"]["psnr"]
        ratio = teacher_params / student["parameters"] if teacher_params else None
        lines += [
            *speed_targets(sizes, _threads(bench)),
            f"- Quality: PSNR loss <= 0.5 dB against the teacher: {drop:+.2f} dB -- "
            f"{'reached' if drop <= 0.5 else 'NOT reached'}.",
            "- Size: <= 1/10 of the teacher's parameters: "
            + (
                f"1/{ratio:.0f} -- {'reached' if ratio >= 10 else 'NOT reached'}." if ratio else "-"
            ),
        ]
    lines += [
        "",
        "LPIPS: n/a (no local LPIPS weights here; pass them to `terradiff evaluate --lpips`).",
        "",
        "![comparison](comparison.png)",
        "",
        "Loss curves: ![losses](loss_curves.png)",
        "",
        results.get("discussion", ""),
    ]
    atomic_write_text(args.out / "README.md", "\n".join(lines) + "\n")


def _ablation(rows: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    lines = ["| model | PSNR | SSIM | SSIM-Y | params |", "|---|---|---|---|---|"]
    for key in keys:
        if key in rows:
            m = rows[key]["model"]
            lines.append(
                f"| {LABELS[key]} | {_fmt(m['psnr'])} | {_fmt(m['ssim'], 4)} | "
                f"{_fmt(m.get('ssim_y'), 4)} | {rows[key]['parameters'] / 1e6:.3f} M |"
            )
    return lines


def figures(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Zoomed comparison (bicubic, teacher, students, HR) and loss curves."""
    runs = results["runs"]
    tasks = {k: load_task(v["run_dir"], use_ema=True)[0] for k, v in runs.items()}
    reference = tasks["teacher"]
    dataset = real_dataset(reference.config, split="test", image_size=args.image_size)
    picks = [0, len(dataset) // 2, len(dataset) - 1]
    hr = torch.stack([dataset[i]["image"] for i in picks])
    lr = make_lr(hr, 4, "bicubic")
    panels = {"bicubic": upsample_to(lr, tuple(hr.shape[-2:]))}
    with torch.no_grad():
        for key in ("teacher", "student", "student_none"):
            if key in tasks:
                out = tasks[key].super_resolve(
                    tasks[key].net, lr, generator=torch.Generator().manual_seed(0)
                )
                panels[LABELS[key]] = out.sample
    panels["HR"] = hr
    save_comparison_figure(panels, args.out / "comparison.png", zoom=(48, 48, 40))
    curves = {LABELS[k]: read_losses(Path(v["run_dir"])) for k, v in runs.items()}
    # the teacher's total loss goes negative (the 2 log sigma term): linear axis
    save_loss_curves(curves, args.out / "loss_curves.png", smoothing=0.9, log_y=False)


def correct_sampling_records(rows: dict[str, Any]) -> None:
    """Record no sampler for one-pass methods (results measured before the fix recorded the
    config's DDIM-20, which these models never ran); the metrics are unchanged."""
    for row in rows.values():
        if not method_class("sr", row["method"]).stochastic:
            row.update({"sampler": None, "steps": None, "eta": None})


def _sr_rows(args: argparse.Namespace) -> dict[str, Any]:
    if not args.sr_results.is_file():
        return {}
    return json.loads(args.sr_results.read_text()).get("rows", {})


def evaluate_regression_if_needed(rows: dict[str, Any], args: argparse.Namespace) -> None:
    """Re-evaluate the SR study's regression UNet on this study's crops (``rows["regression"]``)
    when the SR study's row is missing or on other crops and the run is on this machine."""
    if "regression" in rows or not rows:
        return
    if regression_quality(rows, _sr_rows(args))["row"] is not None:
        return
    run = args.sr_runs / REGRESSION
    if not run.is_dir():
        print(f"regression UNet: the SR study's row is not comparable and no run at {run}")
        return
    print("measuring regression (this study's crops) ...", flush=True)
    rows["regression"] = evaluate_super_resolution(
        run, num_images=args.n, image_size=args.image_size, seed=0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/distill"))
    parser.add_argument("--runs-root", type=Path, default=Path("runs/distill"))
    parser.add_argument("--n", type=int, default=32, help="held-out scenes")
    parser.add_argument("--image-size", type=int, default=144)
    parser.add_argument("--only", nargs="*", default=["teacher", *STUDENTS])
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--train-only", action="store_true", help="train the --only runs, stop")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--bench", type=Path, default=Path("benchmarks/results/distill.json"))
    parser.add_argument("--sr-results", type=Path, default=Path("reports/sr/results.json"))
    parser.add_argument(
        "--seed-results",
        type=Path,
        default=SEED_RESULTS,
        help="the seed study's results.json (its readings are added to the report)",
    )
    parser.add_argument(
        "--sr-runs",
        type=Path,
        default=Path("runs/sr"),
        help="the SR study's runs (its regression UNet is re-evaluated here if the SR study's "
        "row is on other crops)",
    )
    args = parser.parse_args()
    results, save = open_results(args.out, args.redo, report_only=args.report_only)
    runs = results.setdefault("runs", {})
    rows = results.setdefault("rows", {})
    logs = args.out / "training_logs"
    logs.mkdir(exist_ok=True)
    if not args.report_only:
        teacher_dir = args.runs_root / "aid-single-step-x4"
        for key in args.only:
            if key == "teacher":
                config, overrides = TEACHER_RUN[1], [f"output_dir={teacher_dir}"]
            else:
                name, extra = STUDENTS[key]
                config = STUDENT
                overrides = [
                    f"output_dir={args.runs_root / name}",
                    f"name={name}",
                    f"sr.teacher={teacher_dir}",
                    *extra,
                ]
            print(f"training {key} ...", flush=True)
            runs[key] = train(key, config, overrides + args.set)
            shutil.copyfile(Path(runs[key]["run_dir"]) / "metrics.jsonl", logs / f"{key}.jsonl")
            save()
        if args.train_only:
            return
        for key in runs:
            if key not in rows:
                print(f"measuring {key} ...", flush=True)
                rows[key] = evaluate_super_resolution(
                    runs[key]["run_dir"], num_images=args.n, image_size=args.image_size, seed=0
                )
                save()
        evaluate_regression_if_needed(rows, args)
        save()
        figures(results, args)
    correct_sampling_records(rows)
    check = regression_quality(rows, _sr_rows(args))
    results["regression_baseline"] = {k: v for k, v in check.items() if k != "row"}
    write_report(results, args)
    save()
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
