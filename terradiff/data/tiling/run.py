"""The tiled run itself: read strips of the input, predict batches of tiles, blend, hand on rows.

:class:`TiledRun` drives one run over an open input (the whole raster, or the rows of one block
of a Dask run) and gives finished rows to a :class:`~terradiff.data.tiling.writer.RowSink`;
:func:`predict_raster` is the single-process run that writes them with a
:class:`~terradiff.data.tiling.writer.GeoTiffWriter`.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from tqdm.auto import tqdm

from terradiff.data.raster import BandNames, BandSelection, open_raster
from terradiff.data.tiling.geometry import BlendStrip, TileGrid, blend_window
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.source import InputSpec
from terradiff.data.tiling.writer import (
    GeoTiffWriter,
    OutputSpec,
    RowSink,
    check_output_path,
    choose_out_nodata,
    to_output,
)
from terradiff.data.transforms import Scaling
from terradiff.errors import DataError, DataWarning

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
    """State of one tiled run: the grid, the strip buffers and the output's description.

    Make one with :meth:`from_source`, then :meth:`run` it. The counters (``batches``,
    ``nonfinite``, ``out_bands``) and :attr:`peak_bytes` feed :meth:`summary`.
    """

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
        self.strip: BlendStrip | None = None
        self.sink: RowSink | None = None
        self.windows: dict[tuple[str, int], np.ndarray] = {}
        self.batches = 0
        self.nonfinite = 0
        self.read_peak = self.batch_peak = self.flush_peak = 0
        self.batch_size = self.fit_batch(out_bands or len(source.indices), batch_size)
        self.own = (0, grid.height)  # input rows this run writes (a block of a distributed run)
        self.first_row = 0  # input row of the strip's first row

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
            },
            height=source.height * s,
            width=source.width * s,
            crs=source.crs,
            transform=source.transform @ Affine.scale(1.0 / s),
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
        )

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
            self.strip = BlendStrip(c_out, self.grid.tile_height, self.grid.width, self.scale)
            self.strip.base = self.first_row
        self.batch_peak = max(self.batch_peak, x.nbytes + masks.nbytes + pred.nbytes)
        return pred

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
    def flush(self, rows_in: int) -> None:
        """Hand on the first ``rows_in`` input rows of the strip (as ``rows_in * scale`` rows).

        Only the rows in :attr:`own` are handed on: a block of a distributed run computes a few
        rows above and below its own (the tiles overlapping them), which are incomplete there.
        """
        assert self.strip is not None and self.sink is not None
        out, s = self.output, self.scale
        base = self.strip.base
        values, valid = self.strip.take(rows_in)
        low, high = max(base, self.own[0]), min(base + rows_in, self.own[1])
        if high <= low:
            return
        values = values[:, (low - base) * s : (high - base) * s]
        valid = valid[(low - base) * s : (high - base) * s]
        array, valid, bad = to_output(values, valid, out.scaling, out.dtype, out.nodata)
        self.nonfinite += bad
        self.flush_peak = max(self.flush_peak, values.nbytes + array.nbytes + 2 * valid.nbytes)
        mask = np.where(valid, 255, 0).astype(np.uint8) if out.use_mask else None
        self.sink.write_rows(array, mask, low * s)

    # ---- the loop ------------------------------------------------------------------------
    def run(
        self,
        src: Any,
        predict_fn: PredictFn,
        sink: RowSink,
        progress: bool,
        own: tuple[int, int] | None = None,
    ) -> None:
        """Predict every row of tiles, flushing finished output rows to ``sink`` as it goes.

        With ``own = (first, stop)`` only the tile rows that overlap input rows ``[first,
        stop)`` are predicted and only those rows are handed on: the same tiles, weights, batches
        and summation order as the whole run, so the rows come out identical.
        """
        grid, s = self.grid, self.scale
        h, w = grid.tile_height, grid.tile_width
        self.sink = sink
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
                data, valid = self.source.read_strip(src, row, h)
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

    See :mod:`terradiff.data.tiling` for the tile grid, the blending weights, the memory bound,
    nodata and atomicity. ``scaling`` and every other keyword option but ``progress`` are the
    fields of :class:`TilingOptions`, described there; they are all checked before any file is
    opened.

    Args:
        in_path: the input raster (GeoTIFF or anything GDAL opens).
        out_path: the GeoTIFF to write (same CRS and bounds, pixel size / ``scale``).
        predict_fn: ``predict_fn(x, valid_mask) -> y`` with ``x`` float32 ``[B, C, tile, tile]``
            in [-1, 1] (invalid and padding pixels are 0), ``valid_mask`` bool ``[B, 1, tile,
            tile]`` (True = real data), ``y`` ``[B, C_out, tile * scale, tile * scale]`` in the
            model's [-1, 1] (a tensor on any device, or an array). Called under
            :func:`torch.inference_mode`; batches never mix rows of tiles, so the last batch of a
            row can be smaller.
        progress: show a tqdm bar over tiles.

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
    options = TilingOptions(
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
    check_output_path(out_path, options.overwrite)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer: GeoTiffWriter | None = None
    try:
        with open_raster(in_path) as src:
            run = TiledRun.from_source(src, in_path, out_path, options)
            writer = GeoTiffWriter(run.output)
            run.run(src, predict_fn, writer, progress)
        writer.commit()
    finally:
        if writer is not None:
            writer.discard()
    if run.nonfinite:
        warnings.warn(
            f"{run.nonfinite} output pixels of {out_path} were NaN/inf in the predictions and "
            "are written as nodata; check the model",
            DataWarning,
            stacklevel=2,
        )
    return run.summary(time.perf_counter() - started)


__all__ = ["PredictFn", "TiledRun", "TilingSummary", "predict_raster"]
