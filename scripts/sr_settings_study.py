"""What SR3 and the implicit model diffuse and predict, chosen on validation: reports/sr_settings.

SR3 and the implicit (IDM-style) model as ``reports/sr`` trains them (1.68 M / 2.64 M parameters,
1600 / 1000 steps of batch 8 on one CPU thread, the HR image as target, eps prediction) are 6.8
and 8.3 dB below bicubic on AID x4. Two settings could change that at the same budgets: the
target, the HR image or its residual on the bicubic image (``sr.target: residual``; SRDiff, Li et
al. 2022, Sec. 3.2), and what the net predicts, the noise (Ho et al. 2020) or x_0
(``diffusion.prediction: x0``). This study chooses them on validation and tests the choice:

1. ``--phase val``: the SR3 candidates of :data:`CANDIDATES` (target image or residual, residual
   scale, eps or x_0 prediction), trained on ``data.split: fit`` (the AID training files without
   their ``val`` part) and scored on the 32 ``val`` scenes (144x144 centre crops, DDIM-20). The
   candidate with the highest mean validation PSNR is the choice, for both models (the implicit
   model has no sweep of its own); the test files are not read.
2. ``--phase test``: each model's config of :data:`TEST_MODELS` (which must hold that choice)
   trained on ``data.split: train`` with seeds 0, 1 and 2, scored on the 32 test scenes of
   ``reports/sr`` (checked image by image; the implicit model at x4, and at x2, x3, x6, x8 for
   seed 0). Each difference (to bicubic, to the same model as ``reports/sr`` trains it, to the
   regression UNet; their seeds come from ``reports/sr`` and ``reports/seeds``) is a paired mean
   over the images per seed, with a Student-t 95% interval over the 3 seeds.

Each measured run is written to ``OUT/rows/NAME.json`` as soon as it is made, so two processes can
share the work and an interrupted study resumes.

Example (the committed report: two processes of one thread each per phase, then the render)::

    python scripts/sr_settings_study.py --phase val --only image residual_0.25 image_x0 &
    python scripts/sr_settings_study.py --phase val --only residual_0.5 residual_0.5_x0
    python scripts/sr_settings_study.py --phase test --models sr3 &
    python scripts/sr_settings_study.py --phase test --models implicit
    python scripts/sr_settings_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
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
    difference_line,
    load_rows,
    seed_difference,
    seed_zero_row,
)
from scripts.sr_intervals import (  # noqa: E402
    bicubic_difference_lines,
    method_sentence,
    paired_difference,
    per_image_differences,
)
from scripts.study_common import machine_description, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402
from terradiff.report_format import format_interval  # noqa: E402

BASE_CONFIG = "configs/sr/aid_sr3_x4.yaml"
#: Validation candidates: name -> config overrides (on top of BASE_CONFIG and ``data.split=fit``).
#: Each names its target, its prediction (Ho et al.'s eps, or x_0) and, for a residual, its scale.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "image": ("sr.target=image", "diffusion.prediction=eps"),
    "residual_0.5": ("sr.target=residual", "sr.residual_scale=0.5", "diffusion.prediction=eps"),
    "residual_0.25": ("sr.target=residual", "sr.residual_scale=0.25", "diffusion.prediction=eps"),
    "image_x0": ("sr.target=image", "diffusion.prediction=x0"),
    "residual_0.5_x0": ("sr.target=residual", "sr.residual_scale=0.5", "diffusion.prediction=x0"),
}
SEEDS = (0, 1, 2)
EVALUATION = {**AID_EVALUATION, "sampler": "ddim", "steps": 20}


@dataclass(frozen=True)
class TestedModel:
    """A model of the test phase: its config and its counterpart as ``reports/sr`` trains it."""

    key: str
    label: str
    config: str
    image_twin: str  # the reports/sr model in scripts/seed_study.py's REPLICATES
    extra_scales: tuple[int, ...] = ()  # scales measured for seed 0 besides x4 (reports/sr rows)

    def evaluation(self, scale: int = 4) -> dict[str, Any]:
        """``evaluate_super_resolution`` keywords (an any-scale model is given its scale)."""
        return {**EVALUATION, "scale": scale} if self.extra_scales else dict(EVALUATION)

    def row_name(self, seed: int, scale: int = 4) -> str:
        """``test_<key>_seed<s>`` (x4), ``test_<key>_seed<s>_x<scale>`` (other scales)."""
        return f"test_{self.key}_seed{seed}" + ("" if scale == 4 else f"_x{scale}")


TEST_MODELS: dict[str, TestedModel] = {
    m.key: m
    for m in (
        TestedModel("sr3", "SR3, validation choice", "configs/sr/aid_sr3_x0_x4.yaml", "sr3"),
        TestedModel(
            "implicit",
            "implicit, validation choice",
            "configs/sr/aid_implicit_x0.yaml",
            "implicit",
            extra_scales=(2, 3, 6, 8),
        ),
    )
}


class StudyError(Exception):
    """A request the study cannot carry out (the message says what to do); exit code 2."""


# ---- measuring -----------------------------------------------------------------------------------


def row_path(out: Path, name: str) -> Path:
    """The file of one measured row (``val_<candidate>`` or :meth:`TestedModel.row_name`)."""
    return out / "rows" / f"{name}.json"


def measure(
    name: str,
    config: str,
    overrides: list[str],
    out: Path,
    evaluation: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> None:
    """Train (or resume) one run, score it on its held-out split, save its row.

    ``evaluation``: :func:`terradiff.sr_evaluate.evaluate_super_resolution` keywords (default
    :data:`EVALUATION`); ``reference``: a committed row whose images these must be;
    ``run_name``: the training run's name when several rows score one run (default ``name``).
    """
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(out, name)
    if path.is_file():
        return
    print(f"training {name} ...", flush=True)
    started = time.time()
    run = train(run_name or name, Path(config), overrides)
    print(f"measuring {name} ...", flush=True)
    row = evaluate_super_resolution(run["run_dir"], seed=0, **(evaluation or EVALUATION))
    if reference is not None:
        differs = per_image_differences(row, reference)
        if differs:
            raise RuntimeError(f"{name}: not the test crops of reports/sr ({differs})")
    logs = out / "training_logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(run["run_dir"]) / "metrics.jsonl", logs / f"{run['name']}.jsonl")
    shutil.copyfile(Path(run["run_dir"]) / "config.json", logs / f"{run['name']}.config.json")
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


def twin_row(model: TestedModel, scale: int = 4) -> dict[str, Any]:
    """The committed seed-0 row of ``model``'s ``reports/sr`` counterpart at ``scale``."""
    twin = REPLICATES[model.image_twin]
    if scale == 4:
        return seed_zero_row(twin)
    return json.loads((REPO / twin.source[0]).read_text())["rows"][f"{model.key}_x{scale}"]


