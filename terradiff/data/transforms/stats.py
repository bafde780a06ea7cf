"""Per-band statistics of a dataset in physical units, for ``minmax`` scalings and reports.

:func:`compute_band_stats` accumulates exact mean, std, min and max over the valid pixels of a
collection of images, and percentiles over a seeded sample of them; :class:`BandStats` holds the
result and round-trips through a JSON-ready dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from terradiff.errors import DataError


@dataclass
class BandStats:
    """Per-band statistics of a dataset in physical units (valid pixels only).

    ``percentiles`` maps a percentile (e.g. 2.0) to one value per band; they are computed on a
    seeded random sample of the valid pixels of every image (exact when an image has fewer pixels
    than the sample size). Mean, std, min and max are exact.
    """

    count: list[int]
    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    percentiles: dict[float, list[float]] = field(default_factory=dict)

    @property
    def num_bands(self) -> int:
        """Number of bands described."""
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (percentile keys as strings)."""
        return {
            "count": list(self.count),
            "mean": list(self.mean),
            "std": list(self.std),
            "min": list(self.min),
            "max": list(self.max),
            "percentiles": {str(k): list(v) for k, v in self.percentiles.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            count=[int(v) for v in data["count"]],
            mean=[float(v) for v in data["mean"]],
            std=[float(v) for v in data["std"]],
            min=[float(v) for v in data["min"]],
            max=[float(v) for v in data["max"]],
            percentiles={
                float(k): [float(x) for x in v] for k, v in data.get("percentiles", {}).items()
            },
        )


def _image_and_mask(item: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Accept an array/tensor, ``(array, mask)``, a RasterData or a dataset item dict."""
    mask = None
    if isinstance(item, Mapping):
        array, mask = item["image"], item.get("mask")
    elif isinstance(item, tuple | list) and len(item) == 2:
        array, mask = item
    elif hasattr(item, "array") and hasattr(item, "valid_mask"):
        array, mask = item.array, item.valid_mask
    else:
        array = item
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"band statistics need images [C, H, W], got shape {array.shape}")
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask).reshape(array.shape[1:]).astype(bool)
    return array, mask


def compute_band_stats(
    images: Iterable[Any],
    *,
    percentiles: Sequence[float] = (1.0, 2.0, 98.0, 99.0),
    sample_per_image: int = 4096,
    seed: int = 0,
) -> BandStats:
    """Per-band mean, std, min, max and percentiles over a collection of images.

    Mean and variance are accumulated exactly in float64 (sums of ``x`` and of ``(x - shift)^2``
    around the first image's mean, for numerical stability); percentiles use up to
    ``sample_per_image`` random valid pixels of each image (seeded, so reproducible).

    Args:
        images: arrays/tensors ``[C, H, W]``, ``(array, mask)`` pairs, RasterData or dataset item
            dicts (``{"image", "mask"}``); masks (True/1 = valid) exclude pixels.
        percentiles: percentiles in [0, 100] to estimate.
        sample_per_image: pixels sampled per image for the percentiles.
        seed: seed of the pixel sampling.

    Raises:
        DataError: no images, mixed band counts, or a band without a valid pixel.
    """
    rng = np.random.default_rng(seed)
    n: np.ndarray | None = None
    total = sq = shift = lo = hi = None
    samples: list[np.ndarray] = []
    for item in images:
        array, mask = _image_and_mask(item)
        flat = array.reshape(array.shape[0], -1).astype(np.float64)
        valid = np.isfinite(flat).all(axis=0)
        if mask is not None:
            valid &= mask.reshape(-1)
        values = flat[:, valid]
        if n is None:
            bands = array.shape[0]
            n = np.zeros(bands, dtype=np.int64)
            total, sq = np.zeros(bands), np.zeros(bands)
            lo, hi = np.full(bands, np.inf), np.full(bands, -np.inf)
            shift = values.mean(axis=1) if values.shape[1] else np.zeros(bands)
        elif array.shape[0] != n.shape[0]:
            raise DataError(
                f"band statistics: an image has {array.shape[0]} bands, earlier ones "
                f"{n.shape[0]}; give images with the same bands"
            )
        if values.shape[1] == 0:
            continue
        centred = values - shift[:, None]
        n += values.shape[1]
        total += centred.sum(axis=1)
        sq += (centred**2).sum(axis=1)
        lo = np.minimum(lo, values.min(axis=1))
        hi = np.maximum(hi, values.max(axis=1))
        if values.shape[1] > sample_per_image:
            pick = rng.choice(values.shape[1], size=sample_per_image, replace=False)
            values = values[:, pick]
        samples.append(values)
    if n is None:
        raise DataError("band statistics: no images given")
    if not samples or (n == 0).any():
        raise DataError("band statistics: some band has no valid pixel in any image")
    assert total is not None and sq is not None and shift is not None
    mean_c = total / n
    var = np.maximum(sq / n - mean_c**2, 0.0)
    pooled = np.concatenate(samples, axis=1)
    pct = {float(p): np.percentile(pooled, p, axis=1).tolist() for p in percentiles}
    return BandStats(
        count=n.tolist(),
        mean=(mean_c + shift).tolist(),
        std=np.sqrt(var).tolist(),
        min=np.asarray(lo).tolist(),
        max=np.asarray(hi).tolist(),
        percentiles=pct,
    )


__all__ = ["BandStats", "compute_band_stats"]
