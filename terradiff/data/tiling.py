"""Tiled, memory-bounded inference over georeferenced rasters of any size.

:func:`predict_raster` runs a model over a GeoTIFF (or anything GDAL opens) tile by tile and writes
the blended result as a GeoTIFF on the same footprint: same CRS, same bounds, pixel size divided
by ``scale`` (``scale=2`` or ``4`` for super-resolution, ``1`` for estimation maps). It answers the
pain of torchgeo users who stitch tiled predictions by hand (torchgeo issues 1407, 1440, 1991).

Tile grid (:class:`TileGrid`, :func:`tile_windows`)
    Tiles of ``tile x tile`` pixels start every ``tile - overlap`` pixels; the last tile of a row
    or column is shifted inward so that it ends on the raster's edge, so every tile is full-size
    (its overlap with the previous tile is then ``>= overlap``). Along an axis shorter than
    ``tile`` there is one tile, padded by reflection to ``tile`` pixels; the padding is marked
    invalid in the mask given to the model and its predictions are cropped away.

Blending weights (:func:`blend_window`, :func:`blend_weights`)
    Each tile's prediction is multiplied by a separable weight ``w(y) * w(x)``; the output is
    ``sum(w * pred) / sum(w)``. Along an axis, on every side of a tile that faces another tile
    (not the raster's edge) the weight is:

    * ``floor`` (1e-6) over the outer ``margin`` pixels (default ``overlap // 4``): the pixels
      next to a tile's edge are the ones a convolutional model gets wrong (zero/reflect padding
      instead of the real neighbours), so they are practically discarded — the neighbouring tile
      always covers them with a weight of at least ~1 (a "crop and stitch" of the margin);
    * a raised-cosine (half-Hann) ramp ``sin^2(pi/2 * t)`` over the next ``overlap - 2 margin``
      pixels, so the transition from one tile to the next has no step;
    * 1 elsewhere.

    On sides that touch the raster's edge the weight stays 1 (there is nothing to blend with), so
    edge pixels get full weight. Weights are strictly positive everywhere, so every output pixel
    has ``sum(w) > 0``. Where two tiles overlap by exactly ``overlap`` pixels the two ramps are
    complementary (``sin^2 + cos^2 = 1``): the weights sum to 1 and blending is a convex
    combination; where the last tile was shifted inward they sum to between 1 and 2, which the
    division by ``sum(w)`` absorbs. Blending is done in the model's [-1, 1] space, before the
    inverse scaling (which may be non-linear: clipping, gamma).

Memory
    The raster is processed in horizontal strips, one row of tiles at a time: the input strip is
    read with one windowed read (never the whole raster), and accumulation buffers ``sum(w *
    pred)`` and ``sum(w)`` exist only for ``min(tile, height) * scale`` output rows by the full
    output width. When a strip is done, the rows above the next strip's first row are final: they
    are divided, converted to physical units and written to the output window by window; the
    overlap rows are carried over to the next strip. Peak memory is therefore about
    ``(C_out + 1) * 4 * tile * scale * width * scale`` bytes plus one batch, independent of the
    raster's height. ``max_memory_mb`` checks that estimate before any work (the batch size is
    lowered first, then a :class:`~terradiff.errors.DataError` says what to change).

Scale
    ``scale`` is a positive integer: the output has ``height * scale`` rows and ``width * scale``
    columns and ``transform * Affine.scale(1 / scale)``, so its bounds equal the input's exactly.
    Non-integer factors would put tile borders between output pixels and are refused; resample
    the result instead.

Nodata
    An input pixel is invalid where any selected band is nodata, NaN or masked by the file's
    mask band (as :func:`terradiff.data.raster.read_raster` decides). Invalid pixels are fed to
    the model as 0 (the middle of [-1, 1], as the datasets do) and flagged False in
    ``valid_mask``; output pixels whose source pixel (``out_row // scale``, ``out_col //
    scale``) is invalid, or whose prediction is not finite, are written as nodata:

    * float outputs (the default ``float32``): NaN, unless ``out_nodata`` is given;
    * integer outputs: ``out_nodata``, else the input's nodata when the output type can hold it,
      else an internal GDAL mask band (only when the input can have invalid pixels at all). A
      valid integer pixel that would equal the nodata value is moved one step away from it so it
      stays valid.

Atomicity
    The output is written to a hidden temporary file beside ``out_path`` and moved onto it with
    :func:`os.replace` only after the last row is written; an exception (including
    ``KeyboardInterrupt``) removes the temporary file and leaves ``out_path`` untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window
from tqdm.auto import tqdm

from terradiff.data.datasets import DataWarning
from terradiff.data.raster import (
    BandNames,
    BandSelection,
    _file_band_names,
    _open,
    _read_block,
    resolve_bands,
)
from terradiff.data.transforms import Scaling, get_scaling
from terradiff.errors import DataError, RasterError

#: ``predict_fn(batch [B, C, h, w] in [-1, 1], valid_mask [B, 1, h, w] bool)`` ->
#: ``[B, C_out, h * scale, w * scale]`` in [-1, 1]. A ``predict_fn`` that also takes the keyword
#: ``origins`` receives the ``(row, col)`` input-pixel corner of each tile of the batch (to seed
#: its noise per tile, so that a run split over workers draws the same numbers).
PredictFn = Callable[..., Any]

#: Weight of the ``margin`` pixels next to a tile edge that faces another tile.
WEIGHT_FLOOR = 1e-6

_OUT_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_GTIFF_COMPRESS = {"deflate", "lzw", "zstd", "packbits", "none"}
_BLOCK = 256


# --------------------------------------------------------------------------------------------
# tile grid
# --------------------------------------------------------------------------------------------


def _check_grid_args(tile: int, overlap: int) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise DataError(f"tile must be a positive integer (pixels), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise DataError(f"overlap must be an integer >= 0 (pixels), got {overlap!r}")
    if overlap >= tile:
        raise DataError(
            f"overlap ({overlap}) must be smaller than the tile ({tile}); e.g. tile=256, overlap=32"
        )


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """First pixel of every tile along one axis of ``length`` pixels.

    Tiles start every ``tile - overlap`` pixels; the last one is shifted inward to end on the
    edge. An axis no longer than ``tile`` has a single tile at 0.

    Raises:
        DataError: ``length < 1``, ``tile < 1``, ``overlap < 0`` or ``overlap >= tile``.
    """
    _check_grid_args(tile, overlap)
    if length < 1:
        raise DataError(f"cannot tile an axis of {length} pixels")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering a ``height x width`` raster (see the module docstring).

    Attributes:
        height: raster rows.
        width: raster columns.
        tile: tile side in pixels (what the model sees; axes shorter than it are padded).
        overlap: minimum overlap of neighbouring tiles in pixels.
    """

    height: int
    width: int
    tile: int
    overlap: int = 0

    def __post_init__(self) -> None:
        _check_grid_args(self.tile, self.overlap)
        if self.height < 1 or self.width < 1:
            raise DataError(f"cannot tile an empty raster of {self.height} x {self.width} pixels")

    @cached_property
    def row_starts(self) -> list[int]:
        """First row of each row of tiles."""
        return axis_starts(self.height, self.tile, self.overlap)

    @cached_property
    def col_starts(self) -> list[int]:
        """First column of each column of tiles."""
        return axis_starts(self.width, self.tile, self.overlap)

    @property
    def tile_height(self) -> int:
        """Rows of the raster inside a tile (``min(tile, height)``; the rest is padding)."""
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        """Columns of the raster inside a tile (``min(tile, width)``)."""
        return min(self.tile, self.width)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows of tiles, columns of tiles)``."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def windows(self) -> list[Window]:
        """The tiles as rasterio windows clipped to the raster, row by row."""
        return list(self)

    def __iter__(self) -> Iterator[Window]:
        for row in self.row_starts:
            for col in self.col_starts:
                yield Window(col, row, self.tile_width, self.tile_height)


