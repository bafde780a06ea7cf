"""Conventions shared by the full-reference image metrics: input checks, masks, crops, reductions.

This module's one job is what the full-reference metrics have in common:
:mod:`~terradiff.metrics.pixel` (PSNR, MAE, RMSE), :mod:`~terradiff.metrics.structural_similarity`
(SSIM), :mod:`~terradiff.metrics.y_channel` and :mod:`~terradiff.metrics.lpips`. It imports no
other metric module.

Every metric compares a prediction with a target of the same shape ``[B, C, H, W]``, any number
of bands. Inside the library images are in ``[-1, 1]`` (``data_range=2.0``, the default); in
physical units pass the units' range as ``data_range`` (e.g. ``10000.0`` for Sentinel-2 surface
reflectance scaled by 1e4).

* ``mask``: valid pixels (nonzero = valid), shaped ``[B, H, W]``, ``[B, 1, H, W]`` or
  ``[B, C, H, W]`` (per-band validity); a batch dimension of 1 broadcasts. Invalid (nodata)
  pixels are ignored completely: their values, even NaN, never change the result.
* ``crop_border``: pixels removed from each side before computing (super-resolution papers crop
  ``scale`` pixels, e.g. SR3, IDM, BasicSR).
* Statistics are computed per image over all bands and all valid pixels, then reduced over the
  batch: ``reduction="mean"`` (the mean of per-image values, as SR papers report; images with no
  valid pixel are left out), ``"none"`` (per-image values ``[B]``) or ``"pooled"`` (one value
  over all valid pixels of the batch, as torchmetrics' PSNR does with ``dim=None``).
  ``per_band=True`` keeps a band dimension (``[B, C]``, or ``[C]`` once reduced).
* An image with no valid pixel gives NaN. Identical images give PSNR ``inf`` (MSE 0), and the
  batch mean is then ``inf`` too.
* Arithmetic is float64 (float32 on devices without float64); results come back as float32 (or
  float64 for float64 inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from terradiff.errors import DataError

Reduction = Literal["mean", "none", "pooled"]
REDUCTIONS = ("mean", "none", "pooled")


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a metric returns for inputs of ``dtype``: float64 stays, anything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_pair(pred: Tensor, target: Tensor, what: str) -> None:
    """Check that ``pred`` and ``target`` are tensors ``[B, C, H, W]`` of one shape.

    Args:
        pred: Predicted images.
        target: Reference images.
        what: The metric's name, for messages.

    Raises:
        DataError: not tensors, not 4-D, or shapes that differ (the message says how to fix it).
    """
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise DataError(
                f"{what}: {name} is a {type(x).__name__}, not a torch.Tensor; convert it with "
                "torch.as_tensor(...) and arrange it as [B, C, H, W]"
            )
        if x.ndim != 4:
            raise DataError(
                f"{what}: {name} has shape {tuple(x.shape)}; images must be [B, C, H, W] "
                "(add a batch dimension with x.unsqueeze(0) for a single [C, H, W] image)"
            )
    if pred.shape != target.shape:
        raise DataError(
            f"{what}: pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}; "
            "compare images of the same size and band count (resize or crop the prediction first)"
        )


def check_reduction(reduction: str) -> None:
    """Raise :class:`DataError` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise DataError(f"reduction={reduction!r} is not one of {REDUCTIONS}")


def check_data_range(data_range: float) -> float:
    """Return ``data_range`` as a float; raise :class:`DataError` unless it is finite and > 0."""
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise DataError(
            f"data_range={data_range!r} must be a positive number: the value range of the images "
            "(2.0 for [-1, 1], 1.0 for [0, 1], 255 for 8-bit, the physical range otherwise)"
        )
    return value


