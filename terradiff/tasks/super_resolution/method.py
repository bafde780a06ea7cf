"""What every super-resolution method shares: the config keys, the batch, the one-pass predictor.

A method of :class:`~terradiff.tasks.super_resolution.task.SuperResolutionTask` is a
:class:`SRMethod` in a file of its own beside this one; the task makes its training pairs and
previews, the method its network, loss and prediction.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from terradiff.config import MethodConfig
from terradiff.data.degrade import upsample_to
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.tasks.base import evaluating
from terradiff.tasks.registry import Method


class SRMethodConfig(MethodConfig):
    """Keys of every super-resolution method (``config.sr``).

    ``data.image_size`` is the high-resolution (HR) crop size; the low-resolution (LR) input is
    made from it by ``degradation`` at ``scale``.
    """

    scale: float = Field(4.0, gt=1.0, le=16.0, description="The scale the model is trained for.")
    degradation: Literal["bicubic", "real"] = "bicubic"


@dataclass
class SRBatch:
    """One training batch of pairs: HR crops, their LR versions and the valid-pixel mask."""

    hr: torch.Tensor
    lr: torch.Tensor
    mask: torch.Tensor | None

    @cached_property
    def bicubic(self) -> torch.Tensor:
        """The LR images bicubic-upsampled to the HR size."""
        return upsample_to(self.lr, self.hr.shape[-2:])


class SRMethod(Method):
    """One way to super-resolve (see :class:`terradiff.tasks.registry.Method`)."""

    section: ClassVar[str] = "sr"
    can_teach: ClassVar[bool] = False
    """A one-pass model a student can be distilled from (:meth:`teach`)."""

    def train_scale(self, generator: torch.Generator) -> float:
        """The scale of the next training batch (``sr.scale``; any-scale methods draw one)."""
        return float(self.config.scale)

    @abc.abstractmethod
    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """The scalar loss of one batch of pairs."""

    @abc.abstractmethod
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
        """HR images of ``out_size`` in [-1, 1] from LR ``lr`` (on the net's device)."""

    def teach(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A teacher's HR estimate and decoder features, coarse to fine (``can_teach`` only)."""
        raise NotImplementedError(f"{self.describe()} cannot teach a student")

    def teacher_feature_channels(self, net: nn.Module) -> list[int]:
        """Widths of :meth:`teach`'s features, coarse to fine (``can_teach`` only)."""
        raise NotImplementedError(f"{self.describe()} cannot teach a student")


class OnePassSRMethod(SRMethod):
    """A method that super-resolves in one forward pass from the bicubic image.

    A config derived from :class:`~terradiff.tasks.super_resolution.perceptual.
    PerceptualLossConfig` gives it perceptual terms; ``self.perceptual`` adds them to its loss
    (0 for a plain :class:`SRMethodConfig`).
    """

    def __init__(self, task: Any) -> None:
        from terradiff.tasks.super_resolution.perceptual import PerceptualLoss

        super().__init__(task)
        self.perceptual = PerceptualLoss(self)

    def check_training(self) -> None:
        """The perceptual terms' bands and networks (:meth:`PerceptualLoss.prepare`)."""
        self.perceptual.prepare()

    @abc.abstractmethod
    def forward(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The HR estimate of the bicubic-upsampled LR batch."""

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
        """One forward pass; ``spec`` is ignored (nothing is sampled) and none is recorded."""
        device = next(net.parameters()).device
        bicubic = upsample_to(lr.to(device=device, dtype=torch.float32), out_size)
        with evaluating(net):
            return SamplerOutput(sample=self.forward(net, bicubic, generator).clamp(-1, 1))


def regress(net: nn.Module, bicubic: torch.Tensor) -> torch.Tensor:
    """A UNet's residual on the bicubic image (its time input held at 0)."""
    zero_t = torch.zeros(bicubic.shape[0], device=bicubic.device)
    return bicubic + net(bicubic, zero_t).float()