def tile_windows(height: int, width: int, tile: int, overlap: int = 0) -> list[Window]:
    """Windows of ``tile`` pixels with ``overlap`` covering a raster, row by row.

    Shorthand for ``TileGrid(height, width, tile, overlap).windows()``; windows are clipped to
    the raster when it is smaller than a tile.
    """
    return TileGrid(height, width, tile, overlap).windows()


# --------------------------------------------------------------------------------------------
# blending weights
# --------------------------------------------------------------------------------------------


def _check_margin(overlap: int, margin: int) -> None:
    if isinstance(margin, bool) or not isinstance(margin, int | np.integer) or margin < 0:
        raise DataError(f"blend margin must be an integer >= 0 (pixels), got {margin!r}")
    if 2 * margin > overlap:
        raise DataError(
            f"blend margin ({margin}) must be at most half the overlap ({overlap}); the default "
            "is overlap // 4"
        )


def blend_window(
    length: int,
    overlap: int,
    *,
    margin: int = 0,
    ramp_start: bool = True,
    ramp_end: bool = True,
    floor: float = WEIGHT_FLOOR,
) -> np.ndarray:
    """One-dimensional blending weight of a tile (float32, strictly positive).

    Over the first ``overlap`` pixels (when ``ramp_start``): ``floor`` on ``margin`` pixels, then
    ``sin^2(pi / 2 * (i - margin + 0.5) / (overlap - 2 margin))``, then 1; mirrored at the end
    (when ``ramp_end``). Two windows overlapping by exactly ``overlap`` pixels sum to 1 there.

    Args:
        length: pixels of the tile along the axis.
        overlap: width of the blending zone on each ramped side.
        margin: pixels next to the edge given only ``floor`` (their predictions are the least
            trustworthy); ``2 * margin <= overlap``.
        ramp_start: ramp at the first pixel (False where the tile touches the raster's edge).
        ramp_end: ramp at the last pixel.
        floor: smallest weight.
    """
    if length < 1:
        raise DataError(f"blend window needs a positive length, got {length}")
    if overlap < 0:
        raise DataError(f"overlap must be >= 0, got {overlap}")
    _check_margin(overlap, margin)
    i = np.arange(length, dtype=np.float64)
    ramp_len = overlap - 2 * margin

    def ramp(pos: np.ndarray) -> np.ndarray:
        out = np.ones_like(pos)
        if overlap == 0:
            return out
        out[pos < margin] = 0.0
        if ramp_len > 0:
            inside = (pos >= margin) & (pos < overlap - margin)
            out[inside] = np.sin(0.5 * np.pi * (pos[inside] - margin + 0.5) / ramp_len) ** 2
        return out

    w = np.ones(length, dtype=np.float64)
    if ramp_start:
        w = np.minimum(w, ramp(i))
    if ramp_end:
        w = np.minimum(w, ramp(length - 1 - i))
    return np.maximum(w, floor).astype(np.float32)


