"""Structural similarity (SSIM; Wang et al., 2004, IEEE TIP 13(4)) over all bands, with masks.

This module's one job is SSIM: the Gaussian-weighted local statistics (done as separable banded
matrix products, fast in float64 on the CPU) and their average over valid windows. Inputs, masks,
crops and reductions follow :mod:`terradiff.metrics.full_reference`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from terradiff.errors import DataError
from terradiff.metrics.full_reference import (
    Reduction,
    check_data_range,
    check_reduction,
    masked_sums,
    prepare_pair,
    reduce_sums,
)


def _window_1d(win_size: int, sigma: float, gaussian: bool, dtype: torch.dtype) -> Tensor:
    """Normalised 1-D window: sampled Gaussian ``exp(-x^2 / 2 sigma^2)`` or a box."""
    if not gaussian:
        return torch.full((win_size,), 1.0 / win_size, dtype=dtype)
    x = torch.arange(win_size, dtype=dtype) - (win_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _band_matrix(length: int, window: Tensor) -> Tensor:
    """``K`` ``[length, length - n + 1]`` with ``(v @ K)[j] = sum_i window[i] v[j + i]``."""
    n = window.numel()
    out = length - n + 1
    k = torch.zeros(length, out, dtype=window.dtype, device=window.device)
    rows = torch.arange(n, device=window.device)[:, None] + torch.arange(out, device=window.device)
    k[rows, torch.arange(out, device=window.device).expand(n, out)] = window[:, None].expand(n, out)
    return k


_STRIP = 256  # output columns per banded matmul: cost per output <= _STRIP + n - 1 MACs


def _filter_last(x: Tensor, window: Tensor) -> Tensor:
    """'Valid' correlation of ``x`` ``[..., L]`` with ``window`` along the last axis.

    Done as banded matrix products on strips of the axis: BLAS-fast in float64, where
    ``conv2d`` on the CPU is several times slower.
    """
    n, length = window.numel(), x.shape[-1]
    out_len = length - n + 1
    rows = x.reshape(-1, length)
    if out_len <= _STRIP + _STRIP // 2:
        return (rows @ _band_matrix(length, window)).view(*x.shape[:-1], out_len)
    out = torch.empty(rows.shape[0], out_len, dtype=x.dtype, device=x.device)
    strip = _band_matrix(_STRIP + n - 1, window)
    for start in range(0, out_len, _STRIP):
        stop = min(start + _STRIP, out_len)
        k = strip if stop - start == _STRIP else _band_matrix(stop - start + n - 1, window)
        out[:, start:stop] = rows[:, start : stop + n - 1] @ k
    return out.view(*x.shape[:-1], out_len)


def _filter_valid(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' correlation of ``x`` ``[..., H, W]`` with ``window`` along H and W."""
    w = window.to(device=x.device, dtype=x.dtype)
    y = _filter_last(x, w)
    return _filter_last(y.transpose(-1, -2).contiguous(), w).transpose(-1, -2)


