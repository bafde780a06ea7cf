"""Which teacher is worth distilling the light SR student from, and at what budget.

``reports/distill`` distils SlimDiffSR's light student (0.085 M parameters) from the single-step
diffusion teacher, which at its CPU budget sits at bicubic's PSNR; the student trained with no
teacher at all came out 0.30 +- 0.04 dB *above* the distilled one (``reports/seeds``, 3 seeds).
So distillation, as measured there, costs accuracy. This study asks whether that is the method
or the teacher: it distils the same student, with the same loss (L1 to HR + MSE to the teacher's
output and adapted features + 0.1 MMD, ``configs/distill/aid_student_x4.yaml``) from the
strongest one-pass model of these reports, the regression UNet (1.68 M parameters, 0.59 dB above
bicubic), and trains both the distilled and the teacher-free student at the committed budget
(200 steps of 8 crops) and at 5x it (1,000 steps); both budgets were fixed before any run.

Rows (AID x4, the 32 test scenes of ``reports/sr``, 144 px centre crops; seeds 0-2, the student
of seed ``s`` distilled from the teacher of seed ``s``):

* new here: ``reg_200``, ``none_1000``, ``reg_1000`` and ``none_200`` (trained into
  ``--runs-root``; ``none_200`` is the committed teacher-free recipe trained again on this
  machine, so that every pair of new rows shares it, and checked against the committed rows);
* read from the committed reports: ``single_step_200`` (``reports/distill`` seed 0,
  ``reports/seeds`` seeds 1-2) and the teachers (``reports/sr_detail/rows``: the regression
  UNets of ``outputs/seeds/runs/regression``, which these students distil).

Each seed's difference is the mean of the per-scene PSNR differences; the interval over seeds is
Student-t 95% over the 3 seeds; a difference is read only where it excludes 0. The crops are
checked to be those of the committed rows (bicubic PSNR scene by scene). Nothing is chosen on
the test scenes: every row is reported.

Example (two processes of one thread share the cells; then the render)::

    python scripts/distill_teacher_study.py &
    python scripts/distill_teacher_study.py
    python scripts/distill_teacher_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.seed_study import (  # noqa: E402
    AID_EVALUATION,
    REPLICATES,
    SEEDS,
    STUDENT_CONFIG,
    difference_line,
    load_rows,
    overrides_for,
    save_row,
    seed_difference,
    seed_zero_row,
    training_table,
)
from scripts.sr_intervals import per_image_differences  # noqa: E402
from scripts.study_common import claim_cell, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.report_format import SYMMETRIC_NOTE, format_interval  # noqa: E402

TEACHER_RUNS = Path("outputs/seeds/runs/regression")
TEACHER_ROWS = REPO / "reports" / "sr_detail" / "rows"


@dataclass(frozen=True)
class Student:
    """One student row: its distillation, teacher and budget."""

    key: str
    label: str
    steps: int
    distill: str  # "none" or "mse_mmd"
    committed: str | None = None  # the seed study's key when the row is read, not trained
    reproduces: str | None = None  # the seed study's key of the same recipe, to check against


STUDENTS: dict[str, Student] = {
    s.key: s
    for s in (
        Student("none_200", "no teacher, 200 steps", 200, "none", reproduces="student_none"),
        Student(
            "single_step_200",
            "single-step diffusion teacher, 200 steps",
            200,
            "mse_mmd",
            committed="student",
        ),
        Student("reg_200", "regression-UNet teacher, 200 steps", 200, "mse_mmd"),
        Student("none_1000", "no teacher, 1,000 steps", 1000, "none"),
        Student("reg_1000", "regression-UNet teacher, 1,000 steps", 1000, "mse_mmd"),
    )
}
TEACHER = "teacher"
TEACHER_LABEL = "regression UNet (the teacher)"
#: The differences the report reads (a - b, PSNR over the same scenes).
COMPARISONS = (
    ("reg_200", "none_200"),
    ("reg_200", "single_step_200"),
    ("reg_1000", "none_1000"),
    ("none_1000", "none_200"),
    ("reg_1000", "reg_200"),
    (TEACHER, "reg_1000"),
    (TEACHER, "none_1000"),
)


def row_path(out: Path, key: str, seed: int) -> Path:
    return out / "rows" / f"{key}_seed{seed}.json"


def overrides(student: Student, seed: int, runs_root: Path) -> list[str]:
    """The student config's overrides: seed, run folder, teacher of that seed, budget, loss.

    A teacher-free student names the teacher of its seed too, as the committed teacher-free
    rows did (``sr.distill: none`` needs none since 2026-12-01); it is not read.
    """
    return [
        f"seed={seed}",
        f"output_dir={runs_root / student.key / f'seed{seed}'}",
        f"sr.teacher={TEACHER_RUNS / f'seed{seed}'}",
        f"sr.distill={student.distill}",
        f"train.max_steps={student.steps}",
        f"train.save_every={student.steps // 2}",
        "train.progress=false",
    ]


def ensure_teacher(seed: int) -> None:
    """Train the regression UNet of ``seed`` into :data:`TEACHER_RUNS` unless it is there (as
    ``scripts/sr_detail_study.py`` trains it; about 18 min of one thread). A retrained teacher
    is not bit-exact across machines: its row in ``reports/sr_detail`` may then differ slightly
    (0.12 dB per scene at most between two machines so far)."""
    replicate = REPLICATES["regression"]
    train(
        f"regression_seed{seed}",
        REPO / replicate.config,
        overrides_for(replicate, seed, TEACHER_RUNS.parent),
    )


def measure(student: Student, seed: int, out: Path, runs_root: Path) -> None:
    """Train (or resume) one student of one seed, score it on the committed crops, save its row."""
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(out, student.key, seed)
    if path.is_file():
        return
    if student.distill != "none":
        ensure_teacher(seed)
    print(f"training {student.key} seed {seed} ...", flush=True)
    started = time.time()
    run = train(
        f"{student.key}_seed{seed}", REPO / STUDENT_CONFIG, overrides(student, seed, runs_root)
    )
    row = evaluate_super_resolution(run["run_dir"], seed=0, **AID_EVALUATION)
    differs = per_image_differences(row, seed_zero_row(REPLICATES["student_none"]))
    if differs:
        raise RuntimeError(f"{student.key} seed {seed}: not the committed crops ({differs})")
    save_row(path, out, (student.key, seed), run, row, started, "../shared/data/aid")
    print(f"{student.key} seed {seed}: PSNR {row['model']['psnr']:.3f}", flush=True)


def load_all(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{key: {seed: row}}`` of every student, and of the teacher under :data:`TEACHER`."""
    committed = load_rows(REPO / "reports" / "seeds")
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for key, student in STUDENTS.items():
        if student.committed is not None:
            rows[key] = dict(committed[student.committed])
            continue
        rows[key] = {
            seed: json.loads(row_path(out, key, seed).read_text())["row"]
            for seed in SEEDS
            if row_path(out, key, seed).is_file()
        }
    rows[TEACHER] = {
        seed: json.loads((TEACHER_ROWS / f"regression_seed{seed}.json").read_text())["row"]
        for seed in SEEDS
        if (TEACHER_ROWS / f"regression_seed{seed}.json").is_file()
    }
    return rows