def prepare_mask(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor | None:
    """Return ``mask`` as bool ``[B or 1, 1 or C, H, W]`` (broadcastable to ``shape``)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        mask = torch.as_tensor(mask)
    b, c, h, w = shape
    m = mask.unsqueeze(1) if mask.ndim == 3 else mask
    if (
        m.ndim != 4
        or m.shape[0] not in (1, b)
        or m.shape[1] not in (1, c)
        or tuple(m.shape[2:]) != (h, w)
    ):
        raise DataError(
            f"mask has shape {tuple(mask.shape)} but the images are {tuple(shape)}; a mask of "
            f"valid pixels must be [B, H, W], [B, 1, H, W] or [B, C, H, W] with H, W = {h}, {w}"
        )
    return (m != 0).to(device)


def crop(x: Tensor | None, border: int) -> Tensor | None:
    """Remove ``border`` pixels from each side of the last two axes (``None`` stays ``None``)."""
    if x is None or border == 0:
        return x
    return x[..., border:-border, border:-border]


def prepare_pair(
    pred: Tensor, target: Tensor, mask: Tensor | None, crop_border: int, what: str
) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """Validate, crop and cast a metric's inputs.

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape (moved to ``pred``'s device).
        mask: Valid pixels (see the module docstring) or ``None``.
        crop_border: Pixels removed from each side.
        what: The metric's name, for messages.

    Returns:
        ``(pred, target, mask, result dtype)``: the images cropped and cast to
        :func:`compute_dtype`, the mask as bool (or ``None``) cropped alike, and the dtype the
        metric returns (:func:`result_dtype`).

    Raises:
        DataError: bad shapes, mask or ``crop_border``.
    """
    check_pair(pred, target, what)
    border = int(crop_border)
    h, w = pred.shape[-2:]
    if border < 0 or 2 * border >= min(h, w):
        raise DataError(
            f"{what}: crop_border={crop_border} leaves nothing of {h}x{w} images; use "
            f"0 <= crop_border <= {(min(h, w) - 1) // 2} (SR papers use the scale factor)"
        )
    out_dtype = result_dtype(pred.dtype)
    dtype = compute_dtype(pred.device)
    m = prepare_mask(mask, pred.shape, pred.device)
    target = target.to(device=pred.device)
    return (
        crop(pred, border).to(dtype),  # type: ignore[union-attr]
        crop(target, border).to(dtype),  # type: ignore[union-attr]
        crop(m, border),
        out_dtype,
    )


def masked_sums(values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sum ``values`` ``[B, C, H, W]`` over valid pixels: (sums ``[B, C]``, counts ``[B, C]``)."""
    if mask is None:
        count = torch.full(values.shape[:2], values.shape[2] * values.shape[3], dtype=values.dtype)
        return values.sum(dim=(2, 3)), count.to(values.device)
    m = mask.expand_as(values)
    sums = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return sums.sum(dim=(2, 3)), m.sum(dim=(2, 3)).to(values.dtype)


def reduce_sums(
    sums: Tensor,
    counts: Tensor,
    reduction: str,
    per_band: bool,
    finalize: Callable[[Tensor], Tensor],
    out_dtype: torch.dtype,
) -> Tensor:
    """Turn per-(image, band) sums and counts into the requested values.

    Args:
        sums: Sums over valid pixels ``[B, C]`` (from :func:`masked_sums`).
        counts: Numbers of valid pixels ``[B, C]``.
        reduction: ``"mean"``, ``"none"`` or ``"pooled"`` (see the module docstring).
        per_band: Keep the band dimension.
        finalize: Maps a mean (e.g. the MSE) to the metric (e.g. PSNR).
        out_dtype: Dtype of the result.

    Returns:
        The metric: a scalar, ``[B]``, ``[C]`` or ``[B, C]``; 0/0 gives NaN.
    """
    if reduction == "pooled":
        s, n = sums.sum(dim=0), counts.sum(dim=0)
        if not per_band:
            s, n = s.sum(), n.sum()
        return finalize(s / n).to(out_dtype)
    values = finalize(sums / counts) if per_band else finalize(sums.sum(1) / counts.sum(1))
    if reduction == "none":
        return values.to(out_dtype)
    return torch.nanmean(values, dim=0).to(out_dtype)


__all__ = [
    "REDUCTIONS",
    "Reduction",
    "check_data_range",
    "check_pair",
    "check_reduction",
    "compute_dtype",
    "crop",
    "masked_sums",
    "prepare_mask",
    "prepare_pair",
    "reduce_sums",
    "result_dtype",
]
