"""The carbon study of issue 4: the IIDM paper's Tables 1, 2 and A3 and its Fig. 5 on BioMassters.

Data: the real BioMassters chips of ``../shared/data/biomassters`` (only 3 are available here),
prepared by ``terradiff carbon-prepare`` (median of the clear Sentinel-2 observations; carbon =
LiDAR AGB x 0.5; forest = AGB > 0). One chip per split (train / validation / test, the config's
lists); no chip is in two splits.

Models (one base config, ``configs/carbon/biomassters_iidm.yaml``, and overrides):

- Table 2: two naive maps (the training chip's mean carbon everywhere; its forest / non-forest
  means), which need the chips only and so are measured on any run, ``--report-only`` included;
  OLS, RF, SVR (per pixel: bands + NDVI/EVI, forest pixels of the training chip), VAE, pix2pix
  GAN, IDM (no VGG, no fusion), IIDM; plus the UNet regression; and, read from
  ``reports/carbon_loco/results.json``, this test chip's leave-one-chip-out fold with intervals;
- Table 1 (ablation): IIDM without the forest mask in the loss, without cross-attention + MLP,
  without VGG features (= IDM); and the compression rows of issue 5: the trained IIDM with its
  VGG extractor PCA-distilled (KD-VGG, no fine-tuning) and with its UNet PCA-distilled (KD-UNet),
  made by ``terradiff compress`` (their Table A2 analogs are in the report);
- Table A3: parameters and seconds per 256x256 image (DDIM-20 for the diffusion models);
- Fig. 5: every model's map of the test chip beside the truth, one colour bar.

Metrics on the test chip under the forest mask: MAE, RMSE, PSNR, SSIM on the normalised map and
MAE, RMSE, R^2 in Mg C/ha (:func:`terradiff.carbon.metrics.carbon_metrics`). Results are saved as
they are measured (``results.json``), so an interrupted study continues.

Example (the committed report; trainings can run in parallel processes first, each
``--only NAME ... --train-only --out /tmp/x``, as this session did)::

    python scripts/carbon_study.py --chips runs/carbon/chips --kd-unet-steps 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from carbon_loco_study import interval_table
from study_common import machine_description, open_results, read_losses, train

from terradiff.carbon.baselines import fit_pixel_model, pixel_features, predict_map
from terradiff.carbon.metrics import carbon_metrics
from terradiff.carbon.prepare import prepare_biomassters
from terradiff.compress import compress_carbon_unet, compress_carbon_vgg
from terradiff.config_loading import load_config
from terradiff.data.raster import read_raster
from terradiff.errors import DataError
from terradiff.io import atomic_write_text
from terradiff.tasks import load_task
from terradiff.viz import save_loss_curves, save_map_panel

BASE = Path("configs/carbon/biomassters_iidm.yaml")
LOCO_RESULTS = Path(__file__).resolve().parents[1] / "reports" / "carbon_loco" / "results.json"
VARIANTS: dict[str, list[str]] = {
    "iidm": [],
    "iidm_no_mask": ["carbon.mask_loss=false"],
    "iidm_no_attention": ["carbon.attention=false"],
    "idm": [],
    "regression": [],
    "vae": [],
    "gan": [],
}
METHODS = {"idm": "idm", "regression": "regression", "vae": "vae", "gan": "gan"}
"""Variants that switch carbon.method (the base config's IIDM-only keys are dropped)."""
PIXEL_BASELINES = ("ols", "rf", "svr")
NAIVE = ("constant", "class_mean")
"""Maps that need no model: the training chip's mean carbon (all valid pixels) everywhere, and
its forest / non-forest means by the test chip's mask (as in ``carbon_loco_study.py``)."""
KD_BLOCK_STEPS, KD_CHAIN_STEPS = 1000, 300  # PCA KD of the IIDM's VGG (Table 1 KD row)
TABLE2 = (*NAIVE, "ols", "rf", "svr", "vae", "gan", "regression", "idm", "iidm")
TABLE1 = ("iidm", "iidm_no_mask", "iidm_no_attention", "idm", "iidm_kd_vgg", "iidm_kd_unet")
TABLEA3 = (*TABLE2[len(NAIVE) :], "iidm_kd_vgg", "iidm_kd_unet")
LABELS = {
    "constant": "constant (training-chip mean)",
    "class_mean": "per-class mean (training chip)",
    "ols": "OLS",
    "rf": "RF",
    "svr": "SVR",
    "vae": "VAE",
    "gan": "GAN (pix2pix)",
    "regression": "UNet regression",
    "idm": "IDM",
    "iidm": "IIDM",
    "iidm_no_mask": "IIDM w/o mask",
    "iidm_no_attention": "IIDM w/o attention+MLP",
    "iidm_kd_vgg": "IIDM + KD-VGG (PCA KD, no fine-tuning)",
    "iidm_kd_unet": "IIDM + KD-UNet (PCA KD)",
}


def _chip_arrays(chip_dir: Path) -> dict[str, Any]:
    image = read_raster(chip_dir / "image.tif")
    target = read_raster(chip_dir / "target.tif")
    mask = read_raster(chip_dir / "mask.tif").array[0] > 0
    valid = image.valid_mask & target.valid_mask
    return {
        "image": image.array.astype(np.float32),
        "names": image.band_names,
        "carbon": target.array[0].astype(np.float64),
        "forest": mask & valid,
        "valid": valid,
    }


def measure_deep(name: str, run_dir: str, test_dir: Path, args: argparse.Namespace) -> dict:
    """The test chip's map by a trained model; metrics, timing, parameters."""
    task, ckpt = load_task(run_dir, use_ema=True)
    chip = _chip_arrays(test_dir)
    x = torch.from_numpy(task.band_info.band_scaling().to_model(chip["image"]))
    x = x[None].float()
    x = torch.where(torch.from_numpy(chip["valid"])[None, None], x, torch.zeros_like(x))
    generator = torch.Generator().manual_seed(0)
    warm = task.sampling_spec(steps=2)
    task.estimate(task.net, x[..., :64, :64], spec=warm, generator=generator)  # warm-up
    spec = task.sampling_spec(steps=args.steps)
    start = time.perf_counter()
    estimate = task.estimate(task.net, x, spec=spec, generator=generator)
    seconds = time.perf_counter() - start
    prediction = task.to_physical(estimate.mean)[0, 0].numpy()
    metrics = carbon_metrics(prediction, chip["carbon"], chip["forest"], task.carbon.max_density)
    np.save(args.work / f"{name}_map.npy", prediction.astype(np.float32))
    return {
        **metrics,
        "seconds_per_256": round(seconds * (256 * 256) / prediction.size, 3),
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "extractor_parameters": (
            extractor.num_parameters()
            if (extractor := getattr(task.net, "extractor", None)) is not None
            else None
        ),
        "step": ckpt.step,
        "sampler": estimate.spec.sampler if estimate.spec else None,
        "steps": estimate.spec.steps if estimate.spec else None,
    }


def measure_pixel(kind: str, train_dir: Path, test_dir: Path, args: argparse.Namespace) -> dict:
    """OLS/RF/SVR fitted on the training chip's forest pixels, mapped on the test chip."""
    train_chip, test_chip = _chip_arrays(train_dir), _chip_arrays(test_dir)
    features, _ = pixel_features(train_chip["image"], train_chip["names"])
    keep = train_chip["forest"].reshape(-1)
    start = time.perf_counter()
    model = fit_pixel_model(
        kind, features[keep], train_chip["carbon"].reshape(-1)[keep], max_samples=args.max_pixels
    )
    fit_seconds = time.perf_counter() - start
    test_features, _ = pixel_features(test_chip["image"], test_chip["names"])
    start = time.perf_counter()
    prediction = predict_map(model, test_features, test_chip["carbon"].shape)
    seconds = time.perf_counter() - start
    metrics = carbon_metrics(prediction, test_chip["carbon"], test_chip["forest"], args.max_density)
    np.save(args.work / f"{kind}_map.npy", prediction.astype(np.float32))
    return {
        **metrics,
        "seconds_per_256": round(seconds, 3),
        "fit_seconds": round(fit_seconds, 2),
        "training_pixels": int(min(keep.sum(), args.max_pixels)),
        "parameters": None,
    }


def measure_naive(kind: str, train_dir: Path, test_dir: Path, args: argparse.Namespace) -> dict:
    """A naive map of the test chip from the training chip's carbon alone (:data:`NAIVE`)."""
    train_chip, test_chip = _chip_arrays(train_dir), _chip_arrays(test_dir)
    carbon, valid, forest = train_chip["carbon"], train_chip["valid"], train_chip["forest"]
    if kind == "constant":
        prediction = np.full(test_chip["carbon"].shape, carbon[valid].mean())
    else:
        nonforest = valid & ~forest
        outside = carbon[nonforest].mean() if nonforest.any() else 0.0
        prediction = np.where(test_chip["forest"], carbon[forest].mean(), outside)
    metrics = carbon_metrics(prediction, test_chip["carbon"], test_chip["forest"], args.max_density)
    np.save(args.work / f"{kind}_map.npy", prediction.astype(np.float32))
    return {**metrics, "seconds_per_256": None, "parameters": None}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and np.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


def _table(rows: dict[str, dict], names: tuple[str, ...]) -> list[str]:
    lines = [
        "| model | MAE (norm) | RMSE (norm) | PSNR | SSIM | MAE (Mg C/ha) | RMSE (Mg C/ha) | "
        "bias (Mg C/ha) | R^2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        if name not in rows:
            continue
        r = rows[name]
        lines.append(
            f"| {LABELS[name]} | {_fmt(r['mae_norm'], 4)} | {_fmt(r['rmse_norm'], 4)} | "
            f"{_fmt(r['psnr_norm'], 2)} | {_fmt(r['ssim_norm'], 4)} | {_fmt(r['mae'], 2)} | "
            f"{_fmt(r['rmse'], 2)} | {_fmt(r.get('bias'), 2)} | {_fmt(r['r2'], 3)} |"
        )
    return lines


def _kd_table(run_out: Path, report_out: Path, name: str) -> str:
    """A compression table: the run's file, else the copy kept beside the report (the runs are
    not committed, and a ``--report-only`` render must not drop the table)."""
    for folder in (run_out, report_out):
        if (folder / name).is_file():
            return (folder / name).read_text()
    return ""


def loco_fold_lines(test_chip: str, path: Path = LOCO_RESULTS) -> list[str]:
    """This test chip's rows in the leave-one-chip-out study, with their intervals (nothing when
    that study has not run)."""
    if not path.is_file():
        return []
    fold = json.loads(path.read_text()).get("summary", {}).get(test_chip)
    if not fold:
        return []
    return [
        "## The same test chip with intervals (leave-one-chip-out fold)",
        "",
        f"The fold of `reports/carbon_loco/README.md` whose test chip is this one (`{test_chip}`): "
        "trained on the other two chips (a validation region of each held out for the choices), "
        "3 seeds per network, DDIM-20, forest pixels; 95% bootstrap over 32 px blocks of the test "
        "chip, each replicate drawing one seed; `RMSE - constant` and `RMSE - per-class mean` "
        "paired on the same blocks (Mg C/ha). Not the same training data as the tables above "
        "(one training chip there), so compare rows within a table, not across them.",
        "",
        *interval_table(fold),
        "",
    ]


def read_first(rows: dict[str, dict]) -> list[str]:
    """The warning above the tables: what one split can tell, the naive rows, where to look."""
    naive = ", ".join(
        f"{LABELS[k]} {rows[k]['rmse']:.2f} (R^2 {rows[k]['r2']:.3f})" for k in NAIVE if k in rows
    )
    return [
        "**Read first: these tables rank nothing.** One training chip, one test chip, one seed "
        "per model and no interval (the maps of these runs were not kept, so none can be added "
        "afterwards; the section after Table 2 gives this test chip with intervals, from the "
        "leave-one-chip-out study). The naive maps score RMSE "
        f"{naive or '(not measured)'} Mg C/ha; the learned rows lie within a few Mg C/ha of "
        "them. Which model is better is read in the "
        "leave-one-chip-out study, `reports/carbon_loco/README.md` (each chip the test chip once, "
        "3 seeds, choices on validation, 95% block bootstrap, paired differences to the naive "
        "maps).",
        "",
    ]


def write_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """``reports/carbon/README.md`` from ``results.json``."""
    rows, runs, data = results["rows"], results["runs"], results["data"]
    lines = [
        "# Forest carbon density from Sentinel-2 (issue 4): IIDM and its baselines",
        "",
        "Made by `python scripts/carbon_study.py --chips runs/carbon/chips --kd-unet-steps 200` "
        "(see its docstring for the chip preparation and the parallel training runs) from "
        f"`results.json` (every number is read from it). Machine: {results['machine']}; all of "
        "it ran on the CPU.",
        "",
        "**How much data and compute.** The IIDM paper trains on a county of GF-1 imagery; here "
        f"only {data['chips']} real BioMassters chips (256x256 at 10 m, Finland) are available: "
        f"train `{data['train']}`, validation `{data['val']}`, test `{data['test']}` -- one chip "
        "each, so every number below is from ONE test chip "
        f"({rows[TABLE2[-1]]['pixels'] if TABLE2[-1] in rows else '?'} forest pixels) and says "
        "little about generalisation. Each network was trained for minutes on CPU (table below). "
        "This is a working, reproducible pipeline and an honest small-data comparison, not a "
        "reproduction of the paper's numbers.",
        "",
        *read_first(rows),
        "| model | steps x batch | params | train minutes | final loss |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {LABELS[name]} | {run['steps']} x {run['batch_size']} | "
            f"{run['parameters'] / 1e6:.2f} M | {run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    lines += [
        "",
        "## Table 2 analog: all models on the test chip (forest pixels)",
        "",
        f"Normalised metrics divide by {args.max_density:g} Mg C/ha (the models' scale). "
        f"Diffusion models: DDIM-{args.steps}, one sample.",
        "",
        *_table(rows, TABLE2),
        "",
        *loco_fold_lines(data["test"][0]),
        "## Table 1 analog: ablation of IIDM",
        "",
        *_table(rows, TABLE1),
        "",
        "## Table A3 analog: size and speed",
        "",
        "Size: float32 weights (4 bytes per parameter, as the safetensors files hold them). KD "
        "ratio: IIDM's parameters / the model's.",
        "",
        "| model | parameters | size (MB) | of which VGG extractor | KD ratio | "
        "seconds per 256x256 image |",
        "|---|---|---|---|---|---|",
    ]
    iidm_params = rows.get("iidm", {}).get("parameters")
    for name in TABLEA3:
        if name in rows:
            r = rows[name]
            n = r.get("parameters")
            params = f"{n / 1e6:.3f} M" if n else "-"
            size = f"{n * 4 / 2**20:.2f}" if n else "-"
            vgg = r.get("extractor_parameters")
            vgg_text = f"{vgg / 1e6:.4f} M" if vgg else "-"
            ratio = (
                f"{iidm_params / n:.2f}x"
                if n and iidm_params and name.startswith("iidm_kd")
                else "-"
            )
            lines.append(
                f"| {LABELS[name]} | {params} | {size} | {vgg_text} | {ratio} | "
                f"{r['seconds_per_256']} |"
            )
    kd = results.get("kd_vgg")
    if kd:
        lines += [
            "",
            "## PCA-based knowledge distillation of the VGG extractor (Table A2 analog)",
            "",
            f"`terradiff compress {runs['iidm']['run_dir']} --out {kd['out']} --block-steps "
            f"{KD_BLOCK_STEPS} --chain-steps {KD_CHAIN_STEPS}` (mCEV >= 85%, "
            f"{kd['seconds']:.0f} s on this CPU): KD ratio of the extractor "
            f"{kd['kd_ratio']:.1f}x; the distilled extractor replaces the teacher's in the trained "
            "IIDM without fine-tuning (its row in Table 1).",
            "",
            _kd_table(Path(kd["out"]), args.out, "table_a2.md"),
        ]
    kd_unet = results.get("kd_unet")
    if kd_unet and "error" in kd_unet:
        lines += ["", f"KD-UNet: not made -- {kd_unet['error']}."]
    elif kd_unet:
        lines += [
            "",
            "## PCA-based knowledge distillation of the UNet (Table A2 analog)",
            "",
            f"`terradiff compress {runs['iidm']['run_dir']} --part unet --out {kd_unet['out']} "
            f"--encoder-steps {kd_unet['steps']} --decoder-steps {kd_unet['steps']}` (mCEV >= 85%, "
            f"{kd_unet['seconds']:.0f} s on this CPU): UNet KD ratio {kd_unet['kd_ratio']:.1f}x "
            f"(base width {kd_unet['base_channels']}); its row is in Table 1.",
            "",
            _kd_table(Path(kd_unet["out"]), args.out, "table_a2_unet.md"),
        ]
    lines += [
        "",
        "## Fig. 5 analog: maps of the test chip",
        "",
        "![maps](maps.png)",
        "",
        "Loss curves: ![losses](loss_curves.png)",
        "",
    ]
    if results.get("discussion"):
        lines += [results["discussion"], ""]
    plots = args.out / "plots.md"
    if plots.is_file():
        lines += [plots.read_text(), ""]
    atomic_write_text(args.out / "README.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/carbon"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--chips", type=Path, default=Path("runs/carbon/chips"))
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--max-pixels", type=int, default=20_000)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--runs-root", type=Path, default=Path("runs/carbon"))
    parser.add_argument("--no-kd-unet", action="store_true", help="skip the KD-UNet row")
    parser.add_argument("--report-only", action="store_true", help="rewrite README.md only")
    parser.add_argument(
        "--kd-unet-steps", type=int, default=150, help="KD-UNet encoder and decoder phase steps"
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train the --only runs and stop (to train several in parallel processes, each with "
        "its own --out; a final plain run measures them all)",
    )
    args = parser.parse_args()
    args.work = args.runs_root / "maps"
    args.work.mkdir(parents=True, exist_ok=True)
    results, save = open_results(args.out, args.redo)
    results.setdefault("machine", machine_description())

    if not (args.chips / "manifest.json").is_file():
        prepare_biomassters(args.shared / "biomassters", args.chips)
    base = load_config(BASE, [f"data.root={args.chips}"])
    args.max_density = base.carbon.max_density
    splits = {k: getattr(base.carbon, f"{k}_chips") for k in ("train", "val", "test")}
    results["data"] = {
        "chips": len(json.loads((args.chips / "manifest.json").read_text())["chips"]),
        **splits,
    }
    runs = results.setdefault("runs", {})
    rows = results.setdefault("rows", {})
    test_dir = args.chips / splits["test"][0]
    train_dir = args.chips / splits["train"][0]
    for kind in NAIVE:  # they need the chips only, so even --report-only adds them when missing
        if kind not in rows:
            rows[kind] = measure_naive(kind, train_dir, test_dir, args)
            save()
    if args.report_only:
        write_report(results, args)
        print(f"wrote {args.out / 'README.md'}")
        return
    logs = args.out / "training_logs"
    logs.mkdir(exist_ok=True)
    for name in args.only:
        overrides = [
            f"data.root={args.chips}",
            f"output_dir={args.runs_root / name}",
            f"name={name}",
        ]
        print(f"training {name} ...", flush=True)
        method = ("carbon", METHODS[name]) if name in METHODS else None
        runs[name] = train(name, BASE, overrides + VARIANTS[name] + args.set, method)
        shutil.copyfile(Path(runs[name]["run_dir"]) / "metrics.jsonl", logs / f"{name}.jsonl")
        save()
    if args.train_only:
        return
    if "iidm" in runs and "kd_vgg" not in results:
        print("distilling the IIDM's VGG extractor (PCA KD) ...", flush=True)
        out = args.runs_root / "iidm_kd_vgg"
        start = time.perf_counter()
        summary = compress_carbon_vgg(
            runs["iidm"]["run_dir"],
            out,
            block_steps=KD_BLOCK_STEPS,
            chain_steps=KD_CHAIN_STEPS,
            progress=False,
            overwrite=True,  # the study's own folder: files of an interrupted run are replaced
        )
        results["kd_vgg"] = {
            **summary,
            "out": str(out),
            "seconds": time.perf_counter() - start,
        }
        rows.pop("iidm_kd_vgg", None)
        save()
    if "iidm" in runs and "kd_unet" not in results and not args.no_kd_unet:
        print("distilling the IIDM's UNet (PCA KD) ...", flush=True)
        out = args.runs_root / "iidm_kd_unet"
        start = time.perf_counter()
        try:
            summary = compress_carbon_unet(
                runs["iidm"]["run_dir"],
                out,
                encoder_steps=args.kd_unet_steps,
                decoder_steps=args.kd_unet_steps,
                progress=False,
                overwrite=True,
            )
        except DataError as error:  # e.g. nothing to compress at 85%: reported, not fatal
            results["kd_unet"] = {"error": str(error)}
        else:
            results["kd_unet"] = {
                **summary,
                "out": str(out),
                "seconds": time.perf_counter() - start,
                "steps": args.kd_unet_steps,
            }
        rows.pop("iidm_kd_unet", None)
        save()
    if "kd_vgg" in results:
        shutil.copyfile(Path(results["kd_vgg"]["out"]) / "table_a2.md", args.out / "table_a2.md")
    if "out" in results.get("kd_unet", {}):
        shutil.copyfile(
            Path(results["kd_unet"]["out"]) / "table_a2_unet.md", args.out / "table_a2_unet.md"
        )
    deep = {name: run["run_dir"] for name, run in runs.items()}
    for key in ("kd_vgg", "kd_unet"):
        if "out" in results.get(key, {}):
            deep[f"iidm_{key}"] = str(Path(results[key]["out"]) / "run")
    for name, run_dir in deep.items():
        if name not in rows:
            print(f"measuring {name} ...", flush=True)
            rows[name] = measure_deep(name, run_dir, test_dir, args)
            save()
    for kind in PIXEL_BASELINES:
        if kind not in rows:
            print(f"fitting {kind} ...", flush=True)
            rows[kind] = measure_pixel(kind, train_dir, test_dir, args)
            save()
    truth = _chip_arrays(test_dir)
    maps = {"truth": np.where(truth["forest"], truth["carbon"], np.nan)}
    for name in TABLE2:
        path = args.work / f"{name}_map.npy"
        if path.is_file():
            maps[LABELS[name]] = np.where(truth["forest"], np.load(path), np.nan)
    save_map_panel(maps, args.out / "maps.png", unit="Mg C/ha", panel_inches=2.2)
    curves = {LABELS[k]: read_losses(Path(v["run_dir"])) for k, v in runs.items()}
    save_loss_curves(curves, args.out / "loss_curves.png", smoothing=0.9, log_y=True)
    write_report(results, args)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
