"""A perceptual distance that needs no download: LPIPS's form in terradiff's own AID encoder.

This module's one job is :class:`FeatureDistance`, the offline default beside LPIPS (which needs
local weights, :mod:`terradiff.metrics.lpips`). It is the distance of Zhang et al. (2018, CVPR,
"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", Eq. 1),

    d(x, y) = sum_l 1 / (H_l W_l) sum_hw || w_l * (u_l(x)_hw - u_l(y)_hw) ||^2,

where ``u_l`` are the activations of layer ``l`` unit-normalised over channels at each pixel.
Here the layers are the outputs of the stem and of the four stages of the ``aid-cnn`` encoder
shipped in ``terradiff/assets`` (:mod:`terradiff.metrics.aid_encoder`, a classifier of the 30
AID scene classes), and ``w_l = 1``: the paper's untrained-weights variant, since no human
similarity judgements calibrate these layers. Images run at their own resolution (the
encoder is fully convolutional), not resized to the encoder's 64 px input, so detail at the
pixel scale counts.

It is *not* LPIPS and its values are not comparable to LPIPS values; nothing calibrated it
against human judgements. It is 0 for equal images and grows with blur, noise and content
change. On the 32 real AID x4 test scenes it put a Gaussian blur farther than white noise of the
same PSNR, and a one-pixel shift nearer than a blur of a higher PSNR
(``reports/feature_distance``), the orderings that make a perceptual metric differ from PSNR.
The encoder learned from RGB aerial photographs (AID, 8-bit): on other sensors it sees the RGB
bands as the model's scaling maps them (Sentinel-2 reflectance / 10000 looks dark to it), so
compare its values between methods on one dataset, never across datasets. As a training loss
(``sr.feature_distance_weight``, :mod:`terradiff.tasks.super_resolution.perceptual`) it is
lowered by far more than detail is added (``reports/perceptual_loss``): it then no longer ranks
that model, and ``terradiff evaluate`` says so in its ``caveats``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from terradiff.metrics.aid_encoder import AID_ENCODER_WEIGHTS, AidCnnExtractor, load_aid_encoder

FEATURE_DISTANCE_NAME = "aid_feature_distance"
"""The key of this distance in metric tables (``sr_metrics``, ``terradiff evaluate``)."""


def _unit(activations: Tensor, eps: float = 1e-10) -> Tensor:
    """Activations ``[B, C, H, W]`` divided by their L2 norm over channels at each pixel."""
    return activations / (activations.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class FeatureDistance(nn.Module):
    """The LPIPS-form distance (module docstring) in the layers of an aid-cnn encoder.

    Args:
        extractor: The encoder (default: :func:`load_feature_distance` loads the shipped one).

    Call it with two batches of RGB images in ``[-1, 1]``, ``[B, 3, H, W]`` each, same shape;
    it returns the ``[B]`` distances. The module is frozen and stays in eval mode.
    """

    def __init__(self, extractor: AidCnnExtractor) -> None:
        super().__init__()
        self.stem = extractor.net.stem
        self.stages = extractor.net.stages
        self.register_buffer("mean", extractor.mean.detach().clone())
        self.register_buffer("std", extractor.std.detach().clone())
        self.in_channels = extractor.in_channels
        self.fingerprint = extractor.fingerprint
        self.name = FEATURE_DISTANCE_NAME
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FeatureDistance:
        """Stays in eval mode (a metric network never trains)."""
        return super().train(False)

    def layers(self, images: Tensor) -> list[Tensor]:
        """The compared activations of ``images`` (``[-1, 1]``): the stem's, then each stage's."""
        x = ((images.float() + 1.0) * 0.5 - self.mean) / self.std
        outputs = [self.stem(x)]
        for stage in self.stages:
            outputs.append(stage(outputs[-1]))
        return outputs

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B]`` distances between ``x`` and ``y`` (module docstring, Eq. 1 with ``w_l = 1``).

        Raises:
            ValueError: shapes that differ, or not ``[B, 3, H, W]``.
        """
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} compares two [B, {self.in_channels}, H, W] batches of one shape; "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        device = self.mean.device
        total = torch.zeros(x.shape[0], device=device)
        for a, b in zip(self.layers(x.to(device)), self.layers(y.to(device)), strict=True):
            total = total + (_unit(a) - _unit(b)).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total


def load_feature_distance(
    weights: str | Path = AID_ENCODER_WEIGHTS, device: str | torch.device = "cpu"
) -> FeatureDistance:
    """:class:`FeatureDistance` of the aid-cnn encoder in ``weights`` (default: the shipped one).

    Raises:
        FileNotFoundError: ``weights`` or its JSON config is missing.
    """
    return FeatureDistance(load_aid_encoder(weights)).to(device)


__all__ = ["FEATURE_DISTANCE_NAME", "FeatureDistance", "load_feature_distance"]
