"""Issue 17, temporal generation on held-out *dates*: "before -> after" for months never trained on.

The companion of ``scripts/temporal_study.py`` (held-out region; same chips, models, budget and
scoring), with the split the issue names first: whole dates held out (``temporal.holdout:
date`` with a month list per chip). The region study's first date design held out the *last*
months of every chip, so the held-out months were never a training target anywhere and the month
embedding had never seen them; here the held-out months are interleaved so that every test month
is a training target at another chip (a month embedding can learn it) while no test image is ever
trained on, as a target or a source (:data:`TEST_DATES`).

Data: the three BioMassters chips (10 Sentinel-2 L2A bands, 256x256 px, monthly, cloudy months
skipped). Usable months: 000aa810 06/07/08/10, 0060c0a5 00-02 and 04-10, 288afc34 00-11.

Split (fixed before any training; labels are BioMassters ``MM (Mon)``, MM 00 = September):

- test: 000aa810 ``10 (Jul)``; 0060c0a5 ``05 (Feb)``, ``09 (Jun)``; 288afc34 ``04 (Jan)``,
  ``08 (May)``. Every forward pair (source before target) whose target is a test month and whose
  source is a training month is scored on the fixed grid of 32 px windows of the whole chip.
- validation: 000aa810 ``08 (May)``; 0060c0a5 ``07 (Apr)``; 288afc34 ``06 (Mar)``. Validation
  models train on a copy of the data without the test months' files (so the test months are not
  even sources) and are scored on the validation months.

Choices made on validation (before any test score): ``temporal.target`` (after image or change)
for the regression models, and the concat model's target. The diffusion prediction is fixed to
x0 a priori: the region study's validation gave eps -23.5/-24.1 dB, v -16.0/-17.2 dB and x0
-0.3/-0.4 dB against persistence at this budget (eps and v sampled noise). That strip holds
pixels of this design's test months, which is the one way the test months informed a choice
here; the gap it shows is about the sampler at this budget, not about those pixels.

Methods (same configs as the region study): persistence, regression UNet, concat (SR3-style,
DDIM-20), ControlNet on a frozen month generator trained on copies of the non-test months only
(DDIM-20), and the mean of ``--ensemble`` concat samples. Intervals: per run a 95% window
bootstrap of model - persistence (optimistic: windows of a chip are correlated); over seeds,
mean +- std; the target (>= 1 dB on the visible bands) is met only when mean - std >= 1 dB.

Run (resumes, saving each measurement as it is made)::

    python scripts/temporal_dates_study.py --work outputs/temporal_dates \\
        --out reports/temporal_dates --steps 2000 --generator-steps 2000 --max-windows 640
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.study_common import open_results, record_command, report_header, train  # noqa: E402
from scripts.temporal_study import (  # noqa: E402
    KEPT,
    METHODS,
    breakdown,
    check_reusable,
    common_overrides,
    method_runs,
    row_labels,
    run_key,
    score_lines,
    train_month_generator,
    usable_series,
    write_plot,
)

TEST_DATES: dict[str, list[str]] = {
    "000aa810": ["10 (Jul)"],
    "0060c0a5": ["05 (Feb)", "09 (Jun)"],
    "288afc34": ["04 (Jan)", "08 (May)"],
}
"""The held-out test months per chip; each is a training target at another chip."""
VALIDATION_DATES: dict[str, list[str]] = {
    "000aa810": ["08 (May)"],
    "0060c0a5": ["07 (Apr)"],
    "288afc34": ["06 (Mar)"],
}
"""The validation months per chip (validation runs never see the test months)."""
PREDICTION = "x0"
"""The diffusion networks' prediction, fixed a priori (see the module docstring)."""


