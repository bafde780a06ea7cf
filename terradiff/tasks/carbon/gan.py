"""The paper's GAN baseline: pix2pix (Isola et al. 2017), a U-Net generator + PatchGAN.

The generator loss is the non-saturating adversarial loss + ``gan_l1_weight`` x masked L1
(pix2pix Eq. 4 with lambda 100); the critic is trained in the same step (see
:class:`terradiff.nets.translation.Pix2Pix`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.nets.translation import PatchDiscriminator, Pix2Pix
from terradiff.tasks.base import build_unet, fixed_seed_net
from terradiff.tasks.carbon.method import (
    CarbonBatch,
    CarbonMethodConfig,
    OnePassCarbonMethod,
)


class GANCarbonConfig(CarbonMethodConfig):
    """``carbon.method: gan``."""

    method: Literal["gan"] = "gan"
    gan_l1_weight: float = Field(100.0, ge=0.0, description="lambda of L1 (pix2pix: 100).")


class GANCarbon(OnePassCarbonMethod):
    """pix2pix: U-Net generator + PatchGAN critic."""

    name: ClassVar[str] = "gan"
    config_class = GANCarbonConfig
    summary: ClassVar[str] = "pix2pix (U-Net generator + PatchGAN)"

    def build_net(self) -> nn.Module:
        config, bands = self.task.config, self.task.num_bands
        critic = fixed_seed_net(
            config.seed + 3, lambda: PatchDiscriminator(bands + 1, config.model.base_channels)
        )
        return Pix2Pix(build_unet(config, bands, 1), critic, self.config.gan_l1_weight)

    def training_loss(
        self, net: nn.Module, batch: CarbonBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """Generator (adversarial + lambda L1) and critic losses of one step."""
        return net(batch.image, batch.target, batch.mask)

    def forward(self, net: nn.Module, image: torch.Tensor) -> torch.Tensor:
        return net(image)
