"""Full-reference image quality: the one-call super-resolution table row and the metrics' home.

This module's one job is :func:`sr_metrics` (PSNR, SSIM, MAE, RMSE, Y-channel PSNR/SSIM, LPIPS
and the AID feature distance of a batch in one call; :func:`sr_metrics_per_image` gives the same
per image). The metrics themselves live in one module per concern, and are importable from here
as before:

* :mod:`terradiff.metrics.full_reference` — conventions shared by all (masks, crops, reductions);
* :mod:`terradiff.metrics.pixel` — :func:`psnr`, :func:`mae`, :func:`rmse`;
* :mod:`terradiff.metrics.structural_similarity` — :func:`ssim` (Wang et al., 2004);
* :mod:`terradiff.metrics.y_channel` — :func:`rgb_to_y`, :func:`psnr_y`, :func:`ssim_y` (BT.601
  luma, the SR papers' convention);
* :mod:`terradiff.metrics.lpips` — :class:`LPIPS` and :func:`load_lpips` (Zhang et al., 2018),
  from local weights only;
* :mod:`terradiff.metrics.feature_distance` — :class:`FeatureDistance`, LPIPS's form in
  terradiff's shipped AID encoder: the perceptual distance that needs no download;
* :mod:`terradiff.metrics.spectrum` — :func:`high_frequency_power` and
  :func:`log_spectral_distance`: the detail above the LR Nyquist frequency, against the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from terradiff.metrics.feature_distance import (
    FEATURE_DISTANCE_NAME,
    FeatureDistance,
    load_feature_distance,
)
from terradiff.metrics.full_reference import REDUCTIONS, Reduction, crop
from terradiff.metrics.lpips import LPIPS, LPIPS_WEIGHTS_HELP, load_lpips
from terradiff.metrics.pixel import mae, psnr, rmse
from terradiff.metrics.spectrum import high_frequency_power, log_spectral_distance
from terradiff.metrics.structural_similarity import ssim
from terradiff.metrics.y_channel import psnr_y, rgb_to_y, select_rgb, ssim_y


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
    feature_distance: FeatureDistance | None = None,
    scale: float | None = None,
) -> dict[str, float]:
    """The usual super-resolution table row: PSNR, SSIM, MAE, RMSE (all bands), Y, perceptual.

    All-band metrics use ``data_range``. The Y-channel metrics (``psnr_y``, ``ssim_y``) and the
    perceptual distances (``lpips``, ``aid_feature_distance``) need RGB and an absolute value
    range: they are computed when RGB bands exist (``rgb_bands`` given, or 3 bands) and the range
    is known: ``value_range`` given, or the default ``data_range=2.0`` meaning terradiff's
    ``[-1, 1]``. Otherwise they are absent from the result. The perceptual distances ignore
    ``mask`` (they see the cropped images whole). With ``scale`` (the HR/LR size ratio) the two
    spectral measures of :mod:`terradiff.metrics.spectrum` are added: ``hf_power_db`` (the power
    above the LR Nyquist frequency against the reference's, dB; 0 is the reference's amount of
    detail, below 0 blur) and ``lsd_hf_db`` (the log-spectral distance there).

    Args:
        pred: Predicted images ``[B, C, H, W]``.
        target: Reference images, same shape.
        rgb_bands: Red, green, blue band indices for the Y and perceptual metrics.
        data_range: Value range for the all-band metrics (2.0 for ``[-1, 1]``).
        crop_border: Pixels cropped from each side (SR: the scale factor).
        mask: Valid pixels (see :mod:`terradiff.metrics.full_reference`).
        value_range: ``(low, high)`` of the inputs, for the Y and perceptual metrics in
            physical units.
        lpips: A module from :func:`load_lpips`, to add ``"lpips"``.
        feature_distance: A module from :func:`load_feature_distance` (the offline perceptual
            distance in terradiff's AID encoder), to add ``"aid_feature_distance"``.
        scale: The super-resolution factor (> 1), to add ``"hf_power_db"`` and ``"lsd_hf_db"``.

    Returns:
        ``{"psnr", "ssim", "mae", "rmse"[, "psnr_y", "ssim_y"][, "lpips"][,
        "aid_feature_distance"][, "hf_power_db", "lsd_hf_db"]}`` as floats (means over the
        batch; NaN images left out).

    Raises:
        DataError: mismatched shapes, bad mask or arguments.
    """
    networks = _perceptual(lpips, feature_distance)
    out = _sr_values(
        pred, target, rgb_bands, data_range, crop_border, mask, value_range, networks, scale, "mean"
    )
    return {k: float(v) for k, v in out.items()}


@torch.no_grad()
def sr_metrics_per_image(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None = None,
    data_range: float = 2.0,
    crop_border: int = 0,
    mask: Tensor | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    lpips: LPIPS | None = None,
    feature_distance: FeatureDistance | None = None,
    scale: float | None = None,
) -> dict[str, list[float]]:
    """:func:`sr_metrics` of each image: the same keys, one value per image in batch order.

    :func:`sr_metrics` is the mean of these (NaN images left out), so they are what a paired
    bootstrap over images resamples. Arguments as :func:`sr_metrics`.
    """
    networks = _perceptual(lpips, feature_distance)
    out = _sr_values(
        pred, target, rgb_bands, data_range, crop_border, mask, value_range, networks, scale, "none"
    )
    return {k: [float(x) for x in v.reshape(-1).tolist()] for k, v in out.items()}


def _perceptual(
    lpips: LPIPS | None, feature_distance: FeatureDistance | None
) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """The perceptual distance networks to add, by metric name."""
    networks: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
    if lpips is not None:
        networks["lpips"] = lpips
    if feature_distance is not None:
        networks[FEATURE_DISTANCE_NAME] = feature_distance
    return networks


def _sr_values(
    pred: Tensor,
    target: Tensor,
    rgb_bands: Sequence[int] | None,
    data_range: float,
    crop_border: int,
    mask: Tensor | None,
    value_range: tuple[float, float] | None,
    networks: dict[str, Callable[[Tensor, Tensor], Tensor]],
    scale: float | None,
    reduction: Reduction,
) -> dict[str, Tensor]:
    """The metrics of :func:`sr_metrics` as tensors, reduced over images by ``reduction``."""
    out = {
        "psnr": psnr(pred, target, data_range, mask, reduction, crop_border=crop_border),
        "ssim": ssim(pred, target, data_range, mask, reduction, crop_border=crop_border),
        "mae": mae(pred, target, mask, reduction, crop_border=crop_border),
        "rmse": rmse(pred, target, mask, reduction, crop_border=crop_border),
    }
    has_rgb = rgb_bands is not None or pred.shape[1] == 3
    if value_range is None and float(data_range) == 2.0:
        value_range = (-1.0, 1.0)
    if has_rgb and value_range is not None:
        kwargs = {"crop_border": crop_border, "value_range": value_range}
        out["psnr_y"] = psnr_y(pred, target, rgb_bands, mask, reduction, **kwargs)
        out["ssim_y"] = ssim_y(pred, target, rgb_bands, mask, reduction, **kwargs)
        lo, hi = value_range

        def to_rgb_input(x: Tensor, name: str) -> Tensor:
            rgb = crop(select_rgb(x, rgb_bands, name), int(crop_border))
            return (rgb - lo) / (hi - lo) * 2 - 1  # type: ignore[operator]

        for name, distance in networks.items():
            values = distance(to_rgb_input(pred, name), to_rgb_input(target, name))
            out[name] = values if reduction == "none" else values.mean()
    if scale is not None:
        spectral = {"mask": mask, "reduction": reduction, "crop_border": crop_border}
        out["hf_power_db"] = high_frequency_power(pred, target, scale, **spectral)
        out["lsd_hf_db"] = log_spectral_distance(pred, target, scale, **spectral)
    return out


__all__ = [
    "FEATURE_DISTANCE_NAME",
    "LPIPS",
    "LPIPS_WEIGHTS_HELP",
    "REDUCTIONS",
    "FeatureDistance",
    "Reduction",
    "high_frequency_power",
    "load_feature_distance",
    "load_lpips",
    "log_spectral_distance",
    "mae",
    "psnr",
    "psnr_y",
    "rgb_to_y",
    "rmse",
    "sr_metrics",
    "sr_metrics_per_image",
    "ssim",
    "ssim_y",
]
