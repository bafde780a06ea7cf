"""The paper's VAE baseline: a convolutional VAE from image to map (Kingma & Welling 2014).

Trained with the masked L1 reconstruction of the map + ``vae_beta`` KL; predicts with the
posterior mean (no sampling).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.diffusion import objectives
from terradiff.nets.translation import ConvVAE
from terradiff.tasks.base import fixed_seed_net
from terradiff.tasks.carbon.method import (
    CarbonBatch,
    CarbonMethodConfig,
    OnePassCarbonMethod,
)


class VAECarbonConfig(CarbonMethodConfig):
    """``carbon.method: vae``."""

    uses_model_unet: ClassVar[bool] = False  # a convolutional VAE of its own

    method: Literal["vae"] = "vae"
    vae_beta: float = Field(1e-3, ge=0.0, description="Weight of the KL term.")
    vae_latent: int = Field(8, ge=1, description="Latent channels (at 1/4 resolution).")


class VAECarbon(OnePassCarbonMethod):
    """A convolutional VAE baseline."""

    name: ClassVar[str] = "vae"
    config_class = VAECarbonConfig
    summary: ClassVar[str] = "a convolutional VAE"

    def build_net(self) -> nn.Module:
        config = self.task.config
        return fixed_seed_net(
            config.seed + 3,
            lambda: ConvVAE(
                self.task.num_bands,
                1,
                channels=config.model.base_channels,
                latent_channels=self.config.vae_latent,
                num_groups=config.model.num_groups,
            ),
        )

    def training_loss(
        self, net: nn.Module, batch: CarbonBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """Masked L1 reconstruction + beta KL."""
        prediction, kl = net(batch.image, generator)
        reconstruction = objectives.diffusion_loss(
            prediction.float(), batch.target, loss_type="l1", mask=batch.mask
        )
        return reconstruction + self.config.vae_beta * kl

    def forward(self, net: nn.Module, image: torch.Tensor) -> torch.Tensor:
        return net(image, sample=False)[0]
