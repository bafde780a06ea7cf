"""Tests of terradiff.distill.pca: mCEV against numpy PCA, eigenbases, channel selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from terradiff.distill.pca import (
    Eigenbasis,
    McevAccumulator,
    channels_for_mcev,
    check_threshold,
    cumulative_explained_variance,
    fold_basis_into_conv,
    learn_eigenbasis,
    unet_selected_channels,
)
from terradiff.errors import DataError


def _low_rank_features(
    n: int, c: int, rank: int, seed: int = 0, noise: float = 0.01
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(c, rank, generator=g)
    codes = torch.randn(n, rank, 8, 8, generator=g) * torch.linspace(3, 1, rank).view(1, -1, 1, 1)
    x = torch.einsum("cr,nrhw->nchw", mixing, codes)
    return x + noise * torch.randn(n, c, 8, 8, generator=g) + 5.0  # non-zero mean


def test_cumulative_explained_variance_equals_numpy_pca() -> None:
    features = _low_rank_features(3, 6, 3)
    curves = cumulative_explained_variance(features)
    for n in range(3):
        vectors = features[n].flatten(1).T.double().numpy()  # [P, C]
        centred = vectors - vectors.mean(0)
        singular = np.linalg.svd(centred, compute_uv=False)
        ratio = singular**2 / (singular**2).sum()  # = sklearn's explained_variance_ratio_
        np.testing.assert_allclose(curves[n].numpy(), np.cumsum(ratio), atol=1e-10)


def test_mcev_is_the_mean_of_the_images_curves_and_picks_the_rank() -> None:
    features = _low_rank_features(10, 8, 3)
    acc = McevAccumulator()
    acc.update(features[:4])
    acc.update(features[4:])
    mcev = acc.mcev()
    np.testing.assert_allclose(
        mcev.numpy(), cumulative_explained_variance(features).mean(0).numpy()
    )
    assert channels_for_mcev(mcev, 0.999) == 3  # three directions carry all but the noise
    assert channels_for_mcev(mcev, 1.0) <= 8
    assert channels_for_mcev(mcev, 1e-9) == 1
    assert acc.images == 10


def test_constant_images_are_counted_apart_and_too_few_images_is_a_clear_error() -> None:
    acc = McevAccumulator()
    acc.update(torch.ones(3, 4, 5, 5))
    acc.update(_low_rank_features(2, 4, 2))
    assert acc.flat_images == 3 and acc.images == 2
    with pytest.raises(DataError, match="at least 8 images"):
        acc.mcev()
    with pytest.raises(DataError, match="2 pixels"):
        cumulative_explained_variance(torch.randn(2, 4, 1, 1))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, True])
def test_threshold_outside_0_1_is_an_error(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        check_threshold(bad)


def test_unet_selected_channels_keep_ratios_and_groups() -> None:
    # level counts 10, 30, 20 with mults 1, 2, 2: base >= 10, 15, 10 -> 15 -> 16 (groups of 8)
    assert unet_selected_channels([10, 30, 20], [1, 2, 2], 8) == 16
    assert unet_selected_channels([8, 16, 32], [1, 2, 4], 8) == 8
    with pytest.raises(ValueError):
        unet_selected_channels([1, 2], [1, 2, 4], 8)


def test_learned_eigenbasis_is_orthonormal_and_spans_the_principal_subspace() -> None:
    torch.manual_seed(0)
    features = _low_rank_features(64, 8, 3, seed=1)
    basis = Eigenbasis(8, 3)
    fit = learn_eigenbasis(  # from a random start: gradient descent alone finds the subspace
        basis,
        (features[i : i + 8] for _ in range(40) for i in range(0, 64, 8)),
        warm_start=False,
    )
    w = basis.frozen()
    torch.testing.assert_close(w @ w.T, torch.eye(3), atol=1e-5, rtol=0)
    # projector onto the learned rows vs numpy's top-3 principal directions
    vectors = features.transpose(0, 1).flatten(1).T.double().numpy()
    _, _, vt = np.linalg.svd(vectors - vectors.mean(0), full_matrices=False)
    p_true = vt[:3].T @ vt[:3]
    p_learned = (w.T @ w).double().numpy()
    assert np.abs(p_true - p_learned).max() < 0.02
    assert fit.last_error < 0.05 * fit.first_error
    assert fit.kept_variance > 0.99
    np.testing.assert_allclose(basis.mean.numpy(), vectors.mean(0), atol=1e-4)


def test_projection_round_trip_and_folded_conv() -> None:
    torch.manual_seed(0)
    features = _low_rank_features(16, 6, 2, noise=0.0)
    basis = Eigenbasis(6, 2)
    learn_eigenbasis(basis, (features for _ in range(300)), lr=3e-2, warm_start=False)

    def relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b).pow(2).mean().sqrt() / b.std()).detach())

    assert relative_rms(basis.reconstruct(basis.project(features)), features) < 1e-3
    conv = nn.Conv2d(6, 4, 1)
    folded = fold_basis_into_conv(conv, basis)
    assert relative_rms(folded(basis.project(features)), conv(features)) < 1e-3
    with pytest.raises(ValueError, match="channels"):
        fold_basis_into_conv(nn.Conv2d(5, 4, 1), basis)
    with pytest.raises(ValueError, match="k must be"):
        Eigenbasis(4, 5)