def copy_months(series: list[Any], skip: dict[str, list[str]], out: Path) -> tuple[Path, Path]:
    """Copies of every usable month of every chip except the ``skip`` labels, under
    ``out/<chip>/``, and a sidecar CSV of their calendar months (the month generator's
    metadata). Returns ``(folder, sidecar)``; existing copies are kept."""
    from terradiff.io import atomic_path, atomic_write_text

    rows = ["path,month"]
    for s in series:
        for label, image in zip(s.labels, s.images, strict=True):
            if label in skip.get(s.place, []):
                continue
            target = out / s.place / image.path.name
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp:
                    shutil.copyfile(image.path, tmp)
            rows.append(f"{target.resolve()},{image.date['month']}")
    sidecar = out / "months.csv"
    atomic_write_text(sidecar, "\n".join(rows) + "\n")
    return out, sidecar


def date_overrides(held_out: dict[str, list[str]]) -> list[str]:
    """The overrides of the date split holding out ``held_out`` (JSON is YAML)."""
    return ["temporal.holdout=date", f"temporal.test_dates={json.dumps(held_out)}"]


def validation_run(
    args: argparse.Namespace, root: Path, method: str, target: str
) -> dict[str, Any]:
    """Train ``method`` predicting ``target`` on ``root`` (the data without the test months)
    with the validation months held out, and score it on them."""
    from terradiff.temporal_evaluate import evaluate_temporal

    name = f"{method}-{target}"
    run_dir = Path(args.work) / "validation" / name
    overrides = common_overrides(args, root, run_dir, args.steps)
    overrides += [*date_overrides(VALIDATION_DATES), f"temporal.target={target}"]
    if method == "concat":
        overrides.append(f"diffusion.prediction={PREDICTION}")
    check_reusable(run_dir, "date", target, PREDICTION if method == "concat" else None)
    training = train(f"validation/{name}", REPO / METHODS[method][1], overrides)
    evaluation = evaluate_temporal(
        training["run_dir"], max_windows=args.max_windows, seed=0, progress=False
    )
    gain = evaluation["difference"]["psnr_visible"]["mean"]  # mean over the scored windows
    return {"training": training, "gain": gain, "windows": evaluation["windows"]}


def choose_targets(
    args: argparse.Namespace, root: Path, results: dict, save: Any
) -> tuple[str, str]:
    """The regression and concat models' ``temporal.target`` (after or change), each chosen on
    the validation months with models trained on ``root`` (the data without the test months);
    saved in ``results["validation"]`` in the layout the region study's report reads
    (``chosen``; ``prediction.chosen_target``/``chosen``)."""
    validation = results.setdefault("validation", {})
    record = validation.setdefault("prediction", {"runs": {}})
    for method, runs in (
        ("regression", validation.setdefault("runs", {})),
        ("concat", record["runs"]),
    ):
        for target in ("after", "change"):
            key = target if method == "regression" else f"{target}/{PREDICTION}"
            if key not in runs:
                runs[key] = validation_run(args, root, method, target)
                save()
                print(f"validation {method} {key}: {runs[key]['gain']:+.2f} dB", flush=True)
    validation["chosen"] = max(("after", "change"), key=lambda k: validation["runs"][k]["gain"])
    best = max(record["runs"], key=lambda k: record["runs"][k]["gain"])
    record["chosen_target"], record["chosen"] = best.split("/")
    save()
    return validation["chosen"], record["chosen_target"]


def train_generator(
    args: argparse.Namespace, folder: Path, sidecar: Path, results: dict, save: Any
) -> Path:
    """The ControlNet's month generator, trained on ``folder``: the copies of the non-test
    months (their calendar months in ``sidecar``)."""
    generator = Path(args.work) / f"month_generator-{PREDICTION}"
    results["generator_files"] = sorted(p.name for p in folder.glob("*/*.tif"))
    results["generator"] = train_month_generator(args, folder, sidecar, generator, PREDICTION)
    save()
    return generator


