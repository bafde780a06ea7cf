"""Bicubic resampling of super-resolution images: input checks, LR size, down- and up-sampling.

The deterministic half of :mod:`terradiff.data.degrade`: :func:`bicubic_downsample` (the classic
SR benchmark degradation, an anti-aliased bicubic shrink equal to PIL's ``BICUBIC`` resize),
:func:`lr_size` (the LR size, rounded half up) and :func:`upsample_to` (the bicubic upsampling of
the LR image that conditions SR3, Saharia et al. 2021, Sec. 2.4). Also the checks and the
:func:`interpolate` call that the Real-ESRGAN pipeline (:mod:`terradiff.data.degrade.real`)
shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from terradiff.errors import DataError

#: Modes :func:`interpolate` and :func:`upsample_to` accept.
ALLOWED_RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic", "nearest")

# Inputs may exceed [-1, 1] by this much (round-off of an earlier float op) before it is an error.
_RANGE_TOL = 1e-3


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _check_scale(scale: float) -> float:
    """``scale`` as a finite float > 1, or a :class:`DataError` saying what a scale is."""
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise DataError(
            f"scale must be a number > 1 (the HR/LR size ratio, e.g. 4 or 2.5), got {scale!r}"
        )
    value = float(scale)
    if not math.isfinite(value) or value <= 1.0:
        raise DataError(
            f"scale must be a finite number > 1 (the HR/LR size ratio, e.g. 4 or 2.5), "
            f"got {scale!r}; a scale <= 1 would not make a low-resolution image"
        )
    return value


def as_batch(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, bool]:
    """``x`` as ``[B, C, H, W]`` (and whether it was ``[C, H, W]``), checked float and finite."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor [C, H, W] or [B, C, H, W], got {type(x)}")
    if x.ndim not in (3, 4):
        raise DataError(
            f"{name} must have shape [C, H, W] or [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DataError(
            f"{name} has dtype {x.dtype}; degradations need a float image in [-1, 1] "
            "(convert with terradiff.data.transforms.to_model(scaling.to_unit(x)))"
        )
    if x.numel() == 0:
        raise DataError(f"{name} is empty (shape {tuple(x.shape)})")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise DataError(
            f"{name} contains {bad} non-finite value(s) (NaN/Inf); fill nodata pixels "
            "(e.g. with the raster's mask) before making a low-resolution image"
        )
    return (x[None], True) if x.ndim == 3 else (x, False)


def check_range(x: torch.Tensor, name: str = "x") -> None:
    """Refuse values outside [-1, 1] (beyond a round-off tolerance), naming ``name``."""
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - _RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise DataError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}] but must lie in [-1, 1]; scale it with "
            "terradiff.data.transforms.to_model (or pass clamp=False to bicubic resizing)"
        )


def lr_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of the LR image of an ``height x width`` HR image: ``round(side / scale)``, half up.

    Args:
        height: HR height in pixels.
        width: HR width in pixels.
        scale: HR/LR size ratio, > 1 (integer or not, e.g. 4 or 1.5).

    Returns:
        ``(lr_height, lr_width)``, both >= 1.

    Raises:
        DataError: ``scale`` is not a finite number > 1, or the image is smaller than ``scale``
            pixels on a side (its LR version would be empty).
    """
    s = _check_scale(scale)
    if height < s or width < s:
        raise DataError(
            f"image of {height}x{width} pixels is smaller than the scale factor {scale:g}: its "
            f"low-resolution version would have no pixels; use HR images of at least "
            f"{math.ceil(s)}x{math.ceil(s)} pixels (ideally a multiple of the scale)"
        )
    # floor(v + 0.5): half-up rounding, so 37.5 -> 38 (Python's round() would give 38 but 2.5 -> 2).
    return max(1, math.floor(height / s + 0.5)), max(1, math.floor(width / s + 0.5))


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, bool):
        raise DataError(f"size must be an int or (height, width), got {size!r}")
    if isinstance(size, int):
        out = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2:
        out = (int(size[0]), int(size[1]))
    else:
        raise DataError(f"size must be an int or (height, width), got {size!r}")
    if out[0] <= 0 or out[1] <= 0:
        raise DataError(f"size must be positive, got {size!r}")
    return out


def interpolate(x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool) -> torch.Tensor:
    """:func:`F.interpolate` of a float ``[B, C, H, W]`` batch (no-op when the size matches)."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    return F.interpolate(x, size=size, mode=mode)