def label_of(key: str) -> str:
    return TEACHER_LABEL if key == TEACHER else f"student, {STUDENTS[key].label}"


def summarise(rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Every row's PSNR and PSNR - bicubic over seeds, and every comparison."""
    summary: dict[str, Any] = {"seeds": list(SEEDS), "models": {}, "comparisons": {}}
    for key, by_seed in rows.items():
        summary["models"][key] = {
            "label": label_of(key),
            "psnr": {s: by_seed[s]["model"]["psnr"] for s in sorted(by_seed)},
            "ssim": {s: by_seed[s]["model"]["ssim"] for s in sorted(by_seed)},
            "minus_bicubic": seed_difference(by_seed) if by_seed else None,
        }
    for a, b in COMPARISONS:
        done = rows[a] and rows[b] and sorted(rows[a]) == sorted(rows[b])
        summary["comparisons"][f"{a} - {b}"] = seed_difference(rows[a], rows[b]) if done else None
    return summary


def reproduction_lines(rows: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """For rows retrained here from a committed recipe: their PSNR against the committed one,
    seed by seed (retraining is not bit-exact across machines and thread counts)."""
    committed = load_rows(REPO / "reports" / "seeds")
    lines = []
    for key, student in STUDENTS.items():
        if student.reproduces is None or not rows[key]:
            continue
        gaps = {
            seed: row["model"]["psnr"] - committed[student.reproduces][seed]["model"]["psnr"]
            for seed, row in sorted(rows[key].items())
            if seed in committed[student.reproduces]
        }
        text = ", ".join(f"seed {s} {g:+.3f} dB" for s, g in gaps.items())
        lines += [
            "",
            f"Reproduction: {label_of(key)} retrained here against the committed rows of the "
            f"same recipe (`reports/distill`, `reports/seeds`), mean PSNR: {text}.",
        ]
    return lines


def write_report(out: Path, rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """``out/README.md`` and ``out/results.json``; returns the latter."""
    summary = summarise(rows)
    records = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    machine = records[0]["machine"] if records else "?"
    lines = [
        "# Distilling the light SR student: which teacher, what budget",
        "",
        "Commands (each (student, seed) is saved as it is measured, so they resume):",
        "",
        *[f"    {line.strip()}" for line in __doc__.split("::")[1].strip().splitlines()],
        "",
        f"Machine of the new rows: {machine}. " + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "Intervals: Student-t 95% over the 3 training seeds of the per-seed mean of the paired "
        "per-scene PSNR differences (the training variation on these 32 scenes). "
        + SYMMETRIC_NOTE
        + " Detail: the power above the LR Nyquist frequency against the reference's "
        "(`terradiff.metrics.spectrum`, as in `reports/sr_detail`; 0 dB = the reference's amount; "
        "rows scored before that measure existed have none).",
        "",
        "| model | params | steps x batch | PSNR per seed (dB) | PSNR - bicubic over seeds | "
        "SSIM (mean of seeds) | detail above the LR Nyquist vs HR (mean of seeds) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entry in summary["models"].items():
        by_seed = rows[key]
        if not by_seed:
            lines.append(f"| {entry['label']} | - | - | not measured yet | - | - | - |")
            continue
        first = by_seed[min(by_seed)]
        steps = "800 x 8" if key == TEACHER else f"{STUDENTS[key].steps} x 8"
        psnrs = ", ".join(f"{v:.2f}" for _, v in sorted(entry["psnr"].items()))
        gain = entry["minus_bicubic"]
        over = (
            "no per-image values"
            if gain is None
            else format_interval(gain["over_seeds"], 2, " dB", signed=True)
        )
        ssim = sum(entry["ssim"].values()) / len(entry["ssim"])
        params = first.get("parameters")
        params_text = f"{params / 1e6:.3f} M" if params else "-"
        details = [row["model"].get("hf_power_db") for row in by_seed.values()]
        detail = f"{sum(details) / len(details):.2f} dB" if None not in details else "not measured"
        lines.append(
            f"| {entry['label']} | {params_text} | {steps} | {psnrs} | {over} | {ssim:.4f} "
            f"| {detail} |"
        )
    lines += reproduction_lines(rows)
    lines += ["", "## Differences (a - b, PSNR over the same 32 scenes)", ""]
    for a, b in COMPARISONS:
        lines.append(
            difference_line(label_of(a), label_of(b), summary["comparisons"][f"{a} - {b}"])
        )
    lines += ["", "## Training of the new rows", "", *training_table(records)]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    summary["runs"] = [
        {k: r[k] for k in ("key", "seed", "run", "wall_minutes", "machine", "provenance")}
        for r in records
    ]
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/distill_teacher"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/distill_teacher/runs"))
    new = [k for k, s in STUDENTS.items() if s.committed is None]
    parser.add_argument("--only", nargs="*", default=new, choices=new)
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS), choices=list(SEEDS))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        for key in args.only:  # budget order: the cheap rows of every seed first
            for seed in args.seeds:
                if claim_cell(args.runs_root / "claims", f"{key}_seed{seed}"):
                    measure(STUDENTS[key], seed, args.out, args.runs_root)
    write_report(args.out, load_all(args.out))
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
