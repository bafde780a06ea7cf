"""Score a super-resolution checkpoint against bicubic up-sampling (``terradiff evaluate``).

:func:`evaluate_super_resolution` degrades held-out HR images of the checkpoint's data with the
bicubic kernel, super-resolves them, and reports PSNR, SSIM, SSIM-Y, MAE (and LPIPS with local
weights) of the model and of plain bicubic up-sampling side by side, with each image's values so
that the two can be compared by a paired bootstrap over images.

**Ensembles.** A diffusion model (SR3, the implicit model) draws one sample from ``p(HR | LR)``
per call. With ``ensemble = N`` every image is super-resolved ``N`` times with independent noise
and the model row scores the per-pixel mean of the members, a Monte-Carlo estimate of the
posterior mean ``E[HR | LR]``, which minimises the expected squared error and so maximises the
expected PSNR (the MMSE estimate; Kawar et al. 2022, "Denoising diffusion restoration models",
Sec. 5, average samples for the same reason). The result also holds the metrics of the mean of
the first ``m`` members for ``m = 1, 2, 4, ...`` (one set of draws gives the whole curve) and the
ensemble's calibration: the spread-skill ratio, the RMSE of the ensemble mean over the root mean
ensemble variance times ``sqrt(1 + 1/N)``, which is 1 for members exchangeable with the truth
(Fortin et al. 2014, J. Hydrometeor. 15, Eq. 4); above 1 the ensemble's std understates the error.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.evaluate import (
    HELD_OUT_SPLIT,
    PER_IMAGE_DIGITS,
    image_names,
    real_dataset,
    spec_record,
)
from terradiff.metrics.aid_encoder import AID_ENCODER_WEIGHTS
from terradiff.progress import progress_bar

__all__ = ["ensemble_prefixes", "evaluate_super_resolution", "scene_indices", "spread_skill"]


def ensemble_prefixes(members: int) -> list[int]:
    """The ensemble sizes scored from ``members`` draws: powers of two below it, then itself."""
    if members < 1:
        raise ConfigError(f"ensemble must be >= 1, got {members}")
    sizes = [2**i for i in range(members.bit_length()) if 2**i < members]
    return [*sizes, members]


def spread_skill(
    members: torch.Tensor, target: torch.Tensor, crop_border: int = 0
) -> dict[str, list[float]]:
    """Per image: RMSE of the ensemble mean, ensemble spread, and their calibrated ratio.

    Args:
        members: ``[N, B, C, H, W]`` draws (``N >= 2``) in the target's units.
        target: ``[B, C, H, W]``.
        crop_border: pixels left out at each side (as the PSNR crops them).

    Returns:
        ``{"rmse": [...], "spread": [...], "ratio": [...]}``, one value per image: ``rmse`` of
        the mean over the members, ``spread`` the root of the mean unbiased per-pixel variance
        over the members, ``ratio = rmse / (spread * sqrt(1 + 1/N))`` (Fortin et al. 2014, Eq. 4;
        1 when the truth behaves as one more member).
    """
    count = members.shape[0]
    if count < 2:
        raise ValueError("spread_skill needs at least 2 members")
    if crop_border:
        b = crop_border
        members, target = members[..., b:-b, b:-b], target[..., b:-b, b:-b]
    mean = members.mean(dim=0)
    rmse = (mean - target).square().mean(dim=(1, 2, 3)).sqrt()
    spread = members.var(dim=0, unbiased=True).mean(dim=(1, 2, 3)).sqrt()
    ratio = rmse / (spread * math.sqrt(1.0 + 1.0 / count)).clamp_min(1e-12)
    return {
        "rmse": rmse.tolist(),
        "spread": spread.tolist(),
        "ratio": ratio.tolist(),
    }


def scene_indices(length: int, num_images: int) -> list[int]:
    """The dataset items an evaluation of ``num_images`` scores: evenly spaced over the
    ``length`` held-out items (all of them when there are fewer), so every study that asks for
    the same number sees the same scenes in the same order."""
    count = min(num_images, length)
    stride = max(1, length // count)
    return [i * stride for i in range(count)]


def evaluate_super_resolution(
    checkpoint: str | Path,
    *,
    num_images: int = 64,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
    scale: float | None = None,
    image_size: int | None = None,
    batch_size: int = 16,
    lpips_weights: str | Path | None = None,
    distance_encoder: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str | None = None,
    ensemble: int = 1,
) -> dict[str, Any]:
    """PSNR, SSIM, SSIM-Y, MAE, the AID feature distance (and LPIPS with local weights) of a
    super-resolution checkpoint.

    HR images are the checkpoint's data (or ``data_root``) as the model saw them, without
    augmentation, taken evenly over the dataset (its held-out ``test`` split when the model was
    trained on ``data.split: train``, its ``val`` split when trained on ``fit``); their LR inputs
    are the bicubic degradation at ``scale`` (default: the model's). The same metrics for plain
    bicubic up-sampling are reported beside the model's, with ``ceil(scale)`` pixels cropped from
    each border as SR papers do.

    Args:
        scale: only ``implicit`` models take a scale other than ``sr.scale`` (e.g. x6, x8 outside
            their training range); the HR size divided by it must be a whole number.
        image_size: HR centre-crop size (default ``data.image_size``); e.g. 144 is divisible by
            2, 3, 4, 6 and 8.
        distance_encoder: the weights of another aid-cnn encoder for the AID feature distance
            (default: the shipped one). Scoring a model trained against the shipped encoder's
            distance (``sr.feature_distance_weight``) in an independently trained encoder says
            whether its gain carries beyond the network it was optimised against.
        device: where the network runs (default: CUDA when available, else the CPU).
        precision: the net's number format (``sample.precision``; default the checkpoint's).
        ensemble: draws per image of a diffusion model; the model row scores their mean (see
            the module docstring). 1 (the default) draws exactly what earlier versions drew.

    Returns:
        ``{"model": {...metrics, "psnr_per_band", "seconds_per_image" (all the image's draws)},
        "bicubic": {...}, "n",
        "per_image", "band_names", "scale", "sampler", "steps", "inference_precision",
        "checkpoint", "step", "method", "parameters", "ensemble", "distance_encoder"[, "caveats"]}``
        (``caveats``: :func:`trained_against`, when a reported metric was in the training loss as
        scored; ``distance_encoder``: the encoder file of the feature distance). Each aggregate
        metric is the mean over images of the per-image value (PSNR: the mean of per-image PSNRs,
        not the PSNR of the pooled MSE). ``per_image`` holds those values, ``{"image": [file names],
        "model": {metric: [...]}, "bicubic": {metric: [...]}}``, all in one fixed image order, so
        model and bicubic can be compared by a paired bootstrap over images
        (:func:`terradiff.report_format.paired_bootstrap`). With ``ensemble > 1``,
        ``ensemble_curve`` maps each size of :func:`ensemble_prefixes` to ``{"model": means,
        "per_image": {metric: [...]}}``, and ``calibration`` holds :func:`spread_skill`'s per-image
        values with their means.

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a super-resolution model.
        ConfigError: a scale the model cannot do, HR crops the scale does not divide,
            ``ensemble > 1`` for a one-pass model (its outputs would all be equal), or a
            ``distance_encoder`` that is missing or not an aid-cnn encoder.
    """
    from terradiff.data.degrade import make_lr, upsample_to
    from terradiff.metrics.image_quality import (
        load_feature_distance,
        load_lpips,
        psnr,
        sr_metrics,
        sr_metrics_per_image,
    )
    from terradiff.nets import count_parameters
    from terradiff.tasks import load_task
    from terradiff.tasks.super_resolution import SuperResolutionTask

    sizes = ensemble_prefixes(ensemble)
    task, ckpt = load_task(checkpoint, use_ema=True, device=device or "auto")
    if not isinstance(task, SuperResolutionTask):
        raise WrongCheckpointError(
            ckpt.path,
            f"{task.config.task!r} checkpoint",
            "evaluate_super_resolution needs a 'super_resolution' one",
        )
    task.check_ensemble(ensemble, str(ckpt.path))
    task.use_precision(precision)
    try:
        scale = task.check_scale(float(scale if scale is not None else task.sr.scale), ckpt.path)
    except DataError as error:
        raise ConfigError(str(error)) from None
    spec = task.sampling_spec(sampler, steps)
    # a model trained on 'train' is scored on 'test'; one trained on 'fit' on 'val'
    held_out = None if data_root is not None else HELD_OUT_SPLIT.get(task.config.data.split)
    dataset = real_dataset(
        task.config, data_root, split=held_out, image_size=image_size, band_info=task.band_info
    )
    hr_size = dataset[0]["image"].shape[-1]
    if abs(hr_size / scale - round(hr_size / scale)) > 1e-6:
        raise ConfigError(
            f"HR crops of {hr_size} px are not divisible by the scale x{scale:g}; pass an image "
            f"size that is (e.g. 144 for x2, x3, x4, x6 and x8)"
        )
    indices = scene_indices(len(dataset), num_images)
    count = len(indices)
    lpips = load_lpips(lpips_weights) if lpips_weights is not None else None
    encoder = Path(distance_encoder) if distance_encoder is not None else AID_ENCODER_WEIGHTS
    try:
        perceptual = {"lpips": lpips, "feature_distance": load_feature_distance(encoder)}
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(
            f"--distance-encoder {encoder}: {error} (give an aid-cnn .safetensors file with its "
            "JSON config beside it, as scripts/train_fid_encoder.py writes)"
        ) from None
    rgb = task.config.data.rgb_bands
    border = math.ceil(scale)
    generator = torch.Generator().manual_seed(seed)
    draws, bicubics, targets = [], [], []  # draws: [N, B, C, H, W] per batch
    seconds = 0.0
    for start in progress_bar(
        range(0, count, batch_size), desc="super-resolving", disable=not progress
    ):
        hr = torch.stack([dataset[i]["image"] for i in indices[start : start + batch_size]])
        lr = make_lr(hr, scale, "bicubic")
        begin = time.perf_counter()
        members = [
            task.super_resolve(
                task.net, lr, out_size=tuple(hr.shape[-2:]), spec=spec, generator=generator
            ).sample.float()
            for _ in range(ensemble)
        ]
        seconds += time.perf_counter() - begin
        draws.append(torch.stack(members).cpu())
        bicubics.append(upsample_to(lr, hr.shape[-2:]))
        targets.append(hr)
    target = torch.cat(targets)
    every_draw = torch.cat(draws, dim=1)
    model_images, bicubic_images = every_draw.mean(dim=0), torch.cat(bicubics)

    def row(pred: torch.Tensor) -> dict[str, Any]:
        metrics: dict[str, Any] = sr_metrics(
            pred, target, rgb_bands=rgb, crop_border=border, **perceptual, scale=scale
        )
        per_band = psnr(pred, target, crop_border=border, per_band=True)  # [C], mean of images
        metrics["psnr_per_band"] = [round(float(v), 3) for v in per_band]
        return metrics

    def per_image(pred: torch.Tensor) -> dict[str, list[float]]:
        values = sr_metrics_per_image(
            pred, target, rgb_bands=rgb, crop_border=border, **perceptual, scale=scale
        )
        return _rounded(values)

    result: dict[str, Any] = {
        "model": {**row(model_images), "seconds_per_image": round(seconds / count, 4)},
        "bicubic": row(bicubic_images),
        "n": count,
        "per_image": {
            "image": image_names(dataset, indices),
            "model": per_image(model_images),
            "bicubic": per_image(bicubic_images),
        },
        "band_names": list(task.band_info.names),
        "scale": scale,
        "image_size": hr_size,
        "method": task.method.name,
        **spec_record(spec),
        "ensemble": ensemble,
        "inference_precision": task.inference_precision(),
        "parameters": count_parameters(task.net),
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "real_images": str(dataset.root),
        "split": dataset.split,
        "distance_encoder": str(encoder),
    }
    if caveats := trained_against(task.sr, encoder):
        result["caveats"] = caveats
    if ensemble > 1:
        curve = {}
        for size in sizes:
            mean = every_draw[:size].mean(dim=0)
            curve[str(size)] = {
                "model": sr_metrics(
                    mean, target, rgb_bands=rgb, crop_border=border, **perceptual, scale=scale
                )
            }
            curve[str(size)]["per_image"] = per_image(mean)
        calibration = spread_skill(every_draw, target, crop_border=border)
        result["ensemble_curve"] = curve
        result["calibration"] = {
            "mean_ratio": round(sum(calibration["ratio"]) / count, 4),
            "mean_rmse": round(sum(calibration["rmse"]) / count, 6),
            "mean_spread": round(sum(calibration["spread"]) / count, 6),
            "per_image": _rounded(calibration),
        }
    return result


TRAINING_LOSS_METRICS: tuple[tuple[str, str], ...] = (
    ("feature_distance_weight", "aid_feature_distance"),
    ("lpips_weight", "lpips"),
)
"""``(sr config key, metric)`` of the metrics a one-pass model may have been trained against."""


def trained_against(sr_config: Any, distance_encoder: str | Path | None = None) -> list[str]:
    """One sentence per reported metric that was part of the model's training loss.

    A model trained with ``sr.feature_distance_weight > 0`` lowers the AID feature distance by
    more than it adds detail (``reports/perceptual_loss``): that score then says how well it
    met its own loss, not how it compares with models trained without it. (LPIPS alike, when
    trained with ``sr.lpips_weight`` and scored with ``--lpips-weights``.) The feature distance
    scored in another encoder file (``distance_encoder``) than the one trained against
    (``sr.feature_distance_encoder``, default the shipped one) gets no caveat: that is the
    independent check.
    """
    caveats = []
    for key, metric in TRAINING_LOSS_METRICS:
        weight = getattr(sr_config, key, 0.0) or 0.0
        if key == "feature_distance_weight" and distance_encoder is not None:
            trained = getattr(sr_config, "feature_distance_encoder", None) or AID_ENCODER_WEIGHTS
            if not same_file(trained, distance_encoder):
                continue
        if weight > 0:
            caveats.append(
                f"{metric} was part of this model's training loss (sr.{key} {weight:g}): it "
                "does not rank this model against models trained without it; compare by PSNR, "
                "SSIM and hf_power_db (reports/perceptual_loss)"
            )
    return caveats


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (by content when both exist: a copy is the same
    encoder)."""
    from terradiff.metrics.extractor import file_fingerprint

    a, b = Path(a), Path(b)
    if a.is_file() and b.is_file():
        return file_fingerprint(a) == file_fingerprint(b)
    return a.resolve() == b.resolve()


def _rounded(values: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(v, PER_IMAGE_DIGITS) for v in vs] for k, vs in values.items()}
