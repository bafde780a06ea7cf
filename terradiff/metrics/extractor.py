"""What a frozen feature network for FID/KID is: the protocol, the eval-only base, the weights hash.

This module's one job is the contract every FID/KID feature extractor meets
(:class:`FeatureExtractor`), the base class that keeps one frozen (:class:`EvalOnlyExtractor`), and
:func:`file_fingerprint`, the weights hash that keys cached statistics. The concrete encoders are
in :mod:`terradiff.metrics.aid_encoder` and :mod:`terradiff.metrics.inception`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor, nn


@runtime_checkable
class FeatureExtractor(Protocol):
    """What FID/KID need from a network: images in ``[-1, 1]`` -> features.

    Implementations are ``nn.Module`` s that stay in eval mode (``.train()`` is a no-op) and resize
    their input to ``input_size`` themselves.

    Attributes:
        name: Short identifier reported with every metric (e.g. ``"aid-cnn"``).
        feature_dim: ``D``, the length of a feature vector.
        in_channels: Number of image bands the network takes (3 for RGB encoders).
        input_size: Square side the images are resized to before the network.
        fingerprint: Hash of the weights; part of every cache key.
    """

    name: str
    feature_dim: int
    in_channels: int
    input_size: int
    fingerprint: str

    def __call__(self, images: Tensor) -> Tensor:
        """Map images ``[B, in_channels, H, W]`` in ``[-1, 1]`` to features ``[B, feature_dim]``."""
        ...


def file_fingerprint(path: str | Path, length: int = 16) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


class EvalOnlyExtractor(nn.Module):
    """Base class: a frozen feature network that can never leave eval mode.

    ``train(True)`` is ignored, all parameters have ``requires_grad=False``, and :meth:`forward`
    re-asserts eval mode on every sub-module (a user may call ``.train()`` on a child directly).
    This removes the classic FID bugs: BatchNorm batch statistics or active dropout making features
    depend on the batch (pytorch-fid #99-style reports; GUIDE.md).
    """

    name: str = "extractor"
    feature_dim: int = 0
    in_channels: int = 3
    input_size: int = 0
    fingerprint: str = ""
    #: Resize with an anti-aliasing filter when downsampling (torch ``antialias=True``).
    antialias: bool = True

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> EvalOnlyExtractor:
        """Stay in eval mode whatever ``mode`` is (feature networks for metrics are frozen)."""
        return super().train(False)

    def _ensure_eval(self) -> None:
        for module in self.modules():
            if module.training:
                module.training = False

    def resize(self, images: Tensor) -> Tensor:
        """Check ``images`` and resize them (bilinear) to ``input_size`` x ``input_size``.

        Args:
            images: ``[B, in_channels, H, W]`` float tensor in ``[-1, 1]``.

        Returns:
            ``[B, in_channels, input_size, input_size]`` float32 tensor.

        Raises:
            ValueError: wrong rank or band count.
        """
        if images.ndim != 4:
            raise ValueError(
                f"{self.name}: expected images [B, C, H, W], got shape {tuple(images.shape)}"
            )
        if images.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected {self.in_channels} bands, got {images.shape[1]} "
                f"(shape {tuple(images.shape)}); select RGB bands first, e.g. "
                "compute_features(..., rgb_bands=(3, 2, 1)) for Sentinel-2 B4,B3,B2"
            )
        x = images.float()
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.antialias,
            )
        return x

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, feature_dim={self.feature_dim}, input_size={self.input_size}, "
            f"fingerprint={self.fingerprint!r}"
        )


__all__ = ["EvalOnlyExtractor", "FeatureExtractor", "file_fingerprint"]
