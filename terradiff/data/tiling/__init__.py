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
    A run holds no array that grows with the raster's height, and only one that grows with its
    width (measured in ``benchmarks/bench_memory.py``, figures in ``BENCHMARKS.md``):

    * Passes and column blocks (:mod:`~terradiff.data.tiling.plan`): the tile rows are processed
      top to bottom, one pass each (the last row, when shifted inward, together with the row
      above), and within a pass the tiles go left to right in column blocks of
      :data:`~terradiff.data.tiling.plan.BLOCK_TILES` tiles (``block_tiles``; a whole number of
      batches). Each (tile row, block) is read with one windowed read; the block's sums
      ``sum(w * pred)`` and ``sum(w)`` span the pass's rows (at most ``2 tile - overlap``) by the
      block's columns, times ``scale`` each way. When a block is done, its pixels that no later
      tile touches are divided, converted to physical units and written, in chunks of at most
      one tile's rows; the columns it shares with the next block are carried to it.
    * The row carry: the partial sums of the ``overlap`` rows a pass shares with the next,
      ``(C_out + 1) * 4 * overlap * scale * width * scale`` bytes over the whole width: the only
      width-dependent buffer (1/8 of a full-width strip at ``tile = 128``, ``overlap = 16``).
      Avoiding it would mean predicting the tiles of each block border twice.
    * Summation order: every pixel receives its tiles' contributions in the order of a run over
      the whole raster in one buffer (:mod:`~terradiff.data.tiling.blend`), and batches never
      straddle blocks, so the output is bit-identical whatever the block size.
    * The batch: ``batch_size`` tiles of input, output and weights, plus, on the CPU, the
      network's activations, which on large tiles dominate everything else (a 32-channel UNet
      at 512 x 512 output pixels holds about 320 MiB per tile). A ``predict_fn`` reports them as
      ``predict_fn.tile_bytes(height, width)`` (:mod:`~terradiff.data.tiling.probe` measures them
      on a small tile; :mod:`terradiff.mapping` does this for every model); the batch size is
      halved until one batch fits ``batch_memory_mb`` (default 512 MiB; down to 1, never an
      error), and :class:`~terradiff.data.tiling.memory.RunMemory` estimates the whole before
      any work: ``max_memory_mb`` lowers the batch further, then refuses with a
      :class:`~terradiff.errors.DataError` saying what to change.
      On CUDA the activations live on the GPU instead: the batch is the most tiles, up to
      ``batch_size``, whose input, prediction and activations fit 60% of the GPU's free memory
      (``torch.cuda.mem_get_info``; :func:`~terradiff.data.tiling.memory.device_batch_budget`).
    * GDAL's block cache is bounded for the run (:func:`~terradiff.data.tiling.memory.gdal_cache`:
      one row of the input's and of the output's blocks, so that no block is decompressed or
      compressed twice, and at least 64 MiB) instead of GDAL's default of 5% of the machine's
      memory, which the input-value check's decimated read of a large input otherwise fills
      with decompressed blocks (1.2 GiB on a 24 GB machine). That row of blocks grows with the
      width too (41 MB for a 10,000 px wide 4-band float32 input in 256-row blocks).
      :mod:`terradiff.mapping` reads a carbon map back for its totals (and previews) through a
      64 MiB cache too: a sequential read needs none, and GDAL's default one would keep the
      whole map.

    The rest of a process's resident memory is Python, torch and the model (about 300 MiB), and
    what the allocator keeps of freed activations: the ``terradiff`` command tunes glibc to keep
    freed blocks (:mod:`terradiff.runtime`; faster, but the resident size holds about twice a
    batch's activations); ``TERRADIFF_DEFAULT_MALLOC=1`` trades that memory for time.

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
    ``KeyboardInterrupt``) removes the temporary file and leaves ``out_path`` untouched. By
    default (``cog=True``) the finished temporary is first copied by GDAL's COG driver, which
    streams, to a second temporary that is moved instead: the output is a Cloud-Optimized
    GeoTIFF (512 px tiles, averaged overviews, a predictor for its data type; see
    :mod:`terradiff.data.cog`).

The package keeps one concern per module: :mod:`~terradiff.data.tiling.geometry` (tile grid and
blending weights), :mod:`~terradiff.data.tiling.plan` (passes and column blocks),
:mod:`~terradiff.data.tiling.blend` (the weighted sums and what crosses block borders),
:mod:`~terradiff.data.tiling.memory` (estimates, batch fitting, GDAL's cache),
:mod:`~terradiff.data.tiling.probe` (a model's memory per tile),
:mod:`~terradiff.data.tiling.options` (:class:`TilingOptions`, the validated options),
:mod:`~terradiff.data.tiling.source` (the input's bands, nodata and window reads),
:mod:`~terradiff.data.tiling.value_check` (the input's values against the model's scaling),
:mod:`~terradiff.data.tiling.writer` (output type, nodata and the atomic GeoTIFF),
:mod:`~terradiff.data.tiling.run` (the tiled run) and :mod:`~terradiff.data.tiling.single`
(:func:`predict_raster`).
"""

from terradiff.data.tiling.geometry import (
    WEIGHT_FLOOR,
    TileGrid,
    axis_starts,
    blend_weights,
    blend_window,
    tile_windows,
)
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.run import PredictFn, TiledRun, TilingSummary
from terradiff.data.tiling.single import predict_raster

__all__ = [
    "WEIGHT_FLOOR",
    "PredictFn",
    "TileGrid",
    "TiledRun",
    "TilingOptions",
    "TilingSummary",
    "axis_starts",
    "blend_weights",
    "blend_window",
    "predict_raster",
    "tile_windows",
]
