"""The regression baseline of SR3: the same UNet trained with L1 to predict the HR image.

One forward pass on the bicubic-upsampled LR image, predicting a residual on it (Saharia et al.
2021 compare SR3 with this regression model, Sec. 4.1); perceptual terms (LPIPS, the offline
AID feature distance: :mod:`terradiff.tasks.super_resolution.perceptual`) may join the L1.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from terradiff.diffusion import objectives
from terradiff.tasks.base import build_unet
from terradiff.tasks.super_resolution.method import OnePassSRMethod, SRBatch, regress
from terradiff.tasks.super_resolution.perceptual import PerceptualLossConfig


class RegressionSRConfig(PerceptualLossConfig):
    """``sr.method: regression`` (``scale``, ``degradation`` and the perceptual terms)."""

    method: Literal["regression"] = "regression"


class RegressionSR(OnePassSRMethod):
    """A UNet regressing the HR residual on the bicubic image (L1)."""

    name: ClassVar[str] = "regression"
    config_class = RegressionSRConfig
    can_teach: ClassVar[bool] = True
    summary: ClassVar[str] = "the same UNet trained with L1 to predict the HR image directly"

    def build_net(self) -> nn.Module:
        bands = self.task.num_bands
        return build_unet(self.task.config, bands, bands)

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """L1 of the one-pass estimate to the HR image under the mask (+ perceptual terms)."""
        prediction = regress(net, batch.bicubic)
        loss = objectives.diffusion_loss(prediction, batch.hr, loss_type="l1", mask=batch.mask)
        return loss + self.perceptual(prediction, batch.hr, batch.mask)

    def forward(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return regress(net, bicubic)

    def teach(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The HR estimate and the UNet's decoder features."""
        zero_t = torch.zeros(bicubic.shape[0], device=bicubic.device)
        residual, features = net.forward_features(bicubic, zero_t)
        return bicubic + residual.float(), features

    def teacher_feature_channels(self, net: nn.Module) -> list[int]:
        return list(net.feature_channels)
