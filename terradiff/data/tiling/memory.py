"""How much memory a tiled run needs: its arrays, one batch's activations, GDAL's block cache.

:class:`RunMemory` estimates, before any work, the bytes of the arrays a
:class:`~terradiff.data.tiling.run.TiledRun` holds at once (the same arrays it allocates, sized
from its :mod:`~terradiff.data.tiling.plan`), plus the activations of one batch when the
``predict_fn`` reports them (:func:`activation_bytes`); :meth:`RunMemory.fit_batch` lowers the
batch size to a budget. On CUDA the activations live on the GPU: :func:`device_batch_budget`
takes a share of the GPU's free memory (``torch.cuda.mem_get_info``) and
:meth:`RunMemory.fit_device_batch` picks the batch that fits it, instead of the CPU's
``batch_memory_mb``. :func:`gdal_cache_bytes` sizes GDAL's block cache for a run (see "Memory"
in :mod:`terradiff.data.tiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import torch

from terradiff.data.tiling.geometry import TileGrid
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.plan import block_size, pass_capacity, plan_blocks, plan_passes
from terradiff.data.tiling.writer import BLOCK
from terradiff.errors import DataError

#: The least GDAL block cache a run gets (bytes); more when a row of the input's or the
#: output's blocks needs it.
MIN_GDAL_CACHE = 64 * 2**20
#: Share of the GPU's free memory one batch of tiles may take on CUDA; the rest is left for
#: the allocator's rounding and fragmentation, cuDNN's workspaces and kernels' scratch space,
#: which the measured activations do not count (see :mod:`~terradiff.data.tiling.probe`).
CUDA_FREE_SHARE = 0.6

#: ``free_memory(device) -> bytes``: the free memory of a CUDA device.
FreeMemoryFn = Callable[[torch.device], int]


def on_cpu(device: str | torch.device | None) -> bool:
    """Whether a run on ``device`` predicts in the process's own memory (None is the CPU)."""
    return device is None or torch.device(device).type == "cpu"


def on_cuda(device: str | torch.device | None) -> bool:
    """Whether a run on ``device`` predicts on a CUDA GPU."""
    return device is not None and torch.device(device).type == "cuda"


