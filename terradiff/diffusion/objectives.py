"""Prediction targets (eps, x0, v), conversions between them, and the training losses.

With ``alpha = sqrt(alpha_bar_t)``, ``sigma = sqrt(1 - alpha_bar_t)`` and
``x_t = alpha x0 + sigma eps`` (Ho et al. 2020, Eq. 4):

* ``"eps"`` — the noise ``eps`` (Ho et al. 2020, Eq. 14);
* ``"x0"`` — the clean data ``x0``;
* ``"v"`` — the velocity ``v = alpha eps - sigma x0`` (Salimans & Ho 2022, Sec. 4), for which
  ``x0 = alpha x_t - sigma v`` and ``eps = sigma x_t + alpha v``.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from terradiff.diffusion.schedules import NoiseSchedule

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: Final[tuple[str, ...]] = get_args(Prediction)
LossType = Literal["l2", "l1"]


def check_prediction(prediction: str) -> None:
    """Raise ``ValueError`` unless ``prediction`` is one of :data:`PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")


def _coefs(t: Tensor, schedule: NoiseSchedule, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(sqrt(ab_t), sqrt(1 - ab_t))`` at ``t``, broadcastable against ``like``, in its dtype."""
    t = torch.as_tensor(t, device=like.device)
    alpha = schedule.at("sqrt_alphas_cumprod", t, like.dtype, ndim=like.ndim)
    sigma = schedule.at("sqrt_one_minus_alphas_cumprod", t, like.dtype, ndim=like.ndim)
    return alpha, sigma


def predict_x0_eps(
    prediction: Prediction,
    model_out: Tensor,
    x_t: Tensor,
    alpha: Tensor | float,
    sigma: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Both ``x0`` and ``eps`` implied by a model output, given the coefficients directly.

    The schedule-free core of :func:`to_x0` / :func:`to_eps`, used by the samplers with
    precomputed scalar coefficients.

    Args:
        prediction: What ``model_out`` is.
        model_out: Model output, shaped like ``x_t``.
        x_t: The noisy input.
        alpha: ``sqrt(alpha_bar_t)`` (scalar or broadcastable tensor).
        sigma: ``sqrt(1 - alpha_bar_t)``.

    Returns:
        ``(x0, eps)``.
    """
    if prediction == "eps":
        return (x_t - sigma * model_out) / alpha, model_out
    if prediction == "x0":
        return model_out, (x_t - alpha * model_out) / sigma
    if prediction == "v":
        return alpha * x_t - sigma * model_out, sigma * x_t + alpha * model_out
    check_prediction(prediction)
    raise AssertionError("unreachable")  # pragma: no cover


def target(
    prediction: Prediction, x0: Tensor, noise: Tensor, t: Tensor, schedule: NoiseSchedule
) -> Tensor:
    """The regression target for ``x_t = q_sample(x0, t, noise)``.

    Args:
        prediction: ``"eps"`` (Ho et al. 2020, Eq. 14), ``"x0"`` or ``"v"`` (Salimans & Ho 2022,
            ``v = sqrt(ab) eps - sqrt(1 - ab) x0``).
        x0: Clean data ``[B, ...]``.
        noise: The noise used to make ``x_t``.
        t: Timesteps ``[B]``.
        schedule: The noise schedule.

    Returns:
        The target, shaped like ``x0``.
    """
    check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    alpha, sigma = _coefs(t, schedule, x0)
    return alpha * noise - sigma * x0


class NoisedBatch(NamedTuple):
    """One draw of the forward process for a batch (Ho et al. 2020, Algorithm 1, lines 2-5)."""

    x_t: Tensor
    """``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Eq. 4), on ``x0``'s device."""
    timesteps: Tensor
    """``t ~ U{0..T-1}``, one per sample (long, on ``x0``'s device)."""
    noise: Tensor
    """The ``eps ~ N(0, I)`` that made ``x_t``."""
    target: Tensor
    """What the net regresses at ``(x_t, t)`` for the prediction type (:func:`target`)."""


def noised_batch(
    schedule: NoiseSchedule, x0: Tensor, generator: torch.Generator, prediction: Prediction
) -> NoisedBatch:
    """Draw ``t`` and ``eps`` for ``x0`` and form ``x_t`` and the regression target.

    ``generator`` is a CPU generator (the step's seed). For ``x0`` on the CPU, ``t`` and ``eps``
    are drawn from it directly. For ``x0`` on an accelerator they are drawn *there*, from a
    device generator seeded by one number drawn from ``generator``: copying a CPU-drawn noise
    batch to the device every step would put a blocking host-to-device copy and the CPU's
    ``randn`` on the critical path of the step. Either way the draw is a pure function of the
    step's seed, so a seeded or resumed run on the same kind of device draws the same numbers
    (exact resume); a CUDA run draws other numbers than a CPU run of the same seed.
    """
    device = x0.device
    shape = (x0.shape[0],)
    if device.type == "cpu":
        timesteps = torch.randint(0, schedule.num_timesteps, shape, generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        on_device = torch.Generator(device=device).manual_seed(seed)
        timesteps = torch.randint(
            0, schedule.num_timesteps, shape, generator=on_device, device=device
        )
        noise = torch.randn(x0.shape, generator=on_device, dtype=x0.dtype, device=device)
    x_t = schedule.q_sample(x0, timesteps, noise)
    return NoisedBatch(x_t, timesteps, noise, target(prediction, x0, noise, timesteps, schedule))


def to_x0(
    prediction: Prediction, model_out: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule
) -> Tensor:
    """The ``x0`` implied by a model output at ``(x_t, t)``.

    ``eps``: ``(x_t - sqrt(1-ab) eps) / sqrt(ab)`` (Ho et al. 2020, Eq. 15); ``v``:
    ``sqrt(ab) x_t - sqrt(1-ab) v`` (Salimans & Ho 2022).
    """
    check_prediction(prediction)
    alpha, sigma = _coefs(t, schedule, x_t)
    return predict_x0_eps(prediction, model_out, x_t, alpha, sigma)[0]


def to_eps(
    prediction: Prediction, model_out: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule
) -> Tensor:
    """The ``eps`` implied by a model output at ``(x_t, t)``.

    ``x0``: ``(x_t - sqrt(ab) x0) / sqrt(1-ab)``; ``v``: ``sqrt(1-ab) x_t + sqrt(ab) v``.
    """
    check_prediction(prediction)
    alpha, sigma = _coefs(t, schedule, x_t)
    return predict_x0_eps(prediction, model_out, x_t, alpha, sigma)[1]


def to_v(
    prediction: Prediction, model_out: Tensor, x_t: Tensor, t: Tensor, schedule: NoiseSchedule
) -> Tensor:
    """The ``v = sqrt(ab) eps - sqrt(1-ab) x0`` implied by a model output (Salimans & Ho 2022)."""
    check_prediction(prediction)
    if prediction == "v":
        return model_out
    alpha, sigma = _coefs(t, schedule, x_t)
    x0, eps = predict_x0_eps(prediction, model_out, x_t, alpha, sigma)
    return alpha * eps - sigma * x0


def diffusion_loss(
    pred: Tensor,
    target: Tensor,
    *,
    loss_type: LossType = "l2",
    mask: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Mean L2 (squared error, Ho et al. 2020 Eq. 14) or L1 error, optionally masked and weighted.

    ``loss = sum_b w_b sum_{valid i in b} err_i / sum_b sum_{valid i in b} 1``: the mean over the
    valid elements of the whole batch (every channel of a valid pixel counts), with each sample's
    error scaled by its weight. Without a mask this is ``mean_b(w_b * mean_i err_bi)``, the usual
    min-SNR weighting (Hang et al. 2023). A batch without any valid pixel gives 0 (with a graph).
    Half/bfloat16 inputs are reduced in float32.

    Args:
        pred: Model output ``[B, C, H, W]`` (any ``[B, ...]``).
        target: Same shape.
        loss_type: ``"l2"`` or ``"l1"``.
        mask: ``1`` = valid, ``0`` = nodata; ``[B, 1, H, W]`` or ``[B, C, H, W]`` (anything that
            broadcasts to ``pred``); bool or float (fractional values weight pixels).
        weights: Per-sample weights ``[B]`` (e.g. :func:`min_snr_weights`).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: mismatched shapes or an unknown ``loss_type``.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    if loss_type not in ("l2", "l1"):
        raise ValueError(f"unknown loss_type {loss_type!r}; choose 'l2' or 'l1'")
    diff = pred - target
    if diff.dtype in (torch.float16, torch.bfloat16):
        diff = diff.float()
    err = diff.square() if loss_type == "l2" else diff.abs()
    if mask is None and weights is None:
        return err.mean()
    B = err.shape[0]
    if mask is not None:
        if mask.ndim != err.ndim or mask.shape[0] != B:
            raise ValueError(
                f"mask must be [B, 1|C, ...] matching pred {tuple(err.shape)}, got "
                f"{tuple(mask.shape)}"
            )
        try:
            if torch.broadcast_shapes(mask.shape, err.shape) != err.shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to pred {tuple(err.shape)}"
            ) from None
        m = mask.to(device=err.device, dtype=err.dtype)
        per_sample = (err * m).reshape(B, -1).sum(dim=1)
        count = m.sum() * (err.numel() // m.numel())
    else:
        per_sample = err.reshape(B, -1).sum(dim=1)
        count = None
    if weights is not None:
        if weights.shape != (B,):
            raise ValueError(f"weights must have shape [B]=({B},), got {tuple(weights.shape)}")
        per_sample = per_sample * weights.to(device=err.device, dtype=err.dtype)
    if count is None:
        return per_sample.sum() / err.numel()
    return per_sample.sum() / count.clamp_min(1.0)


def min_snr_weights(
    schedule: NoiseSchedule, t: Tensor, prediction: Prediction, gamma: float = 5.0
) -> Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy", Sec. 3.4), for a loss on the given prediction target.

    The weight of the x0-space loss is ``min(SNR_t, gamma)``; expressed for the target actually
    regressed: ``eps``: ``min(SNR, gamma) / SNR``; ``x0``: ``min(SNR, gamma)``; ``v``:
    ``min(SNR, gamma) / (SNR + 1)``.

    Args:
        schedule: The noise schedule.
        t: Timesteps ``[B]``.
        prediction: The model's target.
        gamma: The clamp (5 in the paper).

    Returns:
        float32 weights ``[B]`` on ``t``'s device.
    """
    check_prediction(prediction)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    snr = schedule.at("snr", torch.as_tensor(t), torch.float64)
    if prediction == "eps":
        w = (gamma / snr).clamp(max=1.0)
    elif prediction == "x0":
        w = snr.clamp(max=gamma)
    else:
        w = snr.clamp(max=gamma) / (snr + 1.0)
    return w.float()