def measure_test(model: TestedModel, seed: int, out: Path, runs_root: Path) -> None:
    """One test seed of ``model``: x4 (and, for seed 0, its extra scales) on reports/sr's crops."""
    overrides = tested_overrides(model, seed, runs_root)
    scales = (4, *model.extra_scales) if seed == 0 else (4,)
    for scale in scales:
        name, run_name = model.row_name(seed, scale), model.row_name(seed)
        reference = twin_row(model, scale)
        measure(name, model.config, overrides, out, model.evaluation(scale), reference, run_name)


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


def chosen_candidate(validation: dict[str, dict[str, Any]]) -> str:
    """The candidate with the highest mean validation PSNR.

    Raises:
        StudyError: a candidate has not been measured yet.
    """
    missing = [c for c in CANDIDATES if c not in validation]
    if missing:
        raise StudyError(
            f"validation rows missing for {missing}: run --phase val --only {' '.join(missing)}"
        )
    return max(CANDIDATES, key=lambda c: validation[c]["model"]["psnr"])


def check_test_config(candidate: str, config_path: Path) -> None:
    """A test config must hold the validation choice (so the test runs what was chosen).

    Raises:
        StudyError: it does not (the message gives the key and the value to write).
    """
    from terradiff.config_loading import load_config

    config = load_config(config_path)
    for override in CANDIDATES[candidate]:
        key, wanted = override.split("=")
        section, name = key.split(".")
        found = getattr(getattr(config, section), name, None)
        same = str(found) == wanted or (isinstance(found, float) and found == float(wanted))
        if not same:
            raise StudyError(
                f"{config_path}: validation chose {candidate} ({' '.join(CANDIDATES[candidate])})"
                f" but {key} is {found!r} there: set '{key}: {wanted}', then run --phase test"
            )