def test_run(
    args: argparse.Namespace, method: str, seed: int, target: str, generator: Path | None
) -> dict[str, Any]:
    """Train ``method`` (seed ``seed``) on every non-test month and score it on the test months;
    the ControlNet steers ``generator``."""
    root = Path(args.shared) / "biomassters"
    folder = "controlnet" if method == "controlnet" else f"{method}-{target}"
    run_dir = Path(args.work) / folder / f"seed{seed}"
    overrides = common_overrides(args, root, run_dir, args.steps)
    overrides += [f"seed={seed}", *date_overrides(TEST_DATES)]
    if method == "controlnet":
        overrides.append(f"temporal.generator={generator}")
    else:
        overrides.append(f"temporal.target={target}")
    predicts = None if method == "regression" else PREDICTION
    if method == "concat":
        overrides.append(f"diffusion.prediction={PREDICTION}")
    check_reusable(run_dir, "date", None if method == "controlnet" else target, predicts)
    training = train(run_key(method, seed), REPO / METHODS[method][1], overrides)
    return {"target": target, "training": training} | ({"prediction": predicts} if predicts else {})


def score(args: argparse.Namespace, run: dict[str, Any], seed: int, members: int | None) -> dict:
    """The test scores of a trained run (``members`` samples averaged per window)."""
    from terradiff.temporal_evaluate import evaluate_temporal

    evaluation = evaluate_temporal(
        run["training"]["run_dir"],
        max_windows=args.max_windows,
        seed=seed,
        members=members or 1,
        progress=False,
    )
    return {
        "evaluation": {k: evaluation[k] for k in KEPT},
        "breakdown": breakdown(evaluation["per_window"]),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default="outputs/temporal_dates")
    parser.add_argument("--out", default="reports/temporal_dates")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model")
    parser.add_argument("--generator-steps", type=int, default=2000)
    parser.add_argument("--max-windows", type=int, help="score at most this many windows")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=4, help="samples in the concat_mean rows")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--redo", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    results, save = open_results(
        out, redo=args.redo, data_paths=[Path(args.shared) / "biomassters"]
    )
    if not args.report_only:
        record_command(results, argv)
        results["settings"] = {
            "steps": args.steps,
            "generator_steps": args.generator_steps,
            "holdout": "date",
            "test_dates": TEST_DATES,
            "validation_dates": VALIDATION_DATES,
            "prediction": PREDICTION,
            "max_windows": args.max_windows,
            "seeds": args.seeds,
            "ensemble": args.ensemble,
        }
        series = usable_series(Path(args.shared) / "biomassters")
        folder, sidecar = copy_months(series, TEST_DATES, Path(args.work) / "without_test_months")
        regression_target, concat_target = choose_targets(args, folder, results, save)
        print(f"validation chose regression {regression_target}, concat {concat_target}")
        generator = None
        if "controlnet" in args.methods:
            generator = train_generator(args, folder, sidecar, results, save)
        runs = results.setdefault("runs", {})
        targets = {"regression": regression_target, "concat": concat_target}
        for seed in range(args.seeds):
            for method in args.methods:
                key, target = run_key(method, seed), targets.get(method, "after")
                if runs.get(key, {}).get("target") != target:
                    run = test_run(args, method, seed, target, generator)
                    runs[key] = run | score(args, run, seed, None)
                    save()
                gain = runs[key]["evaluation"]["difference"]["psnr_visible"]["mean"]
                print(f"{key}: visible PSNR gain {gain:+.2f} dB", flush=True)
                mean_key = run_key("concat_mean", seed)
                if (
                    method == "concat"
                    and args.ensemble > 1
                    and (runs.get(mean_key, {}).get("training") != runs[key]["training"])
                ):
                    base = runs[key]
                    runs[mean_key] = {k: base[k] for k in ("target", "prediction", "training")}
                    runs[mean_key] |= {"members": args.ensemble} | score(
                        args, base, seed, args.ensemble
                    )
                    save()
    write_report(results, out)
    print(f"wrote {out / 'README.md'}")