def blend_weights(
    height: int,
    width: int,
    overlap: int,
    *,
    margin: int = 0,
    top: bool = True,
    bottom: bool = True,
    left: bool = True,
    right: bool = True,
) -> np.ndarray:
    """Separable 2-D weight ``[height, width]`` of a tile: outer product of two 1-D windows.

    ``top``/``bottom``/``left``/``right`` say which sides face another tile (and so ramp).
    """
    wy = blend_window(height, overlap, margin=margin, ramp_start=top, ramp_end=bottom)
    wx = blend_window(width, overlap, margin=margin, ramp_start=left, ramp_end=right)
    return np.outer(wy, wx)


# --------------------------------------------------------------------------------------------
# predict_raster
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TilingSummary:
    """What :func:`predict_raster` did.

    Attributes:
        path: the output file.
        tiles: tiles predicted.
        batches: calls of ``predict_fn``.
        seconds: wall-clock time of the whole run.
        peak_buffer_bytes: largest total size of the arrays the run held at once (input strip,
            accumulation buffers, one batch, one block of output rows); the process's own memory
            (torch, GDAL cache, the model) comes on top.
        height: output rows.
        width: output columns.
        count: output bands.
        scale: the scale factor.
        nodata: the output's nodata value (None when invalid pixels go to a mask band or there
            are none).
        nonfinite_pixels: valid output pixels whose prediction was NaN/inf (written as nodata).
    """

    path: Path
    tiles: int
    batches: int
    seconds: float
    peak_buffer_bytes: int
    height: int
    width: int
    count: int
    scale: int
    nodata: float | None
    nonfinite_pixels: int = 0


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise DataError(f"scale must be a positive integer, got {scale!r}")
    if not math.isfinite(float(scale)) or float(scale) != int(scale) or int(scale) < 1:
        raise DataError(
            f"scale must be a positive integer (output pixel size = input pixel size / scale), "
            f"got {scale!r}; for other factors predict at an integer scale and resample"
        )
    return int(scale)


