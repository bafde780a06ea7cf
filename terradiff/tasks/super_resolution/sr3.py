"""SR3: super-resolution by conditional diffusion (Saharia et al. 2021, Sec. 2-2.4).

The low-resolution (LR) image is bicubic-upsampled to the high-resolution (HR) size and
concatenated with ``x_t`` as the UNet's condition channels; the net is trained with the denoising
loss (Ho et al. 2020, Algorithm 1) and sampled with any sampler of
:mod:`terradiff.diffusion.samplers` (DDPM, DDIM, DPM-Solver++).

What is diffused is ``sr.target``: the HR image itself (SR3), or the residual between the HR image
and the bicubic image divided by ``sr.residual_scale``, ``x_0 = (HR - bicubic) / s``, as in SRDiff
(Li et al. 2022, Sec. 3.2: "residual prediction"); the sample is then ``bicubic + s x_0``. The
residual holds only the detail bicubic misses, so a short training run has far less to learn.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.data.degrade import upsample_to
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.tasks.base import build_unet, diffusion_loss, run_sampler
from terradiff.tasks.super_resolution.method import SRBatch, SRMethod, SRMethodConfig


class SR3Config(SRMethodConfig):
    """``sr.method: sr3``: what is diffused (``target``) besides ``scale`` and ``degradation``."""

    method: Literal["sr3"] = "sr3"
    target: Literal["image", "residual"] = Field(
        "image",
        description="Diffuse the HR image (SR3) or (HR - bicubic) / residual_scale (SRDiff).",
    )
    residual_scale: float = Field(
        1.0,
        gt=0.0,
        le=2.0,
        description="s in x_0 = (HR - bicubic) / s (target 'residual' only). Sampling clips each "
        "step's x_0 estimate to [-1, 1] in this space, so the residual is kept within +-s.",
    )


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
        """The denoising loss on :meth:`to_target`, conditioned on the bicubic image."""
        task = self.task
        return diffusion_loss(
            net,
            task.schedule,
            task.config,
            self.to_target(batch.hr, batch.bicubic),
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
        from it by :meth:`from_target`."""
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
        if self.config.target == "image":
            return output
        return dataclasses.replace(
            output,
            sample=self.from_target(output.sample, bicubic),
            trajectory=[(label, self.from_target(x, bicubic)) for label, x in output.trajectory],
        )

    def to_target(self, hr: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
        """What is diffused: ``hr``, or ``(hr - bicubic) / residual_scale``."""
        if self.config.target == "image":
            return hr
        return (hr - bicubic) / self.config.residual_scale

    def from_target(self, x0: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
        """The HR image of a sampled target (the inverse of :meth:`to_target`), in [-1, 1]."""
        if self.config.target == "image":
            return x0
        return (bicubic + self.config.residual_scale * x0).clamp(-1.0, 1.0)
