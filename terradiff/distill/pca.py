"""PCA of feature maps for knowledge distillation (IIDM paper app. 2; Chiu & Gurari, CVPR 2022).

PCA-based knowledge distillation shrinks a trained network layer by layer: a layer whose ``C``
channels carry most of their variance in ``k < C`` directions can be replaced, in a student, by a
layer with ``k`` channels that reproduces the teacher's features *in those directions*.

This module holds the two measurements that method needs, free of any network:

* **mCEV** (the paper's Eq. 14-15). For image ``n`` the layer's features ``F_n`` (``C`` channels
  x ``P`` pixels) have the channel covariance ``Sigma_n``, eigenvalues
  ``lambda_n1 >= ... >= lambda_nC``; the explained variance of component ``i`` is
  ``EV_ni = lambda_ni / sum_j lambda_nj`` (Eq. 14) and the mean cumulative explained variance of
  the first ``k`` components is ``mCEV_k = (1/N) sum_n sum_{i<=k} EV_ni`` (Eq. 15). The channels a
  student keeps are the smallest ``k`` with ``mCEV_k >= threshold`` (0.85 in the paper).
* **Global eigenbases** ``W`` (``k x C``, ``W W^T = I``; Eq. 9-10): the ``k`` directions that keep
  the most variance of the features over the *whole dataset*, learned by mini-batch gradient
  descent on the reconstruction error ``|| (F - mu) - W^T W (F - mu) ||^2`` with ``W`` kept
  orthonormal at every step (an orthogonal parametrisation, :func:`torch.nn.utils.parametrizations.
  orthogonal`, rather than a penalty: the constraint holds exactly, not approximately). The
  student is then trained to output ``W (F - mu)`` (Eq. 11); the teacher's features are recovered
  as ``mu + W^T S``, which is also how a downstream layer of the teacher takes the student's
  features (:func:`fold_basis_into_conv`).

Our reading of the paper: it computes ``Sigma_n`` per image (so mCEV averages per-image spectra,
which is what makes it *mean* cumulative) and centres the features before the projection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from terradiff.errors import DataError

__all__ = [
    "MIN_IMAGES",
    "Eigenbasis",
    "EigenbasisFit",
    "EigenbasisLearner",
    "McevAccumulator",
    "channels_for_mcev",
    "check_threshold",
    "cumulative_explained_variance",
    "fold_basis_into_conv",
    "learn_eigenbasis",
    "unet_selected_channels",
]

MIN_IMAGES = 8
"""Fewest images whose spectra mCEV averages (fewer give an unstable mean; see the errors)."""


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is in (0, 1], else a clear error."""
    if isinstance(threshold, bool) or not 0.0 < float(threshold) <= 1.0:
        raise ValueError(
            f"the mCEV threshold must be in (0, 1] (a fraction of the variance, e.g. 0.85), got "
            f"{threshold!r}"
        )
    return float(threshold)


def cumulative_explained_variance(features: Tensor) -> Tensor:
    """Per-image cumulative explained variance of a batch of feature maps (Eq. 14, cumulated).

    Args:
        features: ``[N, C, H, W]`` (or ``[N, C, P]``) features of ``N`` images.

    Returns:
        ``[N, C]`` float64: row ``n`` is ``sum_{i<=k} EV_ni`` for ``k = 1..C`` (ends at 1). Images
        whose features do not vary (all pixels equal) have no spectrum: their row is NaN.

    Raises:
        DataError: fewer than 2 pixels per image (no covariance).
    """
    if features.ndim not in (3, 4):
        raise ValueError(f"features must be [N, C, H, W] or [N, C, P], got {tuple(features.shape)}")
    x = features.detach().flatten(2).double()  # [N, C, P]
    pixels = x.shape[-1]
    if pixels < 2:
        raise DataError(
            f"a channel covariance needs at least 2 pixels per image, these features have {pixels}"
            "; use larger crops or an earlier layer"
        )
    x = x - x.mean(dim=-1, keepdim=True)
    cov = x @ x.transpose(1, 2) / (pixels - 1)  # [N, C, C]
    eigenvalues = torch.linalg.eigvalsh(cov).flip(-1).clamp_min(0.0)  # descending
    total = eigenvalues.sum(-1, keepdim=True)
    curves = eigenvalues.cumsum(-1) / total
    curves[total.squeeze(-1) <= 0] = float("nan")
    return curves