def _check_out_dtype(out_dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(out_dtype)
    except TypeError as err:
        raise DataError(
            f"out_dtype {out_dtype!r} is not a dtype; use one of {_OUT_DTYPES}"
        ) from err
    if dtype.name not in _OUT_DTYPES:
        raise DataError(f"out_dtype {dtype.name!r} is not supported; use one of {_OUT_DTYPES}")
    return dtype


def _representable(value: float, dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.floating):
        return True
    if not math.isfinite(value) or value != int(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _choose_out_nodata(
    dtype: np.dtype,
    out_nodata: float | None,
    in_nodata: float | None,
    maybe_invalid: bool,
    out_path: Path,
) -> tuple[float | None, bool]:
    """The output nodata value and whether a mask band is needed instead."""
    if out_nodata is not None:
        if not _representable(float(out_nodata), dtype):
            raise RasterError(
                f"out_nodata {out_nodata} does not fit the output type {dtype.name} of {out_path}; "
                "choose a value in its range or a float out_dtype"
            )
        return float(out_nodata), False
    if np.issubdtype(dtype, np.floating):
        return float("nan"), False
    if in_nodata is not None and _representable(float(in_nodata), dtype):
        return float(in_nodata), False
    return None, maybe_invalid


def _to_numpy(pred: Any) -> np.ndarray:
    if isinstance(pred, torch.Tensor):
        return pred.detach().to("cpu", torch.float32).numpy()
    return np.asarray(pred, dtype=np.float32)


class _Strip:
    """Accumulation buffers for one strip of output rows (``sum(w * pred)``, ``sum(w)``)."""

    def __init__(self, channels: int, rows_in: int, width_in: int, scale: int) -> None:
        self.scale = scale
        self.num = np.zeros((channels, rows_in * scale, width_in * scale), dtype=np.float32)
        self.den = np.zeros((rows_in * scale, width_in * scale), dtype=np.float32)
        self.valid = np.zeros((rows_in, width_in), dtype=bool)
        self.base = 0  # input row of buffer row 0

    @property
    def nbytes(self) -> int:
        return self.num.nbytes + self.den.nbytes + self.valid.nbytes

    def add(self, pred: np.ndarray, wy: np.ndarray, wx: np.ndarray, col: int) -> int:
        """Accumulate ``pred [C, h, w]`` (output pixels) weighted by ``outer(wy, wx)`` at input
        column ``col``; returns the bytes of the temporaries."""
        c0 = col * self.scale
        weight = np.outer(wy, wx)
        h, w = weight.shape
        weighted = pred * weight
        self.num[:, :h, c0 : c0 + w] += weighted
        self.den[:h, c0 : c0 + w] += weight
        return weight.nbytes + weighted.nbytes

    def take(self, rows_in: int) -> tuple[np.ndarray, np.ndarray]:
        """Blend and remove the first ``rows_in`` input rows; returns ``(values, valid)``."""
        n = rows_in * self.scale
        values = self.num[:, :n] / np.maximum(self.den[:n], np.float32(WEIGHT_FLOOR**2))
        valid = self.valid[:rows_in]
        if self.scale > 1:
            valid = valid.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        else:
            valid = valid.copy()
        rest = self.num.shape[1] - n
        self.num[:, :rest] = self.num[:, n:]
        self.num[:, rest:] = 0.0
        self.den[:rest] = self.den[n:]
        self.den[rest:] = 0.0
        self.base += rows_in
        return values, valid


def _to_output(
    values: np.ndarray,
    valid: np.ndarray,
    scaling: Scaling,
    dtype: np.dtype,
    nodata: float | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Model range -> physical values of ``dtype``; invalid pixels -> nodata.

    Returns the array, the final validity and the count of valid but non-finite predictions.
    """
    phys = scaling.from_model(values)
    finite = np.isfinite(phys).all(axis=0)
    nonfinite = int(np.count_nonzero(valid & ~finite))
    valid = valid & finite
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        phys = np.nan_to_num(phys, nan=0.0, posinf=info.max, neginf=info.min)
        out = np.clip(np.rint(phys), info.min, info.max).astype(dtype)
        if nodata is not None:
            fill = dtype.type(nodata)
            step = dtype.type(1)
            away = fill + step if fill == info.min else fill - step
            out[(out == fill) & valid[None]] = away
            out[:, ~valid] = fill
    else:
        out = phys.astype(dtype, copy=False)
        out[:, ~valid] = np.nan if nodata is None else nodata
    return out, valid, nonfinite


def _cleanup(tmp: Path) -> None:
    for suffix in ("", ".aux.xml", ".msk"):
        with contextlib.suppress(FileNotFoundError):
            tmp.with_name(tmp.name + suffix).unlink()


@dataclass
class _Source:
    """What the run needs to know about the input file."""

    path: Path
    indices: list[int]
    names: list[str]
    nodata: list[float | None]
    force_nodata: bool
    dtype: np.dtype
    height: int
    width: int
    crs: Any
    transform: Any
    maybe_invalid: bool


@dataclass
class _Output:
    """What the run needs to know about the output file."""

    path: Path
    tmp: Path
    dtype: np.dtype
    nodata: float | None
    use_mask: bool
    codec: str
    band_names: list[str] | None
    scaling: Scaling
    tags: dict[str, str]


class _TiledRun:
    """State of one :func:`predict_raster` run: the grid, the strip buffers and the output."""

    def __init__(
        self,
        source: _Source,
        output: _Output,
        grid: TileGrid,
        scale: int,
        margin: int,
        scaling: Scaling,
        batch_size: int,
        out_bands: int | None,
        device: str | torch.device | None,
        budget_bytes: float | None,
    ) -> None:
        self.source = source
        self.output = output
        self.grid = grid
        self.scale = scale
        self.margin = margin
        self.scaling = scaling
        self.out_bands = out_bands
        self.device = device
        self.budget = budget_bytes
        self.strip: _Strip | None = None
        self.dst: Any = None
        self.windows: dict[tuple[str, int], np.ndarray] = {}
        self.batches = 0
        self.nonfinite = 0
        self.read_peak = self.batch_peak = self.flush_peak = 0
        self.batch_size = self.fit_batch(out_bands or len(source.indices), batch_size)
        self.own = (0, grid.height)  # input rows this run writes (a block of a distributed run)
        self.first_row = 0  # input row of the strip's first row

    # ---- memory --------------------------------------------------------------------------
    def estimate(self, c_out: int, batch: int) -> int:
        """Bytes of the arrays a run holds at once (input strip, buffers, batch, output rows)."""
        g, s = self.grid, self.scale
        c_in, rows, width = len(self.source.indices), g.tile_height, g.width
        out_px = rows * s * width * s
        t_out = g.tile * s
        strip = (c_out + 1) * 4 * out_px + rows * width
        read = (self.source.dtype.itemsize + 1) * c_in * rows * width
        batch_px = (c_in * (self.source.dtype.itemsize + 4) + 1) * g.tile**2
        one_batch = batch * (batch_px + c_out * 4 * t_out**2) + (c_out + 1) * 4 * t_out**2
        flush = (4 + self.output.dtype.itemsize) * c_out * out_px + 2 * out_px
        return strip + read + one_batch + flush

    def fit_batch(self, c_out: int, batch: int) -> int:
        """The largest batch size ``<= batch`` within the budget (halving)."""
        if self.budget is None:
            return batch
        while batch > 1 and self.estimate(c_out, batch) > self.budget:
            batch = max(1, batch // 2)
        need = self.estimate(c_out, batch)
        if need > self.budget:
            src = self.source
            raise DataError(
                f"tiled prediction of {src.path} ({src.height} x {src.width} px, scale "
                f"{self.scale}, {c_out} output bands) needs about {need / 2**20:.0f} MiB of "
                f"buffers with tile={self.grid.tile} and batch_size=1, over max_memory_mb="
                f"{self.budget / 2**20:g}; use a smaller tile, predict a window of the raster, "
                "or raise the budget"
            )
        return batch

    @property
    def peak_bytes(self) -> int:
        """Largest total of the arrays held at once (an upper bound: peaks of each part summed)."""
        held = self.strip.nbytes if self.strip is not None else 0
        held += sum(w.nbytes for w in self.windows.values())
        return held + self.read_peak + self.batch_peak + self.flush_peak

    # ---- tiles ---------------------------------------------------------------------------
    def window(self, axis: str, index: int) -> np.ndarray:
        """1-D blending weight (output pixels) of the ``index``-th tile along ``axis`` (``"y"``,
        ``"x"``); it ramps on the sides that face another tile."""
        grid, s = self.grid, self.scale
        count = len(grid.row_starts if axis == "y" else grid.col_starts)
        kind = (index > 0) + 2 * (index < count - 1)
        key = (axis, kind)
        if key not in self.windows:
            length = grid.tile_height if axis == "y" else grid.tile_width
            self.windows[key] = blend_window(
                length * s,
                grid.overlap * s,
                margin=self.margin * s,
                ramp_start=bool(kind & 1),
                ramp_end=bool(kind & 2),
            )
        return self.windows[key]

    def make_batch(
        self, data: np.ndarray, valid: np.ndarray, cols: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Model input ``[B, C, tile, tile]`` (float32, [-1, 1]) and mask ``[B, 1, tile, tile]``."""
        t, h, w = self.grid.tile, self.grid.tile_height, self.grid.tile_width
        xs = np.empty((len(cols), data.shape[0], t, t), dtype=data.dtype)
        masks = np.zeros((len(cols), 1, t, t), dtype=bool)
        for k, col in enumerate(cols):
            part = data[:, :, col : col + w]
            if h < t or w < t:
                part = np.pad(part, ((0, 0), (0, t - h), (0, t - w)), mode="reflect")
            xs[k] = part
            masks[k, 0, :h, :w] = valid[:, col : col + w]
        x = np.asarray(self.scaling.to_model(xs), dtype=np.float32)
        x = np.where(masks, x, np.float32(0.0))
        self.batch_peak = max(self.batch_peak, xs.nbytes + 2 * x.nbytes + masks.nbytes)
        return x, masks

    def predict(
        self,
        predict_fn: PredictFn,
        x: np.ndarray,
        masks: np.ndarray,
        origins: list[tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """Call ``predict_fn`` and check the shape of what it returns."""
        xt, mt = torch.from_numpy(x), torch.from_numpy(masks)
        if self.device is not None:
            xt, mt = xt.to(self.device), mt.to(self.device)
        with torch.inference_mode():
            if origins is not None and _takes_origins(predict_fn):
                pred = _to_numpy(predict_fn(xt, mt, origins=origins))
            else:
                pred = _to_numpy(predict_fn(xt, mt))
        self.batches += 1
        t_out = self.grid.tile * self.scale
        b = x.shape[0]
        if pred.ndim != 4 or (pred.shape[0], *pred.shape[2:]) != (b, t_out, t_out):
            raise DataError(
                f"predict_fn returned shape {tuple(pred.shape)} for a batch of shape "
                f"{tuple(x.shape)} from {self.source.path}; expected [B, C_out, tile * scale, "
                f"tile * scale] = [{b}, C_out, {t_out}, {t_out}] (scale={self.scale})"
            )
        c_out = int(pred.shape[1])
        if self.out_bands is not None and c_out != self.out_bands:
            raise DataError(
                f"predict_fn returned {c_out} bands for {self.source.path}, out_bands/"
                f"out_band_names say {self.out_bands}"
            )
        if self.strip is None:
            num_bands = self.output.scaling.num_bands
            if num_bands not in (None, c_out):
                raise DataError(
                    f"out_scaling {self.output.scaling.name!r} is defined for {num_bands} bands "
                    f"but predict_fn returned {c_out}; give the output's scaling as out_scaling"
                )
            self.batch_size = self.fit_batch(c_out, self.batch_size)
            self.out_bands = c_out
            self.strip = _Strip(c_out, self.grid.tile_height, self.grid.width, self.scale)
            self.strip.base = self.first_row
        self.batch_peak = max(self.batch_peak, x.nbytes + masks.nbytes + pred.nbytes)
        return pred

    def commit(self) -> None:
        """Close the temporary output and move it onto the output's name (atomic)."""
        try:
            self.dst.close()
            os.replace(self.output.tmp, self.output.path)
        except (RasterioError, OSError) as err:
            raise RasterError(f"failed to write raster {self.output.path}: {err}") from err

    def summary(self, seconds: float, peak_bytes: int | None = None) -> TilingSummary:
        """The :class:`TilingSummary` of a finished run."""
        s = self.scale
        return TilingSummary(
            path=self.output.path,
            tiles=len(self.grid),
            batches=self.batches,
            seconds=seconds,
            peak_buffer_bytes=self.peak_bytes if peak_bytes is None else peak_bytes,
            height=self.source.height * s,
            width=self.source.width * s,
            count=int(self.out_bands or 0),
            scale=s,
            nodata=self.output.nodata if not self.output.use_mask else None,
            nonfinite_pixels=self.nonfinite,
        )

    # ---- output --------------------------------------------------------------------------
    def open_output(self, count: int) -> Any:
        """Create the temporary output GeoTIFF."""
        src, out, s = self.source, self.output, self.scale
        height, width = src.height * s, src.width * s
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "count": count,
            "height": height,
            "width": width,
            "dtype": out.dtype.name,
            "crs": src.crs,
            "transform": src.transform @ Affine.scale(1.0 / s),
            "nodata": out.nodata,
            "BIGTIFF": "IF_SAFER",
        }
        if out.codec != "none":
            profile["compress"] = out.codec
        if height >= _BLOCK and width >= _BLOCK:
            profile.update(tiled=True, blockxsize=_BLOCK, blockysize=_BLOCK)
        names = out.band_names
        if names is None and count == len(src.indices):
            names = [src.names[i - 1] for i in src.indices]
            if names == [f"band_{k}" for k in range(1, count + 1)]:
                names = None  # the input has no band names: write none rather than placeholders
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dst = rasterio.open(out.tmp, "w", **profile)
            if names is not None:
                for band, name in enumerate(names, 1):
                    dst.set_band_description(band, name)
            dst.update_tags(**out.tags)
        except (RasterioError, OSError, ValueError) as err:
            raise RasterError(f"cannot create output raster {out.path}: {err}") from err
        return dst

    def flush(self, rows_in: int) -> None:
        """Write the first ``rows_in`` input rows of the strip (as ``rows_in * scale`` rows).

        Only the rows in :attr:`own` are written: a block of a distributed run computes a few
        rows above and below its own (the tiles overlapping them), which are incomplete there.
        """
        assert self.strip is not None
        out, s = self.output, self.scale
        base = self.strip.base
        values, valid = self.strip.take(rows_in)
        low, high = max(base, self.own[0]), min(base + rows_in, self.own[1])
        if high <= low:
            return
        values = values[:, (low - base) * s : (high - base) * s]
        valid = valid[(low - base) * s : (high - base) * s]
        row0, rows_in = low * s, high - low
        array, valid, bad = _to_output(values, valid, out.scaling, out.dtype, out.nodata)
        self.nonfinite += bad
        self.flush_peak = max(self.flush_peak, values.nbytes + array.nbytes + 2 * valid.nbytes)
        if self.dst is None:
            self.dst = self.open_output(array.shape[0])
        window = Window(0, row0, self.source.width * s, rows_in * s)
        try:
            self.dst.write(array, window=window)
            if out.use_mask:
                self.dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
        except (RasterioError, OSError) as err:
            raise RasterError(f"failed to write raster {out.path}: {err}") from err

    # ---- the loop ------------------------------------------------------------------------
    def run(
        self,
        src: Any,
        predict_fn: PredictFn,
        progress: bool,
        own: tuple[int, int] | None = None,
    ) -> None:
        """Predict every row of tiles, flushing finished output rows as the strip moves down.

        With ``own = (first, stop)`` only the tile rows that overlap input rows ``[first,
        stop)`` are predicted and only those rows are written: the same tiles, weights, batches
        and summation order as the whole run, so the rows come out identical.
        """
        grid, s = self.grid, self.scale
        h, w = grid.tile_height, grid.tile_width
        self.own = own or (0, grid.height)
        rows = [
            (ri, row)
            for ri, row in enumerate(grid.row_starts)
            if row < self.own[1] and row + h > self.own[0]
        ]
        self.first_row = rows[0][1]
        bar = tqdm(
            total=len(rows) * len(grid.col_starts),
            desc=self.source.path.name,
            unit="tile",
            disable=not progress,
            leave=False,
        )
        with bar:
            for ri, row in rows:
                if self.strip is not None and row > self.strip.base:
                    self.flush(row - self.strip.base)
                data, valid = _read_block(
                    src,
                    self.source.indices,
                    Window(0, row, grid.width, h),
                    self.source.nodata,
                    self.source.force_nodata,
                    self.source.path,
                )
                self.read_peak = max(self.read_peak, data.nbytes + valid.nbytes)
                col_indices = list(enumerate(grid.col_starts))
                start = 0
                while start < len(col_indices):
                    chunk = col_indices[start : start + self.batch_size]
                    start += len(chunk)
                    x, masks = self.make_batch(data, valid, [col for _, col in chunk])
                    origins = [(row, col) for _, col in chunk]
                    pred = self.predict(predict_fn, x, masks, origins)
                    assert self.strip is not None
                    for k, (ci, col) in enumerate(chunk):
                        temp = self.strip.add(
                            pred[k, :, : h * s, : w * s],
                            self.window("y", ri),
                            self.window("x", ci),
                            col,
                        )
                        self.batch_peak = max(self.batch_peak, pred.nbytes + temp)
                    bar.update(len(chunk))
                assert self.strip is not None
                self.strip.valid[:h] = valid
            assert self.strip is not None
            self.flush(rows[-1][1] + h - self.strip.base)


def _takes_origins(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts the keyword ``origins`` (tile top-left corners, input pixels)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "origins" or p.kind is p.VAR_KEYWORD for p in params)


def _plan(
    out_path: Path,
    *,
    scaling: str | Scaling | Mapping[str, Any],
    scale: int,
    tile: int,
    overlap: int,
    blend_margin: int | None,
    bands: BandSelection | None,
    band_names: BandNames | None,
    nodata: float | None,
    out_scaling: str | Scaling | Mapping[str, Any] | None,
    out_bands: int | None,
    out_band_names: Sequence[str] | None,
    out_dtype: str | np.dtype,
    out_nodata: float | None,
    batch_size: int,
    device: str | torch.device | None,
    compress: str,
    overwrite: bool,
    max_memory_mb: float | None,
) -> dict[str, Any]:
    """Check :func:`predict_raster`'s arguments; the keyword arguments of :func:`_build_run`."""
    s = _check_scale(scale)
    _check_grid_args(tile, overlap)
    margin = overlap // 4 if blend_margin is None else blend_margin
    _check_margin(overlap, margin)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    dtype = _check_out_dtype(out_dtype)
    codec = str(compress).lower()
    if codec not in _GTIFF_COMPRESS:
        raise DataError(f"compress {compress!r} is not one of {sorted(_GTIFF_COMPRESS)}")
    if out_path.is_dir():
        raise RasterError(f"{out_path} is a folder; give a file path to write the raster to")
    if out_path.exists() and not overwrite:
        raise RasterError(f"{out_path} already exists; pass overwrite=True to replace it")
    in_scaling = get_scaling(scaling)
    back_scaling = in_scaling if out_scaling is None else get_scaling(out_scaling)
    if out_band_names is not None:
        out_band_names = [str(n) for n in out_band_names]
        if out_bands is not None and out_bands != len(out_band_names):
            raise DataError(
                f"out_bands={out_bands} but {len(out_band_names)} out_band_names given; give one "
                "name per output band"
            )
        out_bands = len(out_band_names)

    return {
        "bands": bands,
        "band_names": band_names,
        "nodata": nodata,
        "in_scaling": in_scaling,
        "back_scaling": back_scaling,
        "dtype": dtype,
        "out_nodata": out_nodata,
        "codec": codec,
        "out_band_names": out_band_names,
        "s": s,
        "tile": tile,
        "overlap": overlap,
        "margin": margin,
        "batch_size": batch_size,
        "out_bands": out_bands,
        "device": device,
        "max_memory_mb": max_memory_mb,
    }


def _build_run(
    src: Any,
    in_path: Path,
    out_path: Path,
    tmp: Path,
    *,
    bands: BandSelection | None,
    band_names: BandNames | None,
    nodata: float | None,
    in_scaling: Scaling,
    back_scaling: Scaling,
    dtype: np.dtype,
    out_nodata: float | None,
    codec: str,
    out_band_names: list[str] | None,
    s: int,
    tile: int,
    overlap: int,
    margin: int,
    batch_size: int,
    out_bands: int | None,
    device: str | torch.device | None,
    max_memory_mb: float | None,
) -> _TiledRun:
    """The :class:`_TiledRun` of an open input ``src`` (bands, nodata, output format checked)."""
    names = _file_band_names(src, band_names)
    indices = resolve_bands(bands, names, in_path)
    if in_scaling.num_bands not in (None, len(indices)):
        raise DataError(
            f"scaling {in_scaling.name!r} is defined for {in_scaling.num_bands} bands but "
            f"{len(indices)} bands of {in_path} are selected "
            f"({[names[i - 1] for i in indices]}); select the bands the model was "
            "trained on"
        )
    if src.crs is None:
        warnings.warn(
            f"{in_path} has no CRS; {out_path} is written on the same pixel grid "
            "(pixel size / scale) without a CRS",
            DataWarning,
            stacklevel=2,
        )
    file_nodata: list[float | None] = [src.nodatavals[i - 1] for i in indices]
    if nodata is not None:
        file_nodata = [float(nodata)] * len(indices)
    in_nodata = next((v for v in file_nodata if v is not None), None)
    in_dtype = np.dtype(src.dtypes[indices[0] - 1])
    source = _Source(
        path=in_path,
        indices=indices,
        names=names,
        nodata=file_nodata,
        force_nodata=nodata is not None,
        dtype=in_dtype,
        height=int(src.height),
        width=int(src.width),
        crs=src.crs,
        transform=src.transform,
        maybe_invalid=(
            in_nodata is not None
            or np.issubdtype(in_dtype, np.floating)
            or any(MaskFlags.all_valid not in src.mask_flag_enums[i - 1] for i in indices)
        ),
    )
    fill, use_mask = _choose_out_nodata(
        dtype, out_nodata, in_nodata, source.maybe_invalid, out_path
    )
    output = _Output(
        path=out_path,
        tmp=tmp,
        dtype=dtype,
        nodata=fill,
        use_mask=use_mask,
        codec=codec,
        band_names=out_band_names,
        scaling=back_scaling,
        tags={
            "TERRADIFF_SOURCE": in_path.name,
            "TERRADIFF_SCALE": str(s),
            "TERRADIFF_TILE": str(tile),
            "TERRADIFF_OVERLAP": str(overlap),
        },
    )
    return _TiledRun(
        source,
        output,
        TileGrid(source.height, source.width, tile, overlap),
        s,
        margin,
        in_scaling,
        batch_size,
        out_bands,
        device,
        None if max_memory_mb is None else float(max_memory_mb) * 2**20,
    )


def predict_raster(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    predict_fn: PredictFn,
    *,
    scaling: str | Scaling | Mapping[str, Any],
    scale: int = 1,
    tile: int = 256,
    overlap: int = 32,
    blend_margin: int | None = None,
    bands: BandSelection | None = None,
    band_names: BandNames | None = None,
    nodata: float | None = None,
    out_scaling: str | Scaling | Mapping[str, Any] | None = None,
    out_bands: int | None = None,
    out_band_names: Sequence[str] | None = None,
    out_dtype: str | np.dtype = "float32",
    out_nodata: float | None = None,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    compress: str = "deflate",
    overwrite: bool = False,
    progress: bool = True,
    max_memory_mb: float | None = None,
) -> TilingSummary:
    """Run ``predict_fn`` over a raster in overlapping tiles and write a blended GeoTIFF.

    See the module docstring for the tile grid, the blending weights, the memory bound, nodata
    and atomicity.

    Args:
        in_path: the input raster (GeoTIFF or anything GDAL opens).
        out_path: the GeoTIFF to write (same CRS and bounds, pixel size / ``scale``).
        predict_fn: ``predict_fn(x, valid_mask) -> y`` with ``x`` float32 ``[B, C, tile, tile]``
            in [-1, 1] (invalid and padding pixels are 0), ``valid_mask`` bool ``[B, 1, tile,
            tile]`` (True = real data), ``y`` ``[B, C_out, tile * scale, tile * scale]`` in the
            model's [-1, 1] (a tensor on any device, or an array). Called under
            :func:`torch.inference_mode`; batches never mix rows of tiles, so the last batch of a
            row can be smaller.
        scaling: how input values become [0, 1] (a preset name of
            :func:`~terradiff.data.transforms.get_scaling`, a :class:`Scaling` or its dict) —
            the model's training scaling.
        scale: integer output/input resolution ratio (2, 4 for super-resolution; 1 for maps).
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
        batch_size: tiles per ``predict_fn`` call.
        device: where to put ``x`` and ``valid_mask`` (default: CPU).
        compress: GeoTIFF compression (``deflate``, ``lzw``, ``zstd``, ``packbits``, ``none``).
        overwrite: replace an existing ``out_path``.
        progress: show a tqdm bar over tiles.
        max_memory_mb: budget for the run's arrays; the batch size is lowered to fit, and if even
            a batch of one does not fit, a :class:`DataError` is raised before any work.

    Returns:
        A :class:`TilingSummary`.

    Raises:
        RasterError: unreadable input, unknown band, existing output without ``overwrite``, a
            failed write.
        DataError: bad tiling arguments, a ``predict_fn`` output of the wrong shape, a memory
            budget too small. Exceptions raised by ``predict_fn`` propagate unchanged; in every
            case nothing is left under ``out_path`` (an existing file is kept) and no temporary
            file remains.
    """
    started = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    spec = _plan(
        out_path,
        scaling=scaling,
        scale=scale,
        tile=tile,
        overlap=overlap,
        blend_margin=blend_margin,
        bands=bands,
        band_names=band_names,
        nodata=nodata,
        out_scaling=out_scaling,
        out_bands=out_bands,
        out_band_names=out_band_names,
        out_dtype=out_dtype,
        out_nodata=out_nodata,
        batch_size=batch_size,
        device=device,
        compress=compress,
        overwrite=overwrite,
        max_memory_mb=max_memory_mb,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp"
    run: _TiledRun | None = None
    finished = False
    try:
        with _open(in_path) as src:
            run = _build_run(src, in_path, out_path, tmp, **spec)
            run.run(src, predict_fn, progress)
        run.commit()
        finished = True
    finally:
        if run is not None and run.dst is not None and not run.dst.closed:
            with contextlib.suppress(Exception):
                run.dst.close()
        if not finished:
            _cleanup(tmp)
    if run.nonfinite:
        warnings.warn(
            f"{run.nonfinite} output pixels of {out_path} were NaN/inf in the predictions and "
            "are written as nodata; check the model",
            DataWarning,
            stacklevel=2,
        )
    return run.summary(time.perf_counter() - started)


__all__ = [
    "WEIGHT_FLOOR",
    "PredictFn",
    "TileGrid",
    "TilingSummary",
    "axis_starts",
    "blend_weights",
    "blend_window",
    "predict_raster",
    "tile_windows",
]
