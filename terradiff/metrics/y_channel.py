"""Y-channel metrics: BT.601 luma and the PSNR/SSIM on it that super-resolution papers report.

This module's one job is the super-resolution convention (SR3, IDM, SlimDiffSR, BasicSR): RGB ->
Y of ITU-R BT.601 YCbCr as MATLAB's ``rgb2ycbcr``, computed on ``[0, 1]`` with ``data_range=1``,
then PSNR (:mod:`~terradiff.metrics.pixel`) or SSIM
(:mod:`~terradiff.metrics.structural_similarity`) on Y.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from terradiff.errors import DataError
from terradiff.metrics.full_reference import (
    Reduction,
    check_pair,
    compute_dtype,
    prepare_mask,
    result_dtype,
)
from terradiff.metrics.pixel import psnr
from terradiff.metrics.structural_similarity import ssim

# ITU-R BT.601 luma for RGB in [0, 1], output in [16, 235] (MATLAB rgb2ycbcr, skimage rgb2ycbcr).
_BT601_Y = (65.481, 128.553, 24.966)
_BT601_Y_OFFSET = 16.0


def select_rgb(x: Tensor, rgb_bands: Sequence[int] | None, what: str) -> Tensor:
    """The red, green and blue bands of images ``[B, C, H, W]``, in that order.

    Args:
        x: Images ``[B, C, H, W]``.
        rgb_bands: Indices of the red, green and blue bands; ``None`` when ``C == 3`` (RGB order).
        what: The metric's name, for messages.

    Returns:
        ``[B, 3, H, W]`` (``x`` itself when ``rgb_bands`` is None).

    Raises:
        DataError: no RGB bands can be chosen (the message suggests ``rgb_bands``).
    """
    c = x.shape[1]
    if rgb_bands is None:
        if c != 3:
            raise DataError(
                f"{what}: images have {c} bands; the Y channel needs red, green, blue. Pass "
                "rgb_bands=(r, g, b) band indices, e.g. rgb_bands=(3, 2, 1) for Sentinel-2 "
                "B4, B3, B2 in EuroSAT band order"
            )
        return x
    idx = [int(i) for i in rgb_bands]
    if len(idx) != 3 or any(not -c <= i < c for i in idx):
        raise DataError(
            f"{what}: rgb_bands={list(rgb_bands)} must be 3 band indices (red, green, blue) "
            f"within the images' {c} bands"
        )
    return x[:, idx]


def _rgb_mask(mask: Tensor | None, x: Tensor, rgb_bands: Sequence[int] | None) -> Tensor | None:
    """A mask for the Y channel of ``x``: valid where all of R, G, B are valid."""
    m = prepare_mask(mask, x.shape, x.device)
    if m is None:
        return None
    if m.shape[1] > 1:
        m = m[:, list(rgb_bands)] if rgb_bands is not None else m
        m = m.all(dim=1, keepdim=True)
    return m


def rgb_to_y(x: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Luma Y of ITU-R BT.601 YCbCr, as MATLAB's ``rgb2ycbcr`` and SR papers compute it.

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` with ``R, G, B`` in ``[0, 1]``, so Y lies
    in ``[16/255, 235/255]`` (``skimage.color.rgb2ycbcr(rgb)[..., 0] / 255``; BasicSR's
    ``to_y_channel`` / 255). Values outside ``value_range`` are not clipped.

    Args:
        x: RGB images ``[B, 3, H, W]`` (red, green, blue in that order).
        value_range: ``(low, high)`` of the input, mapped to ``[0, 1]``; ``(-1, 1)`` inside
            terradiff.

    Returns:
        Y ``[B, 1, H, W]`` on the ``[0, 1]`` scale (use ``data_range=1.0``).

    Raises:
        DataError: ``x`` is not ``[B, 3, H, W]`` or ``value_range`` is empty.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(
            f"rgb_to_y needs RGB images [B, 3, H, W], got {shape}; select the red, green and blue "
            "bands first (e.g. x[:, [3, 2, 1]] for Sentinel-2 in EuroSAT band order)"
        )
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise DataError(f"rgb_to_y: value_range={value_range} must be (low, high) with low < high")
    rgb = (x - lo) / (hi - lo)
    coeff = torch.tensor(_BT601_Y, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return ((rgb * coeff).sum(dim=1, keepdim=True) + _BT601_Y_OFFSET) / 255.0


def _y_pair(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None,
    value_range: tuple[float, float],
    quantize: bool,
    what: str,
) -> tuple[Tensor, Tensor]:
    check_pair(pred, target, what)
    out = []
    for x in (pred, target):
        rgb = select_rgb(x, rgb_bands, what).to(compute_dtype(x.device))
        if quantize:
            lo, hi = value_range
            levels = ((rgb.clamp(lo, hi) - lo) / (hi - lo) * 255.0).round()
            rgb = levels / 255.0 * (hi - lo) + lo
        out.append(rgb_to_y(rgb, value_range))
    return out[0], out[1]


def psnr_y(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    quantize: bool = False,
) -> Tensor:
    """PSNR on the BT.601 Y channel (``data_range=1`` on ``[0, 1]``), as SR papers report it.

    SR3 (Saharia et al., 2022), IDM (Gao et al., 2023) and SlimDiffSR report PSNR/SSIM on Y of
    images cropped by ``scale`` pixels; see :func:`rgb_to_y` and :func:`psnr`.

    Args:
        pred: Predicted images ``[B, C, H, W]`` in ``value_range``.
        target: Reference images, same shape.
        rgb_bands: Indices of the red, green, blue bands; ``None`` when ``C == 3`` (RGB order).
        mask: Valid pixels; with a per-band mask a pixel counts when its R, G, B are all valid.
        reduction: ``"mean"``, ``"none"`` or ``"pooled"``.
        crop_border: Pixels cropped from each side first.
        value_range: ``(low, high)`` of the inputs; ``(-1, 1)`` inside terradiff.
        quantize: Clip to ``value_range`` and round to 8-bit levels first, as evaluations on
            saved uint8 images do.

    Returns:
        PSNR (dB) on Y.

    Raises:
        DataError: no RGB bands, mismatched shapes, bad mask or arguments.
    """
    y_pred, y_target = _y_pair(pred, target, rgb_bands, value_range, quantize, "psnr_y")
    m = _rgb_mask(mask, pred, rgb_bands)
    out = psnr(y_pred, y_target, 1.0, m, reduction, crop_border=crop_border)
    return out.to(result_dtype(pred.dtype))


def ssim_y(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    quantize: bool = False,
    padding: Literal["valid", "reflect"] = "valid",
) -> Tensor:
    """SSIM on the BT.601 Y channel (``data_range=1`` on ``[0, 1]``), as SR papers report it.

    Args:
        pred: Predicted images ``[B, C, H, W]`` in ``value_range``.
        target: Reference images, same shape.
        rgb_bands: Indices of the red, green, blue bands; ``None`` when ``C == 3`` (RGB order).
        mask: Valid pixels; with a per-band mask a pixel counts when its R, G, B are all valid.
        reduction: ``"mean"``, ``"none"`` or ``"pooled"``.
        crop_border: Pixels cropped from each side first.
        value_range: ``(low, high)`` of the inputs; ``(-1, 1)`` inside terradiff.
        quantize: Clip and round to 8-bit levels first.
        padding: ``"valid"`` (default) or ``"reflect"``; see :func:`ssim`.

    Returns:
        SSIM on Y (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).

    Raises:
        DataError: no RGB bands, mismatched shapes, bad mask or arguments.
    """
    y_pred, y_target = _y_pair(pred, target, rgb_bands, value_range, quantize, "ssim_y")
    m = _rgb_mask(mask, pred, rgb_bands)
    out = ssim(y_pred, y_target, 1.0, m, reduction, crop_border=crop_border, padding=padding)
    return out.to(result_dtype(pred.dtype))


__all__ = ["psnr_y", "rgb_to_y", "select_rgb", "ssim_y"]
