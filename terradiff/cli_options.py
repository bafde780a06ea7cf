"""Options and argument types that several ``terradiff`` verbs share (:mod:`terradiff.cli`
builds the parsers): the whole-raster verbs' tiling and input options, ``--nodata``,
``--no-cog``, ``--fast``/``--precision``, and the argparse types that refuse bad numbers with
exit code 2.
"""

from __future__ import annotations

import argparse

from terradiff.config import FAST_POLICIES, INFERENCE_PRECISIONS, SAMPLER_NAMES


def mcev_threshold(text: str) -> float:
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


def add_input_scaling(parser: argparse.ArgumentParser) -> None:
    """``--input-scaling`` of the verbs that read rasters (read by
    :func:`terradiff.map_commands.input_scaling`)."""
    parser.add_argument(
        "--input-scaling",
        metavar="SCALING",
        help="how the input's values map to [0, 1] when they are not in the units the model was "
        "trained on: a preset (uint8, sentinel2, sen12ms, none) or a JSON mapping, e.g. "
        '\'{"name": "dn", "divisor": 10000, "clip": true}\' (default: the model\'s scaling)',
    )


def add_mapping_options(parser: argparse.ArgumentParser, *, tile: int, overlap: int) -> None:
    """The options shared by the whole-raster verbs (super-resolve, estimate)."""
    parser.add_argument("--bands", help="input bands in the model's order, e.g. 4,3,2 or B04,B03")
    add_input_scaling(parser)
    add_nodata(parser)
    parser.add_argument("--sampler", choices=SAMPLER_NAMES, help="diffusion sampler")
    parser.add_argument(
        "--steps", type=positive_int, help="sampler steps (default: the checkpoint's)"
    )
    parser.add_argument("--tile", type=int, default=tile, help=f"input tile size (default {tile})")
    parser.add_argument(
        "--overlap", type=int, default=overlap, help=f"tile overlap in input pixels ({overlap})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="tiles per model call (lowered on the CPU while a batch's activations exceed 512 MiB, "
        "on CUDA while they exceed 60%% of the GPU's free memory)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (per tile position)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_fast(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--dask", action="store_true", help="compute tiles on a local Dask cluster")
    parser.add_argument(
        "--scheduler", help="address of an existing Dask scheduler (implies --dask)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="local Dask worker processes"
    )
    parser.add_argument(
        "--dask-rows", type=positive_int, help="tile rows per Dask task (default: auto)"
    )
    add_no_cog(parser)


def add_nodata(parser: argparse.ArgumentParser) -> None:
    """``--nodata``: the input's fill value, for files that do not declare theirs."""
    parser.add_argument(
        "--nodata",
        type=float,
        metavar="VALUE",
        help="the input's nodata value, overriding the file's (e.g. 0 for a fill the file does "
        "not declare); those pixels are left out and written as nodata",
    )


def add_no_cog(parser: argparse.ArgumentParser) -> None:
    """``--no-cog``: the verbs that write rasters write Cloud-Optimized GeoTIFFs by default."""
    parser.add_argument(
        "--no-cog",
        action="store_true",
        help="write plain tiled GeoTIFFs instead of Cloud-Optimized GeoTIFFs (COG: internal "
        "tiles, overviews, compression with a predictor for the data type)",
    )


def add_fast(parser: argparse.ArgumentParser) -> None:
    """``--fast`` and ``--precision``: how the net runs at inference (``sample.fast`` and
    ``sample.precision`` of the config)."""
    parser.add_argument(
        "--fast",
        choices=FAST_POLICIES,
        help="run the denoiser as a CUDA graph per shape (graph), compiled (compile), both "
        "(compile+graph; compile on CPU) or eager (off); auto = graph on CUDA, off on CPU; same "
        "samples (default: the model's sample.fast)",
    )
    add_precision(parser)


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision``: the net's number format at inference (``sample.precision``)."""
    parser.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        help="the net's number format: bf16 or fp16 autocast, or fp32; auto = bf16 on a CUDA "
        "device with bf16 and on CPUs with AMX-BF16/AVX512-BF16, fp32 elsewhere (default: the "
        "model's sample.precision, fp32 unless its config says otherwise)",
    )


def _whole_number_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer >= ``minimum``, or the argparse error saying what was wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= {minimum}, got {text!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _whole_number_at_least(text, 0)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _whole_number_at_least(text, 1)
