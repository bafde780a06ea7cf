"""IDM-style super-resolution at continuous scales (Gao et al. 2023, "Implicit Diffusion Models
for Continuous Super-Resolution").

:class:`terradiff.nets.sr.ImplicitSRNet` renders LR features at any output size with a LIIF-style
decoder and conditions the denoiser on them; the model is trained on a random scale per batch
(``sr.train_scales``) and super-resolves at any scale. What is diffused is ``sr.target``: the HR
image (IDM), or its residual on the bicubic image at the same size (SRDiff;
:mod:`terradiff.tasks.super_resolution.target`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.data.degrade import upsample_to
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.nets.sr import ImplicitSRNet
from terradiff.tasks.base import build_unet, diffusion_loss, evaluating, fixed_seed_net, run_sampler
from terradiff.tasks.super_resolution.method import SRBatch, SRMethod
from terradiff.tasks.super_resolution.target import DiffusionTargetConfig, from_target, to_target


class ImplicitSRConfig(DiffusionTargetConfig):
    """``sr.method: implicit``: continuous scales."""

    method: Literal["implicit"] = "implicit"
    train_scales: tuple[float, float] = Field(
        (1.5, 4.0), description="Each batch draws its scale uniformly in this range."
    )
    render_channels: int = Field(32, ge=1, description="Rendered feature channels.")

    @model_validator(mode="after")
    def _scale_range(self) -> ImplicitSRConfig:
        low, high = self.train_scales
        if not 1.0 < low <= high <= 16.0:
            raise ValueError(f"train_scales must satisfy 1 < low <= high <= 16, got {low}, {high}")
        return self


class ImplicitSR(SRMethod):
    """Diffusion conditioned on LR features rendered at the output size (IDM)."""

    name: ClassVar[str] = "implicit"
    config_class = ImplicitSRConfig
    stochastic: ClassVar[bool] = True
    any_scale: ClassVar[bool] = True
    summary: ClassVar[str] = "IDM-style continuous scales (Gao et al. 2023)"

    def build_net(self) -> nn.Module:
        config, bands = self.task.config, self.task.num_bands
        render = self.config.render_channels
        denoiser = build_unet(config, bands, bands, cond_channels=render + bands)
        return fixed_seed_net(
            config.seed + 1, lambda: ImplicitSRNet(bands, denoiser, render_channels=render)
        )

    def train_scale(self, generator: torch.Generator) -> float:
        """A scale drawn uniformly in ``sr.train_scales``."""
        low, high = self.config.train_scales
        return low + (high - low) * float(torch.rand((), generator=generator))

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """The denoising loss on the target (:func:`.target.to_target`); the net renders its
        condition from the LR image."""
        task = self.task
        x0 = to_target(self.config, batch.hr, batch.bicubic)
        return diffusion_loss(
            net, task.schedule, task.config, x0, generator, mask=batch.mask, cond=batch.lr
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
        """Render the condition once at ``out_size``, pad to the UNet's multiple, sample, crop;
        HR images (and trajectory states) from the samples by :func:`.target.from_target`."""
        assert spec is not None, "a stochastic method needs a SamplingSpec"
        lr = lr.float().to(next(net.parameters()).device)
        with evaluating(net):
            cond = net.condition(lr, out_size)
        multiple = net.downsample_factor
        pad_h, pad_w = (-out_size[0]) % multiple, (-out_size[1]) % multiple
        if pad_h or pad_w:
            cond = torch.nn.functional.pad(cond, (0, pad_w, 0, pad_h), mode="replicate")
        out = run_sampler(
            _Denoiser(net),
            self.task.schedule,
            self.task.config,
            (lr.shape[0], self.task.num_bands, *cond.shape[-2:]),
            spec,
            cond=cond,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
        height, width = out_size
        bicubic = upsample_to(lr, out_size)

        def to_hr(x: torch.Tensor) -> torch.Tensor:
            return from_target(self.config, x[..., :height, :width], bicubic)

        return SamplerOutput(
            sample=to_hr(out.sample),
            trajectory=[(label, to_hr(x)) for label, x in out.trajectory],
            spec=out.spec,
        )


class _Denoiser(nn.Module):
    """``model_fn`` view of an :class:`ImplicitSRNet`: its UNet on precomputed conditions."""

    def __init__(self, net: ImplicitSRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x_t, t, cond)
