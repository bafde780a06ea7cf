"""The tiled run itself: read windows of the input, predict batches of tiles, blend, hand on.

:class:`TiledRun` drives one run over an open input (the whole raster, or the rows of one block
of a Dask run), pass by pass and column block by column block (:mod:`~terradiff.data.tiling.plan`,
:mod:`~terradiff.data.tiling.blend`), and gives finished pixels to a
:class:`~terradiff.data.tiling.writer.RowSink`; :func:`~terradiff.data.tiling.single.predict_raster`
is the single-process run that writes them with a
:class:`~terradiff.data.tiling.writer.GeoTiffWriter`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine

from terradiff.data.tiling.blend import BlockSums, blend
from terradiff.data.tiling.geometry import TileGrid, blend_window
from terradiff.data.tiling.memory import (
    FreeMemoryFn,
    RunMemory,
    activation_bytes,
    cuda_free_bytes,
    device_batch_budget,
    on_cpu,
    on_cuda,
)
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.plan import (
    ColumnBlock,
    RowPass,
    block_size,
    pass_capacity,
    plan_blocks,
    plan_passes,
)
from terradiff.data.tiling.source import InputSpec
from terradiff.data.tiling.writer import (
    OutputSpec,
    RowSink,
    choose_out_nodata,
    to_output,
)
from terradiff.data.transforms import Scaling
from terradiff.errors import DataError, DataWarning
from terradiff.progress import progress_bar

#: ``predict_fn(batch [B, C, h, w] in [-1, 1], valid_mask [B, 1, h, w] bool)`` ->
#: ``[B, C_out, h * scale, w * scale]`` in [-1, 1]. A ``predict_fn`` that also takes the keyword
#: ``origins`` receives the ``(row, col)`` input-pixel corner of each tile of the batch (to seed
#: its noise per tile, so that a run split over workers draws the same numbers).
PredictFn = Callable[..., Any]


@dataclass(frozen=True)
class TilingSummary:
    """What :func:`predict_raster` did.

    Attributes:
        path: the output file.
        tiles: tiles predicted.
        batches: calls of ``predict_fn``.
        seconds: wall-clock time of the whole run.
        peak_buffer_bytes: largest total size of the arrays the run held at once (a window
            read, the block sums and the row carry, one batch, one flushed chunk of output); the
            process's own memory (torch, the model and its activations, GDAL's cache) comes on
            top.
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


def _to_numpy(pred: Any) -> np.ndarray:
    if isinstance(pred, torch.Tensor):
        return pred.detach().to("cpu", torch.float32).numpy()
    return np.asarray(pred, dtype=np.float32)


def _takes_origins(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts the keyword ``origins`` (tile top-left corners, input pixels)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "origins" or p.kind is p.VAR_KEYWORD for p in params)


