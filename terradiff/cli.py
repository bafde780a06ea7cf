"""The ``terradiff`` command line: parse, load config, call a task. No maths here.

``terradiff --help`` lists every verb; ``terradiff VERB --help`` explains each option.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from terradiff import __version__
from terradiff.config import SAMPLER_NAMES
from terradiff.errors import TerradiffError
from terradiff.runtime import tune_cpu_allocator
from terradiff.signals import SignalReceived, raise_on_signals


def _cmd_train(args: argparse.Namespace) -> int:
    from terradiff.config import load_config
    from terradiff.tasks import build_task
    from terradiff.train import Trainer

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_config(args.config, overrides)
    task = build_task(config)
    trainer = Trainer(task, config.output_dir, resume=args.resume)
    result = trainer.fit()
    print(
        f"trained {config.task} '{config.name}' to step {result.step} "
        f"({result.seconds / 60:.1f} min, stopped by {result.stopped_by}); "
        f"checkpoint: {result.checkpoint}"
    )
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from terradiff.tasks import load_task
    from terradiff.viz import save_chain_figure, save_image_grid

    task, _ = load_task(args.checkpoint, use_ema=not args.no_ema, device=args.device or "auto")
    generator = torch.Generator().manual_seed(args.seed)
    spec = task.sampling_spec(args.sampler, args.steps)
    out = task.sample(
        task.net,
        args.n,
        generator=generator,
        spec=spec,
        return_trajectory=args.chain is not None,
        progress=True,
    )
    rgb = task.config.data.rgb_bands
    out_path = Path(args.out)
    samples = out.sample.cpu()
    save_image_grid(samples, out_path, rgb_bands=rgb)
    how = f"{spec.sampler}, {spec.steps} steps" if spec is not None else "one pass"
    print(f"wrote {args.n} samples ({how}) to {out_path}")
    if args.chain is not None:
        save_chain_figure(out.trajectory, Path(args.chain), rgb_bands=rgb)
        print(f"wrote the denoising chain to {args.chain}")
    if args.tif_dir is not None:
        from terradiff.sampling_io import write_samples_geotiff

        paths = write_samples_geotiff(samples, task.band_info, Path(args.tif_dir))
        print(f"wrote {len(paths)} GeoTIFFs in physical units to {args.tif_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from terradiff.checkpoint import read_checkpoint_config
    from terradiff.evaluate import evaluate_checkpoint, evaluate_super_resolution

    if read_checkpoint_config(args.checkpoint).get("task") == "super_resolution":
        result = evaluate_super_resolution(
            args.checkpoint,
            num_images=args.n or 64,
            sampler=args.sampler,
            steps=args.steps,
            seed=args.seed,
            data_root=args.data,
            scale=args.scale,
            image_size=args.image_size,
            lpips_weights=args.lpips_weights,
            device=args.device,
        )
    else:
        result = evaluate_checkpoint(
            args.checkpoint,
            num_samples=args.n,
            sampler=args.sampler,
            steps=args.steps,
            encoder=args.encoder,
            encoder_weights=args.encoder_weights,
            seed=args.seed,
            data_root=args.data,
            device=args.device,
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from terradiff.io import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
        print(f"wrote {args.out}")
    return 0


def _cmd_super_resolve(args: argparse.Namespace) -> int:
    from terradiff.mapping import super_resolve_raster

    summary = super_resolve_raster(
        args.model, args.input, args.output, scale=args.scale, **_mapping_kwargs(args)
    )
    print(
        f"wrote {summary.path}: {summary.width}x{summary.height} px, {summary.count} bands, "
        f"x{summary.scale}, {summary.tiles} tiles in {summary.seconds:.1f} s"
    )
    if args.summary:
        from dataclasses import asdict

        from terradiff.io import atomic_write_text

        record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(summary).items()}
        atomic_write_text(Path(args.summary), json.dumps(record, indent=2) + "\n")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from terradiff.checkpoint import load_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks import migrate_checkpoint_config

    ckpt = load_checkpoint(args.checkpoint)
    source = f"{ckpt.path}/config.json"
    raw, saved_bands = migrate_checkpoint_config(ckpt.config, source)
    config = config_from_dict(raw, source)
    bands = BandInfo.from_dict(saved_bands, source)
    cfg = config.to_dict()
    section = {"super_resolution": "sr", "carbon": "carbon"}.get(config.task)
    method = cfg.get(section) if section else None
    n_params = sum(v.numel() for v in ckpt.model_state.values())
    losses = ckpt.trainer_meta.get("losses", [])
    lines = [
        f"checkpoint   {ckpt.path}",
        f"task         {config.task}  (terradiff {ckpt.config.get('terradiff_version')})",
        f"method       {json.dumps(method)}" if isinstance(method, dict) else "",
        f"step         {ckpt.step}",
        f"last loss    {losses[-1][1]:.5f}" if losses else "last loss    -",
        f"bands        {bands.count}  {list(bands.names)}  scaling={bands.scaling}",
        f"image size   {config.data.image_size}",
        f"parameters   {n_params:,}",
        f"EMA weights  {'yes' if ckpt.ema_state is not None else 'no'}",
        f"schedule     {json.dumps(cfg['diffusion'])}",
        f"model        {json.dumps(cfg['model'])}",
        f"sampler      {json.dumps(cfg['sample'])}",
    ]
    print("\n".join(line for line in lines if line))
    return 0


def _cmd_carbon_prepare(args: argparse.Namespace) -> int:
    from terradiff.carbon.prepare import prepare_biomassters

    chips = prepare_biomassters(
        args.root,
        args.out,
        chips=args.chips,
        method=args.method,
        cloud_threshold=args.cloud_threshold,
        min_clear_fraction=args.min_clear,
        carbon_fraction=args.carbon_fraction,
        overwrite=args.overwrite,
    )
    print(f"prepared {len(chips)} chip(s) under {args.out} (see {args.out}/manifest.json)")
    return 0


def _mcev_threshold(text: str) -> float:
    """argparse type: an mCEV threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"the mCEV threshold is a fraction of the variance in (0, 1], e.g. 0.85; got {value}"
        )
    return value


