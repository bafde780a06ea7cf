"""Distances between feature sets: Fréchet distance (FID) and kernel distance (KID).

This module's one job is the maths of the two metrics, on features already computed:

* :func:`frechet_distance` — Heusel et al., 2017 ("GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium"), Eq. 2: the Fréchet distance between two Gaussians fitted
  to the features, ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
* :func:`kernel_inception_distance` — Binkowski et al., 2018 ("Demystifying MMD GANs"), Sec. 3 /
  Appendix: the unbiased estimator of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def as_float64(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` (a NumPy array or a tensor) as a float64 NumPy array.

    Raises:
        ValueError: ``x`` holds NaN or infinite values (the message names ``name``).
    """
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., 2017, Eq. 2).

    ``d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, with the matrix
    square root from :func:`scipy.linalg.sqrtm` (as pytorch-fid). When the product is singular
    (fewer samples than feature dimensions) or the square root comes out complex beyond numerical
    noise, ``eps * I`` is added to both covariances and the root recomputed.

    Args:
        mu1: Mean ``[D]`` of the first feature set.
        sigma1: Covariance ``[D, D]`` of the first set.
        mu2: Mean ``[D]`` of the second set.
        sigma2: Covariance ``[D, D]`` of the second set.
        eps: Diagonal offset used only when the plain square root fails.

    Returns:
        The squared Fréchet distance (the number reported as "FID"), >= 0.

    Raises:
        ValueError: shapes disagree, inputs are not finite, or the square root stays complex.
    """
    m1, m2 = as_float64(mu1, "mu1"), as_float64(mu2, "mu2")
    s1, s2 = as_float64(sigma1, "sigma1"), as_float64(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"means must be vectors of equal length, got {m1.shape} and {m2.shape}")
    d = m1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}], got {s1.shape} and {s2.shape}")

    def _sqrt(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = scipy.linalg.sqrtm(a @ b)
        if not np.all(np.isfinite(root)):
            return None
        if np.iscomplexobj(root):
            scale = max(1.0, float(np.abs(root.real).max()))
            if float(np.abs(root.imag).max()) > 1e-3 * scale:
                return None
            root = root.real
        return root

    covmean = _sqrt(s1, s2)
    if covmean is None:
        offset = np.eye(d) * eps
        covmean = _sqrt(s1 + offset, s2 + offset)
        if covmean is None:
            raise ValueError(
                "sqrtm(sigma1 @ sigma2) is not real/finite even with an eps offset of "
                f"{eps}; the covariances are degenerate (too few samples or constant features?)"
            )
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    # Rounding can give tiny negative values for (near-)identical statistics.
    return max(value, 0.0)


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> np.ndarray:
    """``k(x, y) = (gamma x.y + coef)^degree`` with ``gamma = 1/d`` by default (Binkowski 2018)."""
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * g + coef) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased squared MMD from kernel matrices of two equal-size samples (Gretton et al., 2012).

    ``MMD^2_u = sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1))
    - 2 sum_{i,j} k(x_i,y_j)/m^2`` (Binkowski et al., 2018, Eq. 3 with equal sample sizes).
    """
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: ArrayLike,
    features2: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al., 2018): mean and std of MMD^2_u over subsets.

    Each of ``subsets`` rounds draws ``subset_size`` features without replacement from each set
    and computes the unbiased squared MMD with the polynomial kernel ``(x.y/d + 1)^3``. When
    ``subset_size`` covers both sets entirely, all subsets are the same and one round is computed
    (std 0).

    Args:
        features1: ``[N1, D]`` features.
        features2: ``[N2, D]`` features.
        subsets: Number of random subsets.
        subset_size: Samples per subset; reduced (with a warning) to ``min(N1, N2)``.
        degree: Polynomial degree (3 for KID).
        gamma: Kernel scale; ``1/D`` by default.
        coef: Kernel offset.
        seed: Seed of the subset sampling (numpy ``default_rng``), so results are reproducible.

    Returns:
        ``(mean, std)`` of the subset MMD^2 estimates (std with ``ddof=0``, as torch-fidelity).
        The mean is an unbiased estimate: it can be slightly negative for equal distributions.

    Raises:
        ValueError: fewer than 2 samples, or feature dimensions differ.
    """
    f1 = as_float64(features1, "features1")
    f2 = as_float64(features2, "features2")
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {f1.shape} and {f2.shape}")
    n1, n2 = len(f1), len(f2)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n1} and {n2}")
    if subset_size > m:
        warnings.warn(
            f"KID subset_size {subset_size} > available samples; using {m}",
            UserWarning,
            stacklevel=2,
        )
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    rounds = 1 if (m == n1 and m == n2) else subsets
    rng = np.random.default_rng(seed)
    scores = np.empty(rounds)
    for r in range(rounds):
        x = f1 if m == n1 else f1[rng.choice(n1, m, replace=False)]
        y = f2 if m == n2 else f2[rng.choice(n2, m, replace=False)]
        scores[r] = mmd2_unbiased(
            polynomial_kernel(x, x, degree, gamma, coef),
            polynomial_kernel(y, y, degree, gamma, coef),
            polynomial_kernel(x, y, degree, gamma, coef),
        )
    return float(scores.mean()), float(scores.std())


__all__ = [
    "ArrayLike",
    "as_float64",
    "frechet_distance",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "polynomial_kernel",
]
