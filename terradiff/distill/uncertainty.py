"""Uncertainty-guided noise levels for single-step super-resolution (SlimDiffSR, Eq. 5, 9-11, 21).

SlimDiffSR's teacher does not start from pure noise: an *uncertainty estimator* first predicts the
HR image (a mean ``mu``) and how wrong that prediction is likely to be at every pixel (a scale
``sigma``); the teacher then adds just as much noise as the estimate is unsure of and denoises in
ONE step from there. The paper's text was not available to us; the formulas below are our
reading, each stated so it can be checked:

* **Uncertainty loss (Eq. 5).** With a Laplace likelihood of the HR pixel ``y`` around ``mu`` with
  scale ``sigma`` and the Jeffreys prior ``p(sigma) ~ 1/sigma`` (as in the uncertainty-driven SR
  loss of Ning et al., NeurIPS 2021), the negative log posterior per pixel is, up to a constant,
  ``exp(-s) |y - mu| + 2 s`` with ``s = log sigma`` (:func:`jeffreys_uncertainty_loss`). For a
  fixed error it is smallest at ``sigma = |y - mu| / 2``; over pixels whose errors have mean
  absolute value ``m`` (e.g. Laplace errors of scale ``b``: ``m = b``), at ``sigma = m / 2``.
* **Target noise level (Eq. 9-10).** Treat ``mu`` as the HR signal plus an error of variance
  ``2 sigma^2`` (a Laplace variance) and match the diffusion forward process
  ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``, whose signal-to-noise ratio is ``a / (1 - a)``, to the
  local signal-to-noise ratio ``P / (2 sigma^2)`` of the estimate (``P``: the HR signal's local
  power, a box mean of ``y^2`` over ``window`` pixels): ``a_target = P / (P + 2 sigma^2)``
  (:func:`alpha_bar_target`). It needs the HR image, so it exists only while the teacher trains;
  a small head learns to predict it from ``(mu, s)`` for inference.
* **Timestep (Eq. 11).** The teacher's denoiser runs at the continuous timestep whose
  ``alpha_bar`` equals the image's mean ``a`` (:meth:`~terradiff.diffusion.schedules.NoiseSchedule.
  timestep_from_alpha_bar`, piecewise-linear inversion of the schedule's table).
* **Smoothness (Eq. 21).** An anisotropic total-variation penalty on the predicted ``a`` map
  (:func:`total_variation`), so that noise levels vary smoothly between neighbouring pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["alpha_bar_target", "jeffreys_uncertainty_loss", "total_variation"]

_MIN_LOG_SIGMA, _MAX_LOG_SIGMA = -10.0, 5.0


def jeffreys_uncertainty_loss(
    mean: Tensor, log_sigma: Tensor, target: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Mean over pixels of ``exp(-s) |y - mu| + 2 s`` (Laplace likelihood + Jeffreys prior, Eq. 5).

    Args:
        mean: Predicted ``mu`` ``[B, C, H, W]``.
        log_sigma: Predicted ``s = log sigma`` (same shape; clamped to [-10, 5] for stability).
        target: HR ``y``.
        mask: Optional ``[B, 1 or C, H, W]`` weights (1 = counts).
    """
    s = log_sigma.clamp(_MIN_LOG_SIGMA, _MAX_LOG_SIGMA)
    loss = torch.exp(-s) * (target - mean).abs() + 2.0 * s
    if mask is None:
        return loss.mean()
    weights = mask.expand_as(loss)
    return (loss * weights).sum() / weights.sum().clamp_min(1.0)


def alpha_bar_target(
    hr: Tensor,
    log_sigma: Tensor,
    *,
    window: int = 7,
    min_alpha_bar: float = 1e-3,
    max_alpha_bar: float = 0.9999,
) -> Tensor:
    """``a = P / (P + 2 sigma^2)`` per pixel (Eq. 9-10; see the module docstring).

    Args:
        hr: HR images ``[B, C, H, W]`` in [-1, 1].
        log_sigma: The estimator's ``log sigma`` ``[B, C, H, W]`` (detached by the caller when the
            estimator should not learn from this target).
        window: Side of the box over which the signal power ``P = mean(y^2)`` is taken (odd).
        min_alpha_bar, max_alpha_bar: Clamp range (keeps the timestep inversion in the table).

    Returns:
        ``[B, 1, H, W]``: one noise level per pixel, averaged over the bands.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    power = F.avg_pool2d(
        hr.float().pow(2), window, stride=1, padding=window // 2, count_include_pad=False
    )
    noise = 2.0 * torch.exp(2.0 * log_sigma.float().clamp(_MIN_LOG_SIGMA, _MAX_LOG_SIGMA))
    alpha = power / (power + noise).clamp_min(1e-12)
    return alpha.mean(dim=1, keepdim=True).clamp(min_alpha_bar, max_alpha_bar)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation: the mean vertical plus the mean horizontal absolute step."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dy + dx
