"""The super-resolution study of issue 3: trains, measures and writes ``reports/sr/README.md``.

Models (configs in ``configs/sr/``), all trained by ``terradiff train`` on real data:

- AID x4 (RGB aerial scenes, 90% of the files; the 10% held out by the stable hash split are the
  test images): ``regression`` (the UNet trained with L1 to predict HR), ``sr3`` (conditional
  diffusion) and ``implicit`` (IDM-style continuous scales, trained on x1.5-x4);
- EuroSAT x4, all 13 Sentinel-2 bands (``eurosat-ms/train``; tested on ``eurosat-ms/test``);
- Landsat-8 x2, one band: trained on B3 and B4 of the whole scene at 30 m, applied to the 60 m B2
  file and compared with the 30 m B2 (a band never seen, but not spatially held out); and the
  spatially held-out check of issue 14 (``sr_landsat.py``): the same config trained on the left
  columns of B3/B4 only (``--heldout-seeds``), measured on the right columns only, with a bootstrap
  over spatial blocks.

Measured: PSNR, SSIM, SSIM-Y, MAE beside bicubic on held-out centre crops (144x144 for AID, which
x2, x3, x4, x6 and x8 all divide), each image's values kept so that PSNR - bicubic gets a 95% paired
bootstrap interval over the images (``sr_intervals.py``; rows measured before that print "no
interval"), SR3 with DDIM-20, DPM-Solver++-20 and DDPM-1000, the implicit
model at x2, x3, x4 (in its training range) and x6, x8 (outside), seconds per image on this machine,
parameters. Figures with zoomed crops. Every measurement is saved to ``results.json`` as soon as it
is made, so an interrupted study continues where it stopped (``--redo`` forgets the measurements).

Example (the committed report; the second command adds the held-out Landsat check alone)::

    python scripts/sr_study.py --n 32 --n-ddpm 4
    python scripts/sr_study.py --only landsat_heldout --heldout-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import torch
from seed_study import SEED_RESULTS, seed_summary_lines
from sr_intervals import bicubic_difference_lines
from sr_landsat import landsat_report_lines, measure_landsat
from sr_landsat_heldout import (
    HELDOUT,
    heldout_command,
    heldout_report_lines,
    measure_landsat_heldout,
)
from study_common import open_results, read_losses, train

from terradiff.data.degrade import make_lr, upsample_to
from terradiff.evaluate import real_dataset
from terradiff.io import atomic_write_text
from terradiff.sr_evaluate import evaluate_super_resolution
from terradiff.tasks import load_task
from terradiff.viz import save_comparison_figure, save_loss_curves

CONFIGS = {
    "regression": "configs/sr/aid_regression_x4.yaml",
    "sr3": "configs/sr/aid_sr3_x4.yaml",
    "implicit": "configs/sr/aid_implicit.yaml",
    "eurosat": "configs/sr/eurosat_regression_x4.yaml",
    "landsat": "configs/sr/landsat_b3b4_regression_x2.yaml",
}
SR3_SAMPLERS = (("ddim", 20), ("dpm_solver", 20), ("ddpm", 1000))
SAMPLER_LABELS = {"ddim": "DDIM", "dpm_solver": "DPM-Solver++(2M)", "ddpm": "DDPM"}
IMPLICIT_SCALES = (2, 3, 4, 6, 8)


# ---- measurements ----------------------------------------------------------------------------


def measure_aid(results: dict[str, Any], args: argparse.Namespace, save: Any) -> None:
    """The AID table: regression, SR3 x 3 samplers, implicit x 5 scales (each beside bicubic)."""
    rows = results.setdefault("rows", {})
    runs = results["runs"]
    plan: list[tuple[str, str, dict[str, Any]]] = [("regression_x4", "regression", {})]
    for sampler, steps in SR3_SAMPLERS:
        n = args.n_ddpm if sampler == "ddpm" else args.n
        kwargs = {"sampler": sampler, "steps": None if sampler == "ddpm" else steps, "n": n}
        plan.append((f"sr3_{sampler}", "sr3", kwargs))
    plan += [(f"implicit_x{s}", "implicit", {"scale": s}) for s in IMPLICIT_SCALES]
    for key, model, kwargs in plan:
        if key in rows or model not in runs:
            continue
        print(f"measuring {key} ...", flush=True)
        rows[key] = evaluate_super_resolution(
            runs[model]["run_dir"],
            num_images=kwargs.pop("n", args.n),
            image_size=args.image_size,
            batch_size=args.batch_size,
            seed=0,
            **kwargs,
        )
        save()


def measure_eurosat(results: dict[str, Any], args: argparse.Namespace, save: Any) -> None:
    """13-band x4 on the EuroSAT test chips (PSNR per band included), and its figures."""
    rows = results.setdefault("rows", {})
    if "eurosat_x4" in rows or "eurosat" not in results["runs"]:
        return
    run_dir = results["runs"]["eurosat"]["run_dir"]
    test_root = args.shared / "eurosat-ms" / "test"
    row = evaluate_super_resolution(
        run_dir, num_images=1000, data_root=test_root, batch_size=args.batch_size
    )
    rows["eurosat_x4"] = row  # with PSNR per band (evaluate_super_resolution reports it)
    save()
    task, _ = load_task(run_dir, use_ema=True)
    dataset = real_dataset(task.config, test_root)
    figure_rows = [0, len(dataset) // 3, 2 * len(dataset) // 3]
    hr = torch.stack([dataset[i]["image"] for i in figure_rows])
    lr = make_lr(hr, 4, "bicubic")
    with torch.no_grad():
        pred = task.super_resolve(task.net, lr).sample.float()
    bicubic = upsample_to(lr, hr.shape[-2:])
    panels = {
        "LR (nearest)": torch.nn.functional.interpolate(lr, scale_factor=4),
        "bicubic": bicubic,
        "regression": pred,
        "HR": hr,
    }
    for bands, name in (([3, 2, 1], "rgb"), ([7, 3, 2], "nir")):
        save_comparison_figure(
            panels,
            args.out / f"eurosat_{name}.png",
            zoom=(16, 16, 24),
            rgb_bands=bands,
            stretch=True,
        )


# ---- figures -------------------------------------------------------------------------------


def aid_figures(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Zoomed comparisons of the x4 models, and the implicit model across scales."""
    runs = results["runs"]
    tasks = {
        k: load_task(runs[k]["run_dir"], use_ema=True)[0] for k in ("regression", "sr3", "implicit")
    }
    reference = tasks["regression"]
    dataset = real_dataset(reference.config, split="test", image_size=args.image_size)
    picks = [0, len(dataset) // 2, len(dataset) - 1]
    hr = torch.stack([dataset[i]["image"] for i in picks])
    lr = make_lr(hr, 4, "bicubic")
    size = tuple(hr.shape[-2:])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        panels = {
            "LR x4 (nearest)": torch.nn.functional.interpolate(lr, scale_factor=4),
            "bicubic": upsample_to(lr, size),
            "regression": tasks["regression"].super_resolve(tasks["regression"].net, lr).sample,
            "SR3 DDIM-20": tasks["sr3"]
            .super_resolve(
                tasks["sr3"].net,
                lr,
                spec=tasks["sr3"].sampling_spec("ddim", 20),
                generator=generator,
            )
            .sample,
            "implicit x4": tasks["implicit"]
            .super_resolve(tasks["implicit"].net, lr, out_size=size, generator=generator)
            .sample,
            "HR": hr,
        }
    save_comparison_figure(panels, args.out / "aid_x4.png", zoom=(48, 48, 40))

    one = hr[1:2]
    scales: dict[str, torch.Tensor] = {}
    for s in IMPLICIT_SCALES:
        low = make_lr(one, s, "bicubic")
        with torch.no_grad():
            out = tasks["implicit"].super_resolve(
                tasks["implicit"].net, low, out_size=size, generator=generator
            )
        scales[f"x{s} bicubic"] = upsample_to(low, size)
        scales[f"x{s} implicit"] = out.sample
    scales["HR"] = one
    save_comparison_figure(scales, args.out / "implicit_scales.png", zoom=(48, 48, 40))

    curves = {k: read_losses(Path(runs[k]["run_dir"])) for k in runs}
    save_loss_curves(curves, args.out / "loss_curves.png", smoothing=0.9, log_y=True)


# ---- report ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(label: str, metrics: dict[str, Any], seconds: Any, params: Any, n: int) -> str:
    cells = [
        label,
        _fmt(metrics.get("psnr")),
        _fmt(metrics.get("ssim"), 4),
        _fmt(metrics.get("psnr_y")),
        _fmt(metrics.get("ssim_y"), 4),
        _fmt(metrics.get("mae"), 4),
        _fmt(metrics.get("lpips"), 4) if "lpips" in metrics else "n/a",
        _fmt(seconds, 3) if seconds is not None else "-",
        f"{params / 1e6:.2f} M" if params else "-",
        str(n),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| method | PSNR | SSIM | PSNR-Y | SSIM-Y | MAE | LPIPS | s / image | params | images |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def write_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """``reports/sr/README.md`` from ``results.json`` (numbers are never typed by hand)."""
    rows, runs = results["rows"], results["runs"]
    lines = [
        "# Super-resolution on real imagery (issue 3)",
        "",
        "Made by `python scripts/sr_study.py "
        f"--n {args.n} --n-ddpm {args.n_ddpm}` from `results.json` in this folder (every number "
        "below is read from it).",
        *heldout_command(rows),
        f"Machine: {results['machine']}. No GPU was lent to this task, so every model is trained "
        "for minutes on CPU: these are early-training numbers of small UNets, not converged "
        "models. They show the pipeline end to end on real data and how the methods compare at "
        "small budgets, which differ per model (the steps column below); one training seed each "
        "(three for the held-out Landsat check and, in `reports/seeds/`, for the regression "
        "UNets, SR3 with DDIM-20 and the implicit model at x4), so differences of a few tenths of "
        "a dB between one-seed rows are not established.",
        "",
        "## What was trained",
        "",
        "| model | config | data | steps x batch | params | train minutes | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    data_of = {
        "regression": "AID, 90% of files, 64x64 crops",
        "sr3": "AID, 90% of files, 64x64 crops",
        "implicit": "AID, 90% of files, 64x64 crops, scales x1.5-x4",
        "eurosat": "EuroSAT 13-band, 216 train chips",
        "landsat": "Landsat-8 B3 + B4 (30 m), 64x64 crops",
    }
    if HELDOUT in rows:
        cols = rows[HELDOUT]["split"]["train_columns"]
        held = f"Landsat-8 B3 + B4, columns {cols[0]}-{cols[1] - 1} only, 64x64 crops"
        data_of |= {k: held for k in runs if k.startswith(HELDOUT)}
    for key, run in runs.items():
        lines.append(
            f"| {key} | `{run['config']}` | {data_of.get(key, '')} | "
            f"{run['steps']} x {run['batch_size']} | {run['parameters'] / 1e6:.2f} M | "
            f"{run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    lines += [
        "",
        "Each run's loss log and exact config are in `training_logs/`. The weights are not "
        f"committed ({len(runs)} runs); the commands above retrain them.",
        "",
        "Loss curves: ![losses](loss_curves.png)",
        "",
    ]

    first = rows["regression_x4"]
    lines += [
        "## AID x4 (held-out scenes)",
        "",
        f"{first['n']} held-out AID scenes (the `test` part of the stable hash split, never seen "
        f"in training), centre {first['image_size']}x{first['image_size']} crops, LR by "
        "anti-aliased bicubic x1/4; metrics on [-1, 1] (PSNR data range 2) with 4 border pixels "
        "cropped; PSNR-Y/SSIM-Y on the Y of YCbCr (8-bit range), as SlimDiffSR reports. "
        "Seconds per image on this CPU. DDPM-1000 is measured on fewer images "
        f"({rows['sr3_ddpm']['n']}) because it costs 50x DDIM-20; its bicubic row differs "
        "accordingly. LPIPS needs local backbone weights (`--lpips-weights`); none were given.",
        "",
        HEADER,
        _row("bicubic", first["bicubic"], None, None, first["n"]),
        _row(
            "regression (L1)",
            first["model"],
            first["model"]["seconds_per_image"],
            first["parameters"],
            first["n"],
        ),
    ]
    for sampler, steps in SR3_SAMPLERS:
        r = rows[f"sr3_{sampler}"]
        label = SAMPLER_LABELS[sampler]
        lines.append(
            _row(
                f"SR3 {label}-{steps}",
                r["model"],
                r["model"]["seconds_per_image"],
                r["parameters"],
                r["n"],
            )
        )
    lines.append(
        _row(
            f"bicubic (the {rows['sr3_ddpm']['n']} DDPM images)",
            rows["sr3_ddpm"]["bicubic"],
            None,
            None,
            rows["sr3_ddpm"]["n"],
        )
    )
    aid = [("regression (L1)", first)]
    aid += [(f"SR3 {SAMPLER_LABELS[s]}-{steps}", rows[f"sr3_{s}"]) for s, steps in SR3_SAMPLERS]
    lines += bicubic_difference_lines(aid)
    lines += ["", "![AID x4 with zoomed crops](aid_x4.png)", ""]

    lines += [
        "## One implicit model, any scale",
        "",
        "The IDM-style model (UNet features queried by a coordinate MLP with cell size) was "
        "trained on random scales x1.5-x4; x6 and x8 are outside its training range. Sampled with "
        "DDIM-20; each row beside bicubic at the same scale.",
        "",
        "| scale | bicubic PSNR | implicit PSNR | bicubic SSIM | implicit SSIM | implicit SSIM-Y "
        "| s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in IMPLICIT_SCALES:
        r = rows[f"implicit_x{s}"]
        inside = "" if s <= 4 else " (out of range)"
        lines.append(
            f"| x{s}{inside} | {_fmt(r['bicubic']['psnr'])} | {_fmt(r['model']['psnr'])} | "
            f"{_fmt(r['bicubic']['ssim'], 4)} | {_fmt(r['model']['ssim'], 4)} | "
            f"{_fmt(r['model'].get('ssim_y'), 4)} | {_fmt(r['model']['seconds_per_image'], 3)} |"
        )
    lines += bicubic_difference_lines(
        [(f"implicit x{s}", rows[f"implicit_x{s}"]) for s in IMPLICIT_SCALES]
    )
    lines += ["", "![implicit model at x2-x8](implicit_scales.png)", ""]

    eu = rows["eurosat_x4"]
    lines += [
        "## Multispectral: EuroSAT, 13 Sentinel-2 bands, x4",
        "",
        f"{eu['n']} test chips (`eurosat-ms/test`, 64x64, values /10000), LR 16x16. One model "
        "super-resolves all 13 bands at once.",
        "",
        HEADER,
        _row("bicubic", eu["bicubic"], None, None, eu["n"]),
        _row(
            "regression (L1)",
            eu["model"],
            eu["model"]["seconds_per_image"],
            eu["parameters"],
            eu["n"],
        ),
        *bicubic_difference_lines([("regression (L1)", eu)]),
        "",
        "PSNR per band (dB):",
        "",
        "| | " + " | ".join(eu["band_names"]) + " |",
        "|---" * (len(eu["band_names"]) + 1) + "|",
        "| bicubic | " + " | ".join(f"{v:.2f}" for v in eu["bicubic"]["psnr_per_band"]) + " |",
        "| regression | " + " | ".join(f"{v:.2f}" for v in eu["model"]["psnr_per_band"]) + " |",
        "",
        "True colour (B4, B3, B2) and false colour (B8, B4, B3), percentile-stretched on HR:",
        "",
        "![EuroSAT RGB](eurosat_rgb.png)",
        "![EuroSAT NIR](eurosat_nir.png)",
        "",
    ]

    lines += landsat_report_lines(rows["landsat"], rows.get(HELDOUT))
    if HELDOUT in rows:
        lines += heldout_report_lines(rows[HELDOUT], runs)
    seeds = seed_summary_lines(["regression", "sr3", "implicit", "eurosat"], path=args.seed_results)
    if seeds:
        lines += [
            "## Training seeds",
            "",
            "The regression UNets, SR3 (DDIM-20) and the implicit model (x4) trained again with "
            "seeds 1 and 2 (`reports/seeds/README.md`): each seed's PSNR - bicubic on the same "
            "test images, and the Student-t 95% interval over the 3 seeds (training variation "
            "on these images; 2 degrees of freedom).",
            "",
            *seeds,
            "",
        ]
    discussion = results.get("discussion")
    if discussion:
        lines += ["## Discussion", "", discussion, ""]
    atomic_write_text(args.out / "README.md", "\n".join(lines))


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/sr"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--n", type=int, default=32, help="held-out AID images per row")
    parser.add_argument("--n-ddpm", type=int, default=4, help="images for SR3 DDPM-1000")
    parser.add_argument("--image-size", type=int, default=144)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--only",
        nargs="*",
        default=[*CONFIGS, HELDOUT],
        choices=[*CONFIGS, HELDOUT],
        help="runs to train (landsat_heldout: the held-out Landsat check, one run per seed)",
    )
    parser.add_argument(
        "--heldout-seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds of landsat_heldout"
    )
    parser.add_argument("--redo", action="store_true", help="forget saved measurements")
    parser.add_argument("--set", action="append", default=[], help="config override for all runs")
    parser.add_argument("--runs-root", type=Path, help="put run NAME in RUNS_ROOT/NAME instead")
    parser.add_argument(
        "--seed-results",
        type=Path,
        default=SEED_RESULTS,
        help="the seed study's results.json (its readings are added to the report)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite README.md from results.json only"
    )
    args = parser.parse_args()
    results, save = open_results(args.out, args.redo)
    if args.report_only:
        write_report(results, args)
        print(f"wrote {args.out / 'README.md'}")
        return

    runs = results.setdefault("runs", {})
    for name in (n for n in args.only if n in CONFIGS):
        print(f"training {name} ({CONFIGS[name]}) ...", flush=True)
        overrides = list(args.set)
        if args.runs_root is not None:
            overrides.append(f"output_dir={args.runs_root / name}")
        runs[name] = train(name, Path(CONFIGS[name]), overrides)
        logs = args.out / "training_logs"
        logs.mkdir(exist_ok=True)
        run_dir = Path(runs[name]["run_dir"])
        shutil.copyfile(run_dir / "metrics.jsonl", logs / f"{name}.metrics.jsonl")
        shutil.copyfile(run_dir / "config.json", logs / f"{name}.config.json")
        save()
    measure_aid(results, args, save)
    measure_eurosat(results, args, save)
    measure_landsat(results, args, save)
    measure_landsat_heldout(results, args, save)
    # the figures need every run's weights (not committed): train them first (--only)
    missing = sorted(k for k in CONFIGS if k not in runs or not Path(runs[k]["run_dir"]).is_dir())
    if missing:
        print(
            f"measured what the trained runs allow; the figures need the weights of {missing}: "
            "train them (--only), or re-render README.md from results.json (--report-only)"
        )
        return
    aid_figures(results, args)
    write_report(results, args)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
