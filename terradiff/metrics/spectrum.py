"""Power spectra of super-resolved images: how much detail a model puts where the LR has none.

This module's one job is the spectral measures of a super-resolution output against its
high-resolution reference. PSNR and SSIM reward the conditional mean, which is blurred; a sample
of ``p(HR | LR)`` loses PSNR but should carry the reference's amount of fine detail. That detail
lives at spatial frequencies above the Nyquist frequency of the low-resolution image,
``0.5 / scale`` cycles per HR pixel, which the LR image does not hold at all. The measures here
compare the power there:

* :func:`radial_power_spectrum` — the power spectrum of each image (bands summed), averaged over
  rings of radial frequency (the usual 1-D summary of an image's spectrum, e.g. Durall et al.
  2020, "Watch your Up-Convolution", CVPR, Sec. 3);
* :func:`high_frequency_power` — ``10 log10(P_pred / P_target)`` dB of the power above the LR
  Nyquist frequency: 0 dB is the reference's amount of detail, below 0 a blurred output (bicubic,
  a regression net, the mean of many draws), above 0 excess detail or noise;
* :func:`log_spectral_distance` — the root mean square over those rings of the dB difference of
  the two radial spectra (the log-spectral distance of audio super-resolution, Kuleshov et al.
  2017, "Audio Super Resolution using Neural Networks", Sec. 5), which also sees detail put at
  the wrong frequencies.

Neither is a perceptual metric validated against human judgements (LPIPS is, and needs local
weights: :mod:`terradiff.metrics.lpips`); neither looks at where the detail is, only at how much
there is: the PSNR beside it says whether it is in the right place.

Each band's mean is removed and a separable Hann window applied before the FFT, so the image's
borders (not periodic) do not leak power into every frequency (Harris 1978, Proc. IEEE 66(1)).
Frequencies are in cycles per pixel; the rings cover ``(0, 0.5]`` (the corners of the 2-D
spectrum beyond 0.5 are left out). Inputs, crops and reductions follow
:mod:`terradiff.metrics.full_reference`; an image with masked (invalid) pixels has no spectrum
and gets NaN, which the mean leaves out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from terradiff.errors import DataError
from terradiff.metrics.full_reference import (
    Reduction,
    check_reduction,
    compute_dtype,
    prepare_pair,
)


def _check_scale(scale: float) -> float:
    value = float(scale)
    if not math.isfinite(value) or value <= 1.0:
        raise DataError(
            f"scale={scale!r} must be a number > 1: the HR/LR size ratio of the super-resolution "
            "(e.g. 4 for x4), which puts the LR Nyquist frequency at 0.5 / scale"
        )
    return value


def _radial_frequency(height: int, width: int, device: torch.device) -> Tensor:
    """``sqrt(fy^2 + fx^2)`` in cycles per pixel on the FFT grid of an image, ``[H, W]``."""
    dtype = compute_dtype(device)
    fy = torch.fft.fftfreq(height, device=device, dtype=dtype)
    fx = torch.fft.fftfreq(width, device=device, dtype=dtype)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def power_spectrum(images: Tensor) -> Tensor:
    """The windowed 2-D power spectrum of each image, bands summed: ``[B, H, W]``.

    Computed in float64 (float32 on MPS, which has no float64).

    Each band's mean is removed, a separable Hann window applied, and ``|FFT|^2`` divided by the
    window's energy, so a white noise of variance ``v`` has a flat spectrum of level ``v`` per band.

    Args:
        images: ``[B, C, H, W]`` float images, each side at least 4 pixels.

    Raises:
        DataError: not a 4-D float tensor, a side under 4 pixels, or non-finite values.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise DataError("power_spectrum expects float images [B, C, H, W]")
    height, width = images.shape[-2:]
    if height < 4 or width < 4:
        raise DataError(f"power_spectrum needs images of at least 4x4 pixels, got {height}x{width}")
    dtype = compute_dtype(images.device)
    x = images.to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise DataError("power_spectrum: the images hold NaN or inf; mask or fill them first")
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    window = torch.outer(
        torch.hann_window(height, periodic=False, dtype=dtype, device=x.device),
        torch.hann_window(width, periodic=False, dtype=dtype, device=x.device),
    )
    spectrum = torch.fft.fft2(x * window).abs().square() / window.square().sum()
    return spectrum.sum(dim=1)


def radial_power_spectrum(images: Tensor, rings: int | None = None) -> tuple[Tensor, Tensor]:
    """The power spectrum of each image averaged over rings of radial frequency.

    Args:
        images: ``[B, C, H, W]`` float images (bands are summed).
        rings: Number of equal-width rings over ``(0, 0.5]`` cycles per pixel; default
            ``min(H, W) // 2`` (one FFT bin wide).

    Returns:
        ``(frequencies [R], power [B, R])``: each ring's centre in cycles per pixel and the mean
        power of the 2-D frequencies in it. The zero frequency is left out.
    """
    power = power_spectrum(images)
    height, width = power.shape[-2:]
    count = min(height, width) // 2 if rings is None else int(rings)
    if count < 1:
        raise DataError(f"rings must be a positive number, got {rings!r}")
    radius = _radial_frequency(height, width, power.device)
    index = torch.ceil(radius / 0.5 * count).long() - 1  # (0, 0.5/R] -> ring 0, ...
    inside = (radius > 0) & (index < count)
    index = index[inside]
    sums = torch.zeros(power.shape[0], count, dtype=power.dtype, device=power.device)
    sums.index_add_(1, index, power[:, inside])
    members = torch.bincount(index, minlength=count).to(power.dtype)
    centres = (torch.arange(count, dtype=power.dtype, device=power.device) + 0.5) * 0.5 / count
    return centres, sums / members.clamp_min(1)