def cuda_free_bytes(device: torch.device) -> int:
    """The free memory of the CUDA ``device`` in bytes (``torch.cuda.mem_get_info``: what the
    driver reports free; memory this process's caching allocator holds is not counted)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def device_batch_budget(
    device: str | torch.device | None,
    free_memory: FreeMemoryFn = cuda_free_bytes,
    share: float = CUDA_FREE_SHARE,
) -> float | None:
    """The bytes one batch may take on ``device``: ``share`` of its free memory on CUDA, None
    elsewhere (the CPU's batch follows ``batch_memory_mb``).

    Args:
        device: where the run predicts.
        free_memory: the free bytes of a CUDA device (default :func:`cuda_free_bytes`; a test
            hands in its own).
        share: the share of the free memory a batch may take, in (0, 1].
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if not on_cuda(device):
        return None
    return share * free_memory(torch.device(device))


def activation_bytes(predict_fn: Callable[..., Any], tile: int) -> int:
    """The bytes one ``tile x tile`` tile needs inside ``predict_fn`` (0 when it does not say).

    A ``predict_fn`` reports them with an attribute ``tile_bytes``: a callable ``(height,
    width) -> bytes`` (e.g. a :class:`~terradiff.data.tiling.probe.TileMemoryProbe`).

    Raises:
        DataError: ``tile_bytes`` returned something else than a number ``>= 0``.
    """
    probe = getattr(predict_fn, "tile_bytes", None)
    if probe is None:
        return 0
    value = probe(tile, tile)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or value < 0:
        raise DataError(f"predict_fn.tile_bytes({tile}, {tile}) returned {value!r}, not bytes")
    return int(value)


@dataclass(frozen=True)
class RunMemory:
    """What the memory of a run depends on.

    Attributes:
        grid: the tile grid (input pixels).
        scale: output pixels per input pixel.
        in_bands: input bands read.
        in_itemsize: bytes of an input value.
        out_itemsize: bytes of an output value.
        block_tiles: tile columns per column block asked for (None: the default).
        cpu: whether activations live in this process's memory.
    """

    grid: TileGrid
    scale: int
    in_bands: int
    in_itemsize: int
    out_itemsize: int
    block_tiles: int | None
    cpu: bool

    def batch_bytes(self, c_out: int, batch: int, tile_bytes: int = 0) -> int:
        """One batch: model input and mask, prediction, weight temporaries, activations."""
        t, t_out = self.grid.tile, self.grid.tile * self.scale
        per_tile = (self.in_bands * (self.in_itemsize + 4) + 1) * t**2 + c_out * 4 * t_out**2
        per_tile += tile_bytes if self.cpu else 0
        return batch * per_tile + 2 * (c_out + 1) * 4 * t_out**2

    def device_tile_bytes(self, c_out: int, tile_bytes: int) -> int:
        """One tile on the accelerator: its model input and mask, its prediction (float32) and
        its activations (``tile_bytes``)."""
        t, t_out = self.grid.tile, self.grid.tile * self.scale
        return (self.in_bands * 4 + 1) * t**2 + c_out * 4 * t_out**2 + tile_bytes

    def fit_device_batch(
        self, c_out: int, batch: int, tile_bytes: int, device_budget: float | None
    ) -> int:
        """The batch size to run on an accelerator: the most tiles, up to ``batch``, whose
        :meth:`device_tile_bytes` fit ``device_budget`` (:func:`device_batch_budget`), at least
        1 (a tile that does not fit is left to the device's own out-of-memory error); ``batch``
        itself when there is no budget (the CPU)."""
        if device_budget is None:
            return batch
        per_tile = max(1, self.device_tile_bytes(c_out, tile_bytes))
        return max(1, min(batch, int(device_budget // per_tile)))

    def estimate(self, c_out: int, batch: int, tile_bytes: int = 0) -> int:
        """Bytes of the arrays held at once: block sums, row carry, column carry and deferred
        parts, one window read, one batch, one flushed chunk (an upper bound)."""
        g, s = self.grid, self.scale
        h, w = g.tile_height, g.tile_width
        passes = plan_passes(list(enumerate(g.row_starts)), h, g.overlap)
        blocks = plan_blocks(g.col_starts, w, block_size(batch, self.block_tiles))
        rows, carry = pass_capacity(passes, h, g.overlap)
        cols = max(b.width for b in blocks)
        per_px = (c_out + 1) * 4 * s * s  # sum(w * pred) and sum(w) of one input pixel
        sums = per_px * (rows * cols + carry * g.width) + rows * cols
        side = max((b.end - b.final_end for b in blocks), default=0)
        deferred = 0
        if any(len(p.rows) > 1 for p in passes):
            deferred = max(
                (
                    sum(c + w - b.final_end for c in g.col_starts if c < b.final_end < c + w)
                    for b in blocks[:-1]
                ),
                default=0,
            )
        extra = per_px * (rows * side + h * deferred)
        read = (self.in_itemsize * self.in_bands + 1) * h * cols
        chunk = h * s * cols * s  # output pixels of one flushed chunk
        flush = (4 + self.out_itemsize) * c_out * chunk + 2 * chunk
        return sums + extra + read + self.batch_bytes(c_out, batch, tile_bytes) + flush

    def fit_batch(
        self,
        c_out: int,
        batch: int,
        tile_bytes: int,
        budget: float | None,
        batch_budget: float | None,
        what: str,
    ) -> int:
        """The batch size to run: ``batch`` halved while one batch exceeds ``batch_budget``
        (down to 1), then while the run exceeds ``budget``.

        Raises:
            DataError: even a batch of one exceeds ``budget`` (``what`` names the run).
        """
        if batch_budget is not None:
            while batch > 1 and self.batch_bytes(c_out, batch, tile_bytes) > batch_budget:
                batch = max(1, batch // 2)
        if budget is None:
            return batch
        while batch > 1 and self.estimate(c_out, batch, tile_bytes) > budget:
            batch = max(1, batch // 2)
        need = self.estimate(c_out, batch, tile_bytes)
        if need > budget:
            act = f", {tile_bytes / 2**20:.0f} MiB of activations per tile" if tile_bytes else ""
            raise DataError(
                f"tiled prediction of {what} needs about {need / 2**20:.0f} MiB with tile="
                f"{self.grid.tile} and batch_size=1{act}, over max_memory_mb="
                f"{budget / 2**20:g}; use a smaller tile, predict a window of the raster, or "
                "raise the budget"
            )
        return batch


def gdal_cache_bytes(
    src: Any, out_width: int, out_bands: int, out_itemsize: int, tile: int, scale: int
) -> int:
    """A GDAL block cache for a run over the open input ``src``, at least :data:`MIN_GDAL_CACHE`.

    Enough for the input's blocks that a pass reads (its rows: at most two tiles, so
    ``ceil(2 tile / block height) + 1`` rows of blocks, all bands: a pixel-interleaved block
    holds them all) and the output's rows of 256-pixel tiles that a pass writes into
    (``ceil(tile * scale / 256) + 1``), over the whole width, with a quarter more. With less,
    the next pass decompresses the input's blocks again, and an output tile that is written
    before it is complete is compressed, read back and written again at the end of the file
    (measured: a 10,000 px wide map 1.5x the size of one written with this cache). GDAL's
    default (5% of the machine's memory) lets the first full pass over a large input (the
    input-value check's decimated read) keep up to that much of it decompressed in memory.
    """
    block_rows = max(int(shape[0]) for shape in src.block_shapes)
    itemsize = max(np.dtype(d).itemsize for d in src.dtypes)
    in_rows = (-(-2 * tile // block_rows) + 1) * block_rows
    out_rows = (-(-tile * scale // BLOCK) + 1) * BLOCK
    need = src.width * min(in_rows, src.height) * src.count * itemsize
    need += out_width * min(out_rows, src.height * scale) * out_bands * out_itemsize
    return max(MIN_GDAL_CACHE, int(need * 1.25))


def gdal_cache(src: Any, options: TilingOptions) -> rasterio.Env:
    """A ``rasterio.Env`` whose GDAL block cache is :func:`gdal_cache_bytes` for a run of
    ``options`` over the open input ``src`` (the output's bands guessed as the input's when
    ``options`` does not give them)."""
    out_bands = options.band_count or src.count
    s = options.scale
    size = gdal_cache_bytes(src, src.width * s, out_bands, options.dtype.itemsize, options.tile, s)
    return rasterio.Env(GDAL_CACHEMAX=size)


__all__ = [
    "CUDA_FREE_SHARE",
    "MIN_GDAL_CACHE",
    "FreeMemoryFn",
    "RunMemory",
    "activation_bytes",
    "cuda_free_bytes",
    "device_batch_budget",
    "gdal_cache",
    "gdal_cache_bytes",
    "on_cpu",
    "on_cuda",
]
