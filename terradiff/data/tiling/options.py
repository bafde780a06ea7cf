"""The options of a tiled run, checked once: one frozen :class:`TilingOptions` for every engine.

:func:`~terradiff.data.tiling.predict_raster` builds it from its keyword arguments and
:func:`~terradiff.data.distributed.predict_raster_dask` from its ``**options``; both hand the same
object to :class:`~terradiff.data.tiling.run.TiledRun`, so a bad option fails with the same
message, before any file is opened, whichever engine runs. :func:`check_output_target` checks an
output path the same way, before any work: never an input, never an existing file without
``overwrite``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terradiff.data.raster import BandNames, BandSelection
from terradiff.data.tiling.geometry import check_grid_args, check_margin
from terradiff.data.transforms import Scaling, get_scaling
from terradiff.errors import DataError

#: A scaling as the options take it: a preset name, a :class:`Scaling` or its dict.
ScalingLike = str | Scaling | Mapping[str, Any]

#: Output data types a tiled run writes.
OUT_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
#: Default ceiling on one batch's memory (MiB): see ``batch_memory_mb`` of :class:`TilingOptions`.
DEFAULT_BATCH_MEMORY_MB = 512.0
#: GeoTIFF compressions a tiled run writes.
GTIFF_COMPRESS: frozenset[str] = frozenset({"deflate", "lzw", "zstd", "packbits", "none"})


def check_scale(scale: Any) -> int:
    """``scale`` as a positive ``int``.

    Raises:
        DataError: ``scale`` is not a whole number ``>= 1`` (``2.0`` is accepted, ``1.5`` not).
    """
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise DataError(f"scale must be a positive integer, got {scale!r}")
    if not math.isfinite(float(scale)) or float(scale) != int(scale) or int(scale) < 1:
        raise DataError(
            f"scale must be a positive integer (output pixel size = input pixel size / scale), "
            f"got {scale!r}; for other factors predict at an integer scale and resample"
        )
    return int(scale)


def check_out_dtype(out_dtype: Any) -> np.dtype:
    """``out_dtype`` as a NumPy dtype of :data:`OUT_DTYPES`.

    Raises:
        DataError: not a dtype, or one a tiled run does not write.
    """
    try:
        dtype = np.dtype(out_dtype)
    except TypeError as err:
        raise DataError(f"out_dtype {out_dtype!r} is not a dtype; use one of {OUT_DTYPES}") from err
    if dtype.name not in OUT_DTYPES:
        raise DataError(f"out_dtype {dtype.name!r} is not supported; use one of {OUT_DTYPES}")
    return dtype


@dataclass(frozen=True)
class TilingOptions:
    """Every option of a tiled run, validated when the object is made.

    The fields are :func:`~terradiff.data.tiling.predict_raster`'s keyword options (all but
    ``progress``) with the same defaults; the attributes after them are derived from the fields
    in ``__post_init__`` (``dataclasses.replace`` derives them again).

    Attributes:
        scaling: how input values become [0, 1] (a preset name of
            :func:`~terradiff.data.transforms.get_scaling`, a :class:`Scaling` or its dict) —
            the model's training scaling.
        scale: integer output/input resolution ratio (2, 4 for super-resolution; 1 for maps);
            stored as an ``int``.
        tile: tile side in input pixels (the model sees ``tile x tile``).
        overlap: minimum overlap of neighbouring tiles in input pixels (``< tile``).
        blend_margin: input pixels at tile edges facing another tile that get (almost) no weight;
            default ``overlap // 4``; at most ``overlap // 2``.
        bands: input bands (1-based indices and/or names); None uses all.
        band_names: names of the file's bands (a list or a product key), for files without
            descriptions.
        nodata: overrides the input's nodata value.
        out_scaling: how the model's output maps back to physical units; default ``scaling``
            (right for super-resolution; give the target's scaling for estimation maps).
        out_bands: expected output channels; checked against every batch.
        out_band_names: band descriptions of the output; default: the input band names when the
            output has as many bands.
        out_dtype: output type (``float32`` default; integer types round and clip).
        out_nodata: output nodata value (default: NaN for float outputs, the input's for integer
            ones).
        batch_size: tiles per ``predict_fn`` call (at most: lowered to the memory budgets, on
            CUDA to a share of the GPU's free memory, see :mod:`~terradiff.data.tiling.memory`).
        device: where to put the model's input and mask (default: CPU).
        compress: GeoTIFF compression (``deflate``, ``lzw``, ``zstd``, ``packbits``, ``none``).
        overwrite: replace an existing output file.
        max_memory_mb: budget for the run's arrays and, on the CPU, the activations of one batch
            (what ``predict_fn.tile_bytes`` reports); the batch size is lowered to fit, and if
            even a batch of one does not fit, a :class:`DataError` is raised before any work.
        batch_memory_mb: ceiling on one batch's memory on the CPU (its input, output and
            activations); the batch size is halved until a batch fits, down to 1, never an
            error; None for no ceiling. It matters only for a ``predict_fn`` that reports its
            activations (``tile_bytes``): large tiles of a UNet take hundreds of MiB each.
        block_tiles: tile columns per column block (rounded up to a whole number of batches;
            default :data:`~terradiff.data.tiling.plan.BLOCK_TILES`); the buffers span one block,
            not the raster's width.
        cog: write the output as a Cloud-Optimized GeoTIFF (internal tiles, overviews, a
            predictor for the data type: :mod:`terradiff.data.cog`); False writes a plain tiled
            GeoTIFF (``--no-cog``).
        tags: more GeoTIFF metadata tags of the output (how it was made, e.g. the net's number
            format), beside the run's own ``TERRADIFF_SOURCE``/``SCALE``/``TILE``/``OVERLAP``.
        input_scaling: ``scaling`` resolved to a :class:`Scaling`.
        output_scaling: ``out_scaling`` resolved (``input_scaling`` when None).
        dtype: ``out_dtype`` as a NumPy dtype.
        codec: ``compress`` in lower case.
        margin: ``blend_margin`` resolved.
        band_count: output bands expected (``out_bands``, or the number of ``out_band_names``).
        output_band_names: ``out_band_names`` as strings.
        budget_bytes: ``max_memory_mb`` in bytes.
        batch_budget_bytes: ``batch_memory_mb`` in bytes.

    Raises:
        DataError: a bad scale, tile, overlap, margin, batch size, output type, compression,
            scaling, memory budget or block size, or ``out_bands`` that disagrees with
            ``out_band_names``.
    """

    scaling: ScalingLike
    scale: int = 1
    tile: int = 256
    overlap: int = 32
    blend_margin: int | None = None
    bands: BandSelection | None = None
    band_names: BandNames | None = None
    nodata: float | None = None
    out_scaling: ScalingLike | None = None
    out_bands: int | None = None
    out_band_names: Sequence[str] | None = None
    out_dtype: str | np.dtype = "float32"
    out_nodata: float | None = None
    batch_size: int = 4
    device: str | torch.device | None = None
    compress: str = "deflate"
    overwrite: bool = False
    max_memory_mb: float | None = None
    batch_memory_mb: float | None = DEFAULT_BATCH_MEMORY_MB
    block_tiles: int | None = None
    cog: bool = True
    tags: Mapping[str, str] | None = field(default=None, compare=False)

    input_scaling: Scaling = field(init=False, repr=False, compare=False)
    output_scaling: Scaling = field(init=False, repr=False, compare=False)
    dtype: np.dtype = field(init=False, repr=False, compare=False)
    codec: str = field(init=False, repr=False, compare=False)
    margin: int = field(init=False, repr=False, compare=False)
    band_count: int | None = field(init=False, repr=False, compare=False)
    output_band_names: list[str] | None = field(init=False, repr=False, compare=False)
    budget_bytes: float | None = field(init=False, repr=False, compare=False)
    batch_budget_bytes: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        derived: dict[str, Any] = {"scale": check_scale(self.scale)}
        check_grid_args(self.tile, self.overlap)
        margin = self.overlap // 4 if self.blend_margin is None else self.blend_margin
        check_margin(self.overlap, margin)
        batch_size = self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        derived["dtype"] = check_out_dtype(self.out_dtype)
        codec = str(self.compress).lower()
        if codec not in GTIFF_COMPRESS:
            raise DataError(f"compress {self.compress!r} is not one of {sorted(GTIFF_COMPRESS)}")
        in_scaling = get_scaling(self.scaling)
        back_scaling = in_scaling if self.out_scaling is None else get_scaling(self.out_scaling)
        band_count, names = self.out_bands, None
        if self.out_band_names is not None:
            names = [str(n) for n in self.out_band_names]
            if band_count is not None and band_count != len(names):
                raise DataError(
                    f"out_bands={band_count} but {len(names)} out_band_names given; give one "
                    "name per output band"
                )
            band_count = len(names)
        budget, batch_budget = self.max_memory_mb, self.batch_memory_mb
        for name, value in (("max_memory_mb", budget), ("batch_memory_mb", batch_budget)):
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise DataError(f"{name} must be a positive number of MiB, got {value!r}")
        block_tiles = self.block_tiles
        if block_tiles is not None and (
            isinstance(block_tiles, bool) or not isinstance(block_tiles, int) or block_tiles < 1
        ):
            raise DataError(f"block_tiles must be a positive integer, got {block_tiles!r}")
        derived.update(
            input_scaling=in_scaling,
            output_scaling=back_scaling,
            codec=codec,
            margin=margin,
            band_count=band_count,
            output_band_names=names,
            budget_bytes=None if budget is None else float(budget) * 2**20,
            batch_budget_bytes=None if batch_budget is None else float(batch_budget) * 2**20,
        )
        for name, value in derived.items():
            object.__setattr__(self, name, value)


#: How an existing output may be replaced, from the command line and from Python.
OVERWRITE_HINT = "pass --overwrite (overwrite=True from Python) to replace it"


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once resolved, or the same inode
    (a hard link, a bind mount, another spelling through a symbolic link)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def check_output_target(
    out_path: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
) -> Path:
    """Refuse an output path whose writing would destroy something or fail half-way.

    Checked before any work, so nothing is written when it fails: ``out_path`` must not be one of
    ``inputs`` (not even with ``overwrite``: the input would be replaced by its own result), not a
    folder, not below a regular file, and not an existing file unless ``overwrite``.

    Args:
        out_path: the file to write.
        overwrite: an existing ``out_path`` may be replaced.
        inputs: the files the run reads as ``(what, path)`` pairs, e.g. ``[("input", a),
            ("mask", b)]``; pairs with a None path are ignored.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: one of the cases above; the message names the path and the fix.
    """
    out = Path(out_path)
    for what, source in inputs:
        if source is not None and same_file(out, source):
            raise DataError(
                f"the output {out} is the {what} {source} (the same file); writing it would "
                "replace the input, even with --overwrite: give another output path"
            )
    if out.is_dir():
        raise DataError(f"{out} is a folder; give a file path to write to")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise DataError(
            f"cannot write {out}: {parent} is a file, not a folder; choose another output path"
        )
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; {OVERWRITE_HINT}")
    return out


def check_output_targets(
    out_paths: Sequence[str | os.PathLike[str]],
    *,
    overwrite: bool,
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
) -> list[Path]:
    """:func:`check_output_target` of every output of a run, before any is written; two outputs
    that are one file are refused too (the second would replace the first).

    Raises:
        DataError: see :func:`check_output_target`, or two outputs naming the same file.
    """
    checked: list[Path] = []
    for path in out_paths:
        out = check_output_target(path, overwrite=overwrite, inputs=inputs)
        for earlier in checked:
            if same_file(out, earlier):
                both = f"{out} is" if str(out) == str(earlier) else f"{earlier} and {out} are"
                raise DataError(f"{both} given for two outputs; give each output its own path")
        checked.append(out)
    return checked


__all__ = [
    "DEFAULT_BATCH_MEMORY_MB",
    "GTIFF_COMPRESS",
    "OUT_DTYPES",
    "OVERWRITE_HINT",
    "ScalingLike",
    "TilingOptions",
    "check_out_dtype",
    "check_output_target",
    "check_output_targets",
    "check_scale",
    "same_file",
]
