"""SR3 with a residual target (SRDiff) on AID x4, chosen on validation, tested over 3 seeds.

SR3 as ``reports/sr`` trains it (``configs/sr/aid_sr3_x4.yaml``: 1.68 M parameters, 1600 steps of
batch 8 on one CPU thread) is 6.8 dB below bicubic. SRDiff (Li et al. 2022, Sec. 3.2) diffuses the
residual between the HR image and the bicubic image instead (``sr.target: residual``); this study
measures what that changes at the same budget, in two phases:

1. ``--phase val``: SR3 with ``target: image`` and with ``target: residual`` at each
   ``residual_scale`` of :data:`CANDIDATES`, trained on ``data.split: fit`` (the AID training
   files without their ``val`` part) and scored on the 32 ``val`` scenes (144x144 centre crops,
   DDIM-20). The residual scale with the highest mean validation PSNR is the choice; the test
   files are not read.
2. ``--phase test``: ``configs/sr/aid_sr3_residual_x4.yaml`` (which must hold that choice)
   trained on ``data.split: train`` with seeds 0, 1 and 2, scored on the 32 test scenes of
   ``reports/sr`` (checked image by image). Each difference (to bicubic, to SR3 with the image
   target, to the regression UNet; their seeds come from ``reports/sr`` and ``reports/seeds``)
   is a paired mean over the images per seed, with a Student-t 95% interval over the 3 seeds.

Each measured run is written to ``OUT/rows/NAME.json`` as soon as it is made, so two processes can
share the work and an interrupted study resumes.

Example (the committed report: two processes of one thread each per phase, then the render)::

    python scripts/sr_residual_study.py --phase val --only image residual_1 &
    python scripts/sr_residual_study.py --phase val --only residual_0.5 residual_0.25
    python scripts/sr_residual_study.py --phase test --seeds 0 2 &
    python scripts/sr_residual_study.py --phase test --seeds 1
    python scripts/sr_residual_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.seed_study import (  # noqa: E402
    AID_EVALUATION,
    REPLICATES,
    difference_line,
    load_rows,
    seed_difference,
    seed_zero_row,
)
from scripts.sr_intervals import bicubic_difference_lines, per_image_differences  # noqa: E402
from scripts.study_common import machine_description, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402

BASE_CONFIG = "configs/sr/aid_sr3_x4.yaml"
RESIDUAL_CONFIG = "configs/sr/aid_sr3_residual_x4.yaml"
#: Validation candidates: name -> config overrides (on top of BASE_CONFIG and ``data.split=fit``).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "image": ("sr.target=image",),
    "residual_1": ("sr.target=residual", "sr.residual_scale=1.0"),
    "residual_0.5": ("sr.target=residual", "sr.residual_scale=0.5"),
    "residual_0.25": ("sr.target=residual", "sr.residual_scale=0.25"),
}
SEEDS = (0, 1, 2)
EVALUATION = {**AID_EVALUATION, "sampler": "ddim", "steps": 20}


class StudyError(Exception):
    """A request the study cannot carry out (the message says what to do); exit code 2."""


# ---- measuring -----------------------------------------------------------------------------------


def row_path(out: Path, name: str) -> Path:
    """The file of one measured run (``val_<candidate>`` or ``test_seed<s>``)."""
    return out / "rows" / f"{name}.json"


def measure(
    name: str, config: str, overrides: list[str], out: Path, check_crops: bool = False
) -> None:
    """Train (or resume) one run, score it with DDIM-20 on its held-out split, save its row."""
    from terradiff.evaluate import evaluate_super_resolution

    path = row_path(out, name)
    if path.is_file():
        return
    print(f"training {name} ...", flush=True)
    started = time.time()
    run = train(name, Path(config), overrides)
    print(f"measuring {name} ...", flush=True)
    row = evaluate_super_resolution(run["run_dir"], seed=0, **EVALUATION)
    if check_crops:
        differs = per_image_differences(row, seed_zero_row(REPLICATES["sr3"]))
        if differs:
            raise RuntimeError(f"{name}: not the test crops of reports/sr ({differs})")
    logs = out / "training_logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(run["run_dir"]) / "metrics.jsonl", logs / f"{name}.jsonl")
    shutil.copyfile(Path(run["run_dir"]) / "config.json", logs / f"{name}.config.json")
    record = {
        "name": name,
        "config": config,
        "overrides": overrides,
        "run": run,
        "row": row,
        "wall_minutes": round((time.time() - started) / 60.0, 1),
        "machine": machine_description(),
        "provenance": provenance_record(data_paths=["../shared/data/aid"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def validation_overrides(candidate: str, runs_root: Path) -> list[str]:
    """A validation run: trained on ``fit`` (so it is scored on ``val``), in its own folder."""
    return [
        "data.split=fit",
        f"output_dir={runs_root / 'val' / candidate}",
        *CANDIDATES[candidate],
    ]


def load_validation(out: Path) -> dict[str, dict[str, Any]]:
    """The measured validation rows, ``{candidate: row}``."""
    found = {}
    for candidate in CANDIDATES:
        path = row_path(out, f"val_{candidate}")
        if path.is_file():
            found[candidate] = json.loads(path.read_text())["row"]
    return found


def chosen_scale(validation: dict[str, dict[str, Any]]) -> float:
    """The residual scale of the residual candidate with the highest mean validation PSNR.

    Raises:
        StudyError: a residual candidate has not been measured yet.
    """
    residual = [c for c in CANDIDATES if c.startswith("residual_")]
    missing = [c for c in residual if c not in validation]
    if missing:
        raise StudyError(
            f"validation rows missing for {missing}: run --phase val --only {' '.join(missing)}"
        )
    best = max(residual, key=lambda c: validation[c]["model"]["psnr"])
    return float(best.removeprefix("residual_"))


def check_residual_config(scale: float, config_path: Path = REPO / RESIDUAL_CONFIG) -> None:
    """The test config must hold the validation choice (so the test runs what was chosen).

    Raises:
        StudyError: it does not (the message gives the line to write).
    """
    from terradiff.config_loading import load_config

    sr = load_config(config_path).sr
    if sr is None or sr.method != "sr3" or sr.target != "residual" or sr.residual_scale != scale:
        raise StudyError(
            f"{config_path}: validation chose residual_scale {scale:g}; set 'sr.target: "
            f"residual' and 'sr.residual_scale: {scale:g}' there, then run --phase test"
        )


def test_overrides(seed: int, runs_root: Path) -> list[str]:
    """A test run: the residual config with ``seed``, in its own folder."""
    return [f"seed={seed}", f"output_dir={runs_root / 'test' / f'seed{seed}'}"]


def load_test(out: Path) -> dict[int, dict[str, Any]]:
    """The measured test rows, ``{seed: row}``."""
    found = {}
    for seed in SEEDS:
        path = row_path(out, f"test_seed{seed}")
        if path.is_file():
            found[seed] = json.loads(path.read_text())["row"]
    return found


def candidate_label(candidate: str) -> str:
    """``SR3, image target`` / ``SR3, residual, s = 0.5``."""
    if candidate == "image":
        return "SR3, image target"
    return f"SR3, residual, s = {candidate.removeprefix('residual_')}"


def validation_lines(validation: dict[str, dict[str, Any]]) -> list[str]:
    """The validation table, each candidate's paired PSNR - bicubic and the choice."""
    if not validation:
        return ["Not measured yet: run --phase val."]
    lines = [
        "| candidate | val images | PSNR | SSIM | PSNR-Y | MAE | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next(iter(validation.values()), None)
    if first is not None:
        b = first["bicubic"]
        lines.append(
            f"| bicubic | {first['n']} | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['psnr_y']:.2f} | "
            f"{b['mae']:.4f} | - |"
        )
    for candidate, row in validation.items():
        m = row["model"]
        lines.append(
            f"| {candidate_label(candidate)} | {row['n']} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
            f"{m['psnr_y']:.2f} | {m['mae']:.4f} | {m['seconds_per_image']:.2f} |"
        )
    lines += bicubic_difference_lines([(candidate_label(c), row) for c, row in validation.items()])
    try:
        scale = chosen_scale(validation)
    except StudyError as error:
        return [*lines, "", f"No choice yet: {error}."]
    return [
        *lines,
        "",
        f"**Chosen: residual scale s = {scale:g}**, the residual candidate with the highest mean "
        "validation PSNR (one training run per candidate, so the choice is a point choice; the "
        "test below does not depend on it being the best scale, only on it being fixed before "
        "the test files were read).",
    ]


def test_lines(
    test: dict[int, dict[str, Any]], others: dict[str, dict[int, dict[str, Any]]]
) -> tuple[list[str], dict[str, Any]]:
    """The test table per seed, and the differences over seeds (with their summary)."""
    label = "SR3, residual target"
    summary: dict[str, Any] = {}
    lines = [
        "| seed | test images | PSNR | SSIM | PSNR-Y | MAE | bicubic PSNR | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, row in sorted(test.items()):
        m = row["model"]
        lines.append(
            f"| {seed} | {row['n']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['psnr_y']:.2f} | "
            f"{m['mae']:.4f} | {row['bicubic']['psnr']:.2f} | {m['seconds_per_image']:.2f} |"
        )
    lines += ["", "Differences (PSNR, dB), per seed and over the seeds:", ""]
    pairs = [
        (label, "bicubic", test, None),
        (label, REPLICATES["sr3"].label, test, others["sr3"]),
        (REPLICATES["regression"].label, label, others["regression"], test),
    ]
    for name_a, name_b, a, b in pairs:
        if b is not None:  # the seeds measured on both sides
            common = sorted(set(a) & set(b))
            a, b = {s: a[s] for s in common}, {s: b[s] for s in common}
        difference = seed_difference(a, b) if a else None
        summary[f"{name_a} - {name_b}"] = difference
        lines.append(difference_line(name_a, name_b, difference))
    return lines, summary


def write_report(out: Path) -> dict[str, Any]:
    """``out/README.md`` and ``out/results.json`` from the measured rows; returns the latter."""
    validation, test = load_validation(out), load_test(out)
    seeds = load_rows(REPO / "reports" / "seeds")
    records = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    lines = [
        "# SR3 with a residual target (SRDiff) on AID x4",
        "",
        "Commands (each run is saved as it is measured, so they resume):",
        "",
        *[f"    {line}" for line in textwrap.dedent(__doc__.split("::")[1]).strip().splitlines()],
        "",
        f"Machine: {records[0]['machine'] if records else '?'}. No GPU was lent: every model is a "
        "1.68 M-parameter UNet trained for 1600 steps of batch 8 (the budget of SR3 in "
        "`reports/sr`), so these are early-training numbers, not converged models.",
        "",
        "What differs from SR3: the diffused target is x_0 = (HR - bicubic) / s and the sample is "
        "bicubic + s x_0 (SRDiff, Li et al. 2022, Sec. 3.2); sampling clips each step's x_0 "
        "estimate to [-1, 1], so the residual stays within +-s. Everything else (net, schedule, "
        "DDIM-20, crops, budget) is the SR3 config `configs/sr/aid_sr3_x4.yaml`.",
        "",
        "## 1. Validation: the target and the residual scale",
        "",
        "Trained on `data.split: fit` (AID's training files without the `val` part of the stable "
        "hash split), scored on 32 `val` scenes (144x144 centre crops, DDIM-20, seed 0). The test "
        "files are not read in this phase.",
        "",
        *validation_lines(validation),
        "",
        "## 2. Test: the chosen setting over three training seeds",
        "",
        f"`{RESIDUAL_CONFIG}` trained on `data.split: train` with seeds 0, 1 and 2, scored on the "
        "32 test scenes of `reports/sr` (checked image by image). Each seed's difference is the "
        "mean over the same images; the interval over seeds is a Student-t 95% interval (2 "
        "degrees of freedom), the training variation on these images. SR3 (image target) and the "
        "regression UNet have the same three seeds (`reports/sr`, `reports/seeds`); seed s is "
        "paired with seed s. A difference is read only where its interval excludes 0.",
        "",
    ]
    tested, differences = test_lines(test, seeds)
    lines += tested if test else ["Not measured yet: run --phase test."]
    lines += [
        "",
        "## Training",
        "",
        "| run | overrides | steps x batch | train minutes | final loss |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        run = record["run"]
        lines.append(
            f"| {record['name']} | `{' '.join(record['overrides'])}` | {run['steps']} x "
            f"{run['batch_size']} | {run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    lines += ["", "Training logs and exact configs: `training_logs/`.", ""]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "README.md", "\n".join(lines))
    summary = {
        "validation": {c: row["model"]["psnr"] for c, row in validation.items()},
        "chosen_scale": chosen_scale(validation) if len(validation) == len(CANDIDATES) else None,
        "test_psnr": {s: row["model"]["psnr"] for s, row in sorted(test.items())},
        "differences": differences if test else {},
        "runs": [
            {k: r[k] for k in ("name", "overrides", "run", "machine", "provenance")}
            for r in records
        ],
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ---- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/sr_residual"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/sr_residual/runs"))
    parser.add_argument("--phase", choices=["val", "test"], help="what to train and measure")
    parser.add_argument(
        "--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES), help="--phase val"
    )
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=list(SEEDS),
        choices=list(SEEDS),
        help="--phase test",
    )
    parser.add_argument("--report-only", action="store_true", help="render README.md only")
    args = parser.parse_args(argv)
    if args.phase is None and not args.report_only:
        parser.error("give --phase val, --phase test or --report-only")
    try:
        if args.phase == "val":
            for candidate in args.only:
                overrides = validation_overrides(candidate, args.runs_root)
                measure(f"val_{candidate}", BASE_CONFIG, overrides, args.out)
        elif args.phase == "test":
            scale = chosen_scale(load_validation(args.out))
            check_residual_config(scale)
            for seed in args.seeds:
                overrides = test_overrides(seed, args.runs_root)
                measure(f"test_seed{seed}", RESIDUAL_CONFIG, overrides, args.out, check_crops=True)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(args.out)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
