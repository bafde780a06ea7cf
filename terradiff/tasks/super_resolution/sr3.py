"""SR3: super-resolution by conditional diffusion (Saharia et al. 2021, Sec. 2-2.4).

The low-resolution (LR) image is bicubic-upsampled to the high-resolution (HR) size and
concatenated with ``x_t`` as the UNet's condition channels; the net is trained with the denoising
loss (Ho et al. 2020, Algorithm 1) and sampled with any sampler of
:mod:`terradiff.diffusion.samplers` (DDPM, DDIM, DPM-Solver++).

What is diffused is ``sr.target``: the HR image itself (SR3), or its residual on the bicubic
image (SRDiff; :mod:`terradiff.tasks.super_resolution.target`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from torch import nn

from terradiff.data.degrade import upsample_to
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.tasks.base import build_unet, diffusion_loss, run_sampler
from terradiff.tasks.super_resolution.method import SRBatch, SRMethod
from terradiff.tasks.super_resolution.target import DiffusionTargetConfig, from_target, to_target


class SR3Config(DiffusionTargetConfig):
    """``sr.method: sr3``: what is diffused (``target``) besides ``scale`` and ``degradation``."""

    method: Literal["sr3"] = "sr3"


class SR3(SRMethod):
    """Conditional diffusion on the bicubic image (SR3)."""

    name: ClassVar[str] = "sr3"
    config_class = SR3Config
    stochastic: ClassVar[bool] = True
    summary: ClassVar[str] = "conditional diffusion on the bicubic image (Saharia et al. 2021)"

    def build_net(self) -> nn.Module:
        bands = self.task.num_bands
        return build_unet(self.task.config, bands, bands, cond_channels=bands)

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """The denoising loss on the target (:func:`.target.to_target`), conditioned on the
        bicubic image."""
        task = self.task
        return diffusion_loss(
            net,
            task.schedule,
            task.config,
            to_target(self.config, batch.hr, batch.bicubic),
            generator,
            mask=batch.mask,
            cond=batch.bicubic,
        )

    def predict(
        self,
        net: nn.Module,
        lr: torch.Tensor,
        out_size: tuple[int, int],
        *,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> SamplerOutput:
        """Sample ``x_0`` with the bicubic image as condition; HR images (and trajectory states)
        from it by :func:`.target.from_target`."""
        assert spec is not None, "a stochastic method needs a SamplingSpec"
        device = next(net.parameters()).device
        bicubic = upsample_to(lr.to(device=device, dtype=torch.float32), out_size)
        output = run_sampler(
            net,
            self.task.schedule,
            self.task.config,
            tuple(bicubic.shape),
            spec,
            cond=bicubic,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
        return dataclasses.replace(
            output,
            sample=from_target(self.config, output.sample, bicubic),
            trajectory=[
                (label, from_target(self.config, x, bicubic)) for label, x in output.trajectory
            ],
        )
