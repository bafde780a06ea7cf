"""The ``terradiff`` command line: the parser of every verb and :func:`main`. No maths here.

``terradiff --help`` lists every verb; ``terradiff VERB --help`` explains each option. What a
verb does lives in :mod:`terradiff.commands` (the whole-raster verbs in
:mod:`terradiff.map_commands`); :func:`main` sets up the process (threads, OpenMP waiting,
allocator, logging, signals) and turns every user-caused failure into one line.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys

from terradiff import __version__, commands, map_commands
from terradiff.cli_options import (
    add_fast,
    add_input_scaling,
    add_mapping_options,
    add_no_cog,
    add_nodata,
    add_precision,
    mcev_threshold,
    non_negative_int,
    positive_int,
)
from terradiff.config import SAMPLER_NAMES
from terradiff.errors import StoppedBySignalError, TerradiffError
from terradiff.runtime import (
    configure_threads,
    enable_cudnn_autotuner,
    prefer_bounded_openmp_spinning,
    tune_cpu_allocator,
)
from terradiff.signals import SignalReceived, raise_on_signals


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="terradiff",
        description="Diffusion models for Earth-observation imagery.",
    )
    parser.add_argument("--version", action="version", version=f"terradiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: OMP_NUM_THREADS if set, else the cores this "
        "process may use); on a machine shared with other jobs give each job its share",
    )
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
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the previous run in the output folder and start again (without it, a "
        "folder that holds a run is refused: continue it with --resume latest)",
    )
    train.set_defaults(func=commands.train_command)

    sample = verbs.add_parser(
        "sample",
        help="draw images from a trained model",
        description="Draw images from a checkpoint (its EMA weights) and save a grid PNG.",
    )
    sample.add_argument("checkpoint", help="run folder (latest checkpoint) or step_* folder")
    sample.add_argument("--n", type=positive_int, default=16, help="number of images (16)")
    sample.add_argument("--sampler", choices=SAMPLER_NAMES, help="default: the config's")
    sample.add_argument(
        "--steps", type=positive_int, help="sampling steps (not for ddpm; default 20)"
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--batch-size",
        type=positive_int,
        help="images of a generation model per sampler call, to bound memory for a large --n "
        "(default: all at once; the images depend on it, through one noise stream)",
    )
    sample.add_argument("--out", default="outputs/samples.png", help="grid PNG path")
    sample.add_argument(
        "--data",
        help="images the inputs of a super-resolution, carbon, change or temporal model come "
        "from (default: the config's data.root)",
    )
    sample.add_argument("--chain", metavar="PNG", help="also save a denoising-chain figure")
    sample.add_argument("--tif-dir", metavar="DIR", help="also write each image as a GeoTIFF")
    add_no_cog(sample)
    sample.add_argument("--no-ema", action="store_true", help="use the raw (non-EMA) weights")
    sample.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_fast(sample)
    sample.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    sample.add_argument(
        "--class", dest="class_name", metavar="NAME", help="class of a class-conditional model"
    )
    sample.add_argument(
        "--metadata",
        metavar="K=V,...",
        help="metadata of a metadata-conditional model, e.g. month=7,gsd=10 (a field left out "
        "uses its learned null)",
    )
    sample.add_argument(
        "--guidance",
        type=float,
        metavar="S",
        help="classifier-free guidance scale: out = out_null + S (out_cond - out_null); 0 is "
        "unconditional, 1 plain conditional, >1 stronger (default: the config's sample.guidance)",
    )
    sample.set_defaults(func=commands.sample_command)

    synth = verbs.add_parser(
        "synthesize",
        help="write a labelled folder of generated images",
        description="Draw --per-class images of every class of a class-conditional model into "
        "OUT/<class>/<class>_0000.tif ... (GeoTIFFs in the training data's units), a folder any "
        "training script that reads class sub-folders can use.",
    )
    synth.add_argument("checkpoint", help="run folder (latest checkpoint) or step_* folder")
    synth.add_argument("--per-class", type=positive_int, required=True, help="images per class")
    synth.add_argument("--out", required=True, help="the folder to write")
    synth.add_argument("--classes", help="only these classes, comma-separated (default: all)")
    synth.add_argument("--guidance", type=float, metavar="S", help="as for `sample`")
    synth.add_argument("--sampler", choices=SAMPLER_NAMES, help="default: the config's")
    synth.add_argument("--steps", type=positive_int, help="sampling steps (default: the config's)")
    synth.add_argument("--batch-size", type=positive_int, default=64, help="images per call")
    synth.add_argument("--seed", type=int, default=0, help="class k uses seed + k")
    synth.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision(synth)
    synth.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_no_cog(synth)
    synth.set_defaults(func=commands.synthesize_command)

    evaluate = verbs.add_parser(
        "evaluate",
        help="FID/KID of a generator; PSNR/SSIM of a super-resolution model; F1/IoU of a "
        "change model; PSNR/SSIM of a temporal model beside persistence",
        description="Generation: sample N images and compute FID and KID against the real images "
        "of the checkpoint's dataset, over the features of an encoder (offline default: "
        "terradiff's AID classifier; 'inception' needs --encoder-weights PATH). Super-resolution: "
        "PSNR, SSIM, SSIM-Y, MAE, the detail above the LR's Nyquist frequency against the "
        "reference's (hf_power_db, lsd_hf_db; LPIPS with --lpips-weights) on N real images "
        "degraded by bicubic down-sampling, beside plain bicubic up-sampling. Temporal: PSNR/SSIM "
        "per band and on the visible bands of the model and of persistence on the held-out pairs, "
        "with a bootstrap interval of the difference.",
    )
    evaluate.add_argument("checkpoint")
    evaluate.add_argument(
        "--n",
        type=positive_int,
        help="images (default: config evaluate.num_samples; FID >= 2); temporal: at most N test "
        "windows (default all)",
    )
    evaluate.add_argument("--sampler", choices=SAMPLER_NAMES)
    evaluate.add_argument(
        "--steps", type=positive_int, help="sampling steps (default: the config's)"
    )
    evaluate.add_argument(
        "--guidance", type=float, metavar="S", help="guidance scale of a conditional generator"
    )
    evaluate.add_argument("--encoder", help="aid-cnn (default), inception, or a .safetensors path")
    evaluate.add_argument("--encoder-weights", help="local weights file for --encoder inception")
    evaluate.add_argument("--data", help="real images to compare with (default: the config's)")
    evaluate.add_argument(
        "--lpips-weights", help="super-resolution: local LPIPS weights file (adds LPIPS)"
    )
    evaluate.add_argument(
        "--distance-encoder",
        metavar="PATH",
        help="super-resolution: another aid-cnn encoder (.safetensors + .json) for the AID "
        "feature distance, e.g. one trained apart to score a model trained against the shipped one",
    )
    evaluate.add_argument(
        "--scale", type=float, help="super-resolution: scale (implicit: any; default: the model's)"
    )
    evaluate.add_argument(
        "--image-size", type=int, help="super-resolution: HR centre-crop size (default: config)"
    )
    evaluate.add_argument(
        "--ensemble",
        type=positive_int,
        default=1,
        metavar="N",
        help="super-resolution with a diffusion model: N draws per image, scored as their mean "
        "(with the score of 1, 2, 4, ... draws and the ensemble's spread-skill calibration); "
        "carbon with a diffusion model: the mean of N maps per chip",
    )
    evaluate.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        help="change: the tiles scored (default test; 'train' scores the labelled training "
        "tiles whole, where the printed F1-optimal threshold may be chosen); carbon: the chips "
        "scored (default test; choose settings on 'val')",
    )
    evaluate.add_argument(
        "--threshold",
        type=float,
        help="change: change probability above which a pixel is change (default: the model's)",
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="also write the metrics as JSON here")
    evaluate.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision(evaluate)
    evaluate.set_defaults(func=commands.evaluate_command)

    sr = verbs.add_parser(
        "super-resolve",
        help="super-resolve a whole GeoTIFF with a trained model",
        description="Super-resolve a raster of any size in overlapping, blended tiles. The output "
        "keeps the CRS and bounds, divides the pixel size by the scale and keeps nodata as nodata; "
        "a STAC Item (OUTPUT stem + .stac.json) is written beside it (with the stac extra).",
    )
    sr.add_argument("input", help="low-resolution GeoTIFF, or a local STAC Item JSON")
    sr.add_argument("output", help="GeoTIFF to write (refused if it exists, unless --overwrite)")
    sr.add_argument("--model", required=True, help="super-resolution run or checkpoint folder")
    sr.add_argument("--scale", type=float, help="must match the model's scale (checked)")
    add_mapping_options(sr, tile=64, overlap=16)
    sr.add_argument(
        "--ensemble",
        type=positive_int,
        default=1,
        metavar="N",
        help="diffusion models: N draws per tile; writes their mean (higher PSNR than one draw), "
        "then their per-pixel std (float32)",
    )
    sr.add_argument("--summary", metavar="JSON", help="also write the run's summary (tiles, s)")
    sr.set_defaults(func=map_commands.super_resolve_command)

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
    prep.set_defaults(func=commands.carbon_prepare_command)

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
    inv.set_defaults(func=commands.carbon_inventory_command)

    est = verbs.add_parser(
        "estimate",
        help="map carbon density over whole GeoTIFFs with a trained carbon model",
        description="Tiled, blended carbon-density map (Mg C/ha) of each --image with the "
        "input's georeferencing; nodata stays nodata. Prints the total carbon (Mg C) and the "
        "mean density over valid pixels (forest pixels with --mask). Several --image give one "
        "map per date in the --out folder and a panel PNG. Each map gets a STAC Item "
        "(<map>.stac.json, with the stac extra) holding its totals.",
    )
    est.add_argument("--model", required=True, help="carbon run or checkpoint folder")
    est.add_argument(
        "--image",
        required=True,
        action="append",
        help="image GeoTIFF, or a local STAC Item JSON whose assets hold the model's bands "
        "(repeatable)",
    )
    est.add_argument("--out", required=True, help="output GeoTIFF (a folder for several images)")
    est.add_argument("--mask", help="forest mask raster on the same grid (forest > 0)")
    est.add_argument("--ensemble", type=positive_int, help="samples per tile (mean and std)")
    est.add_argument("--uncertainty", action="store_true", help="add a std band")
    add_mapping_options(est, tile=128, overlap=32)
    est.add_argument("--summary", metavar="JSON", help="also write totals and timings as JSON")
    est.set_defaults(func=map_commands.estimate_command)

    chg = verbs.add_parser(
        "change",
        help="map change between a before and an after image with a change model",
        description="Change mask of two co-registered images of one place (GeoTIFF, PNG or "
        "JPEG; same size) in blended tiles: a uint8 GeoTIFF, 1 = change, 0 = no change, 255 = "
        "no data, with the before image's georeferencing (if any), and a STAC Item (OUT stem + "
        ".stac.json, with the stac extra) beside a georeferenced mask. Either image may be a "
        "local STAC Item (both, or neither). Score a change model on its test pairs with "
        "`terradiff evaluate RUN`.",
    )
    chg.add_argument("--model", required=True, help="change run or checkpoint folder")
    chg.add_argument("--before", required=True, help="the earlier image (or its STAC Item)")
    chg.add_argument(
        "--after", required=True, help="the later image, same size and grid (or its STAC Item)"
    )
    chg.add_argument("--out", required=True, help="mask GeoTIFF to write")
    chg.add_argument(
        "--threshold",
        type=float,
        help="change probability above which a pixel is change "
        "(default: the model's change.threshold, 0.5)",
    )
    add_input_scaling(chg)
    chg.add_argument("--png", metavar="PNG", help="also write the mask as a black/white PNG")
    chg.add_argument(
        "--probability", action="store_true", help="add band 2: the change probability x 255"
    )
    chg.add_argument("--tile", type=positive_int, default=256, help="tile side (256)")
    chg.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (32)")
    chg.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision(chg)
    chg.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    chg.add_argument("--no-cog", action="store_true", help="a plain GeoTIFF mask, not a COG")
    chg.set_defaults(func=map_commands.change_command)

    fc = verbs.add_parser(
        "forecast",
        help="generate the image of a place at a target date from an earlier image of it",
        description="Temporal generation with a 'temporal' model: the before --image and the "
        "target --date (and the before image's date: --source-date, else a STAC Item's "
        "datetime, else its acquisition-date tag or file name) -> the after image, in blended "
        "tiles, with the input's CRS, transform and size; nodata stays nodata; a STAC Item is "
        "written beside it. --ensemble N writes the per-pixel mean, then the per-pixel std "
        "bands. Score a model against persistence with `terradiff evaluate RUN`.",
    )
    fc.add_argument("--model", required=True, help="temporal run or checkpoint folder")
    fc.add_argument(
        "--image",
        required=True,
        help="the before image (the model's bands), or a local STAC Item JSON holding them",
    )
    fc.add_argument("--date", required=True, help="target date, YYYY-MM or YYYY-MM-DD")
    fc.add_argument(
        "--bands",
        help="bands of --image in the model's order, e.g. 1,2,3,4,5,6,7,8,9,10 of an 11-band "
        "BioMassters file, or names (default: all bands, which must be the model's)",
    )
    add_input_scaling(fc)
    add_nodata(fc)
    fc.add_argument(
        "--source-date", help="the before image's date (default: STAC datetime/tags/file name)"
    )
    fc.add_argument("--out", required=True, help="the after image GeoTIFF to write")
    fc.add_argument(
        "--ensemble", type=positive_int, default=1, help="forecasts per tile: mean + std bands"
    )
    fc.add_argument("--sampler", choices=SAMPLER_NAMES)
    fc.add_argument("--steps", type=positive_int, help="sampler steps (default: the model's)")
    fc.add_argument(
        "--guidance",
        type=float,
        metavar="S",
        help="classifier-free guidance on the dates: out = out_null + S (out_cond - out_null); 0 "
        "ignores the dates, 1 plain conditional (default: the model's sample.guidance)",
    )
    fc.add_argument("--seed", type=int, default=0, help="seed of the noise (per tile)")
    fc.add_argument("--tile", type=positive_int, default=256, help="tile side (256)")
    fc.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (32)")
    fc.add_argument("--batch-size", type=positive_int, default=4, help="tiles per model call")
    fc.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision(fc)
    fc.add_argument("--overwrite", action="store_true", help="replace an existing output")
    fc.add_argument("--no-cog", action="store_true", help="a plain tiled GeoTIFF, not a COG")
    fc.set_defaults(func=map_commands.forecast_command)

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
        "--threshold", type=mcev_threshold, default=0.85, help="mCEV to keep, in (0, 1]"
    )
    comp.add_argument(
        "--part",
        choices=["vgg", "unet"],
        default="vgg",
        help="the VGG extractor (KD-VGG) or the denoising UNet (KD-UNet)",
    )
    comp.add_argument(
        "--basis-epochs", type=positive_int, default=3, help="passes to learn eigenbases"
    )
    comp.add_argument(
        "--encoder-steps", type=non_negative_int, default=200, help="unet: encoder phase steps"
    )
    comp.add_argument(
        "--decoder-steps", type=non_negative_int, default=200, help="unet: decoder phase steps"
    )
    comp.add_argument(
        "--block-steps", type=non_negative_int, default=300, help="blockwise training steps"
    )
    comp.add_argument(
        "--chain-steps", type=non_negative_int, default=100, help="chain fine-tuning steps"
    )
    comp.add_argument("--quiet", action="store_true", help="no progress bars")
    comp.add_argument(
        "--overwrite", action="store_true", help="replace an earlier compression in --out"
    )
    comp.set_defaults(func=commands.compress_command)

    exp = verbs.add_parser(
        "export-diffusers",
        help="write a run's UNet + schedule as a diffusers folder",
        description="Write the run's UNet (EMA weights) as a diffusers UNet2DModel folder "
        "(config.json + diffusion_pytorch_model.safetensors) with its DDPM/DDIM "
        "scheduler_config.json; UNet2DModel.from_pretrained(DIR) loads it offline. Needs only "
        "safetensors, not diffusers.",
    )
    exp.add_argument("run", help="run folder (latest checkpoint) or step_* folder")
    exp.add_argument("--out", required=True, help="the diffusers folder to write")
    exp.add_argument("--no-ema", action="store_true", help="export the raw (non-EMA) weights")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    exp.set_defaults(func=commands.export_diffusers_command)

    imp = verbs.add_parser(
        "import-diffusers",
        help="turn a diffusers UNet2DModel + scheduler folder into a terradiff run",
        description="Map a local diffusers UNet2DModel folder and its DDPMScheduler/"
        "DDIMScheduler config onto a terradiff generation run that `sample` and `evaluate` "
        "load; a config key terradiff cannot represent is refused by name. Needs no diffusers.",
    )
    imp.add_argument("folder", help="diffusers folder (or pipeline folder with unet/, scheduler/)")
    imp.add_argument("--out", required=True, help="the run folder to write")
    imp.add_argument("--scheduler", help="scheduler_config.json when it is not in FOLDER")
    imp.add_argument("--data-root", help="real images `evaluate` compares with (default: none)")
    imp.add_argument("--bands", help="band names in the net's order, e.g. red,green,blue")
    imp.add_argument(
        "--scaling", default="none", help="how raw values map to [0, 1] (uint8, none, ...)"
    )
    imp.add_argument("--image-size", type=int, help="image size when config has no sample_size")
    imp.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    imp.set_defaults(func=commands.import_diffusers_command)

    info = verbs.add_parser(
        "info", help="describe a checkpoint", description="Print a checkpoint's config and state."
    )
    info.add_argument("checkpoint")
    info.set_defaults(func=commands.info_command)
    return parser


def _os_error_message(error: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, and the usual fix."""
    path = error.filename or ""
    reason = error.strerror or str(error)
    if not path:  # raised with a message of its own (naming the file), not by the OS
        return reason
    if isinstance(error, NotADirectoryError) or error.errno == errno.ENOTDIR:
        return f"{path}: a parent of this path is a file, not a folder; choose another path"
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file or folder; check the path"
    if isinstance(error, PermissionError):
        return f"{path}: permission denied; choose a path you can write to"
    return f"{path}: {reason}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``terradiff`` console script.

    Every user-caused failure ends with one line ``terradiff VERB: error: ...`` on stderr and exit
    code 2 (no traceback; ``--debug`` or ``TERRADIFF_DEBUG=1`` shows it). SIGINT/SIGTERM end with
    one line and exit code 130/143 after cleaning up (see :mod:`terradiff.signals`).
    """
    prefer_bounded_openmp_spinning()  # before anything imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["terradiff", *(sys.argv[1:] if argv is None else argv)]
    debug = args.debug or os.environ.get("TERRADIFF_DEBUG", "") not in ("", "0")
    tune_cpu_allocator()
    configure_threads(args.threads)
    enable_cudnn_autotuner()  # fixed shapes on CUDA: time cuDNN's algorithms once per shape
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # GDAL's INFO chatter (logger rasterio._err) would precede terradiff's one error line
    logging.getLogger("rasterio").setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    prefix = f"terradiff {args.verb}"
    with raise_on_signals():
        try:
            return int(args.func(args))
        except TerradiffError as error:
            if debug:
                raise
            kind = "" if isinstance(error, StoppedBySignalError) else "error: "
            print(f"{prefix}: {kind}{error}", file=sys.stderr)
            return error.exit_code
        except (SignalReceived, KeyboardInterrupt) as stop:
            if debug:
                raise
            signum = stop.signum if isinstance(stop, SignalReceived) else signal.SIGINT
            name = signal.Signals(signum).name
            print(f"{prefix}: stopped by {name}; no partial output was left", file=sys.stderr)
            return 128 + signum
        except BrokenPipeError:  # e.g. `terradiff info RUN | head -3`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as error:
            if debug:
                raise
            print(f"{prefix}: error: {_os_error_message(error)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