def write_report(results: dict[str, Any], out: Path) -> None:
    """``out/README.md`` and ``out/psnr_by_source.png`` from ``results``."""
    from terradiff.io import atomic_write_text

    settings = results.get("settings", {})
    generator = results.get("generator", {})
    validation = results.get("validation", {})
    lines = [
        *report_header(
            "Before -> after for held-out months of the BioMassters chips vs persistence "
            "(issue 17)",
            results,
        ),
        "Data: the 3 BioMassters chips of `../shared/data/biomassters` (10 Sentinel-2 L2A bands, "
        "256x256 px, monthly; cloudy months skipped; MM 00 is September). Held-out test months "
        f"per chip: {months_text(settings.get('test_dates', TEST_DATES))}. Every test month is a "
        "training target at another chip, but no model (nor the ControlNet's generator) ever "
        "reads a test image, as a target or as a source. Scored: every forward pair whose target "
        "is a test month and whose source a training month, on the 32 px windows of the whole "
        "chip (the ground is the training ground, at other dates). The companion study "
        "`reports/temporal/` holds out a region instead.",
        "",
        "Validation (before any test score): models trained on the data without the test "
        "months, with validation months "
        f"{months_text(settings.get('validation_dates', VALIDATION_DATES))} held out and scored "
        f"on them. Regression target: {choice_text(validation.get('runs', {}))} -> "
        f"**{validation.get('chosen', 'pending')}**. Concat target (x0 prediction): "
        f"{choice_text(validation.get('prediction', {}).get('runs', {}))} -> "
        f"**{validation.get('prediction', {}).get('chosen_target', 'pending')}**. The diffusion "
        "prediction is x0, fixed from the region study's validation (eps and v sampled noise "
        "there, 16-24 dB below persistence; that strip holds pixels of these test months).",
        "",
        f"Training: {settings.get('steps')} steps of batch 8 (32 px crops) per model and seed; "
        f"the month generator {generator.get('steps')} steps ({generator.get('train_minutes')} "
        f"min) on copies of the {len(results.get('generator_files', []))} non-test months, shared "
        "by the ControlNet seeds.",
        "",
        *score_lines(results),
        "",
        *month_lines(results),
    ]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["", reading.read_text().strip()]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "README.md", "\n".join(lines).rstrip() + "\n")
    write_plot(results, out, held_out="Held-out months")


def month_gains(results: dict[str, Any], method: str) -> dict[str, list[float]]:
    """Visible-band PSNR gain over persistence per held-out chip-month (``"chip MM (Mon)"``),
    one value per seed of ``method`` (the windows of that month averaged)."""
    gains: dict[str, list[float]] = {}
    for run in method_runs(results, method):
        for label, v in run["breakdown"]["target_date"].items():
            gains.setdefault(label, []).append(v["model"] - v["persistence"])
    return gains


def month_lines(results: dict[str, Any]) -> list[str]:
    """The gain per held-out chip-month (mean over seeds) and their equal-weight mean: the
    window-weighted table above weights a month by its number of source months."""
    labels = row_labels(results.get("settings", {}).get("ensemble"))
    per_method = {m: month_gains(results, m) for m in labels}
    per_method = {m: g for m, g in per_method.items() if g}
    if not per_method:
        return []
    months = sorted({label for g in per_method.values() for label in g})
    lines = [
        "Gain over persistence per held-out chip-month (visible-band PSNR, dB, mean over seeds); "
        "the table above weights each month by its windows (a month with more earlier usable "
        "months has more source months, so more windows), this one weights the chip-months "
        "equally:",
        "",
        "| method | " + " | ".join(months) + " | equal-weight mean | range |",
        "|---|" + "---|" * (len(months) + 2),
    ]
    for method, gains in per_method.items():
        means = [float(np.mean(gains[m])) if m in gains else float("nan") for m in months]
        cells = " | ".join(f"{v:+.2f}" for v in means)
        lines.append(
            f"| {method} | {cells} | {np.nanmean(means):+.2f} | "
            f"{np.nanmin(means):+.2f} to {np.nanmax(means):+.2f} |"
        )
    return lines


def months_text(dates: dict[str, list[str]]) -> str:
    """``chip: month, month; chip: month`` for the report."""
    return "; ".join(f"{chip} {', '.join(labels)}" for chip, labels in dates.items())


def choice_text(runs: dict[str, Any]) -> str:
    """The validation gains of the candidates, for the report."""
    if not runs:
        return "pending"
    return ", ".join(f"{k} {v['gain']:+.2f} dB ({v['windows']} windows)" for k, v in runs.items())


if __name__ == "__main__":
    main()
