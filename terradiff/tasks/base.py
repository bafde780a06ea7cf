"""What every task offers the Trainer and the CLI.

A task composes a network, the diffusion maths and a dataset. The :class:`terradiff.train.Trainer`
knows nothing but this interface, so generation, super-resolution and estimation share one training
loop, one checkpoint format and one resume path.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from terradiff import __version__
from terradiff.config import ExperimentConfig
from terradiff.diffusion.samplers import SamplerOutput


class Task(abc.ABC):
    """A trainable, sampleable model recipe.

    Attributes:
        config: the validated experiment config.
        net: the network the Trainer optimises.
        band_info: ``{"count": C, "names": [...], "scaling": {...}}`` — what the net was trained on,
            stored in every checkpoint so the net never receives other bands without an error.
    """

    config: ExperimentConfig
    net: nn.Module
    band_info: dict[str, Any]

    @abc.abstractmethod
    def build_dataset(self) -> Dataset:
        """The training dataset (items are dicts with at least ``image``)."""

    @abc.abstractmethod
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The scalar loss of one batch; all randomness drawn from ``generator``."""

    @abc.abstractmethod
    def sample(
        self,
        net: nn.Module,
        num_images: int,
        *,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SamplerOutput:
        """Draw ``num_images`` images in [-1, 1]."""

    def checkpoint_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: the config, the bands and the version."""
        return {
            "terradiff_version": __version__,
            "task": self.config.task,
            "bands": self.band_info,
            "config": self.config.to_dict(),
        }
