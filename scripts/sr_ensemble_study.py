"""Does the mean of N diffusion draws beat bicubic? SR3 and implicit ensembles: reports/sr_ensemble.

One DDIM-20 draw of SR3 or of the implicit model with x_0 prediction (the validation choice of
``reports/sr_settings``) scored 1.35 and 0.86 dB below bicubic there on the 32 AID x4 test scenes,
at their CPU budgets (1600 / 1000 steps of batch 8). A draw is a sample of ``p(HR | LR)``: its noise
costs PSNR. The mean of N draws estimates the posterior mean ``E[HR | LR]``, the estimate with the
least expected squared error (see :mod:`terradiff.sr_evaluate`). This study measures how much of the
gap that closes, with the ensemble's calibration:

* the models: both configs of ``scripts/sr_settings_study.py``'s test phase, seeds 0, 1, 2, in its
  run folders (a finished run is not trained again; a missing one is trained with the same config,
  seed and thread count);
* each seed's run super-resolves the 32 test scenes of ``reports/sr`` (144 px centre crops, DDIM-20,
  noise seed 0) 8 times (:data:`MEMBERS`; ``terradiff evaluate --ensemble 8``); the mean of the
  first N draws is scored for N = 1, 2, 4, 8 (one set of draws gives the whole curve). N = 8 was
  fixed before any run; nothing is chosen from the test scenes: the curve is reported whole;
* differences to bicubic and to the regression UNet (``reports/seeds``, same seeds) are paired over
  images per seed, with a Student-t 95% interval over the 3 seeds (training variation);
* the first draw must reproduce the committed one-draw row of ``reports/sr_settings`` (same run,
  same noise); the largest per-image PSNR difference is reported.

Each row is written to ``OUT/rows/<model>_seed<s>.json`` when measured, so two processes can share
the work and an interrupted study resumes. ``--refresh`` measures rows saved before the spectral
measures existed (``hf_power_db``, ``lsd_hf_db``; ``scripts/sr_detail_study.py`` reads them)
again: the same run and noise give the same draws, which is checked image by image.

Example (the committed report: one thread per process, the two models side by side)::

    python scripts/sr_ensemble_study.py --models sr3 &
    python scripts/sr_ensemble_study.py --models implicit
    python scripts/sr_ensemble_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.seed_study import REPLICATES, difference_line, load_rows, seed_difference  # noqa: E402
from scripts.sr_intervals import difference_text, method_sentence, paired_difference  # noqa: E402
from scripts.sr_settings_study import SEEDS, TEST_MODELS, tested_overrides  # noqa: E402
from scripts.study_common import machine_description, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402
from terradiff.report_format import format_interval  # noqa: E402

#: Draws per image (fixed before any run).
MEMBERS = 8
SETTINGS_ROWS = REPO / "reports" / "sr_settings" / "rows"


def row_path(out: Path, key: str, seed: int) -> Path:
    return out / "rows" / f"{key}_seed{seed}.json"


def has_spectral_measures(record: dict[str, Any]) -> bool:
    """Whether a saved row holds ``hf_power_db`` (rows measured before it was added do not)."""
    return "hf_power_db" in record["row"]["ensemble_curve"]["1"]["model"]


def same_draws(old: dict[str, Any], new: dict[str, Any], key: str, seed: int) -> None:
    """Refuse a re-measured row whose draws are not the saved row's (same run, same noise): every
    image's PSNR of every curve size must agree within 1e-3 dB."""
    for size, entry in old["ensemble_curve"].items():
        pairs = zip(
            entry["per_image"]["psnr"],
            new["ensemble_curve"][size]["per_image"]["psnr"],
            strict=True,
        )
        worst = max(abs(a - b) for a, b in pairs)
        if worst > 1e-3:
            raise RuntimeError(
                f"{key} seed {seed}: re-measured mean of {size} differs from the saved row by "
                f"{worst:.4f} dB on one image; the run or its noise changed, so the row is kept"
            )


