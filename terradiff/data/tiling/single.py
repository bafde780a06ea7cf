"""The single-process tiled run: :func:`predict_raster` writes one blended GeoTIFF.

It checks the options (:class:`~terradiff.data.tiling.options.TilingOptions`), opens the input
with GDAL's block cache sized for the run (:func:`~terradiff.data.tiling.memory.gdal_cache`),
drives a :class:`~terradiff.data.tiling.run.TiledRun` into a
:class:`~terradiff.data.tiling.writer.GeoTiffWriter` and commits the output atomically.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terradiff.data.raster import BandNames, BandSelection, open_raster
from terradiff.data.tiling.memory import gdal_cache
from terradiff.data.tiling.options import DEFAULT_BATCH_MEMORY_MB, TilingOptions
from terradiff.data.tiling.run import PredictFn, TiledRun, TilingSummary
from terradiff.data.tiling.writer import GeoTiffWriter, check_output_path
from terradiff.data.transforms import Scaling
from terradiff.errors import DataWarning


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
    batch_memory_mb: float | None = DEFAULT_BATCH_MEMORY_MB,
    block_tiles: int | None = None,
    cog: bool = True,
    tags: Mapping[str, str] | None = None,
) -> TilingSummary:
    """Run ``predict_fn`` over a raster in overlapping tiles and write a blended GeoTIFF (a
    Cloud-Optimized one unless ``cog=False``).

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
            row can be smaller. It may report the memory one tile needs inside it with an
            attribute ``tile_bytes`` (see :mod:`terradiff.data.tiling.memory`).
        progress: show progress over tiles (:func:`terradiff.progress.progress_bar`).

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
        batch_memory_mb=batch_memory_mb,
        block_tiles=block_tiles,
        cog=cog,
        tags=tags,
    )
    check_output_path(out_path, options.overwrite)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer: GeoTiffWriter | None = None
    try:
        with open_raster(in_path) as src, gdal_cache(src, options):
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


__all__ = ["predict_raster"]
