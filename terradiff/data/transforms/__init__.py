"""Scaling presets (physical units <-> [0, 1] <-> [-1, 1]), band statistics and augmentations.

Scaling: every image enters the library through a named, invertible and serialisable
:class:`Scaling` (``to_unit``: physical -> [0, 1]; ``from_unit``: back), then
:func:`to_model` maps [0, 1] to the [-1, 1] of DDPM (Ho et al. 2020, Sec. 3.3: "We assume that
image data consists of integers in {0, ..., 255} scaled linearly to [-1, 1]"). Presets:

* ``"uint8"``: ``x / 255`` (8-bit RGB such as AID, LEVIR-CD).
* ``"sentinel2"``: ``clip(x / 10000, 0, 1)`` — Sentinel-2 L1C/L2A digital numbers are reflectance x
  10,000.
* ``"sen12ms"``: ``clip(x / 5000, 0, 1) ** (1 / 2.2)`` — the preset of the noise-schedule study on
  SEN12MS Sentinel-2 data: reflectance saturating at 0.5, then a display gamma that spreads the
  dark land-surface values over more of the range.
* ``"minmax"``: ``clip((x - min_b) / (max_b - min_b), 0, 1)`` per band ``b`` (e.g. from the
  percentiles of :func:`compute_band_stats`).
* ``"none"``: identity (data already in [0, 1]).

``from_unit`` inverts ``to_unit`` exactly for values inside the clip range; clipped values come
back at the range's edge.

Augmentations (crop, resize, flip) work on tensors ``[C, H, W]`` (or ``[..., H, W]``) and take
an explicit :class:`torch.Generator`, so a dataset can make item ``i`` at epoch ``e`` a pure
function of ``(seed, e, i)`` (:func:`item_generator`).

The package keeps one concern per module: :mod:`~terradiff.data.transforms.scaling` (the
presets), :mod:`~terradiff.data.transforms.stats` (band statistics) and
:mod:`~terradiff.data.transforms.augment` (crops, resizes, flips).
"""

from terradiff.data.transforms.augment import (
    CROP_MODES,
    center_crop,
    crop,
    hflip,
    item_generator,
    random_crop,
    random_crop_params,
    random_flip,
    resize,
    resize_short_side,
    size2,
    spatial_augment,
    vflip,
)
from terradiff.data.transforms.scaling import (
    SCALING_PRESETS,
    Scaling,
    from_model,
    get_scaling,
    to_model,
)
from terradiff.data.transforms.stats import BandStats, compute_band_stats

__all__ = [
    "CROP_MODES",
    "SCALING_PRESETS",
    "BandStats",
    "Scaling",
    "center_crop",
    "compute_band_stats",
    "crop",
    "from_model",
    "get_scaling",
    "hflip",
    "item_generator",
    "random_crop",
    "random_crop_params",
    "random_flip",
    "resize",
    "resize_short_side",
    "size2",
    "spatial_augment",
    "to_model",
    "vflip",
]
