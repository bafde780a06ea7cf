"""SlimDiffSR's uncertainty-guided single-step teacher, in pixel space.

An estimator predicts the HR mean and a per-pixel log standard deviation from the bicubic image
(trained with the Jeffreys-prior uncertainty loss, SlimDiffSR Eq. 5); the noise level of one
denoising step follows from the local HR power and that variance (Eq. 9-10), its timestep by
inverting the schedule (Eq. 11), and a denoiser recovers the HR image in that single step. An
alpha_bar head learns the level so inference needs no HR image (L1 + total variation, Eq. 21).
Optional perceptual (LPIPS with local weights, or the offline AID feature distance:
:mod:`terradiff.tasks.super_resolution.perceptual`) and adversarial (PatchGAN) terms sharpen
the output.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.diffusion import objectives
from terradiff.distill.uncertainty import (
    alpha_bar_target,
    jeffreys_uncertainty_loss,
    total_variation,
)
from terradiff.nets.slim import SingleStepSRNet
from terradiff.nets.translation import PatchDiscriminator, simultaneous_gan_losses
from terradiff.tasks.base import build_unet, fixed_seed_net, unwrap
from terradiff.tasks.super_resolution.method import OnePassSRMethod, SRBatch
from terradiff.tasks.super_resolution.perceptual import PerceptualLossConfig


class SingleStepSRConfig(PerceptualLossConfig):
    """``sr.method: single_step``: the loss weights of the one-step teacher."""

    method: Literal["single_step"] = "single_step"
    uncertainty_weight: float = Field(
        1.0, ge=0.0, description="Weight of the uncertainty loss (Eq. 5)."
    )
    alpha_weight: float = Field(1.0, ge=0.0, description="L1 loss of the alpha_bar head.")
    tv_weight: float = Field(0.1, ge=0.0, description="Total variation of alpha_bar (Eq. 21).")
    power_window: int = Field(
        7, ge=1, description="Box size of the local HR power in Eq. 9-10 (odd)."
    )
    adversarial_weight: float = Field(
        0.0,
        ge=0.0,
        description="Weight of the generator's non-saturating GAN loss against a PatchGAN on "
        "(bicubic, output) pairs; 0: no discriminator.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SingleStepSRConfig:
        if self.power_window % 2 == 0:
            raise ValueError(f"power_window must be odd, got {self.power_window}")
        return self


class SingleStepSR(OnePassSRMethod):
    """The uncertainty-guided one-step teacher (SlimDiffSR)."""

    name: ClassVar[str] = "single_step"
    config_class = SingleStepSRConfig
    can_teach: ClassVar[bool] = True
    summary: ClassVar[str] = "SlimDiffSR's uncertainty-guided one-step teacher"

    def build_net(self) -> nn.Module:
        config, bands = self.task.config, self.task.num_bands
        estimator = build_unet(config, bands, 2 * bands)
        denoiser = build_unet(config, bands, bands, cond_channels=bands + 1)
        critic = None
        if self.config.adversarial_weight > 0:
            critic = PatchDiscriminator(2 * bands, config.model.base_channels)
        return fixed_seed_net(
            config.seed + 1,
            lambda: SingleStepSRNet(bands, estimator, denoiser, discriminator=critic),
        )

    def one_step(
        self,
        net: SingleStepSRNet,
        bicubic: torch.Tensor,
        generator: torch.Generator | None,
        hr: torch.Tensor | None = None,
        features: bool = False,
    ) -> dict[str, Any]:
        """The teacher's pass (training when ``hr`` is given: the Eq. 9-10 targets)."""
        mean, log_sigma = net.estimate(bicubic)
        alpha_pred = net.predict_alpha(mean.detach(), log_sigma.detach())
        alpha_target = None
        if hr is not None:
            alpha_target = alpha_bar_target(hr, log_sigma.detach(), window=self.config.power_window)
        alpha = alpha_target if alpha_target is not None else alpha_pred.clamp(1e-3, 0.9999)
        noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device)
        x_t = alpha.sqrt() * mean.detach() + (1 - alpha).sqrt() * noise
        t = self.task.schedule.timestep_from_alpha_bar(alpha.mean(dim=(1, 2, 3)))
        x0, feats = net.denoise_features(x_t, t.to(x_t.device), bicubic, alpha)
        return {
            "x0": x0.float(),
            "features": feats if features else None,
            "mean": mean,
            "log_sigma": log_sigma,
            "alpha_pred": alpha_pred,
            "alpha_target": alpha_target,
        }

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """L1 of the one-step HR estimate + uncertainty (Eq. 5) + alpha_bar head (L1, TV Eq. 21)."""
        hr, mask, bicubic = batch.hr, batch.mask, batch.bicubic
        out = self.one_step(unwrap(net), bicubic, generator, hr=hr)
        cfg = self.config
        loss = objectives.diffusion_loss(out["x0"], hr, loss_type="l1", mask=mask)
        loss = loss + cfg.uncertainty_weight * jeffreys_uncertainty_loss(
            out["mean"], out["log_sigma"], hr.float(), mask
        )
        alpha_l1 = (out["alpha_pred"] - out["alpha_target"]).abs().mean()
        loss = (
            loss + cfg.alpha_weight * alpha_l1 + cfg.tv_weight * total_variation(out["alpha_pred"])
        )
        loss = loss + self.perceptual(out["x0"], hr, mask)
        if cfg.adversarial_weight > 0:
            critic = unwrap(net).discriminator
            assert critic is not None
            generator_adv, critic_loss = simultaneous_gan_losses(
                critic, bicubic.float(), out["x0"], hr.float()
            )
            loss = loss + cfg.adversarial_weight * generator_adv + critic_loss
        return loss

    def forward(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self.one_step(unwrap(net), bicubic, generator)["x0"]

    def teach(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The one-step estimate and the denoiser's decoder features."""
        out = self.one_step(unwrap(net), bicubic, generator, features=True)
        return out["x0"], out["features"]

    def teacher_feature_channels(self, net: nn.Module) -> list[int]:
        return list(unwrap(net).denoiser.feature_channels)