class McevAccumulator:
    """Running mCEV of one layer over a dataset (Eq. 15), fed batch by batch.

    Example::

        acc = McevAccumulator()
        for batch in loader:
            acc.update(layer_features(batch))
        k = channels_for_mcev(acc.mcev(), 0.85)
    """

    def __init__(self) -> None:
        self._sum: Tensor | None = None
        self.images = 0
        self.flat_images = 0

    def update(self, features: Tensor) -> None:
        """Add the spectra of a batch ``[N, C, H, W]``."""
        curves = cumulative_explained_variance(features)
        flat = torch.isnan(curves[:, 0])
        self.flat_images += int(flat.sum())
        curves = curves[~flat]
        if curves.shape[0] == 0:
            return
        total = curves.sum(0)
        self._sum = total if self._sum is None else self._sum + total
        self.images += int(curves.shape[0])

    def mcev(self, min_images: int = MIN_IMAGES) -> Tensor:
        """``[C]`` float64: ``mCEV_k`` for ``k = 1..C``.

        Raises:
            DataError: fewer than ``min_images`` images with varying features were seen.
        """
        if self._sum is None or self.images < min_images:
            raise DataError(
                f"mCEV needs the spectra of at least {min_images} images with varying features; "
                f"got {self.images} (+{self.flat_images} constant). Give more images or crops "
                "(e.g. more batches of the training data)"
            )
        return self._sum / self.images


def channels_for_mcev(mcev: Tensor, threshold: float = 0.85) -> int:
    """The smallest ``k`` with ``mCEV_k >= threshold`` (channels a student keeps)."""
    threshold = check_threshold(threshold)
    # A float64 cumulative sum can end a hair below 1: accept the last component then.
    reached = torch.nonzero(mcev >= threshold - 1e-12)
    return int(reached[0, 0]) + 1 if len(reached) else int(mcev.numel())