def _prepare(
    pred: Tensor,
    target: Tensor,
    scale: float,
    mask: Tensor | None,
    reduction: str,
    crop_border: int,
    what: str,
) -> tuple[float, Tensor, Tensor, Tensor, torch.dtype]:
    """Checked inputs of a spectral measure: ``(LR Nyquist frequency, pred, target, valid
    images [B], result dtype)``; an image is valid when every pixel is (a spectrum needs the
    whole grid)."""
    check_reduction(reduction)
    cutoff = 0.5 / _check_scale(scale)
    pred, target, mask, out_dtype = prepare_pair(pred, target, mask, crop_border, what)
    if mask is None:
        valid = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
    else:
        valid = mask.reshape(mask.shape[0], -1).all(dim=1).expand(pred.shape[0])
    return cutoff, pred, target, valid, out_dtype


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    """``[B]`` per image for ``"none"``; otherwise the mean with NaN left out (a pooled
    measure arrives as one value, which this also returns as a scalar)."""
    if reduction == "none":
        return values
    return values.nanmean()


def high_frequency_power(
    pred: Tensor,
    target: Tensor,
    scale: float,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
) -> Tensor:
    """``10 log10(P_pred / P_target)`` dB of the power above the LR Nyquist frequency.

    ``P`` is the power of the 2-D frequencies with radius in ``(0.5 / scale, 0.5]`` cycles per
    pixel (:func:`power_spectrum`, bands summed): the detail that the LR image of a x``scale``
    super-resolution cannot hold. 0 dB: the reference's amount; -3 dB: half of it.

    Args:
        pred: Super-resolved images ``[B, C, H, W]``.
        target: Reference HR images, same shape.
        scale: The HR/LR size ratio (> 1).
        mask: Valid pixels; an image with any invalid pixel gets NaN.
        reduction: ``"mean"`` (over images, NaN left out), ``"none"`` (``[B]``) or ``"pooled"``
            (the powers summed over images before the ratio).
        crop_border: Pixels cropped from each side first.

    Returns:
        dB, float32 (float64 for float64 inputs). An image whose reference has no power there
        (a constant image) gets NaN.
    """
    cutoff, pred, target, valid, out_dtype = _prepare(
        pred, target, scale, mask, reduction, crop_border, "high_frequency_power"
    )
    powers = []
    for images in (pred, target):
        spectrum = power_spectrum(images)
        radius = _radial_frequency(*spectrum.shape[-2:], spectrum.device)
        band = (radius > cutoff) & (radius <= 0.5)
        powers.append(spectrum[:, band].sum(dim=1))
    nan = torch.full_like(powers[0], float("nan"))
    p_pred, p_target = (torch.where(valid, p, nan) for p in powers)
    if reduction == "pooled":
        p_pred, p_target = p_pred.nansum(), p_target.nansum()
    ratio = torch.where(p_target > 0, p_pred / p_target, torch.full_like(p_pred, float("nan")))
    return _reduce(10.0 * torch.log10(ratio), reduction).to(out_dtype)


def log_spectral_distance(
    pred: Tensor,
    target: Tensor,
    scale: float,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    *,
    crop_border: int = 0,
) -> Tensor:
    """Root mean square, over the rings above the LR Nyquist frequency, of the dB difference of
    the two radial power spectra (:func:`radial_power_spectrum`); 0 for identical spectra.

    Arguments as :func:`high_frequency_power`; ``"pooled"`` averages the spectra over images
    before the comparison. Rings where either spectrum is 0 are left out.
    """
    cutoff, pred, target, valid, out_dtype = _prepare(
        pred, target, scale, mask, reduction, crop_border, "log_spectral_distance"
    )
    frequencies, p_pred = radial_power_spectrum(pred)
    _, p_target = radial_power_spectrum(target)
    if reduction == "pooled":
        p_pred, p_target = (
            p_pred[valid].mean(0, keepdim=True),
            p_target[valid].mean(0, keepdim=True),
        )
        valid = valid[:1].clone().fill_(bool(valid.any()))
    high = frequencies > cutoff
    p_pred, p_target = p_pred[:, high], p_target[:, high]
    usable = (p_pred > 0) & (p_target > 0)
    difference = 10.0 * torch.log10(p_pred.clamp_min(1e-300) / p_target.clamp_min(1e-300))
    squares = torch.where(usable, difference.square(), torch.zeros_like(difference))
    distance = torch.sqrt(squares.sum(1) / usable.sum(1))  # no usable ring: 0/0 = NaN
    distance = torch.where(valid, distance, torch.full_like(distance, float("nan")))
    return _reduce(distance, reduction).to(out_dtype)


__all__ = [
    "high_frequency_power",
    "log_spectral_distance",
    "power_spectrum",
    "radial_power_spectrum",
]
