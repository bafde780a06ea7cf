"""Per-pixel error metrics: PSNR, MAE and RMSE over all bands and valid pixels.

This module's one job is the three metrics built on a masked mean of per-pixel errors: PSNR
(``10 log10(R^2 / MSE)``), MAE and RMSE. Inputs, masks, crops and reductions follow the
conventions of :mod:`terradiff.metrics.full_reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from terradiff.metrics.full_reference import (
    Reduction,
    check_data_range,
    check_reduction,
    masked_sums,
    prepare_pair,
    reduce_sums,
)


def psnr(
    pred: Tensor,
    target: Tensor,
    data_range: float = 2.0,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    per_band: bool = False,
) -> Tensor:
    """Peak signal-to-noise ratio, ``10 log10(R^2 / MSE)`` dB, per image over all bands.

    The MSE of an image is taken over all its bands and valid pixels (as
    ``skimage.metrics.peak_signal_noise_ratio`` does on a multichannel array).

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape.
        data_range: ``R``, the value range of the images (2.0 for ``[-1, 1]``; physical units'
            range otherwise).
        mask: Valid pixels, ``[B, H, W]``, ``[B, 1, H, W]`` or ``[B, C, H, W]`` (nonzero =
            valid). Nodata pixels are excluded from the MSE.
        reduction: ``"mean"`` over images (scalar), ``"none"`` (``[B]``) or ``"pooled"`` (one
            MSE over the whole batch).
        crop_border: Pixels cropped from each side first (SR papers: the scale factor).
        per_band: Keep a band dimension (``[B, C]``, or ``[C]`` once reduced).

    Returns:
        PSNR in dB; ``inf`` where the images are identical (MSE 0), NaN where no pixel is valid.

    Raises:
        DataError: mismatched shapes, a bad mask, ``data_range`` or ``crop_border``.
    """
    check_reduction(reduction)
    r = check_data_range(data_range)
    p, t, m, out_dtype = prepare_pair(pred, target, mask, crop_border, "psnr")
    sums, counts = masked_sums((p - t).square(), m)
    return reduce_sums(
        sums, counts, reduction, per_band, lambda mse: 10.0 * torch.log10(r * r / mse), out_dtype
    )


def mae(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    per_band: bool = False,
) -> Tensor:
    """Mean absolute error, per image over all bands and valid pixels, in the images' units.

    Args:
        pred: Predicted images ``[B, C, H, W]`` (``[-1, 1]`` or physical units).
        target: Reference images, same shape and units.
        mask: Valid pixels (see :mod:`terradiff.metrics.full_reference`).
        reduction: ``"mean"``, ``"none"`` or ``"pooled"`` (same conventions).
        crop_border: Pixels cropped from each side first.
        per_band: Keep a band dimension.

    Returns:
        MAE; NaN where no pixel is valid.

    Raises:
        DataError: mismatched shapes, a bad mask or ``crop_border``.
    """
    check_reduction(reduction)
    p, t, m, out_dtype = prepare_pair(pred, target, mask, crop_border, "mae")
    sums, counts = masked_sums((p - t).abs(), m)
    return reduce_sums(sums, counts, reduction, per_band, lambda v: v, out_dtype)


def rmse(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    per_band: bool = False,
) -> Tensor:
    """Root-mean-square error, per image over all bands and valid pixels, in the images' units.

    ``reduction="mean"`` averages per-image RMSEs; ``"pooled"`` is the RMSE over every valid
    pixel of the batch (what a map-level accuracy table usually reports).

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape and units.
        mask: Valid pixels (see :mod:`terradiff.metrics.full_reference`).
        reduction: ``"mean"``, ``"none"`` or ``"pooled"``.
        crop_border: Pixels cropped from each side first.
        per_band: Keep a band dimension.

    Returns:
        RMSE; NaN where no pixel is valid.

    Raises:
        DataError: mismatched shapes, a bad mask or ``crop_border``.
    """
    check_reduction(reduction)
    p, t, m, out_dtype = prepare_pair(pred, target, mask, crop_border, "rmse")
    sums, counts = masked_sums((p - t).square(), m)
    return reduce_sums(sums, counts, reduction, per_band, torch.sqrt, out_dtype)


__all__ = ["mae", "psnr", "rmse"]
