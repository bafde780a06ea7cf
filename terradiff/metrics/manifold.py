"""Precision and recall of generated images: fidelity and diversity as two numbers, not one.

This module's one job is :func:`precision_recall`, the improved precision and recall of
Kynkäänniemi et al. (2019, NeurIPS, "Improved Precision and Recall Metric for Assessing
Generative Models", Sec. 3, Eq. 1-2) on features already computed (the FID encoder's). Each set
of features estimates its manifold as the union of balls around its points, each ball reaching
that point's ``k``-th nearest neighbour in its own set:

    f(phi, Phi) = 1  if  ||phi - phi'|| <= ||phi' - NN_k(phi', Phi)||  for some phi' in Phi,

    precision = mean over generated phi_g of f(phi_g, Phi_real)   (fidelity: the share of
                generated images that fall where real images are);
    recall    = mean over real phi_r of f(phi_r, Phi_generated)  (diversity: the share of real
                images the generator covers).

FID mixes the two: a generator that draws only some scene types can score the FID of one that
draws every type badly. A collapsed generator has high precision and low recall; a blurry one
low precision. Both need a few hundred images per set or more (the paper uses 50k with k = 3);
with few images the balls are wide and both values read high.
"""

from __future__ import annotations

import torch
from torch import Tensor

from terradiff.metrics.distances import ArrayLike, as_float64

DEFAULT_K = 3
"""The neighbourhood size of Kynkäänniemi et al. (2019)."""


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    array = as_float64(x, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be [N, D] features, got shape {array.shape}")
    return torch.from_numpy(array)


def kth_neighbour_radii(features: Tensor, k: int = DEFAULT_K, chunk: int = 1024) -> Tensor:
    """Distance of each row of ``features`` ``[N, D]`` to its ``k``-th nearest other row."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N - 1] = [1, {n - 1}] for {n} feature vectors, got {k}")
    radii = []
    for start in range(0, n, chunk):
        block = torch.cdist(features[start : start + chunk], features)
        # the k+1 smallest include the point itself (distance 0)
        radii.append(block.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside(queries: Tensor, points: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """Whether each query lies in some ball ``(points[j], radii[j])`` (bool ``[M]``)."""
    found = []
    for start in range(0, queries.shape[0], chunk):
        block = torch.cdist(queries[start : start + chunk], points)
        found.append((block <= radii[None, :]).any(dim=1))
    return torch.cat(found)


def manifold_membership(
    real: ArrayLike, fake: ArrayLike, *, k: int = DEFAULT_K, chunk: int = 1024
) -> tuple[Tensor, Tensor]:
    """``(fake_in_real, real_in_fake)``: bool ``[M]``, whether each generated feature lies in the
    real manifold, and bool ``[N]``, whether each real one lies in the generated manifold. Their
    means are precision and recall (:func:`precision_recall`); a bootstrap over them gives an
    interval that holds the variation over the averaged set (the other set's manifold fixed).

    Args:
        real: Features of real images ``[N, D]`` (a NumPy array or a tensor).
        fake: Features of generated images ``[M, D]``, same ``D``.
        k: The neighbour whose distance is a point's radius.
        chunk: Rows per distance block (memory ``chunk x max(N, M)`` floats).

    Raises:
        ValueError: not ``[N, D]`` features of one ``D``, NaN/inf, or ``k`` not below each set's
            size.
    """
    real_t, fake_t = _as_tensor(real, "real features"), _as_tensor(fake, "fake features")
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"feature dims differ: real {real_t.shape[1]}, fake {fake_t.shape[1]}")
    fake_in_real = _inside(fake_t, real_t, kth_neighbour_radii(real_t, k, chunk), chunk)
    real_in_fake = _inside(real_t, fake_t, kth_neighbour_radii(fake_t, k, chunk), chunk)
    return fake_in_real, real_in_fake


def precision_recall(
    real: ArrayLike, fake: ArrayLike, *, k: int = DEFAULT_K, chunk: int = 1024
) -> tuple[float, float]:
    """``(precision, recall)`` of ``fake`` features against ``real`` ones (module docstring);
    arguments and errors as :func:`manifold_membership`."""
    fake_in_real, real_in_fake = manifold_membership(real, fake, k=k, chunk=chunk)
    return float(fake_in_real.double().mean()), float(real_in_fake.double().mean())


__all__ = ["DEFAULT_K", "kth_neighbour_radii", "manifold_membership", "precision_recall"]