def unet_selected_channels(
    level_counts: Iterable[int], channel_mults: Iterable[int], num_groups: int
) -> int:
    """The student UNet's base width from the mCEV channel counts of its levels.

    A UNet's skip connections pair encoder level ``l`` with decoder level ``l`` (their widths add
    in the decoder's first block), and the widths of the levels keep the teacher's ratios (the
    paper's Table A2, "Selected": counts that double per level). So the student's widths are
    ``base * channel_mults[l]`` with the smallest ``base`` for which every level keeps at least
    its mCEV count (``level_counts[l]``, the larger of its encoder and decoder counts), rounded
    up to a multiple of ``num_groups`` (GroupNorm).
    """
    counts, mults = list(level_counts), [int(m) for m in channel_mults]
    if len(counts) != len(mults):
        raise ValueError(f"{len(counts)} level counts for {len(mults)} channel_mults")
    base = max(-(-int(c) // m) for c, m in zip(counts, mults, strict=True))
    return -(-base // num_groups) * num_groups


class Eigenbasis(nn.Module):
    """``k`` orthonormal directions ``W`` (``k x C``) and the mean ``mu`` of ``C``-channel features.

    ``project(F) = W (F - mu)`` (the student's target, Eq. 11); ``reconstruct(S) = mu + W^T S``.
    ``W`` is an orthogonal parametrisation, so ``W W^T = I`` holds after every optimiser step.
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        if not 1 <= k <= channels:
            raise ValueError(f"k must be in 1..{channels} (the channels), got {k}")
        self.channels, self.k = channels, k
        linear = nn.Linear(channels, k, bias=False)
        self.linear = parametrizations.orthogonal(linear)
        self.register_buffer("mean", torch.zeros(channels))

    @property
    def weight(self) -> Tensor:
        """``W`` ``[k, C]`` (rows orthonormal)."""
        return self.linear.weight

    def project(self, features: Tensor) -> Tensor:
        """``W (F - mu)``: ``[B, C, H, W] -> [B, k, H, W]``."""
        centred = features - self.mean.view(1, -1, 1, 1).to(features.dtype)
        return torch.einsum("kc,bchw->bkhw", self.weight.to(features.dtype), centred)

    def reconstruct(self, projected: Tensor) -> Tensor:
        """``mu + W^T S``: ``[B, k, H, W] -> [B, C, H, W]``."""
        back = torch.einsum("kc,bkhw->bchw", self.weight.to(projected.dtype), projected)
        return back + self.mean.view(1, -1, 1, 1).to(projected.dtype)

    def reconstruction_error(self, features: Tensor) -> Tensor:
        """Mean squared ``(F - mu) - W^T W (F - mu)`` (what :func:`learn_eigenbasis` minimises)."""
        return (self.reconstruct(self.project(features)) - features).pow(2).mean()

    def frozen(self) -> Tensor:
        """``W`` as a plain tensor (no parametrisation), e.g. to save it."""
        return self.weight.detach().clone()


@dataclass(frozen=True)
class EigenbasisFit:
    """What :func:`learn_eigenbasis` did: steps run and the first/last reconstruction errors."""

    steps: int
    first_error: float
    last_error: float
    kept_variance: float


class EigenbasisLearner:
    """Mini-batch gradient descent of one :class:`Eigenbasis` (Eq. 9-10), a step per batch.

    The mean ``mu`` is the running mean of the feature vectors seen so far (each batch is centred
    with it before its step); ``W`` follows Adam on the reconstruction error under the orthogonal
    parametrisation. Use :func:`learn_eigenbasis` for one iterable of batches, or call
    :meth:`step` yourself to learn several bases from one pass of a network.
    """

    def __init__(self, basis: Eigenbasis, lr: float = 1e-2, *, warm_start: bool = True) -> None:
        self.basis = basis
        self.warm_start = warm_start
        self.optimizer = torch.optim.Adam(basis.parameters(), lr=lr)
        self.seen = 0
        self.steps = 0
        self.first_error = float("nan")
        self.last_error = float("nan")
        self.kept_variance = float("nan")

    def step(self, features: Tensor) -> float:
        """One update on a ``[B, C, H, W]`` batch; returns its reconstruction error.

        The first batch also starts ``W`` at its own top-``k`` eigenvectors (a warm start; the
        following steps move it towards the eigenbasis of the whole dataset).
        """
        basis = self.basis
        features = features.detach().float()
        vectors = features.transpose(0, 1).flatten(1)  # [C, B*H*W]
        n = vectors.shape[1]
        if self.steps == 0 and self.warm_start and n > 1:
            with torch.no_grad():
                centred = (vectors - vectors.mean(1, keepdim=True)).double()
                _, eigenvectors = torch.linalg.eigh(centred @ centred.T / (n - 1))
                top = eigenvectors.flip(-1)[:, : basis.k].T.float()  # [k, C], descending
                basis.linear.weight = top
        with torch.no_grad():
            basis.mean.mul_(self.seen / (self.seen + n)).add_(vectors.sum(1) / (self.seen + n))
        self.seen += n
        loss = basis.reconstruction_error(features)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.last_error = float(loss.detach())
        if self.steps == 1:
            self.first_error = self.last_error
        with torch.no_grad():
            centred = features - basis.mean.view(1, -1, 1, 1)
            total = centred.pow(2).sum()
            inside = basis.project(features).pow(2).sum()
            self.kept_variance = float(inside / total) if total > 0 else 1.0
        return self.last_error

    def result(self) -> EigenbasisFit:
        """What was done (raises if no batch was seen)."""
        if self.steps == 0:
            raise DataError("no feature batches to learn the eigenbasis from")
        return EigenbasisFit(self.steps, self.first_error, self.last_error, self.kept_variance)


def learn_eigenbasis(
    basis: Eigenbasis,
    batches: Iterable[Tensor],
    *,
    lr: float = 1e-2,
    warm_start: bool = True,
) -> EigenbasisFit:
    """Fit ``basis`` to feature batches by mini-batch gradient descent (Eq. 9-10).

    Args:
        basis: The :class:`Eigenbasis` to fit (``W`` starts where it is: random orthonormal).
        batches: ``[B, C, H, W]`` feature maps (e.g. the teacher's layer output on data
            batches); every element is one step.
        lr: Adam's learning rate.
        warm_start: Start ``W`` at the first batch's top-``k`` eigenvectors.

    Returns:
        An :class:`EigenbasisFit`; ``kept_variance`` is the fraction of the last batch's variance
        inside the learned subspace.
    """
    learner = EigenbasisLearner(basis, lr, warm_start=warm_start)
    for features in batches:
        learner.step(features)
    return learner.result()


def fold_basis_into_conv(conv: nn.Conv2d, basis: Eigenbasis) -> nn.Conv2d:
    """A convolution on the student's ``k`` channels equal to ``conv`` on ``mu + W^T S``.

    For a teacher layer ``y = conv(F)`` fed with ``F ~ mu + W^T S``: a 1x1 convolution folds
    exactly, ``y = (A W^T) S + (A mu + b)``; a larger kernel folds its weights the same way, and
    its bias takes ``mu`` in the interior (zero padding makes the border differ by the mean's
    contribution there). Lets a downstream teacher layer take a distilled extractor's features
    without retraining (e.g. IIDM's feature projection).
    """
    if conv.in_channels != basis.channels or conv.groups != 1:
        raise ValueError(
            f"the convolution takes {conv.in_channels} channels (groups {conv.groups}); the basis "
            f"is over {basis.channels}"
        )
    w = basis.frozen()  # [k, C]
    folded = nn.Conv2d(
        basis.k,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=True,
    )
    with torch.no_grad():
        folded.weight.copy_(torch.einsum("ocij,kc->okij", conv.weight, w))
        bias = torch.einsum("ocij,c->o", conv.weight, basis.mean)
        if conv.bias is not None:
            bias = bias + conv.bias
        folded.bias.copy_(bias)
    return folded