def _cmd_compress(args: argparse.Namespace) -> int:
    from terradiff.compress import compress_carbon_unet, compress_carbon_vgg

    if args.part == "unet":
        result = compress_carbon_unet(
            args.run,
            args.out,
            threshold=args.threshold,
            basis_epochs=args.basis_epochs,
            encoder_steps=args.encoder_steps,
            decoder_steps=args.decoder_steps,
            progress=not args.quiet,
        )
        print(
            f"KD-UNet: base width {result['base_channels']}, {result['student_parameters']:,} "
            f"parameters (teacher {result['teacher_parameters']:,}; KD ratio "
            f"{result['kd_ratio']:.1f}x)\n"
            f"  table:      {Path(args.out) / 'table_a2_unet.md'}\n"
            f"  checkpoint: {result['checkpoint']} (use it with 'terradiff estimate --model')"
        )
        return 0

    summary = compress_carbon_vgg(
        args.run,
        args.out,
        threshold=args.threshold,
        basis_epochs=args.basis_epochs,
        block_steps=args.block_steps,
        chain_steps=args.chain_steps,
        progress=not args.quiet,
    )
    errors = ", ".join(f"{e:.3f}" for e in summary["relative_feature_error"])
    floor = ", ".join(f"{e:.3f}" for e in summary["basis_floor_error"])
    print(
        f"KD-VGG: {summary['student_parameters']:,} parameters (teacher "
        f"{summary['teacher_parameters']:,}; KD ratio {summary['kd_ratio']:.1f}x), widths "
        f"{summary['vgg_channels']}; relative feature error per stage {errors} (a perfect "
        f"student with these bases: {floor})\n"
        f"  weights:    {summary['kd_vgg']}\n"
        f"  table:      {Path(args.out) / 'table_a2.md'}\n"
        f"  checkpoint: {summary['checkpoint']} (use it with 'terradiff estimate --model')\n"
        f"  to train a new IIDM with it: carbon.vgg_channels={json.dumps(summary['vgg_channels'])}"
        f" carbon.kd_vgg={summary['kd_vgg']}"
    )
    return 0


