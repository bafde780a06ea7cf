"""Tests of terradiff.distill.mmd: the biased RBF MMD estimator."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.distill.mmd import feature_mmd, mmd_rbf


def _direct_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """Gretton et al. 2012 Eq. 5 written as double sums over the samples."""

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx = sum(k(a, b) for a in x for b in x) / n**2
    kyy = sum(k(a, b) for a in y for b in y) / m**2
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_is_zero_for_identical_sets_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    assert float(mmd_rbf(x, x.clone())) == pytest.approx(0.0, abs=1e-7)
    shifted = float(mmd_rbf(x, x + 1.0))
    other = float(mmd_rbf(x, torch.randn(40, 5, generator=g)))
    assert shifted > 0.05
    assert 0.0 <= other < shifted  # same distribution: small; shifted: large


def test_mmd_equals_the_documented_estimator() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g) + 0.5
    for sigma in (0.7, 2.0):
        assert float(mmd_rbf(x.double(), y.double(), [sigma])) == pytest.approx(
            _direct_mmd(x.double(), y.double(), sigma), rel=1e-9
        )
    both = float(mmd_rbf(x.double(), y.double(), [0.7, 2.0]))
    assert both == pytest.approx(_direct_mmd(x, y, 0.7) + _direct_mmd(x, y, 2.0), rel=1e-5)


def test_mmd_has_gradients_and_checks_shapes() -> None:
    x = torch.randn(10, 4, requires_grad=True)
    mmd_rbf(x, torch.randn(10, 4) + 2).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        mmd_rbf(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError):
        mmd_rbf(torch.randn(3, 4), torch.randn(3, 4), [0.0])


def test_feature_mmd_samples_the_same_pixels_from_both_maps() -> None:
    a = torch.randn(2, 8, 16, 16)
    assert float(feature_mmd(a, a.clone(), max_samples=64)) == pytest.approx(0.0, abs=1e-7)
    assert float(feature_mmd(a, a + 1, max_samples=64)) > 0
    with pytest.raises(ValueError, match="adapter"):
        feature_mmd(a, torch.randn(2, 4, 16, 16))