def measure(key: str, seed: int, out: Path, runs_root: Path, refresh: bool = False) -> None:
    """Train (or reuse) one run of ``key``, score its ensemble, save the row.

    With ``refresh``, a saved row without the spectral measures is measured again (the same draws,
    checked by :func:`same_draws`) to add them; other saved rows are kept as they are.
    """
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(out, key, seed)
    old = json.loads(path.read_text()) if path.is_file() else None
    if old is not None and (has_spectral_measures(old) or not refresh):
        return
    model = TEST_MODELS[key]
    overrides = tested_overrides(model, seed, runs_root)
    print(f"training (or reusing) {key} seed {seed} ...", flush=True)
    run = train(model.row_name(seed), Path(model.config), overrides)
    print(f"measuring {key} seed {seed}: {MEMBERS} draws per image ...", flush=True)
    started = time.time()
    row = evaluate_super_resolution(run["run_dir"], seed=0, ensemble=MEMBERS, **model.evaluation())
    if old is not None:
        same_draws(old["row"], row, key, seed)
    record = {
        "key": key,
        "seed": seed,
        "config": model.config,
        "overrides": overrides,
        "run": run,
        "row": row,
        "reproduction": reproduction(row, key, seed),
        "measure_minutes": round((time.time() - started) / 60.0, 1),
        "machine": machine_description(),
        "provenance": provenance_record(data_paths=["../shared/data/aid"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    if seed == 0 and old is None:
        draw_figure(Path(run["run_dir"]), out / f"{key}_scenes.png")


def reproduction(row: dict[str, Any], key: str, seed: int) -> dict[str, Any]:
    """The first draw against the committed one-draw row of the same run and noise."""
    committed_path = SETTINGS_ROWS / f"{TEST_MODELS[key].row_name(seed)}.json"
    if not committed_path.is_file():
        return {"compared": False}
    committed = json.loads(committed_path.read_text())["row"]["per_image"]
    if committed["image"] != row["per_image"]["image"]:
        raise RuntimeError(f"{key} seed {seed}: not the test scenes of reports/sr_settings")
    first = row["ensemble_curve"]["1"]["per_image"]["psnr"]
    gaps = [a - b for a, b in zip(first, committed["model"]["psnr"], strict=True)]
    return {
        "compared": True,
        "max_abs_psnr_difference": max(abs(g) for g in gaps),
        "mean_psnr_difference": sum(gaps) / len(gaps),
    }


def one_size(row: dict[str, Any], size: int) -> dict[str, Any]:
    """``row`` as if its model were the mean of its first ``size`` draws."""
    curve = row["ensemble_curve"][str(size)]
    per_image = {**row["per_image"], "model": curve["per_image"]}
    return {**row, "model": curve["model"], "per_image": per_image}


def load_measured(out: Path, key: str) -> dict[int, dict[str, Any]]:
    """``{seed: record}`` of ``key`` measured so far."""
    found = {}
    for seed in SEEDS:
        path = row_path(out, key, seed)
        if path.is_file():
            found[seed] = json.loads(path.read_text())
    return found


def sizes_of(records: dict[int, dict[str, Any]]) -> list[int]:
    first = next(iter(records.values()))["row"]
    return [int(n) for n in first["ensemble_curve"]]


def model_lines(
    key: str, records: dict[int, dict[str, Any]], regression: dict[int, dict[str, Any]]
) -> tuple[list[str], dict[str, Any]]:
    """The per-size table, the differences over seeds and the calibration of one model."""
    label = TEST_MODELS[key].label
    sizes = sizes_of(records)
    rows = {seed: r["row"] for seed, r in records.items()}
    summary: dict[str, Any] = {"psnr": {}, "minus_bicubic": {}, "regression_minus": {}}
    lines = [
        "| draws averaged | PSNR (mean of seeds) | SSIM | minus bicubic, over seeds | "
        "regression UNet minus it, over seeds |",
        "|---|---|---|---|---|",
    ]
    bullets = []
    for size in sizes:
        sized = {seed: one_size(row, size) for seed, row in rows.items()}
        psnr = sum(r["model"]["psnr"] for r in sized.values()) / len(sized)
        ssim = sum(r["model"]["ssim"] for r in sized.values()) / len(sized)
        to_bicubic = seed_difference(sized)
        common = sorted(set(sized) & set(regression))
        below = seed_difference({s: regression[s] for s in common}, {s: sized[s] for s in common})
        summary["psnr"][size] = psnr
        summary["minus_bicubic"][size] = to_bicubic
        summary["regression_minus"][size] = below
        lines.append(f"| {size} | {psnr:.2f} | {ssim:.4f} | {_over(to_bicubic)} | {_over(below)} |")
        name = f"{label}, mean of {size}"
        bullets += [
            difference_line(name, "bicubic", to_bicubic),
            difference_line(REPLICATES["regression"].label, name, below),
        ]
    lines += ["", *bullets, ""]
    if 0 in rows:
        biggest = one_size(rows[0], sizes[-1])
        seed0 = paired_difference(biggest)
        summary["seed0_mean_of_all_minus_bicubic"] = seed0
        lines += [
            f"Seed 0, the mean of {sizes[-1]} - bicubic, paired over the images: "
            + difference_text(seed0, f"the mean of {sizes[-1]}", "bicubic")
            + f". Interval: {method_sentence()}.",
            "",
        ]
    lines += [
        "| seed | spread-skill ratio (1 = calibrated) | RMSE of the mean | ensemble spread | "
        "s / image (all draws) | first draw - committed one-draw row, PSNR dB: mean (max abs) |",
        "|---|---|---|---|---|---|",
    ]
    for seed, record in sorted(records.items()):
        cal, model = record["row"]["calibration"], record["row"]["model"]
        repro = reproduction(record["row"], key, seed)
        gap = "-"
        if repro.get("compared"):
            gap = f"{repro['mean_psnr_difference']:+.3f} ({repro['max_abs_psnr_difference']:.3f})"
        lines.append(
            f"| {seed} | {cal['mean_ratio']:.2f} | {cal['mean_rmse']:.4f} | "
            f"{cal['mean_spread']:.4f} | {model['seconds_per_image']:.1f} | {gap} |"
        )
        summary.setdefault("calibration", {})[seed] = cal["mean_ratio"]
    return lines, summary


def _markdown(text: str) -> str:
    """A docstring paragraph as Markdown (reST literals and roles as code)."""
    return text.replace("``", "`").replace(":mod:", "").replace(":data:", "")


def _over(difference: dict[str, Any] | None) -> str:
    if difference is None:
        return "not every seed measured"
    return format_interval(difference["over_seeds"], 2, " dB", signed=True)


def plot_curves(
    out: Path, summaries: dict[str, dict[str, Any]], regression: dict[str, Any] | None
) -> None:
    """PSNR minus bicubic against the draws averaged, with the seed intervals, and the
    regression UNet's difference (``regression``: its :func:`seed_difference`) for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    seeds: set[int] = set()
    for key, summary in summaries.items():
        sizes = [s for s, d in summary["minus_bicubic"].items() if d is not None]
        if not sizes:
            continue
        seeds |= set(summary["minus_bicubic"][sizes[0]]["per_seed"])
        means = [summary["minus_bicubic"][s]["over_seeds"]["mean"] for s in sizes]
        lows = [summary["minus_bicubic"][s]["over_seeds"]["low"] for s in sizes]
        highs = [summary["minus_bicubic"][s]["over_seeds"]["high"] for s in sizes]
        errors = [[m - lo for m, lo in zip(means, lows, strict=True)]]
        errors.append([h - m for m, h in zip(means, highs, strict=True)])
        ax.errorbar(sizes, means, yerr=errors, marker="o", capsize=3, label=TEST_MODELS[key].label)
    ax.axhline(0.0, color="black", linewidth=0.8, label="bicubic")
    if regression is not None:
        level = regression["over_seeds"]["mean"]
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8, label="regression UNet")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({int(s) for sm in summaries.values() for s in sm["minus_bicubic"]}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("draws averaged per image")
    ax.set_ylabel("PSNR - bicubic (dB)")
    ax.set_title(f"AID x4, 32 test scenes, seeds {sorted(seeds)} (95% t)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "ensemble_curve.png", dpi=120)
    plt.close(fig)


def draw_figure(run_dir: Path, path: Path, scenes: tuple[int, ...] = (0, 16)) -> None:
    """Two test scenes: bicubic, one draw, the mean of :data:`MEMBERS`, HR, then the ensemble
    std and the error of the mean (band-averaged, one colour scale per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from terradiff.data.degrade import make_lr, upsample_to
    from terradiff.evaluate import real_dataset
    from terradiff.sr_evaluate import scene_indices
    from terradiff.tasks import load_task
    from terradiff.viz import to_display

    task, _ = load_task(run_dir, use_ema=True, device="cpu")
    settings = TEST_MODELS["sr3"].evaluation()
    dataset = real_dataset(task.config, split="test", image_size=settings["image_size"])
    indices = scene_indices(len(dataset), settings["num_images"])
    hr = torch.stack([dataset[indices[i]]["image"] for i in scenes])
    lr = make_lr(hr, task.sr.scale, "bicubic")
    generator = torch.Generator().manual_seed(0)
    spec = task.sampling_spec("ddim", 20)
    draws = torch.stack(
        [
            task.super_resolve(
                task.net, lr, out_size=hr.shape[-2:], spec=spec, generator=generator
            ).sample.float()
            for _ in range(MEMBERS)
        ]
    )
    mean, std = draws.mean(0), draws.std(0, unbiased=True).mean(1)
    error = (mean - hr).abs().mean(1)
    columns = {
        "bicubic": upsample_to(lr, hr.shape[-2:]),
        "one draw": draws[0],
        f"mean of {MEMBERS}": mean,
        "HR": hr,
    }
    fig, axes = plt.subplots(len(scenes), 6, figsize=(13.2, 2.3 * len(scenes)), squeeze=False)
    for row in range(len(scenes)):
        for col, (title, images) in enumerate(columns.items()):
            axes[row, col].imshow(to_display(images[row : row + 1])[0])
            axes[row, col].set_title(title if row == 0 else "", fontsize=9)
        top = float(max(std[row].max(), error[row].max()))
        for col, (title, values) in enumerate(
            (("ensemble std", std[row]), ("|mean - HR|", error[row])), start=4
        ):
            shown = axes[row, col].imshow(values.numpy(), cmap="magma", vmin=0.0, vmax=top)
            axes[row, col].set_title(title + " (model units)" if row == 0 else "", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 5], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path) -> dict[str, Any]:
    """``out/README.md``, ``out/results.json`` and the curve from the measured rows."""
    regression = load_rows(REPO / "reports" / "seeds")["regression"]
    lines = [
        "# The mean of N diffusion draws against bicubic (AID x4, SR3 and implicit)",
        "",
        "Commands (each row is saved as it is measured, so they resume):",
        "",
        *[f"    {line.strip()}" for line in __doc__.split("::")[1].strip().splitlines()],
        "",
        *_markdown(__doc__.split("\n\n")[1]).replace("\n", " ").splitlines(),
        "",
        *_markdown(__doc__.split("\n\n")[2]).splitlines(),
        "",
    ]
    summaries, machines = {}, set()
    for key, model in TEST_MODELS.items():
        records = load_measured(out, key)
        lines += [f"## {model.label} (`{model.config}`)", ""]
        if not records:
            lines += ["Not measured yet.", ""]
            continue
        machines |= {r["machine"] for r in records.values()}
        body, summaries[key] = model_lines(key, records, regression)
        lines += [*body, ""]
    lines += [
        "## How it was measured",
        "",
        f"Each seed's run draws {MEMBERS} samples per scene with DDIM-20 (noise seed 0, drawn "
        "in sequence from one generator, so the first draw is the one-draw evaluation's). The "
        "PSNR of the mean of the first N draws is the mean over the 32 scenes of per-scene PSNR. "
        "Differences over seeds pair seed s with seed s (Student-t, 2 degrees of freedom); they "
        "hold the training variation on these 32 scenes, not the variation over scenes. "
        "Spread-skill ratio: RMSE of the ensemble mean / (root mean ensemble variance x "
        "sqrt(1 + 1/N)), per scene, then averaged (Fortin et al. 2014): above 1 the ensemble's "
        "std understates the error of its mean.",
        "",
        f"Machine: {'; '.join(sorted(machines)) or '?'}. No GPU was lent: the models are the "
        "CPU-budget runs of `reports/sr_settings`.",
        "",
    ]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    out.mkdir(parents=True, exist_ok=True)
    if summaries:
        plot_curves(out, summaries, seed_difference(regression))
        lines += ["![PSNR minus bicubic against the draws averaged](ensemble_curve.png)", ""]
    for key in summaries:
        figure = out / f"{key}_scenes.png"
        if figure.is_file():
            lines += [
                f"![{TEST_MODELS[key].label}, seed 0, two test scenes: bicubic, one draw, the mean "
                f"of {MEMBERS}, HR, the ensemble std and the error of the mean]({figure.name})",
                "",
            ]
    atomic_write_text(out / "README.md", "\n".join(lines))
    results = {"members": MEMBERS, "models": summaries, "rows": "rows/<model>_seed<s>.json"}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/sr_ensemble"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/sr_settings/runs"))
    parser.add_argument("--models", nargs="*", default=list(TEST_MODELS), choices=TEST_MODELS)
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS), choices=SEEDS)
    parser.add_argument("--report-only", action="store_true", help="render the report only")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="measure saved rows without the spectral measures (hf_power_db) again, to add them",
    )
    args = parser.parse_args(argv)
    if not args.report_only:
        for seed in args.seeds:
            for key in args.models:
                measure(key, seed, args.out, args.runs_root, refresh=args.refresh)
    write_report(args.out)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
