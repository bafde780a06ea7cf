"""Features of images through a frozen extractor, batch by batch, from any image source.

This module's one job is turning images into features for FID/KID: it reads tensors, datasets or
iterables of batches, selects the bands an RGB encoder takes (``rgb_bands``), checks the
``[-1, 1]`` scaling, runs a frozen :class:`~terradiff.metrics.extractor.FeatureExtractor`
(:func:`compute_features`) and fits the statistics (:func:`compute_statistics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from terradiff.metrics.extractor import FeatureExtractor
from terradiff.metrics.feature_stats import FeatureStatistics, extractor_fingerprint
from terradiff.progress import progress_bar

ImageSource = Tensor | Iterable[Any]
#: Images outside [-RANGE_TOLERANCE, RANGE_TOLERANCE] are rejected (wrong scaling, e.g. 0..255).
RANGE_TOLERANCE = 1.5


def _extract_images(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, Mapping):
        if "image" not in item:
            raise ValueError(f"batch dict has no 'image' key (keys: {sorted(item)})")
        return item["image"]
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise TypeError(
        f"cannot read images from a {type(item).__name__}; give tensors [B, C, H, W], dicts "
        "with an 'image' tensor, or (images, ...) tuples"
    )


def _iter_batches(images: ImageSource, batch_size: int) -> Iterator[Tensor]:
    """Yield 4-D batches of at most ``batch_size`` images from any supported source."""
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
        yield from images.split(batch_size)
        return
    if not hasattr(images, "__iter__") and hasattr(images, "__getitem__"):
        dataset = images
        images = (dataset[i] for i in range(len(dataset)))  # map-style dataset
    pending: list[Tensor] = []
    for item in images:
        x = _extract_images(item)
        if x.ndim == 3:
            pending.append(x)
            if len(pending) == batch_size:
                yield torch.stack(pending)
                pending = []
            continue
        if x.ndim != 4:
            raise ValueError(f"expected images [C, H, W] or [B, C, H, W], got {tuple(x.shape)}")
        if pending:
            yield torch.stack(pending)
            pending = []
        yield from x.split(batch_size)
    if pending:
        yield torch.stack(pending)


def select_bands(images: Tensor, rgb_bands: Sequence[int] | None, in_channels: int) -> Tensor:
    """Select the bands the encoder takes; error clearly when the band count does not fit.

    Args:
        images: ``[B, C, H, W]``.
        rgb_bands: Band indices (e.g. ``(3, 2, 1)`` for Sentinel-2 B4,B3,B2 in EuroSAT order;
            ``(0, 0, 0)`` for a single band as grey), or ``None`` to use the images as they are.
        in_channels: Bands the encoder takes (3).

    Raises:
        ValueError: wrong number or range of indices, or ``C != in_channels`` without indices.
    """
    c = images.shape[1]
    if rgb_bands is None:
        if c != in_channels:
            raise ValueError(
                f"images have {c} bands but the encoder takes {in_channels} (RGB); pass "
                f"rgb_bands=<{in_channels} band indices>, e.g. rgb_bands=(3, 2, 1) for Sentinel-2 "
                "B4,B3,B2 in EuroSAT band order, or rgb_bands=(0, 0, 0) for a single band"
            )
        return images
    idx = [int(i) for i in rgb_bands]
    if len(idx) != in_channels:
        raise ValueError(f"rgb_bands needs {in_channels} indices, got {list(rgb_bands)}")
    bad = [i for i in idx if not -c <= i < c]
    if bad:
        raise ValueError(f"rgb_bands {idx} out of range for images with {c} bands")
    return images[:, idx]


def _check_range(x: Tensor) -> Tensor:
    if not torch.is_floating_point(x):
        raise ValueError(
            f"expected float images in [-1, 1], got dtype {x.dtype}; for uint8 use x / 127.5 - 1"
        )
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("images contain NaN or infinite values")
    if lo < -RANGE_TOLERANCE or hi > RANGE_TOLERANCE:
        raise ValueError(
            f"images must be in [-1, 1] (terradiff convention), got values in [{lo:.3g}, "
            f"{hi:.3g}]; map [0, 1] data with 2 * x - 1"
        )
    return x.clamp(-1.0, 1.0)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def compute_features(
    images: ImageSource,
    extractor: FeatureExtractor | nn.Module,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = False,
    rgb_bands: Sequence[int] | None = None,
    max_images: int | None = None,
) -> Tensor:
    """Features of all images, computed batch by batch with the frozen extractor.

    Args:
        images: A tensor ``[N, C, H, W]`` in ``[-1, 1]``; or an iterable (DataLoader, generator,
            list) of tensors ``[B, C, H, W]`` / ``[C, H, W]``, of dicts with an ``"image"`` tensor
            (terradiff datasets), or of ``(images, ...)`` tuples; or a map-style dataset.
            Values slightly outside ``[-1, 1]`` (unclipped samples) are clamped; values beyond
            +-1.5 are rejected as a scaling error.
        extractor: A :class:`~terradiff.metrics.encoders.FeatureExtractor`.
        batch_size: Images per forward pass (features do not depend on it).
        device: Moves the extractor there; default: where its parameters are.
        progress: Show progress (:func:`terradiff.progress.progress_bar`).
        rgb_bands: Band indices to feed the (RGB) encoder; required when ``C != 3``.
        max_images: Stop after this many images.

    Returns:
        Float32 CPU tensor ``[N, D]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        extractor.to(device)
    dev = _device_of(extractor)
    extractor.eval()
    in_channels = int(getattr(extractor, "in_channels", 3))
    total = len(images) if isinstance(images, Tensor) else None
    if max_images is not None:
        total = min(total, max_images) if total is not None else max_images
    bar = progress_bar(
        total=total,
        disable=not progress,
        desc=f"features ({getattr(extractor, 'name', 'extractor')})",
        unit="img",
    )
    feats: list[Tensor] = []
    count = 0
    for batch in _iter_batches(images, batch_size):
        if max_images is not None and count >= max_images:
            break
        if max_images is not None:
            batch = batch[: max_images - count]
        x = _check_range(select_bands(batch, rgb_bands, in_channels))
        f = extractor(x.to(dev, non_blocking=True))
        if f.ndim != 2 or f.shape[0] != x.shape[0]:
            raise ValueError(f"extractor returned shape {tuple(f.shape)} for {x.shape[0]} images")
        feats.append(f.float().cpu())
        count += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if not feats:
        raise ValueError("no images were given (empty tensor or iterable)")
    return torch.cat(feats)


def compute_statistics(
    images: ImageSource,
    extractor: FeatureExtractor | nn.Module,
    batch_size: int = 64,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    rgb_bands: Sequence[int] | None = None,
    max_images: int | None = None,
    keep_features: bool = True,
) -> FeatureStatistics:
    """:func:`compute_features` followed by :meth:`FeatureStatistics.from_features`."""
    feats = compute_features(
        images,
        extractor,
        batch_size=batch_size,
        device=device,
        progress=progress,
        rgb_bands=rgb_bands,
        max_images=max_images,
    )
    return FeatureStatistics.from_features(
        feats,
        encoder=str(getattr(extractor, "name", type(extractor).__name__)),
        fingerprint=extractor_fingerprint(extractor),  # type: ignore[arg-type]
        keep_features=keep_features,
    )


__all__ = [
    "RANGE_TOLERANCE",
    "ImageSource",
    "compute_features",
    "compute_statistics",
    "select_bands",
]
