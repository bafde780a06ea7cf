"""Full-reference image-quality metrics: PSNR, SSIM (all bands and Y), MAE/RMSE, LPIPS.

Every metric compares a prediction with a target of the same shape ``[B, C, H, W]``, any number
of bands. Inside the library images are in ``[-1, 1]`` (``data_range=2.0``, the default); in
physical units pass the units' range as ``data_range`` (e.g. ``10000.0`` for Sentinel-2 surface
reflectance scaled by 1e4).

Conventions shared by :func:`psnr`, :func:`ssim`, :func:`mae` and :func:`rmse`:

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

Y-channel metrics (:func:`psnr_y`, :func:`ssim_y`) follow the super-resolution convention (SR3,
IDM, SlimDiffSR, BasicSR): RGB -> Y of ITU-R BT.601 YCbCr as MATLAB's ``rgb2ycbcr``, computed on
``[0, 1]`` with ``data_range=1``. :func:`load_lpips` builds LPIPS (Zhang et al., 2018) from local
weights only; nothing in this module downloads anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from terradiff.errors import CheckpointError, DataError

Reduction = Literal["mean", "none", "pooled"]
REDUCTIONS = ("mean", "none", "pooled")

# ITU-R BT.601 luma for RGB in [0, 1], output in [16, 235] (MATLAB rgb2ycbcr, skimage rgb2ycbcr).
_BT601_Y = (65.481, 128.553, 24.966)
_BT601_Y_OFFSET = 16.0


# --------------------------------------------------------------------------- input handling


def _compute_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_pair(pred: Tensor, target: Tensor, what: str) -> None:
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


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise DataError(f"reduction={reduction!r} is not one of {REDUCTIONS}")


def _check_data_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise DataError(
            f"data_range={data_range!r} must be a positive number: the value range of the images "
            "(2.0 for [-1, 1], 1.0 for [0, 1], 255 for 8-bit, the physical range otherwise)"
        )
    return value


def _prepare_mask(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor | None:
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


def _crop(x: Tensor | None, border: int) -> Tensor | None:
    if x is None or border == 0:
        return x
    return x[..., border:-border, border:-border]


def _prepare(
    pred: Tensor, target: Tensor, mask: Tensor | None, crop_border: int, what: str
) -> tuple[Tensor, Tensor, Tensor | None, torch.dtype]:
    """Validate, crop and cast the inputs; return (pred, target, mask, result dtype)."""
    _check_pair(pred, target, what)
    border = int(crop_border)
    h, w = pred.shape[-2:]
    if border < 0 or 2 * border >= min(h, w):
        raise DataError(
            f"{what}: crop_border={crop_border} leaves nothing of {h}x{w} images; use "
            f"0 <= crop_border <= {(min(h, w) - 1) // 2} (SR papers use the scale factor)"
        )
    out_dtype = _result_dtype(pred.dtype)
    dtype = _compute_dtype(pred.device)
    m = _prepare_mask(mask, pred.shape, pred.device)
    target = target.to(device=pred.device)
    return (
        _crop(pred, border).to(dtype),  # type: ignore[union-attr]
        _crop(target, border).to(dtype),  # type: ignore[union-attr]
        _crop(m, border),
        out_dtype,
    )


def _masked_sums(values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sum ``values`` ``[B, C, H, W]`` over valid pixels: (sums ``[B, C]``, counts ``[B, C]``)."""
    if mask is None:
        count = torch.full(values.shape[:2], values.shape[2] * values.shape[3], dtype=values.dtype)
        return values.sum(dim=(2, 3)), count.to(values.device)
    m = mask.expand_as(values)
    sums = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return sums.sum(dim=(2, 3)), m.sum(dim=(2, 3)).to(values.dtype)


