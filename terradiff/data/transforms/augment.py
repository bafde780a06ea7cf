"""Augmentations of image tensors ``[..., H, W]``: crops, resizes and flips, all seeded.

Every random choice comes from an explicit :class:`torch.Generator`, so a dataset can make item
``i`` at epoch ``e`` a pure function of ``(seed, e, i)`` (:func:`item_generator`);
:func:`spatial_augment` is the datasets' spatial pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from terradiff.errors import DataError


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose state is a pure function of ``(seed, epoch, index)``.

    The three integers are mixed with NumPy's ``SeedSequence`` (so nearby triples give unrelated
    streams), which makes the augmentation of item ``index`` at ``epoch`` reproducible no matter
    which worker, process or resumed run draws it.
    """
    entropy = [int(seed) % 2**63, int(epoch) % 2**63, int(index) % 2**63]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a size given as one int or a pair (checked positive)."""
    out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out[0] <= 0 or out[1] <= 0:
        raise DataError(f"image size must be positive, got {size}")
    return out


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``x[..., top:top+height, left:left+width]`` (checked to lie inside ``x``)."""
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise DataError(f"crop ({top}, {left}, {height}, {width}) outside an image of {h}x{w}")
    return x[..., top : top + height, left : left + width]


def random_crop_params(
    height: int, width: int, size: int | Sequence[int], generator: torch.Generator
) -> tuple[int, int]:
    """Uniform top-left corner ``(top, left)`` of a ``size`` crop in a ``height x width`` image."""
    th, tw = size2(size)
    if th > height or tw > width:
        raise DataError(f"crop of {th}x{tw} larger than the image {height}x{width}; resize first")
    top = int(torch.randint(0, height - th + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - tw + 1, (1,), generator=generator))
    return top, left


def random_crop(
    x: torch.Tensor, size: int | Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """A uniformly placed ``size`` crop of ``x [..., H, W]``."""
    th, tw = size2(size)
    top, left = random_crop_params(x.shape[-2], x.shape[-1], (th, tw), generator)
    return crop(x, top, left, th, tw)


def center_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """The central ``size`` crop of ``x [..., H, W]`` (offset rounded down)."""
    th, tw = size2(size)
    h, w = x.shape[-2:]
    if th > h or tw > w:
        raise DataError(f"crop of {th}x{tw} larger than the image {h}x{w}; resize first")
    return crop(x, (h - th) // 2, (w - tw) // 2, th, tw)


def resize(
    x: torch.Tensor,
    size: int | Sequence[int],
    *,
    mode: str = "bilinear",
    antialias: bool | None = None,
) -> torch.Tensor:
    """Resize ``x [C, H, W]`` or ``[B, C, H, W]`` with :func:`torch.nn.functional.interpolate`.

    Args:
        x: float tensor.
        size: output ``(H, W)`` or a square side.
        mode: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"area"``.
        antialias: low-pass before downsampling; default: on when shrinking with
            bilinear/bicubic (without it, a 150 -> 64 shrink aliases).
    """
    out = size2(size)
    if tuple(x.shape[-2:]) == out:
        return x
    squeeze = x.ndim == 3
    batch = x[None] if squeeze else x
    if batch.ndim != 4:
        raise DataError(f"resize needs [C, H, W] or [B, C, H, W], got shape {tuple(x.shape)}")
    smooth = mode in ("bilinear", "bicubic")
    if antialias is None:
        antialias = smooth and (out[0] < x.shape[-2] or out[1] < x.shape[-1])
    kwargs: dict[str, Any] = {"size": out, "mode": mode}
    if smooth:
        kwargs.update(align_corners=False, antialias=bool(antialias))
    dtype = batch.dtype
    y = F.interpolate(batch if dtype.is_floating_point else batch.float(), **kwargs)
    y = y.to(dtype) if not dtype.is_floating_point else y
    return y[0] if squeeze else y


def resize_short_side(x: torch.Tensor, size: int, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize so that the shorter side equals ``size`` (aspect ratio kept)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    scale = size / min(h, w)
    return resize(x, (max(size, round(h * scale)), max(size, round(w * scale))), mode=mode)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (last axis)."""
    return x.flip(-1)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom (second-last axis)."""
    return x.flip(-2)


def random_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    horizontal: bool = True,
    vertical: bool = False,
    p: float = 0.5,
) -> torch.Tensor:
    """Flip left-right and/or top-bottom, each with probability ``p``.

    Two random numbers are always drawn (one per axis), so the stream a generator leaves behind
    does not depend on the options.
    """
    draws = torch.rand(2, generator=generator)
    if horizontal and draws[0] < p:
        x = hflip(x)
    if vertical and draws[1] < p:
        x = vflip(x)
    return x


CROP_MODES: tuple[str, ...] = ("random", "center", "resize", "none")


def spatial_augment(
    x: torch.Tensor,
    size: int | Sequence[int] | None,
    generator: torch.Generator,
    *,
    crop_mode: str = "random",
    horizontal_flip: bool = True,
    vertical_flip: bool = False,
    mode: str = "bilinear",
) -> torch.Tensor:
    """The datasets' spatial pipeline: crop/resize to ``size``, then random flips.

    ``crop_mode``: ``"random"`` (uniform crop), ``"center"``, ``"resize"`` (whole image resized to
    ``size``, aspect ratio not kept) or ``"none"``. For the two crops an image smaller than
    ``size`` is first resized so its shorter side fits. Stack the image and its mask along the
    channel axis to transform both identically.
    """
    if crop_mode not in CROP_MODES:
        raise DataError(f"unknown crop {crop_mode!r}; choose one of {list(CROP_MODES)}")
    if size is not None and crop_mode != "none":
        th, tw = size2(size)
        if crop_mode == "resize":
            x = resize(x, (th, tw), mode=mode)
        else:
            if x.shape[-2] < th or x.shape[-1] < tw:
                x = resize_short_side(x, max(th, tw), mode=mode)
            if crop_mode == "random":
                x = random_crop(x, (th, tw), generator)
            else:
                x = center_crop(x, (th, tw))
    if horizontal_flip or vertical_flip:
        x = random_flip(x, generator, horizontal=horizontal_flip, vertical=vertical_flip)
    return x


__all__ = [
    "CROP_MODES",
    "center_crop",
    "crop",
    "hflip",
    "item_generator",
    "random_crop",
    "random_crop_params",
    "random_flip",
    "resize",
    "resize_short_side",
    "size2",
    "spatial_augment",
    "vflip",
]