class TiledRun:
    """State of one tiled run: the grid, the block buffers and the output's description.

    Make one with :meth:`from_source`, then :meth:`run` it. The counters (``batches``,
    ``nonfinite``, ``out_bands``) and :attr:`peak_bytes` feed :meth:`summary`.
    """

    #: The free memory of a CUDA device (replaced in tests).
    free_memory: FreeMemoryFn = staticmethod(cuda_free_bytes)

    def __init__(
        self,
        source: InputSpec,
        output: OutputSpec,
        grid: TileGrid,
        scale: int,
        margin: int,
        scaling: Scaling,
        batch_size: int,
        out_bands: int | None,
        device: str | torch.device | None,
        budget_bytes: float | None,
        batch_budget_bytes: float | None = None,
        block_tiles: int | None = None,
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
        self.batch_budget = batch_budget_bytes
        self.memory = RunMemory(
            grid,
            scale,
            len(source.indices),
            source.dtype.itemsize,
            output.dtype.itemsize,
            block_tiles,
            on_cpu(device),
        )
        self.block_tiles = block_tiles
        self.sums: BlockSums | None = None
        self.sink: RowSink | None = None
        self.windows: dict[tuple[str, int], np.ndarray] = {}
        self.batches = 0
        self.nonfinite = 0
        self.tile_bytes = 0
        self.read_peak = self.batch_peak = self.flush_peak = 0
        self.batch_size = self.fit_batch(out_bands or len(source.indices), batch_size)
        self.own = (0, grid.height)  # input rows this run writes (a block of a distributed run)
        self.layout: tuple[int, int, int] = (0, 0, 0)  # buffer rows, carried rows, columns
        self.current: tuple[RowPass, ColumnBlock, bool] | None = None

    @classmethod
    def from_source(
        cls, src: Any, in_path: Path, out_path: Path, options: TilingOptions
    ) -> TiledRun:
        """The run of an open input ``src`` (bands, nodata and output format checked).

        Args:
            src: the open rasterio dataset of ``in_path``.
            in_path: the input file.
            out_path: the output file (named in messages and checks).
            options: the run's options.

        Raises:
            RasterError: an unknown band, or an ``out_nodata`` the output type cannot hold.
            DataError: a scaling for another band count, or a memory budget too small.
        """
        source = InputSpec.from_dataset(src, in_path, options)
        if src.crs is None:
            warnings.warn(
                f"{in_path} has no CRS; {out_path} is written on the same pixel grid "
                "(pixel size / scale) without a CRS",
                DataWarning,
                stacklevel=2,
            )
        s = options.scale
        fill, use_mask = choose_out_nodata(
            options.dtype, options.out_nodata, source.first_nodata, source.maybe_invalid, out_path
        )
        output = OutputSpec(
            path=out_path,
            dtype=options.dtype,
            nodata=fill,
            use_mask=use_mask,
            codec=options.codec,
            band_names=options.output_band_names,
            input_band_names=source.selected_names,
            scaling=options.output_scaling,
            tags={
                "TERRADIFF_SOURCE": in_path.name,
                "TERRADIFF_SCALE": str(s),
                "TERRADIFF_TILE": str(options.tile),
                "TERRADIFF_OVERLAP": str(options.overlap),
                **(options.tags or {}),
            },
            height=source.height * s,
            width=source.width * s,
            crs=source.crs,
            transform=source.transform @ Affine.scale(1.0 / s),
            cog=options.cog,
        )
        return cls(
            source,
            output,
            TileGrid(source.height, source.width, options.tile, options.overlap),
            s,
            options.margin,
            options.input_scaling,
            options.batch_size,
            options.band_count,
            options.device,
            options.budget_bytes,
            options.batch_budget_bytes,
            options.block_tiles,
        )

    # ---- memory --------------------------------------------------------------------------
    def estimate(self, c_out: int, batch: int, tile_bytes: int = 0) -> int:
        """Bytes of the arrays a run holds at once (see :meth:`RunMemory.estimate`)."""
        return self.memory.estimate(c_out, batch, tile_bytes)

    def fit_batch(self, c_out: int, batch: int, tile_bytes: int = 0) -> int:
        """The largest batch size ``<= batch`` within the budgets (halving).

        Raises:
            DataError: a batch of one does not fit ``max_memory_mb``.
        """
        src = self.source
        what = (
            f"{src.path} ({src.height} x {src.width} px, scale {self.scale}, {c_out} output bands)"
        )
        return self.memory.fit_batch(c_out, batch, tile_bytes, self.budget, self.batch_budget, what)

    @property
    def peak_bytes(self) -> int:
        """Largest total of the arrays held at once (an upper bound: peaks of each part summed)."""
        held = sum(w.nbytes for w in self.windows.values())
        if self.sums is not None:
            held += self.sums.nbytes + self.sums.extra_peak
        return held + self.read_peak + self.batch_peak + self.flush_peak

    # ---- tiles ---------------------------------------------------------------------------
    def window(self, axis: str, index: int) -> np.ndarray:
        """1-D blending weight (output pixels) of the ``index``-th tile along ``axis``.

        ``axis`` is ``"y"`` or ``"x"``; the weight ramps on the sides that face another tile.
        """
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
        """Model input ``[B, C, tile, tile]`` (float32, [-1, 1]) and mask ``[B, 1, tile, tile]``.

        ``cols`` are the tiles' first columns in ``data`` (a window of the input).
        """
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
        """Call ``predict_fn`` and check the shape of what it returns.

        The first call sizes the block buffers (the output's band count is known then).
        """
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
        if self.sums is None:
            self.start_sums(c_out)
        self.batch_peak = max(self.batch_peak, x.nbytes + masks.nbytes + pred.nbytes)
        return pred

    def start_sums(self, c_out: int) -> None:
        """Allocate the block buffers for ``c_out`` bands and begin the current block.

        Raises:
            DataError: ``out_scaling`` is for another band count, or ``c_out`` bands (more than
                were assumed before the first batch) exceed ``max_memory_mb``.
        """
        num_bands = self.output.scaling.num_bands
        if num_bands not in (None, c_out):
            raise DataError(
                f"out_scaling {self.output.scaling.name!r} is defined for {num_bands} bands "
                f"but predict_fn returned {c_out}; give the output's scaling as out_scaling"
            )
        need = self.estimate(c_out, self.batch_size, self.tile_bytes)
        if self.out_bands is None and self.budget is not None and need > self.budget:
            raise DataError(
                f"predict_fn returned {c_out} bands for {self.source.path}, more than the "
                f"{len(self.source.indices)} max_memory_mb was checked for (about "
                f"{need / 2**20:.0f} MiB now); give out_bands, or raise the budget"
            )
        self.out_bands = c_out
        rows, carry, cols = self.layout
        self.sums = BlockSums(c_out, rows, cols, carry, self.grid.width, self.scale)
        assert self.current is not None
        self.sums.begin(*self.current)

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
    def flush(self, rpass: RowPass, block: ColumnBlock) -> None:
        """Blend the final pixels of ``block`` of ``rpass`` and hand them on, by row chunks.

        Final are rows ``[top, final_end)`` of the pass and columns ``[start, final_end)`` of
        the block; they go out in chunks of at most one tile's rows (bounded temporaries). Only
        the rows in :attr:`own` are handed on: a block of a distributed run computes a few rows
        above and below its own (the tiles overlapping them), which are incomplete there.
        """
        assert self.sums is not None and self.sink is not None
        out, s, h = self.output, self.scale, self.grid.tile_height
        num, den = self.sums.finish(rpass, block)
        top, cols = rpass.top, block.final_end - block.start
        for first in range(top, rpass.final_end, h):
            low = max(first, self.own[0])
            high = min(first + h, rpass.final_end, self.own[1])
            if high <= low:
                continue
            a, b = (low - top) * s, (high - top) * s
            values = blend(num[:, a:b], den[a:b])
            valid = self.sums.valid[low - top : high - top, :cols]
            valid = valid.repeat(s, axis=0).repeat(s, axis=1) if s > 1 else valid.copy()
            array, valid, bad = to_output(values, valid, out.scaling, out.dtype, out.nodata)
            self.nonfinite += bad
            self.flush_peak = max(self.flush_peak, values.nbytes + array.nbytes + 2 * valid.nbytes)
            mask = np.where(valid, 255, 0).astype(np.uint8) if out.use_mask else None
            self.sink.write_rows(array, mask, low * s, block.start * s)

    # ---- the loop ------------------------------------------------------------------------
    def run(
        self,
        src: Any,
        predict_fn: PredictFn,
        sink: RowSink,
        progress: bool,
        own: tuple[int, int] | None = None,
    ) -> None:
        """Predict every tile, pass by pass and column block by block, handing finished output
        pixels to ``sink`` as it goes.

        The batch size is fitted first with the activations ``predict_fn`` reports
        (``predict_fn.tile_bytes``, see :mod:`~terradiff.data.tiling.memory`): to the CPU's
        budgets, and on CUDA to a share of the GPU's free memory (:attr:`free_memory`). With ``own =
        (first, stop)`` only the tile rows that overlap input rows ``[first, stop)`` are
        predicted and only those rows are handed on: the same tiles, weights, batches and
        summation order as the whole run, so the rows come out identical.
        """
        grid = self.grid
        h = grid.tile_height
        self.sink = sink
        self.own = own or (0, grid.height)
        rows = [
            (ri, row)
            for ri, row in enumerate(grid.row_starts)
            if row < self.own[1] and row + h > self.own[0]
        ]
        measure = self.memory.cpu or on_cuda(self.device)
        self.tile_bytes = activation_bytes(predict_fn, grid.tile) if measure else 0
        c_guess = self.out_bands or len(self.source.indices)
        self.batch_size = self.fit_batch(c_guess, self.batch_size, self.tile_bytes)
        device_budget = device_batch_budget(self.device, self.free_memory)
        self.batch_size = self.memory.fit_device_batch(
            c_guess, self.batch_size, self.tile_bytes, device_budget
        )
        passes = plan_passes(rows, h, grid.overlap)
        per_block = block_size(self.batch_size, self.block_tiles)
        blocks = plan_blocks(grid.col_starts, grid.tile_width, per_block)
        self.layout = (*pass_capacity(passes, h, grid.overlap), max(b.width for b in blocks))
        bar = progress_bar(
            total=len(rows) * len(grid.col_starts),
            desc=self.source.path.name,
            unit="tile",
            disable=not progress,
            leave=False,
        )
        with bar:
            for rpass in passes:
                for bi, block in enumerate(blocks):
                    self.run_block(src, predict_fn, rpass, block, bi, len(blocks), bar)
                assert self.sums is not None
                self.sums.end_pass(rpass)

    def run_block(
        self,
        src: Any,
        predict_fn: PredictFn,
        rpass: RowPass,
        block: ColumnBlock,
        index: int,
        count: int,
        bar: Any,
    ) -> None:
        """Predict and accumulate the tiles of ``block`` (the ``index``-th of ``count``) of
        ``rpass``, then flush its final pixels.

        In a pass of two tile rows, the second row's tile parts in the next block's columns are
        deferred to that block (:class:`~terradiff.data.tiling.blend.BlockSums`), so that every
        pixel sums its tiles in the order of a run over the whole width.
        """
        grid, s = self.grid, self.scale
        h, w = grid.tile_height, grid.tile_width
        self.current = (rpass, block, index == 0)
        if self.sums is not None:
            self.sums.begin(rpass, block, index == 0)
        for k, (ri, row) in enumerate(rpass.rows):
            data, valid = self.source.read_window(src, row, h, block.start, block.width)
            self.read_peak = max(self.read_peak, data.nbytes + valid.nbytes)
            defer = block.final_end if k > 0 and index < count - 1 else None
            if self.sums is not None:
                self.sums.add_deferred(row, defer)
            start = 0
            while start < len(block.cols):
                chunk = block.cols[start : start + self.batch_size]
                start += len(chunk)
                x, masks = self.make_batch(data, valid, [col - block.start for _, col in chunk])
                pred = self.predict(predict_fn, x, masks, [(row, col) for _, col in chunk])
                assert self.sums is not None
                for j, (ci, col) in enumerate(chunk):
                    temp = self.sums.add(
                        pred[j, :, : h * s, : w * s],
                        self.window("y", ri),
                        self.window("x", ci),
                        row,
                        col,
                        defer,
                    )
                    self.batch_peak = max(self.batch_peak, pred.nbytes + temp)
                bar.update(len(chunk))
            assert self.sums is not None
            self.sums.valid[row - rpass.top : row - rpass.top + h, : block.width] = valid
        self.flush(rpass, block)


__all__ = ["PredictFn", "TiledRun", "TilingSummary"]
