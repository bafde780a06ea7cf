"""Totals of a carbon-density map raster: the stock and the mean density over counted pixels.

Read block by block (memory bounded for a map of any size); used by ``terradiff estimate``
(:func:`terradiff.mapping.estimate_raster`) to print the total carbon of what it mapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terradiff.data.tiling.memory import MIN_GDAL_CACHE


def carbon_map_totals(map_path: Path, mask_path: str | Path | None) -> tuple[float, int, float]:
    """``(sum of densities, counted pixels, pixel area ha)`` of a carbon map, block by block.

    The pixel area is 0 when the raster has no projected CRS (its pixel size is not in metres).
    """
    import rasterio

    total, count = 0.0, 0
    with rasterio.Env(GDAL_CACHEMAX=MIN_GDAL_CACHE), rasterio.open(map_path) as src:
        mask_src = rasterio.open(mask_path) if mask_path is not None else None
        try:
            transform = src.transform
            metres = src.crs is not None and src.crs.is_projected
            area = (
                abs(transform.a * transform.e - transform.b * transform.d) / 1e4 if metres else 0.0
            )
            for _, window in src.block_windows(1):
                density = src.read(1, window=window).astype(np.float64)
                counted = np.isfinite(density)
                if mask_src is not None:
                    counted &= mask_src.read(1, window=window) > 0
                total += float(density[counted].sum())
                count += int(counted.sum())
        finally:
            if mask_src is not None:
                mask_src.close()
    return total, count, area