# --------------------------------------------------------------------------------------------
# bicubic
# --------------------------------------------------------------------------------------------


def bicubic_downsample(x: torch.Tensor, scale: float, *, clamp: bool = True) -> torch.Tensor:
    """Anti-aliased bicubic down-sampling by ``scale`` (the standard SR benchmark degradation).

    The LR size is :func:`lr_size` (``round(H / scale)``, half up), so integer scales of sizes
    divisible by the scale give exactly ``H / scale``. The bicubic kernel (``a = -0.5``) is
    stretched by the scale factor (``antialias=True``), which low-pass filters before
    sub-sampling and equals PIL's ``BICUBIC`` resize of a float image.

    Args:
        x: HR image ``[C, H, W]`` or ``[B, C, H, W]``, float, any band count.
        scale: HR/LR size ratio > 1, e.g. 2, 3, 4, 8 or 1.5, 2.5.
        clamp: clip the result to [-1, 1] (bicubic overshoots at edges); then ``x`` must lie in
            [-1, 1]. With ``False`` any value range is accepted and nothing is clipped.

    Returns:
        The LR image, same layout and dtype as ``x``.

    Raises:
        DataError: bad ``scale``, image smaller than ``scale``, non-float/non-finite ``x``, or
            ``x`` outside [-1, 1] with ``clamp=True``.
    """
    batch, squeeze = as_batch(x)
    if clamp:
        check_range(batch)
    out_size = lr_size(batch.shape[-2], batch.shape[-1], scale)
    y = interpolate(batch, out_size, "bicubic", antialias=True)
    if clamp:
        y = y.clamp(-1.0, 1.0)
    return y[0] if squeeze else y


def upsample_to(
    x: torch.Tensor,
    size: int | Sequence[int],
    *,
    mode: str = "bicubic",
    clamp: bool = True,
) -> torch.Tensor:
    """Bicubic resize of an LR image to ``size``, e.g. back to the HR size for SR3 conditioning.

    SR3 (Saharia et al. 2021, Sec. 2.4) conditions the denoiser on the LR image upsampled to the
    target resolution with bicubic interpolation and concatenated with ``x_t`` along channels.
    Anti-aliasing is used only if ``size`` shrinks the image.

    Args:
        x: image ``[C, H, W]`` or ``[B, C, H, W]``, float, any band count.
        size: output ``(height, width)`` or a square side.
        mode: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"`` or ``"area"``.
        clamp: clip the result to [-1, 1] (bicubic overshoots); then ``x`` must lie in [-1, 1].

    Returns:
        The resized image, same layout and dtype as ``x``.

    Raises:
        DataError: bad ``size`` or ``mode``, non-float/non-finite ``x``, or ``x`` outside
            [-1, 1] with ``clamp=True``.
    """
    if mode not in ALLOWED_RESIZE_MODES:
        raise DataError(f"unknown resize mode {mode!r}; use one of {ALLOWED_RESIZE_MODES}")
    batch, squeeze = as_batch(x)
    if clamp:
        check_range(batch)
    out_size = _size2(size)
    shrink = out_size[0] < batch.shape[-2] or out_size[1] < batch.shape[-1]
    y = interpolate(batch, out_size, mode, antialias=shrink)
    if clamp:
        y = y.clamp(-1.0, 1.0)
    return y[0] if squeeze else y


__all__ = [
    "ALLOWED_RESIZE_MODES",
    "as_batch",
    "bicubic_downsample",
    "check_range",
    "interpolate",
    "lr_size",
    "upsample_to",
]
