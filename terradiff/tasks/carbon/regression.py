"""The regression baseline: the IIDM's UNet trained with a masked L1 loss to predict the map."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from terradiff.diffusion import objectives
from terradiff.tasks.base import build_unet
from terradiff.tasks.carbon.method import (
    CarbonBatch,
    CarbonMethodConfig,
    OnePassCarbonMethod,
    unet_map,
)


class RegressionCarbonConfig(CarbonMethodConfig):
    """``carbon.method: regression`` (only the shared keys)."""

    method: Literal["regression"] = "regression"


class RegressionCarbon(OnePassCarbonMethod):
    """A UNet mapping the image to carbon density in one pass (masked L1)."""

    name: ClassVar[str] = "regression"
    config_class = RegressionCarbonConfig
    summary: ClassVar[str] = "the same UNet trained with L1 to predict the map directly"

    def build_net(self) -> nn.Module:
        return build_unet(self.task.config, self.task.num_bands, 1)

    def training_loss(
        self, net: nn.Module, batch: CarbonBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """Masked L1 of the map."""
        prediction = unet_map(net, batch.image).float()
        return objectives.diffusion_loss(prediction, batch.target, loss_type="l1", mask=batch.mask)

    def forward(self, net: nn.Module, image: torch.Tensor) -> torch.Tensor:
        return unet_map(net, image)
