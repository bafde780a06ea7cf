"""What every carbon-estimation method shares: the config keys, the batch, the predictors.

A method of :class:`~terradiff.tasks.carbon.task.CarbonTask` is a :class:`CarbonMethod` in a file
of its own beside this one; the task reads the chips, splits and scales them and previews the
maps, the method builds its network, its loss and its prediction.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.config import MethodConfig
from terradiff.diffusion.spec import SamplingSpec
from terradiff.tasks.registry import Method


class CarbonMethodConfig(MethodConfig):
    """Keys of every carbon method (``config.carbon``).

    ``data`` (``kind: paired``) points at pairs ``<root>/<chip>/{image,target,mask}.tif`` (see
    ``terradiff carbon-prepare``); ``data.scaling`` scales the image, ``max_density`` the target.
    """

    max_density: float = Field(
        150.0, gt=0.0, description="Mg C/ha mapped to 1 (the target is clipped to [0, max])."
    )
    unit: str = "Mg C/ha"
    mask_loss: bool = Field(True, description="Loss only under the forest mask (paper Eq. 4).")
    train_chips: list[str] | None = Field(
        None, description="Pair folders to train on (null: a stable hash split of all pairs)."
    )
    val_chips: list[str] | None = None
    test_chips: list[str] | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _disjoint_splits(self) -> CarbonMethodConfig:
        lists = {
            "train_chips": self.train_chips or [],
            "val_chips": self.val_chips or [],
            "test_chips": self.test_chips or [],
        }
        names = list(lists)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = sorted(set(lists[a]) & set(lists[b]))
                if both:
                    raise ValueError(
                        f"chips {both} are in both {a} and {b}; a chip is in one split"
                    )
        return self


class DiffusionCarbonConfig(CarbonMethodConfig):
    """Keys of the diffusion methods (IIDM, IDM): the denoiser's decoder and the ensemble."""

    implicit_decoder: bool = True
    decoder_hidden: int = Field(64, ge=1)
    ensemble: int = Field(1, ge=1, description="Samples per image (mean map + std map).")


@dataclass
class CarbonBatch:
    """One training batch: images, target maps (both in [-1, 1]) and the pixels that count."""

    image: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


class CarbonMethod(Method):
    """One way to estimate carbon density (see :class:`terradiff.tasks.registry.Method`)."""

    section: ClassVar[str] = "carbon"

    @property
    def default_members(self) -> int:
        """Ensemble members when the caller names none (1 for a one-pass model)."""
        return int(getattr(self.config, "ensemble", 1)) if self.stochastic else 1

    @abc.abstractmethod
    def training_loss(
        self, net: nn.Module, batch: CarbonBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """The scalar loss of one batch."""

    @abc.abstractmethod
    def predict(
        self,
        net: nn.Module,
        image: torch.Tensor,
        *,
        members: int,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        """``members`` maps ``[B, 1, H, W]`` in [-1, 1] of ``image`` (padded, on the device).

        The net is in eval mode; one-pass methods return one map whatever ``members`` is.
        """


class OnePassCarbonMethod(CarbonMethod):
    """A method that maps the image in one forward pass (no sampler, no ensemble)."""

    @abc.abstractmethod
    def forward(self, net: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """The map of ``image`` (model scale)."""

    def predict(
        self,
        net: nn.Module,
        image: torch.Tensor,
        *,
        members: int,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        return [self.forward(net, image).float().clamp(-1, 1)]


def unet_map(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """A UNet's map of ``image`` with its time input held at 0."""
    return net(image, torch.zeros(image.shape[0], device=image.device))