def _reduce(
    sums: Tensor,
    counts: Tensor,
    reduction: str,
    per_band: bool,
    finalize: Callable[[Tensor], Tensor],
    out_dtype: torch.dtype,
) -> Tensor:
    """Turn per-(image, band) sums and counts into the requested values.

    ``finalize`` maps a mean (e.g. the MSE) to the metric (e.g. PSNR). 0/0 gives NaN.
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


# --------------------------------------------------------------------------- PSNR, MAE, RMSE


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
    _check_reduction(reduction)
    r = _check_data_range(data_range)
    p, t, m, out_dtype = _prepare(pred, target, mask, crop_border, "psnr")
    sums, counts = _masked_sums((p - t).square(), m)
    return _reduce(
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
        mask: Valid pixels (see the module docstring).
        reduction: ``"mean"``, ``"none"`` or ``"pooled"`` (see the module docstring).
        crop_border: Pixels cropped from each side first.
        per_band: Keep a band dimension.

    Returns:
        MAE; NaN where no pixel is valid.

    Raises:
        DataError: mismatched shapes, a bad mask or ``crop_border``.
    """
    _check_reduction(reduction)
    p, t, m, out_dtype = _prepare(pred, target, mask, crop_border, "mae")
    sums, counts = _masked_sums((p - t).abs(), m)
    return _reduce(sums, counts, reduction, per_band, lambda v: v, out_dtype)


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
        mask: Valid pixels (see the module docstring).
        reduction: ``"mean"``, ``"none"`` or ``"pooled"``.
        crop_border: Pixels cropped from each side first.
        per_band: Keep a band dimension.

    Returns:
        RMSE; NaN where no pixel is valid.

    Raises:
        DataError: mismatched shapes, a bad mask or ``crop_border``.
    """
    _check_reduction(reduction)
    p, t, m, out_dtype = _prepare(pred, target, mask, crop_border, "rmse")
    sums, counts = _masked_sums((p - t).square(), m)
    return _reduce(sums, counts, reduction, per_band, torch.sqrt, out_dtype)


# --------------------------------------------------------------------------- SSIM


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
    return _masked_sums(ssim_map, valid)


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
    _check_reduction(reduction)
    r = _check_data_range(data_range)
    if win_size < 1 or win_size % 2 == 0:
        raise DataError(f"ssim: win_size={win_size} must be a positive odd number (11 is standard)")
    if gaussian and sigma <= 0:
        raise DataError(f"ssim: sigma={sigma} must be positive (1.5 is standard)")
    if padding not in ("valid", "reflect"):
        raise DataError(f"ssim: padding={padding!r} must be 'valid' or 'reflect'")
    p, t, m, out_dtype = _prepare(pred, target, mask, crop_border, "ssim")
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
    return _reduce(torch.cat(sums), torch.cat(counts), reduction, per_band, lambda v: v, out_dtype)


# --------------------------------------------------------------------------- Y channel


def _select_rgb(x: Tensor, rgb_bands: Sequence[int] | None, what: str) -> Tensor:
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
    m = _prepare_mask(mask, x.shape, x.device)
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
    _check_pair(pred, target, what)
    out = []
    for x in (pred, target):
        rgb = _select_rgb(x, rgb_bands, what).to(_compute_dtype(x.device))
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
    return out.to(_result_dtype(pred.dtype))


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
    return out.to(_result_dtype(pred.dtype))


# --------------------------------------------------------------------------- LPIPS

LPIPS_WEIGHTS_HELP = (
    "LPIPS weights are not shipped with terradiff and are never downloaded. On a machine with "
    "internet access, save the backbone and the LPIPS v0.1 linear heads to one file, e.g.\n"
    "    import torch, torchvision; from safetensors.torch import save_file\n"
    "    sd = torchvision.models.vgg16(weights='IMAGENET1K_V1').features.state_dict()\n"
    "    sd = {f'features.{k}': v for k, v in sd.items()}\n"
    "    sd.update(torch.load('lpips/weights/v0.1/vgg.pth'))  # from the lpips package\n"
    "    save_file({k: v.contiguous() for k, v in sd.items()}, 'lpips_vgg.safetensors')\n"
    "(or torch.save(lpips.LPIPS(net='vgg').state_dict(), 'lpips_vgg.pth'); use alexnet / "
    "alex.pth for net='alex'), copy the file here and call load_lpips('lpips_vgg.safetensors'). "
    "The torchvision .pth and the lpips heads' .pth can also be given separately: "
    "load_lpips('vgg16-397923af.pth', lin_path='vgg.pth')."
)

# torchvision layer layouts: ("C", out_channels, kernel, stride, padding), ("R",), ("M", k, s).
_VGG16_LAYERS: tuple[tuple[int | str, ...], ...] = (
    *(("C", 64, 3, 1, 1), ("R",), ("C", 64, 3, 1, 1), ("R",), ("M", 2, 2)),
    *(("C", 128, 3, 1, 1), ("R",), ("C", 128, 3, 1, 1), ("R",), ("M", 2, 2)),
    *(("C", 256, 3, 1, 1), ("R",)) * 3,
    ("M", 2, 2),
    *(("C", 512, 3, 1, 1), ("R",)) * 3,
    ("M", 2, 2),
    *(("C", 512, 3, 1, 1), ("R",)) * 3,
)
_ALEXNET_LAYERS: tuple[tuple[int | str, ...], ...] = (
    ("C", 64, 11, 4, 2),
    ("R",),
    ("M", 3, 2),
    ("C", 192, 5, 1, 2),
    ("R",),
    ("M", 3, 2),
    ("C", 384, 3, 1, 1),
    ("R",),
    ("C", 256, 3, 1, 1),
    ("R",),
    ("C", 256, 3, 1, 1),
    ("R",),
)
# Layer indices whose outputs LPIPS compares: relu1_2 .. relu5_3 (VGG), relu1 .. relu5 (AlexNet).
_LPIPS_NETS: dict[str, tuple[tuple[tuple[int | str, ...], ...], tuple[int, ...]]] = {
    "vgg": (_VGG16_LAYERS, (3, 8, 15, 22, 29)),
    "alex": (_ALEXNET_LAYERS, (1, 4, 7, 9, 11)),
}


def _build_features(layers: tuple[tuple[int | str, ...], ...]) -> nn.Sequential:
    modules: list[nn.Module] = []
    channels = 3
    for spec in layers:
        if spec[0] == "C":
            out, k, s, p = (int(v) for v in spec[1:])
            modules.append(nn.Conv2d(channels, out, k, stride=s, padding=p))
            channels = out
        elif spec[0] == "R":
            modules.append(nn.ReLU())
        else:
            modules.append(nn.MaxPool2d(int(spec[1]), stride=int(spec[2])))
    return nn.Sequential(*modules)


class _LinearHead(nn.Module):
    """LPIPS ``NetLinLayer``: (dropout,) 1x1 conv to one channel, no bias.

    Index 0 stands for the dropout of the original (inactive at evaluation), so the weight's key
    is ``model.1.weight`` as in the LPIPS weight files.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))
        # Untrained heads weigh all channels equally (the lpips package's lpips=False variant).
        nn.init.ones_(self.model[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al., 2018, CVPR, Eq. 1).

    ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2`` where ``f_l`` are the
    channel-unit-normalised activations of five backbone layers and ``w_l`` the learned linear
    heads. The backbone is torchvision's VGG16 (``net="vgg"``) or AlexNet (``net="alex"``)
    ``features``, written here in plain torch with torchvision's state-dict keys
    (``features.0.weight`` ...); the heads use LPIPS's keys (``lin0.model.1.weight`` ...).

    A freshly constructed instance has random backbone weights and unit heads; it is a
    deterministic distance but not LPIPS. Use :func:`load_lpips` for the real metric.

    Args:
        net: ``"vgg"`` (LPIPS's recommendation as a metric) or ``"alex"``.
    """

    def __init__(self, net: Literal["vgg", "alex"] = "vgg") -> None:
        super().__init__()
        if net not in _LPIPS_NETS:
            raise DataError(f"LPIPS net={net!r} must be 'vgg' or 'alex'")
        layers, taps = _LPIPS_NETS[net]
        self.net = net
        self.features = _build_features(layers)
        self.taps = taps
        widths = [self.features[i - 1].out_channels for i in taps]  # conv before each ReLU tap
        for k, width in enumerate(widths):
            self.add_module(f"lin{k}", _LinearHead(width))
        # LPIPS ScalingLayer: maps [-1, 1] inputs to ImageNet-normalised ones.
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def _activations(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        outs = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if i == last:
                break
        return outs

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS distance of RGB images ``[B, 3, H, W]`` in ``[-1, 1]``; returns ``[B]``."""
        _check_pair(pred, target, "lpips")
        if pred.shape[1] != 3:
            raise DataError(
                f"lpips needs RGB images [B, 3, H, W] in [-1, 1], got {pred.shape[1]} bands; "
                "select the red, green, blue bands first (e.g. x[:, [3, 2, 1]])"
            )
        param = self.features[0].weight
        pred = pred.to(device=param.device, dtype=param.dtype)
        target = target.to(device=param.device, dtype=param.dtype)
        both = self._activations(torch.cat((pred, target)))
        total = torch.zeros(pred.shape[0], dtype=param.dtype, device=param.device)
        for k, f in enumerate(both):
            f_pred, f_target = f.chunk(2)
            head = getattr(self, f"lin{k}")
            total = total + head((f_pred - f_target).square()).mean(dim=(1, 2, 3))
        return total


def _read_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("net.slice"):
            # lpips.LPIPS state dicts: net.slice<k>.<torchvision index>.<param>
            key = "features." + key.split(".", 2)[2]
        out[key] = value
    return out


def _check_file(path: str | Path | None, what: str) -> Path:
    if path is None:
        raise FileNotFoundError(f"no LPIPS {what} file given ({what}=None). {LPIPS_WEIGHTS_HELP}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"LPIPS {what} file {p} not found. {LPIPS_WEIGHTS_HELP}")
    return p


def load_lpips(
    weights_path: str | Path | None,
    *,
    lin_path: str | Path | None = None,
    net: Literal["vgg", "alex"] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """Build LPIPS from local weights (never downloads); returns a frozen module in eval mode.

    Args:
        weights_path: A ``.safetensors`` file (preferred) or a ``.pth`` (read with
            ``torch.load(weights_only=True)``) holding the backbone with torchvision's keys
            (``features.<i>.weight/bias``; ``classifier.*`` is ignored) and, unless
            ``lin_path`` is given, the LPIPS heads (``lin<k>.model.1.weight``). A saved
            ``lpips.LPIPS(...).state_dict()`` (``net.slice<k>.<i>...`` keys) works too.
        lin_path: Optional second file with the heads (e.g. the lpips package's
            ``weights/v0.1/vgg.pth``).
        net: ``"vgg"`` or ``"alex"``; inferred from the first conv's kernel size when ``None``.
        device: Where to put the module.

    Returns:
        An :class:`LPIPS` in eval mode with ``requires_grad=False`` parameters.

    Raises:
        FileNotFoundError: ``weights_path`` is None or missing (or ``lin_path`` missing); the
            message says how to obtain the weights.
        CheckpointError: the file's tensors do not form an LPIPS network.
    """
    path = _check_file(weights_path, "weights_path")
    state = _read_state(path)
    if lin_path is not None:
        state.update(_read_state(_check_file(lin_path, "lin_path")))
    first = state.get("features.0.weight")
    if first is None:
        raise CheckpointError(
            f"{path} has no 'features.0.weight': not a VGG16/AlexNet backbone state dict. "
            f"{LPIPS_WEIGHTS_HELP}"
        )
    if net is None:
        net = "alex" if first.shape[-1] == 11 else "vgg"
    model = LPIPS(net)
    state = {k: v for k, v in state.items() if k.startswith(("features.", "lin"))}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}{' + ' + str(lin_path) if lin_path else ''} is not an LPIPS-{net} state dict: "
            f"missing {missing[:4]} ({len(missing)}), unexpected {unexpected[:4]} "
            f"({len(unexpected)}), wrong shape {wrong[:4]} ({len(wrong)}). The heads "
            f"(lin0.model.1.weight ...) may be in a separate file: pass lin_path=. "
            f"{LPIPS_WEIGHTS_HELP}"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval().requires_grad_(False)
    return model.to(device)


# --------------------------------------------------------------------------- summary


@torch.no_grad()
def sr_metrics(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None = None,
    data_range: float = 2.0,
    crop_border: int = 0,
    mask: Tensor | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    lpips: LPIPS | None = None,
) -> dict[str, float]:
    """The usual super-resolution table row: PSNR, SSIM, MAE, RMSE (all bands), Y and LPIPS.

    All-band metrics use ``data_range``. The Y-channel metrics (``psnr_y``, ``ssim_y``) and
    ``lpips`` need RGB and an absolute value range: they are computed when RGB bands exist
    (``rgb_bands`` given, or 3 bands) and the range is known: ``value_range`` given, or the
    default ``data_range=2.0`` meaning terradiff's ``[-1, 1]``. Otherwise they are absent from the
    result. ``lpips`` ignores ``mask`` and ``crop_border`` beyond the crop.

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape.
        rgb_bands: Red, green, blue band indices for the Y/LPIPS metrics.
        data_range: Value range for the all-band metrics (2.0 for ``[-1, 1]``).
        crop_border: Pixels cropped from each side (SR: the scale factor).
        mask: Valid pixels (see the module docstring).
        value_range: ``(low, high)`` of the inputs, for the Y/LPIPS metrics in physical units.
        lpips: A module from :func:`load_lpips`, to add ``"lpips"``.

    Returns:
        ``{"psnr", "ssim", "mae", "rmse"[, "psnr_y", "ssim_y"][, "lpips"]}`` as floats (means over
        the batch).

    Raises:
        DataError: mismatched shapes, bad mask or arguments.
    """
    out = {
        "psnr": psnr(pred, target, data_range, mask, crop_border=crop_border),
        "ssim": ssim(pred, target, data_range, mask, crop_border=crop_border),
        "mae": mae(pred, target, mask, crop_border=crop_border),
        "rmse": rmse(pred, target, mask, crop_border=crop_border),
    }
    has_rgb = rgb_bands is not None or pred.shape[1] == 3
    if value_range is None and float(data_range) == 2.0:
        value_range = (-1.0, 1.0)
    if has_rgb and value_range is not None:
        kwargs = {"crop_border": crop_border, "value_range": value_range}
        out["psnr_y"] = psnr_y(pred, target, rgb_bands, mask, **kwargs)
        out["ssim_y"] = ssim_y(pred, target, rgb_bands, mask, **kwargs)
        if lpips is not None:
            lo, hi = value_range

            def to_lpips_input(x: Tensor) -> Tensor:
                rgb = _crop(_select_rgb(x, rgb_bands, "lpips"), int(crop_border))
                return (rgb - lo) / (hi - lo) * 2 - 1  # type: ignore[operator]

            out["lpips"] = lpips(to_lpips_input(pred), to_lpips_input(target)).mean()
    return {k: float(v) for k, v in out.items()}


__all__ = [
    "LPIPS",
    "LPIPS_WEIGHTS_HELP",
    "load_lpips",
    "mae",
    "psnr",
    "psnr_y",
    "rgb_to_y",
    "rmse",
    "sr_metrics",
    "ssim",
    "ssim_y",
]