def _cmd_carbon_inventory(args: argparse.Namespace) -> int:
    from terradiff.carbon.inventory import inventory_to_carbon
    from terradiff.carbon.stock import CarbonFactors

    result = inventory_to_carbon(
        args.polygons,
        args.canopy_height,
        args.out,
        volume_field=args.volume_field,
        factors=CarbonFactors(args.delta, args.rho, args.gamma),
        mask_path=args.mask,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {result.density_path}: {result.polygons_used} polygon(s), total carbon "
        f"{result.total_carbon_mg:,.1f} Mg C"
    )
    for index, reason in result.skipped:
        print(f"skipped polygon {index}: {reason}")
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from terradiff.mapping import estimate_carbon_maps

    result = estimate_carbon_maps(
        args.model,
        args.image,
        args.out,
        mask_path=args.mask,
        ensemble=args.ensemble,
        uncertainty=args.uncertainty,
        summary_path=args.summary,
        on_map=lambda item: print(item.describe()),
        **_mapping_kwargs(args),
    )
    if result.panel is not None:
        print(f"wrote {result.panel}")
    return 0


def _add_mapping_options(parser: argparse.ArgumentParser, *, tile: int, overlap: int) -> None:
    """The options shared by the whole-raster verbs (super-resolve, estimate)."""
    parser.add_argument("--bands", help="input bands in the model's order, e.g. 4,3,2 or B04,B03")
    parser.add_argument("--sampler", choices=SAMPLER_NAMES, help="diffusion sampler")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--tile", type=int, default=tile, help=f"input tile size (default {tile})")
    parser.add_argument(
        "--overlap", type=int, default=overlap, help=f"tile overlap in input pixels ({overlap})"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per model call")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (per tile position)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--dask", action="store_true", help="compute tiles on a local Dask cluster")
    parser.add_argument(
        "--scheduler", help="address of an existing Dask scheduler (implies --dask)"
    )
    parser.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--dask-rows", type=int, help="tile rows per Dask task (default: auto)")