def _ssim_sums(
    p: Tensor,
    t: Tensor,
    m: Tensor | None,
    window: Tensor,
    c1: float,
    c2: float,
) -> tuple[Tensor, Tensor]:
    """Sums and counts ``[B, C]`` of the SSIM map of (already padded) images over valid windows.

    Eq. 13 of Wang et al. (2004), with the local statistics of their Eqs. 14-16 (Gaussian
    weights, population moments).
    """
    stats = _filter_valid(torch.stack((p, t, p * p, t * t, p * t), dim=2), window)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.unbind(2)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    valid = None
    if m is not None:
        # A position counts when its window holds only valid pixels.
        n = window.numel()
        box = torch.ones(n, dtype=p.dtype, device=p.device)
        valid = _filter_valid(m.to(p.dtype), box) > n * n - 0.5
    return masked_sums(ssim_map, valid)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 2.0,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
    per_band: bool = False,
    win_size: int = 11,
    sigma: float = 1.5,
    gaussian: bool = True,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: Literal["valid", "reflect"] = "valid",
) -> Tensor:
    """Structural similarity (Wang et al., 2004, IEEE TIP 13(4), Eq. 13), per band, averaged.

    For each band the local statistics are weighted by an ``win_size`` x ``win_size`` Gaussian
    window of standard deviation ``sigma`` (Sec. III-C of the paper: 11x11, sigma 1.5), with
    population (biased) variances, and::

        SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 +
                     sigma_y^2 + C2)),   C1 = (K1 R)^2, C2 = (K2 R)^2.

    The SSIM map is averaged over positions and bands of each image.

    ``padding="valid"`` keeps only positions whose window lies inside the image, like the
    authors' MATLAB ``ssim_index.m`` and ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R,
    channel_axis=...)``. ``padding="reflect"`` reflect-pads the images by ``win_size // 2`` and
    averages the whole same-size map, which is what torchmetrics'
    ``structural_similarity_index_measure`` does since its PR 2721 (2024; e.g. 1.9.0); earlier
    torchmetrics releases cropped the border and matched ``"valid"``.

    With a ``mask``, only positions whose whole window consists of valid pixels are averaged (so
    nodata pixels never enter a local statistic); a band of an image without such a position is
    left out of that image's average, and an image without any gives NaN. Without a mask all
    (band, position) pairs count equally, so the result is the mean of per-band SSIMs.

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape.
        data_range: ``R``, the value range of the images (2.0 for ``[-1, 1]``).
        mask: Valid pixels, ``[B, H, W]``, ``[B, 1, H, W]`` or ``[B, C, H, W]``.
        reduction: ``"mean"`` over images, ``"none"`` (``[B]``) or ``"pooled"`` (all valid
            positions of the batch).
        crop_border: Pixels cropped from each side before anything else.
        per_band: Keep a band dimension (``[B, C]``, or ``[C]`` once reduced).
        win_size: Window side (odd). With ``gaussian=True`` 11 is the paper's and
            scikit-image's choice for ``sigma=1.5`` (radius ``int(3.5 sigma + 0.5)``).
        sigma: Standard deviation of the Gaussian window.
        gaussian: ``False`` uses a uniform ``win_size`` box (still population statistics).
        k1: ``K1`` of the paper.
        k2: ``K2`` of the paper.
        padding: ``"valid"`` (default) or ``"reflect"`` (see above).

    Returns:
        SSIM (1 for identical images); NaN where no window is entirely valid.

    Raises:
        DataError: mismatched shapes, images smaller than the window, a bad mask or argument.
    """
    check_reduction(reduction)
    r = check_data_range(data_range)
    if win_size < 1 or win_size % 2 == 0:
        raise DataError(f"ssim: win_size={win_size} must be a positive odd number (11 is standard)")
    if gaussian and sigma <= 0:
        raise DataError(f"ssim: sigma={sigma} must be positive (1.5 is standard)")
    if padding not in ("valid", "reflect"):
        raise DataError(f"ssim: padding={padding!r} must be 'valid' or 'reflect'")
    p, t, m, out_dtype = prepare_pair(pred, target, mask, crop_border, "ssim")
    b, c, h, w = p.shape
    pad = win_size // 2
    if min(h, w) <= pad if padding == "reflect" else min(h, w) < win_size:
        raise DataError(
            f"ssim: images of {h}x{w} pixels (after crop_border={crop_border}) are smaller than "
            f"the {win_size}x{win_size} window; use larger images or a smaller win_size"
        )
    if m is not None:
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        full = m.expand(b, c, h, w)
        p, t = torch.where(full, p, zero), torch.where(full, t, zero)
    if padding == "reflect":
        p = F.pad(p, (pad, pad, pad, pad), mode="reflect")
        t = F.pad(t, (pad, pad, pad, pad), mode="reflect")
        if m is not None:
            m = F.pad(m.to(p.dtype), (pad, pad, pad, pad), mode="reflect") > 0.5

    window = _window_1d(win_size, sigma, gaussian, p.dtype)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    sums, counts = [], []
    for i in range(b):  # one image at a time bounds the memory of the five statistic maps
        mi = None if m is None else m[i : i + 1] if m.shape[0] == b else m
        s_i, n_i = _ssim_sums(p[i : i + 1], t[i : i + 1], mi, window, c1, c2)
        sums.append(s_i)
        counts.append(n_i)
    return reduce_sums(
        torch.cat(sums), torch.cat(counts), reduction, per_band, lambda v: v, out_dtype
    )


__all__ = ["ssim"]
