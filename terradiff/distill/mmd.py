"""Maximum mean discrepancy (MMD), RBF kernel, for feature distillation (SlimDiffSR Eq. 17-19).

SlimDiffSR distils its teacher's multi-scale features into the student with an MSE term plus
``lambda * MMD`` (lambda = 0.1), so that the student matches the *distribution* of the teacher's
feature vectors, not only each vector. The estimator here is the biased (V-statistic) squared MMD of
Gretton et al. (JMLR 2012, Eq. 5)::

    MMD^2_b(X, Y) = mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)

with the Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` summed over the given
bandwidths. It is exactly 0 for identical sets, >= 0 always (a squared norm in the kernel's
feature space), and differentiable. Each pixel's feature vector is one sample of a set
(:func:`feature_mmd` draws up to ``max_samples`` of them per map, the same pixels in both maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["feature_mmd", "mmd_rbf"]


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """``[N, M]`` squared Euclidean distances (clamped at 0 against rounding)."""
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return d.clamp_min(0.0)


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None) -> Tensor:
    """Biased squared MMD between sample sets ``x [N, D]`` and ``y [M, D]`` (Gretton 2012 Eq. 5).

    Args:
        x, y: Samples in rows.
        bandwidths: Kernel widths ``sigma``; the kernel is the sum over them. ``None``: the median
            heuristic, sigma^2 = median of the pooled pairwise squared distances / 2 (computed
            without gradient), times (0.5, 1, 2) -- robust to the features' scale.

    Returns:
        A scalar tensor >= 0 (0 when the sets are identical).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be [N, D] and [M, D], got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    xx, yy, xy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    if bandwidths is None:
        with torch.no_grad():
            pooled = torch.cat([xx.flatten(), yy.flatten(), xy.flatten()])
            median = pooled[pooled > 0].median() if (pooled > 0).any() else pooled.new_tensor(1.0)
        sigma2s = [float(median) / 2.0 * f for f in (0.5, 1.0, 2.0)]
    else:
        if not bandwidths or any(s <= 0 for s in bandwidths):
            raise ValueError(f"bandwidths must be positive, got {bandwidths!r}")
        sigma2s = [float(s) ** 2 for s in bandwidths]
    total = x.new_zeros(())
    for s2 in sigma2s:
        total = total + (
            torch.exp(-xx / (2 * s2)).mean()
            + torch.exp(-yy / (2 * s2)).mean()
            - 2 * torch.exp(-xy / (2 * s2)).mean()
        )
    return total.clamp_min(0.0)


def feature_mmd(
    student: Tensor,
    teacher: Tensor,
    *,
    max_samples: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MMD between the pixel feature vectors of two ``[B, C, H, W]`` maps of the same shape.

    Up to ``max_samples`` pixel positions are drawn (the same ones from both maps); each pixel's
    ``C``-vector is one sample.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher features differ in shape: {tuple(student.shape)} vs "
            f"{tuple(teacher.shape)} (use an adapter)"
        )
    s = student.transpose(0, 1).flatten(1).T  # [B*H*W, C]
    t = teacher.transpose(0, 1).flatten(1).T
    n = s.shape[0]
    if n > max_samples:
        index = torch.randperm(n, generator=generator, device="cpu")[:max_samples].to(s.device)
        s, t = s[index], t[index]
    return mmd_rbf(s.float(), t.float())
