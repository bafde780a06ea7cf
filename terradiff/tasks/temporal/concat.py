"""SR3-style temporal generation: the before image concatenated to ``x_t``, the dates in the
time embedding.

The conditional denoiser of SR3 (Saharia et al. 2021, "Image Super-Resolution via Iterative
Refinement", Sec. 2: ``f(x, y_t, gamma)`` with ``x`` concatenated along channels) with the
before image as ``x``, and the pair metadata (target date, source date, years apart) embedded
and added to the time embedding (DiffusionSat, Khanna et al. 2024, Sec. 3). Trained with the
eps loss of Ho et al. 2020 (Eq. 14) on the pixels valid in both dates, on the after image
(``temporal.target: after``) or on the change ``(after - before) / 2`` (``change``: the residual
diffusion of SRDiff, Li et al. 2022, with the before image in place of the bicubic upsampling);
the whole metadata vector is dropped with probability ``temporal.drop_prob`` (Ho & Salimans
2022, Algorithm 1) so that ``sample.guidance`` can be used.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.diffusion.spec import SamplingSpec
from terradiff.nets.conditioning import Condition
from terradiff.tasks.base import build_unet, diffusion_loss, run_sampler
from terradiff.tasks.temporal.method import (
    TARGET_DESCRIPTION,
    TargetKind,
    TemporalMethod,
    TemporalMethodConfig,
    from_change,
    to_change,
)


class ConcatConfig(TemporalMethodConfig):
    """``temporal.method: concat``."""

    method: Literal["concat"] = "concat"
    drop_prob: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Probability that a training pair's metadata is replaced by the null "
        "condition (classifier-free guidance needs > 0).",
    )
    target: TargetKind = Field("after", description=TARGET_DESCRIPTION)


class ConcatTemporal(TemporalMethod):
    """The before image as extra input channels of a conditional diffusion UNet."""

    name: ClassVar[str] = "concat"
    config_class = ConcatConfig
    stochastic: ClassVar[bool] = True
    summary: ClassVar[str] = "SR3-style: before image concatenated, dates in the time embedding"

    def build_net(self) -> nn.Module:
        bands = self.task.num_bands
        return build_unet(
            self.task.config,
            bands,
            bands,
            cond_channels=bands,
            condition_spec=self.task.condition_spec,
        )

    def training_loss(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        condition = self.task.condition(batch).with_dropped(self.config.drop_prob, generator)
        x0 = batch["after"]
        if self.config.target == "change":
            x0 = to_change(batch["before"], x0)
        return diffusion_loss(
            net,
            self.task.schedule,
            self.task.config,
            x0,
            generator,
            mask=batch["valid"],
            cond=batch["before"],
            condition=condition,
        )

    def predict(
        self,
        net: nn.Module,
        before: torch.Tensor,
        condition: Condition,
        *,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if spec is None:
            spec = self.task.sampling_spec()
        sample = run_sampler(
            net,
            self.task.schedule,
            self.task.config,
            tuple(before.shape),
            spec,
            cond=before,
            condition=condition,
            generator=generator,
        ).sample
        return from_change(before, sample) if self.config.target == "change" else sample
