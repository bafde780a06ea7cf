"""The regression baseline: the same UNet and inputs, one pass, L1 to the after image.

What a diffusion forecast must beat besides persistence: the ``model`` section's UNet reads the
before image (its time input held at 0) and the pair metadata through the same conditioning as
:mod:`~terradiff.tasks.temporal.concat`, and is trained to output the after image directly with
the masked L1 loss (the regression baseline of SR3, Saharia et al. 2021, Sec. 4.2). It predicts
the conditional median, so it is sharp where change is predictable and blurred where it is not.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.diffusion import objectives
from terradiff.diffusion.spec import SamplingSpec
from terradiff.nets.conditioning import Condition
from terradiff.tasks.base import build_unet
from terradiff.tasks.temporal.method import (
    TARGET_DESCRIPTION,
    TargetKind,
    TemporalMethod,
    TemporalMethodConfig,
    from_change,
)


class RegressionConfig(TemporalMethodConfig):
    """``temporal.method: regression``."""

    method: Literal["regression"] = "regression"
    target: TargetKind = Field("after", description=TARGET_DESCRIPTION)


class RegressionTemporal(TemporalMethod):
    """A UNet: before image + dates -> after image, in one pass."""

    name: ClassVar[str] = "regression"
    config_class = RegressionConfig
    summary: ClassVar[str] = "one-pass UNet trained with L1 to the after image (the baseline)"

    def build_net(self) -> nn.Module:
        bands = self.task.num_bands
        return build_unet(self.task.config, bands, bands, condition_spec=self.task.condition_spec)

    def training_loss(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        """Masked L1 between the prediction and the after image (pixels valid in both dates)."""
        condition = self.task.condition(batch)
        prediction = self.predict(net, batch["before"], condition, spec=None, generator=None)
        return objectives.diffusion_loss(
            prediction.float(), batch["after"].float(), loss_type="l1", mask=batch["valid"]
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
        t = torch.zeros(before.shape[0], device=before.device)
        out = net(before, t, condition=condition.to(before.device))
        return from_change(before, out) if self.config.target == "change" else out