def tested_overrides(model: TestedModel, seed: int, runs_root: Path) -> list[str]:
    """A test run: the model's config with ``seed``, in its own folder."""
    return [f"seed={seed}", f"output_dir={runs_root / 'test' / model.key / f'seed{seed}'}"]


def load_test(out: Path, model: TestedModel, scale: int = 4) -> dict[int, dict[str, Any]]:
    """The measured test rows of ``model`` at ``scale``, ``{seed: row}``."""
    found = {}
    for seed in SEEDS:
        path = row_path(out, model.row_name(seed, scale))
        if path.is_file():
            found[seed] = json.loads(path.read_text())["row"]
    return found


# ---- report --------------------------------------------------------------------------------------


def candidate_label(candidate: str) -> str:
    """``SR3, image, eps`` / ``SR3, residual s = 0.5, x0`` from the candidate's overrides."""
    settings = dict(o.split("=") for o in CANDIDATES[candidate])
    target = settings["sr.target"]
    if target == "residual":
        target += f" s = {settings['sr.residual_scale']}"
    return f"SR3, {target}, {settings['diffusion.prediction']}"


def validation_lines(validation: dict[str, dict[str, Any]]) -> list[str]:
    """The validation table, each candidate's paired PSNR - bicubic and the choice."""
    if not validation:
        return ["Not measured yet: run --phase val."]
    lines = [
        "| candidate | val images | PSNR | SSIM | PSNR-Y | MAE | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next(iter(validation.values()))
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
        candidate = chosen_candidate(validation)
    except StudyError as error:
        return [*lines, "", f"No choice yet: {error}."]
    return [
        *lines,
        "",
        f"**Chosen: {candidate_label(candidate)}** (`{' '.join(CANDIDATES[candidate])}`), the "
        "candidate with the highest mean validation PSNR (one training run per candidate, so "
        "the choice is a point choice; the test below does not depend on it being the best "
        "setting, only on it being fixed before the test files were read).",
    ]


def seed_table(rows: dict[int, dict[str, Any]]) -> list[str]:
    """One line per seed: PSNR, SSIM, PSNR-Y, MAE, bicubic PSNR, seconds per image."""
    lines = [
        "| seed | test images | PSNR | SSIM | PSNR-Y | MAE | bicubic PSNR | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, row in sorted(rows.items()):
        m = row["model"]
        lines.append(
            f"| {seed} | {row['n']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['psnr_y']:.2f} | "
            f"{m['mae']:.4f} | {row['bicubic']['psnr']:.2f} | {m['seconds_per_image']:.2f} |"
        )
    return lines


def tested_model_lines(
    model: TestedModel, out: Path, others: dict[str, dict[int, dict[str, Any]]]
) -> tuple[list[str], dict[str, Any]]:
    """``model``'s x4 table per seed, its differences over seeds and its other scales (seed 0),
    with the summary of the differences."""
    test = load_test(out, model)
    if not test:
        return ["Not measured yet: run --phase test."], {}
    twin = REPLICATES[model.image_twin]
    summary: dict[str, Any] = {}
    lines = [*seed_table(test), "", "Differences at x4 (PSNR, dB), per seed and over seeds:", ""]
    pairs = [
        (model.label, "bicubic", test, None),
        (model.label, twin.label, test, others[model.image_twin]),
        (REPLICATES["regression"].label, model.label, others["regression"], test),
    ]
    for name_a, name_b, a, b in pairs:
        if b is not None:  # the seeds measured on both sides
            common = sorted(set(a) & set(b))
            a, b = {s: a[s] for s in common}, {s: b[s] for s in common}
        difference = seed_difference(a, b) if a else None
        summary[f"{name_a} - {name_b}"] = difference
        lines.append(difference_line(name_a, name_b, difference))
    scaled = {s: load_test(out, model, s).get(0) for s in model.extra_scales}
    if any(scaled.values()):
        lines += [
            "",
            "Other scales, seed 0 (one model for every scale; x6 and x8 are outside the training "
            f"range x1.5-x4). Paired intervals over the images: {method_sentence()}.",
            "",
            "| scale | bicubic PSNR | reports/sr PSNR | chosen PSNR | chosen - bicubic | "
            "chosen - reports/sr |",
            "|---|---|---|---|---|---|",
        ]
        for scale, row in scaled.items():
            if row is None:
                continue
            image_row = twin_row(model, scale)
            to_bicubic = paired_difference(row)
            to_image = paired_difference(row, image_row, reference_side="model")
            summary[f"x{scale} seed 0"] = {"minus_bicubic": to_bicubic, "minus_image": to_image}
            lines.append(
                f"| x{scale} | {row['bicubic']['psnr']:.2f} | {image_row['model']['psnr']:.2f} | "
                f"{row['model']['psnr']:.2f} | {format_interval(to_bicubic, 2, signed=True)} | "
                f"{format_interval(to_image, 2, signed=True)} |"
            )
    return lines, summary


def write_report(out: Path) -> dict[str, Any]:
    """``out/README.md`` and ``out/results.json`` from the measured rows; returns the latter."""
    validation = load_validation(out)
    seeds = load_rows(REPO / "reports" / "seeds")
    records = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    lines = [
        "# SR3 and the implicit model: target and prediction chosen on validation (AID x4)",
        "",
        "Commands (each run is saved as it is measured, so they resume):",
        "",
        *[f"    {line}" for line in textwrap.dedent(__doc__.split("::")[1]).strip().splitlines()],
        "",
        f"Machine: {records[0]['machine'] if records else '?'}. No GPU was lent: each model has "
        "the size and budget of its row in `reports/sr` (SR3: 1.68 M parameters, 1600 steps of "
        "batch 8; implicit: 2.64 M, 1000 steps), so these are early-training numbers, not "
        "converged models.",
        "",
        "The settings: `sr.target: residual` diffuses x_0 = (HR - bicubic) / s and returns "
        "bicubic + s x_0 (SRDiff, Li et al. 2022, Sec. 3.2; sampling clips each step's x_0 "
        "estimate to [-1, 1], so the residual stays within +-s); `diffusion.prediction: x0` has "
        "the net predict x_0 instead of the noise. Everything else (nets, schedule, DDIM-20, "
        "crops, budgets) is the config of `reports/sr`.",
        "",
        "## 1. Validation: target, residual scale and prediction (SR3)",
        "",
        "Trained on `data.split: fit` (AID's training files without the `val` part of the stable "
        "hash split), scored on 32 `val` scenes (144x144 centre crops, DDIM-20, seed 0). The test "
        "files are not read in this phase. The implicit model takes the setting chosen here.",
        "",
        *validation_lines(validation),
        "",
        "## 2. Test: the chosen setting over three training seeds",
        "",
        "Each model's config (the choice) trained on `data.split: train` with seeds 0, 1 and 2, "
        "scored on the "
        "32 test scenes of `reports/sr` (checked image by image). Each seed's difference is the "
        "mean over the same images; the interval over seeds is a Student-t 95% interval (2 "
        "degrees of freedom), the training variation on these images. The models as "
        "`reports/sr` trains them and the regression UNet have the same three seeds "
        "(`reports/sr`, `reports/seeds`); seed s is paired with seed s. A difference is read "
        "only where its interval excludes 0.",
        "",
    ]
    differences = {}
    for model in TEST_MODELS.values():
        tested, differences[model.key] = tested_model_lines(model, out, seeds)
        lines += [f"### {model.label} (`{model.config}`)", "", *tested, ""]
    lines += [
        "## Training",
        "",
        "| run | overrides | steps x batch | train minutes | final loss |",
        "|---|---|---|---|---|",
    ]
    for record in (r for r in records if r["run"]["name"] == r["name"]):  # each run once
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
        "chosen": chosen_candidate(validation) if len(validation) == len(CANDIDATES) else None,
        "test_psnr": {
            key: {s: row["model"]["psnr"] for s, row in sorted(load_test(out, m).items())}
            for key, m in TEST_MODELS.items()
        },
        "differences": differences,
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
    parser.add_argument("--out", type=Path, default=Path("reports/sr_settings"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/sr_settings/runs"))
    parser.add_argument("--phase", choices=["val", "test"], help="what to train and measure")
    parser.add_argument(
        "--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES), help="--phase val"
    )
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(TEST_MODELS),
        choices=list(TEST_MODELS),
        help="--phase test",
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
            candidate = chosen_candidate(load_validation(args.out))
            for key in args.models:
                check_test_config(candidate, REPO / TEST_MODELS[key].config)
            for seed in args.seeds:
                for key in args.models:
                    measure_test(TEST_MODELS[key], seed, args.out, args.runs_root)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(args.out)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
