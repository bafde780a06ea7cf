"""Training-seed replicates of the SR and distillation rows (issue 14): ``reports/seeds``.

The SR study (``reports/sr``) and the distillation study (``reports/distill``) train each model
once (seed 0), so their paired intervals hold the variation over test images only. This study
trains the models of those reports again with seeds 1 and 2 (the same configs, budgets
and test crops; ``seed`` is the config's only change) and reads each difference over the three
seeds:

- AID x4: the regression UNet (``configs/sr/aid_regression_x4.yaml``), the single-step teacher and
  the six students of the distillation tables (a student of seed ``s`` is distilled from the
  teacher of seed ``s``, so the whole pipeline is replicated);
- AID x4: SR3 (sampled with DDIM-20) and the implicit model at x4 (DDIM-20), the diffusion rows
  of the SR report;
- EuroSAT x4, 13 bands: the regression UNet.

Seed 0 is the committed row of ``reports/sr/results.json`` or ``reports/distill/results.json``;
the crops are checked to be the same (bicubic PSNR image by image). Each seed's difference is a
paired mean over the same images; the three seeds' differences get a Student-t 95% interval
(2 degrees of freedom, :func:`terradiff.report_format.interval_from_samples`), which holds the
training variation on these test images. A difference is read only where that interval excludes
0. For two models, seed ``s`` of one is paired with seed ``s`` of the other: the seeds are
independent, so the three differences are three independent replicates of the difference.

Each measured (model, seed) is written to ``OUT/rows/KEY_seedN.json`` as soon as it is made, so
several processes can share the work (``--only``) and an interrupted run resumes.

Example (the committed report, ``make seed-study``: two processes of one thread each, then the
render)::

    python scripts/seed_study.py --only teacher student student_mse student_none \\
        student_no_fs student_no_ds student_no_ga &
    python scripts/seed_study.py --only regression eurosat
    python scripts/seed_study.py --only sr3 &
    python scripts/seed_study.py --only implicit
    python scripts/seed_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.sr_intervals import (  # noqa: E402
    MIN_IMAGES,
    per_image,
    per_image_differences,
)
from scripts.study_common import machine_description, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402
from terradiff.report_format import (  # noqa: E402
    SYMMETRIC_NOTE,
    difference_reading,
    format_interval,
    interval_from_samples,
)

SEEDS = (0, 1, 2)
STUDENT_CONFIG = "configs/distill/aid_student_x4.yaml"
AID_EVALUATION = {"num_images": 32, "image_size": 144, "batch_size": 8}


@dataclass(frozen=True)
class Replicate:
    """One model of the SR or distillation report, trained again per seed."""

    key: str
    label: str
    config: str
    source: tuple[str, str]  # (results.json of the seed-0 row, its row key)
    overrides: tuple[str, ...] = ()
    evaluation: dict[str, Any] = field(default_factory=lambda: dict(AID_EVALUATION))
    needs_teacher: bool = False


def _student(key: str, label: str, *overrides: str) -> Replicate:
    return Replicate(
        key,
        label,
        STUDENT_CONFIG,
        ("reports/distill/results.json", key),
        overrides,
        needs_teacher=True,
    )


REPLICATES: dict[str, Replicate] = {
    r.key: r
    for r in (
        Replicate(
            "regression",
            "regression UNet (AID x4)",
            "configs/sr/aid_regression_x4.yaml",
            ("reports/sr/results.json", "regression_x4"),
        ),
        Replicate(
            "teacher",
            "single-step teacher",
            "configs/distill/aid_single_step_x4.yaml",
            ("reports/distill/results.json", "teacher"),
        ),
        _student("student", "student, MSE + MMD"),
        _student("student_mse", "student, MSE", "sr.distill=mse"),
        _student("student_none", "student, no distillation", "sr.distill=none"),
        _student("student_no_fs", "student w/o FS conv", "sr.fs_conv=false"),
        _student("student_no_ds", "student w/o DS conv", "sr.ds_conv=false"),
        _student("student_no_ga", "student w/o global aggregation", "sr.global_aggregation=false"),
        Replicate(
            "sr3",
            "SR3 (AID x4, DDIM-20)",
            "configs/sr/aid_sr3_x4.yaml",
            ("reports/sr/results.json", "sr3_ddim"),
            evaluation={**AID_EVALUATION, "sampler": "ddim", "steps": 20},
        ),
        Replicate(
            "implicit",
            "implicit model (AID x4, DDIM-20)",
            "configs/sr/aid_implicit.yaml",
            ("reports/sr/results.json", "implicit_x4"),
            evaluation={**AID_EVALUATION, "scale": 4},
        ),
        Replicate(
            "eurosat",
            "regression UNet (EuroSAT x4, 13 bands)",
            "configs/sr/eurosat_regression_x4.yaml",
            ("reports/sr/results.json", "eurosat_x4"),
            evaluation={
                "num_images": 1000,
                "data_root": "../shared/data/eurosat-ms/test",
                "batch_size": 8,
            },
        ),
    )
}

#: The differences between models that the distillation report reads (A - B, AID x4 PSNR).
COMPARISONS = (
    ("regression", "student"),
    ("student_none", "student"),
    ("student_mse", "student"),
    ("student_no_fs", "student"),
    ("student_no_ds", "student"),
    ("student_no_ga", "student"),
    ("regression", "teacher"),
    ("student", "teacher"),
)


# ---- measuring -----------------------------------------------------------------------------------


def run_dir(runs_root: Path, key: str, seed: int) -> Path:
    """Where the run of ``key`` with ``seed`` trains."""
    return runs_root / key / f"seed{seed}"


def overrides_for(replicate: Replicate, seed: int, runs_root: Path) -> list[str]:
    """The config overrides of one replicate: its seed and run folder (and its teacher's)."""
    words = [f"seed={seed}", f"output_dir={run_dir(runs_root, replicate.key, seed)}"]
    if replicate.needs_teacher:
        words.append(f"sr.teacher={run_dir(runs_root, 'teacher', seed)}")
    return words + list(replicate.overrides)


def row_path(out: Path, key: str, seed: int) -> Path:
    """The file of one measured (model, seed): written once, so a re-run skips it."""
    return out / "rows" / f"{key}_seed{seed}.json"


def measure(replicate: Replicate, seed: int, args: argparse.Namespace) -> None:
    """Train (or resume) one replicate, measure it on the seed-0 row's crops, save its file."""
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(args.out, replicate.key, seed)
    if path.is_file():
        return
    if replicate.needs_teacher:
        measure(REPLICATES["teacher"], seed, args)  # the student of seed s distils teacher s
    print(f"training {replicate.key} seed {seed} ...", flush=True)
    started = time.time()
    run = train(
        f"{replicate.key}_seed{seed}",
        Path(replicate.config),
        overrides_for(replicate, seed, args.runs_root),
    )
    print(f"measuring {replicate.key} seed {seed} ...", flush=True)
    row = evaluate_super_resolution(run["run_dir"], seed=0, **replicate.evaluation)
    differs = per_image_differences(row, seed_zero_row(replicate))
    if differs:
        raise RuntimeError(f"{replicate.key} seed {seed}: not the seed-0 crops ({differs})")
    data_root = replicate.evaluation.get("data_root", "../shared/data/aid")
    save_row(path, args.out, (replicate.key, seed), run, row, started, data_root)


def save_row(
    path: Path,
    out: Path,
    key_seed: tuple[str, int],
    run: dict[str, Any],
    row: dict[str, Any],
    started: float,
    data_root: str,
) -> None:
    """Copy the run's loss log to ``out/training_logs`` and write the measured row to ``path``
    with its run, wall time (since ``started``), machine and provenance."""
    key, seed = key_seed
    logs = out / "training_logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(run["run_dir"]) / "metrics.jsonl", logs / f"{key}_seed{seed}.jsonl")
    record = {
        "key": key,
        "seed": seed,
        "run": run,
        "row": row,
        "wall_minutes": round((time.time() - started) / 60.0, 1),
        "machine": machine_description(),
        "provenance": provenance_record(data_paths=[data_root]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def training_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown table of the saved rows' training runs (:func:`save_row` records), and where
    their loss logs are."""
    lines = ["| run | steps | batch | train minutes | final loss |", "|---|---|---|---|---|"]
    for record in records:
        run = record["run"]
        lines.append(
            f"| {run['name']} | {run['steps']} | {run['batch_size']} | {run['train_minutes']} | "
            f"{run['final_loss']:.4f} |"
        )
    return [*lines, "", "Training logs: `training_logs/`.", ""]


def seed_zero_row(replicate: Replicate) -> dict[str, Any]:
    """The committed seed-0 row of ``replicate`` (its report's ``results.json``)."""
    results_path, key = replicate.source
    return json.loads((REPO / results_path).read_text())["rows"][key]


def load_rows(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{key: {seed: row}}``: seed 0 from the committed reports, the others from ``out/rows``."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for key, replicate in REPLICATES.items():
        rows[key] = {0: seed_zero_row(replicate)}
        for seed in SEEDS[1:]:
            path = row_path(out, key, seed)
            if path.is_file():
                rows[key][seed] = json.loads(path.read_text())["row"]
    return rows


# ---- reading -------------------------------------------------------------------------------------


def seed_difference(
    a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """PSNR of ``a`` minus ``b`` (default: ``a``'s own bicubic), per seed and over the seeds.

    Each seed's value is the mean over images of the paired per-image difference (seed ``s`` of
    ``a`` with seed ``s`` of ``b``); ``over_seeds`` is their Student-t 95% interval. None when a
    seed lacks per-image values or the seeds of ``a`` and ``b`` differ.
    """
    seeds = sorted(a)
    if b is not None and sorted(b) != seeds:
        return None
    per_seed: dict[int, float] = {}
    for seed in seeds:
        values = per_image(a[seed], "model")
        reference = per_image(a[seed], "bicubic") if b is None else per_image(b[seed], "model")
        if values is None or reference is None or len(values) != len(reference):
            return None
        pairs = [(x, y) for x, y in zip(values, reference, strict=True) if _finite(x, y)]
        if len(pairs) < MIN_IMAGES:
            return None
        per_seed[seed] = sum(x - y for x, y in pairs) / len(pairs)
    return {"per_seed": per_seed, "over_seeds": interval_from_samples(list(per_seed.values()))}


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def difference_line(name_a: str, name_b: str, difference: dict[str, Any] | None) -> str:
    """One bullet: the per-seed differences, their interval over seeds and what it allows."""
    if difference is None:
        return f"- {name_a} - {name_b}: not every seed measured yet"
    seeds = ", ".join(f"{v:+.2f}" for _, v in sorted(difference["per_seed"].items()))
    over = difference["over_seeds"]
    if over["n"] < 2:
        only = next(iter(difference["per_seed"]))
        return f"- {name_a} - {name_b}: seed {only} only ({seeds} dB): no interval over seeds"
    return (
        f"- {name_a} - {name_b}: seeds {seeds} dB; over {over['n']} seeds "
        f"{format_interval(over, 2, ' dB', signed=True)}: "
        f"{difference_reading(over, name_a, name_b)}"
    )


SEED_RESULTS = REPO / "reports" / "seeds" / "results.json"


def seed_summary_lines(
    models: Sequence[str],
    comparisons: Sequence[tuple[str, str]] = (),
    path: Path | None = SEED_RESULTS,
) -> list[str]:
    """Bullets for the SR and distillation reports: each model's PSNR - bicubic and each
    comparison ``(a, b)`` over the training seeds, read from this study's ``results.json`` at
    ``path``; empty when ``path`` is None or the study has not run."""
    if path is None or not path.is_file():
        return []
    summary = json.loads(path.read_text())
    lines = []
    for key in models:
        if key in summary["models"]:
            entry = summary["models"][key]
            lines.append(difference_line(entry["label"], "bicubic", entry["minus_bicubic"]))
    for a, b in comparisons:
        if f"{a} - {b}" in summary["comparisons"]:
            difference = summary["comparisons"][f"{a} - {b}"]
            lines.append(difference_line(REPLICATES[a].label, REPLICATES[b].label, difference))
    return lines


def write_report(out: Path, rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """``out/README.md`` and ``out/results.json`` (every row's summary); returns the latter."""
    records = sorted((out / "rows").glob("*.json")) if (out / "rows").is_dir() else []
    runs = [json.loads(p.read_text()) for p in records]
    summary: dict[str, Any] = {"seeds": list(SEEDS), "models": {}, "comparisons": {}}
    lines = [
        "# Training-seed replicates of the SR and distillation rows",
        "",
        "Commands (each (model, seed) is saved as it is measured, so they resume):",
        "",
        *[f"    {line}" for line in textwrap.dedent(__doc__.split("::")[1]).strip().splitlines()],
        "",
        f"Machine: {runs[0]['machine'] if runs else '?'} (seeds 1 and 2; seed 0 is the committed "
        "row of its report).",
        "",
        "What changed between seeds: the config's `seed` only (weights initialisation, crops, "
        "flips, noise), with the same budget and test crops as the committed reports "
        "(`reports/sr`, `reports/distill`). Students of seed s are distilled from the teacher of "
        "seed s. Each seed's difference is the mean over the same test images; the interval over "
        "seeds is a Student-t 95% interval over the 3 seeds (2 degrees of freedom), the training "
        "variation on these images. A difference is read only where it excludes 0. "
        + SYMMETRIC_NOTE,
        "",
        "## PSNR - bicubic, per model",
        "",
        "| model | test images | PSNR per seed (dB) | PSNR - bicubic per seed (dB) | over seeds |",
        "|---|---|---|---|---|",
    ]
    for key, replicate in REPLICATES.items():
        by_seed = rows[key]
        psnrs = ", ".join(f"{by_seed[s]['model']['psnr']:.2f}" for s in sorted(by_seed))
        difference = seed_difference(by_seed)
        summary["models"][key] = {
            "label": replicate.label,
            "psnr": {s: by_seed[s]["model"]["psnr"] for s in sorted(by_seed)},
            "minus_bicubic": difference,
        }
        if difference is None:
            gains, over = "no per-image values", "-"
        else:
            gains = ", ".join(f"{v:+.2f}" for _, v in sorted(difference["per_seed"].items()))
            over = (
                format_interval(difference["over_seeds"], 2, signed=True)
                if difference["over_seeds"]["n"] > 1
                else "one seed"
            )
        lines.append(f"| {replicate.label} | {by_seed[0]['n']} | {psnrs} | {gains} | {over} |")
    lines += ["", "Readings (PSNR - bicubic, interval over seeds):", ""]
    for key, replicate in REPLICATES.items():
        lines.append(
            difference_line(replicate.label, "bicubic", summary["models"][key]["minus_bicubic"])
        )
    lines += ["", "## Differences between models (AID x4, the same 32 test scenes)", ""]
    for a, b in COMPARISONS:
        difference = seed_difference(rows[a], rows[b])
        summary["comparisons"][f"{a} - {b}"] = difference
        lines.append(difference_line(REPLICATES[a].label, REPLICATES[b].label, difference))
    lines += ["", "## Training", "", *training_table(runs)]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    summary["runs"] = [
        {k: r[k] for k in ("key", "seed", "run", "machine", "provenance")} for r in runs
    ]
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/seeds"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/seeds/runs"))
    parser.add_argument("--only", nargs="*", default=list(REPLICATES), choices=list(REPLICATES))
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        choices=list(SEEDS[1:]),
        default=list(SEEDS[1:]),
        help="seeds to train (seed 0 is the committed row of its report)",
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        for seed in args.seeds:
            for key in args.only:
                measure(REPLICATES[key], seed, args)
    write_report(args.out, load_rows(args.out))
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
