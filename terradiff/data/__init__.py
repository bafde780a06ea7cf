"""terradiff.data: rasters in and out, scaling to [-1, 1], augmentation and datasets.

* :mod:`terradiff.data.raster` — read/write GeoTIFF (and anything GDAL opens) with masks, band
  selection and profiles; no torch.
* :mod:`terradiff.data.transforms` — scaling presets, band statistics, crops/resize/flips.
* :mod:`terradiff.data.datasets` — :class:`ImageFolderDataset`, :class:`GeoTiffChipDataset`.
"""

from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.data.raster import (
    EUROSAT_BANDS,
    KNOWN_BAND_NAMES,
    RasterData,
    RasterInfo,
    inspect_raster,
    read_raster,
    write_raster,
)
from terradiff.data.transforms import (
    SCALING_PRESETS,
    BandStats,
    Scaling,
    compute_band_stats,
    from_model,
    get_scaling,
    to_model,
)
from terradiff.errors import DataWarning

__all__ = [
    "EUROSAT_BANDS",
    "KNOWN_BAND_NAMES",
    "SCALING_PRESETS",
    "BandStats",
    "DataWarning",
    "GeoTiffChipDataset",
    "ImageFolderDataset",
    "RasterData",
    "RasterInfo",
    "Scaling",
    "compute_band_stats",
    "from_model",
    "get_scaling",
    "inspect_raster",
    "read_raster",
    "to_model",
    "write_raster",
]
