"""Multi-date rasters of one place as (before, after, metadata) pairs for temporal generation.

* :mod:`terradiff.data.temporal.series` -- dated images of one place on one grid (BioMassters
  chips, folders of dated GeoTIFFs), cloud screening and the grid check.
* :mod:`terradiff.data.temporal.pair_metadata` -- target/source dates and years apart as a
  metadata vector for the conditioning of :mod:`terradiff.nets.conditioning`.
* :mod:`terradiff.data.temporal.pairs` -- :class:`TemporalPairDataset`: aligned crops, fixed
  splits by date, place or region.
"""

from terradiff.data.temporal.pair_metadata import SOURCE_PREFIX, YEARS_APART, PairSchema
from terradiff.data.temporal.pairs import HOLDOUTS, TemporalPair, TemporalPairDataset
from terradiff.data.temporal.series import (
    BIOMASSTERS_MONTHS,
    DatedImage,
    TimeSeries,
    biomassters_series,
    clear_pixels,
    read_series_image,
    scene_series,
)

__all__ = [
    "BIOMASSTERS_MONTHS",
    "HOLDOUTS",
    "SOURCE_PREFIX",
    "YEARS_APART",
    "DatedImage",
    "PairSchema",
    "TemporalPair",
    "TemporalPairDataset",
    "TimeSeries",
    "biomassters_series",
    "clear_pixels",
    "read_series_image",
    "scene_series",
]
