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

The package keeps one concern per module: :mod:`~terradiff.data.tiling.geometry` (tile grid,
blending weights and buffers), :mod:`~terradiff.data.tiling.options` (:class:`TilingOptions`, the
validated options), :mod:`~terradiff.data.tiling.source` (the input's bands, nodata and strip
reads), :mod:`~terradiff.data.tiling.writer` (output type, nodata and the atomic GeoTIFF) and
:mod:`~terradiff.data.tiling.run` (the tiled run and :func:`predict_raster`).
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
from terradiff.data.tiling.run import PredictFn, TiledRun, TilingSummary, predict_raster

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