def _mapping_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the whole-raster functions from :func:`_add_mapping_options`."""
    bands = None
    if args.bands:
        bands = [int(b) if b.isdigit() else b for b in args.bands.split(",")]
    return {
        "bands": bands,
        "sampler": args.sampler,
        "steps": args.steps,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "overwrite": args.overwrite,
        "device": args.device,
        "dask": args.dask or args.scheduler is not None,
        "scheduler": args.scheduler,
        "n_workers": args.workers,
        "rows_per_task": args.dask_rows,
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="terradiff",
        description="Diffusion models for Earth-observation imagery.",
    )
    parser.add_argument("--version", action="version", version=f"terradiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error (also TERRADIFF_DEBUG=1)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model from a YAML config. Checkpoints go to OUTPUT_DIR/checkpoints; "
        "runs under `accelerate launch` / `torchrun` unchanged for several GPUs or processes.",
    )
    train.add_argument("config", help="experiment YAML (see configs/)")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.max_steps=500 (repeatable)",
    )
    train.add_argument("--output-dir", help="override output_dir")
    train.add_argument(
        "--resume",
        metavar="latest|PATH",
        help="resume from the latest checkpoint of the run, or from a checkpoint folder",
    )
    train.set_defaults(func=_cmd_train)

    sample = verbs.add_parser(
        "sample",
        help="draw images from a trained model",
        description="Draw images from a checkpoint (its EMA weights) and save a grid PNG.",
    )
    sample.add_argument("checkpoint", help="run folder (latest checkpoint) or step_* folder")
    sample.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--sampler", choices=SAMPLER_NAMES, help="default: the config's")
    sample.add_argument("--steps", type=int, help="sampling steps (not for ddpm; default 20)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="outputs/samples.png", help="grid PNG path")
    sample.add_argument("--chain", metavar="PNG", help="also save a denoising-chain figure")
    sample.add_argument("--tif-dir", metavar="DIR", help="also write each image as a GeoTIFF")
    sample.add_argument("--no-ema", action="store_true", help="use the raw (non-EMA) weights")
    sample.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sample.set_defaults(func=_cmd_sample)

    evaluate = verbs.add_parser(
        "evaluate",
        help="FID/KID of a generator; PSNR/SSIM of a super-resolution model",
        description="Generation: sample N images and compute FID and KID against the real images "
        "of the checkpoint's dataset, over the features of an encoder (offline default: "
        "terradiff's AID classifier; 'inception' needs --encoder-weights PATH). Super-resolution: "
        "PSNR, SSIM, SSIM-Y, MAE (LPIPS with --lpips-weights) on N real images degraded by "
        "bicubic down-sampling, beside plain bicubic up-sampling.",
    )
    evaluate.add_argument("checkpoint")
    evaluate.add_argument(
        "--n", type=int, help="generated images (default: config evaluate.num_samples)"
    )
    evaluate.add_argument("--sampler", choices=SAMPLER_NAMES)
    evaluate.add_argument("--steps", type=int)
    evaluate.add_argument("--encoder", help="aid-cnn (default), inception, or a .safetensors path")
    evaluate.add_argument("--encoder-weights", help="local weights file for --encoder inception")
    evaluate.add_argument("--data", help="real images to compare with (default: the config's)")
    evaluate.add_argument(
        "--lpips-weights", help="super-resolution: local LPIPS weights file (adds LPIPS)"
    )
    evaluate.add_argument(
        "--scale", type=float, help="super-resolution: scale (implicit: any; default: the model's)"
    )
    evaluate.add_argument(
        "--image-size", type=int, help="super-resolution: HR centre-crop size (default: config)"
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="also write the metrics as JSON here")
    evaluate.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    evaluate.set_defaults(func=_cmd_evaluate)

    sr = verbs.add_parser(
        "super-resolve",
        help="super-resolve a whole GeoTIFF with a trained model",
        description="Super-resolve a raster of any size in overlapping, blended tiles. The output "
        "keeps the CRS and bounds, divides the pixel size by the scale and keeps nodata as nodata.",
    )
    sr.add_argument("input", help="low-resolution GeoTIFF")
    sr.add_argument("output", help="GeoTIFF to write (refused if it exists, unless --overwrite)")
    sr.add_argument("--model", required=True, help="super-resolution run or checkpoint folder")
    sr.add_argument("--scale", type=float, help="must match the model's scale (checked)")
    _add_mapping_options(sr, tile=64, overlap=16)
    sr.add_argument("--summary", metavar="JSON", help="also write the run's summary (tiles, s)")
    sr.set_defaults(func=_cmd_super_resolve)

    prep = verbs.add_parser(
        "carbon-prepare",
        help="BioMassters chips -> image/target/mask GeoTIFFs for carbon training",
        description="Composite each chip's monthly Sentinel-2 images without clouds (median of "
        "clear observations, or the clearest month), convert its LiDAR biomass to carbon "
        "density (x carbon fraction) and write <OUT>/<chip>/{image,target,mask}.tif and "
        "manifest.json. Chips with no usable month are skipped and listed.",
    )
    prep.add_argument("root", help="folder of BioMassters chip folders")
    prep.add_argument("out", help="output folder")
    prep.add_argument("--chips", nargs="*", help="chip ids (default: every sub-folder)")
    prep.add_argument("--method", choices=["median", "best_month"], default="median")
    prep.add_argument("--cloud-threshold", type=float, default=50.0, help="cloud probability %%")
    prep.add_argument("--min-clear", type=float, default=0.5, help="min clear fraction of a month")
    prep.add_argument("--carbon-fraction", type=float, default=0.5, help="carbon per dry biomass")
    prep.add_argument("--overwrite", action="store_true")
    prep.set_defaults(func=_cmd_carbon_prepare)

    inv = verbs.add_parser(
        "carbon-inventory",
        help="inventory polygons + canopy height -> carbon-density GeoTIFF",
        description="C = V_ha x area x delta x rho x gamma per polygon, distributed to its pixels "
        "by canopy height normalised within the polygon (the IIDM paper's pre-processing); "
        "writes Mg C/ha on the canopy-height grid. Polygons in another CRS are reprojected; "
        "polygons with a missing or negative volume are skipped and listed.",
    )
    inv.add_argument("polygons", help="GeoPackage/Shapefile with stem volume per hectare")
    inv.add_argument("canopy_height", help="canopy-height GeoTIFF (projected CRS)")
    inv.add_argument("out", help="carbon-density GeoTIFF to write")
    inv.add_argument("--volume-field", default="volume", help="field with m3/ha")
    inv.add_argument("--mask", help="also write the forest mask (0/255) here")
    inv.add_argument("--delta", type=float, default=1.90, help="volume expansion factor")
    inv.add_argument("--rho", type=float, default=0.5, help="basic wood density, t/m3")
    inv.add_argument("--gamma", type=float, default=0.5, help="carbon fraction")
    inv.add_argument("--overwrite", action="store_true")
    inv.set_defaults(func=_cmd_carbon_inventory)

    est = verbs.add_parser(
        "estimate",
        help="map carbon density over whole GeoTIFFs with a trained carbon model",
        description="Tiled, blended carbon-density map (Mg C/ha) of each --image with the "
        "input's georeferencing; nodata stays nodata. Prints the total carbon (Mg C) and the "
        "mean density over valid pixels (forest pixels with --mask). Several --image give one "
        "map per date in the --out folder and a panel PNG.",
    )
    est.add_argument("--model", required=True, help="carbon run or checkpoint folder")
    est.add_argument("--image", required=True, action="append", help="image GeoTIFF (repeatable)")
    est.add_argument("--out", required=True, help="output GeoTIFF (a folder for several images)")
    est.add_argument("--mask", help="forest mask raster on the same grid (forest > 0)")
    est.add_argument("--ensemble", type=int, help="samples per tile (mean and std maps)")
    est.add_argument("--uncertainty", action="store_true", help="add a std band")
    _add_mapping_options(est, tile=128, overlap=32)
    est.add_argument("--summary", metavar="JSON", help="also write totals and timings as JSON")
    est.set_defaults(func=_cmd_estimate)

    comp = verbs.add_parser(
        "compress",
        help="PCA-distil a trained IIDM's VGG extractor (KD-VGG) or UNet (KD-UNet)",
        description="PCA-based knowledge distillation (IIDM paper, appendix 2): measure every "
        "convolution's mean cumulative explained variance on the model's training crops, keep "
        "the channels that reach --threshold, learn the global eigenbases and train the "
        "student block by block. Writes OUT/kd_vgg.safetensors (+ .json), OUT/table_a2.md and "
        "OUT/run, the model with KD-VGG in place (usable by 'terradiff estimate').",
    )
    comp.add_argument("run", help="trained carbon IIDM run or checkpoint folder (the teacher)")
    comp.add_argument("--out", required=True, help="output folder")
    comp.add_argument(
        "--threshold", type=_mcev_threshold, default=0.85, help="mCEV to keep, in (0, 1]"
    )
    comp.add_argument(
        "--part",
        choices=["vgg", "unet"],
        default="vgg",
        help="the VGG extractor (KD-VGG) or the denoising UNet (KD-UNet)",
    )
    comp.add_argument("--basis-epochs", type=int, default=3, help="passes to learn eigenbases")
    comp.add_argument("--encoder-steps", type=int, default=200, help="unet: encoder phase steps")
    comp.add_argument("--decoder-steps", type=int, default=200, help="unet: decoder phase steps")
    comp.add_argument("--block-steps", type=int, default=300, help="blockwise training steps")
    comp.add_argument("--chain-steps", type=int, default=100, help="chain fine-tuning steps")
    comp.add_argument("--quiet", action="store_true", help="no progress bars")
    comp.set_defaults(func=_cmd_compress)

    info = verbs.add_parser(
        "info", help="describe a checkpoint", description="Print a checkpoint's config and state."
    )
    info.add_argument("checkpoint")
    info.set_defaults(func=_cmd_info)
    return parser


def _os_error_message(error: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, and the usual fix."""
    path = error.filename or ""
    reason = error.strerror or str(error)
    if isinstance(error, NotADirectoryError) or error.errno == errno.ENOTDIR:
        return f"{path}: a parent of this path is a file, not a folder; choose another path"
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file or folder; check the path"
    if isinstance(error, PermissionError):
        return f"{path}: permission denied; choose a path you can write to"
    return f"{path}: {reason}" if path else reason


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``terradiff`` console script.

    Every user-caused failure ends with one line ``terradiff VERB: error: ...`` on stderr and exit
    code 2 (no traceback; ``--debug`` or ``TERRADIFF_DEBUG=1`` shows it). SIGINT/SIGTERM end with
    one line and exit code 130/143 after cleaning up (see :mod:`terradiff.signals`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("TERRADIFF_DEBUG", "") not in ("", "0")
    tune_cpu_allocator()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    prefix = f"terradiff {args.verb}"
    with raise_on_signals():
        try:
            return int(args.func(args))
        except TerradiffError as error:
            if debug:
                raise
            print(f"{prefix}: error: {error}", file=sys.stderr)
            return error.exit_code
        except (SignalReceived, KeyboardInterrupt) as stop:
            if debug:
                raise
            signum = stop.signum if isinstance(stop, SignalReceived) else signal.SIGINT
            name = signal.Signals(signum).name
            print(f"{prefix}: stopped by {name}; no partial output was left", file=sys.stderr)
            return 128 + signum
        except OSError as error:
            if debug:
                raise
            print(f"{prefix}: error: {_os_error_message(error)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
