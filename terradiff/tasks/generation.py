"""Unconditional image generation: a UNet denoiser trained with the DDPM objective.

Training follows Ho et al. (2020), Algorithm 1: draw ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)``, form
``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` and regress the chosen target (eps, x0
or v) with an L2/L1 loss under the nodata mask, optionally min-SNR weighted (Hang et al. 2023).
Sampling runs any sampler of :mod:`terradiff.diffusion.samplers` with the net as ``model_fn``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import CheckpointError
from terradiff.tasks.base import (
    Task,
    band_info_of,
    build_dataset,
    build_schedule,
    build_unet,
    diffusion_loss,
    run_sampler,
)

__all__ = ["GenerationTask", "build_dataset", "build_schedule"]


class GenerationTask(Task):
    """Unconditional generation of ``C``-band images of ``image_size`` pixels.

    Args:
        config: the experiment config.
        band_info: bands the net works on (``count``, ``names``, ``scaling``); read from the dataset
            when None (training) or from a checkpoint (inference).
    """

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        self.config = config
        self.band_info = band_info or band_info_of(self.build_dataset(), config)
        self.schedule = build_schedule(config)
        self.net = build_unet(config, self.num_bands, self.num_bands)

    def check_bands(self, dataset: Dataset) -> None:
        """Refuse a dataset whose band count differs from the net's."""
        if int(dataset.num_bands) != self.num_bands:
            raise CheckpointError(
                f"the model works on {self.num_bands} bands {list(self.band_info.names)}, but the "
                f"dataset gives {dataset.num_bands} bands {list(dataset.band_names)}; select the "
                "same bands with data.bands"
            )

    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """DDPM loss (Ho et al. 2020, Algorithm 1 / Eq. 14) for one batch."""
        return diffusion_loss(
            net, self.schedule, self.config, batch["image"], generator, mask=batch.get("mask")
        )

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        num_images: int,
        *,
        generator: torch.Generator | None = None,
        spec: SamplingSpec | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
        image_size: int | None = None,
    ) -> SamplerOutput:
        """Generate ``num_images`` images in [-1, 1] (``spec``: default :meth:`sampling_spec`)."""
        size = image_size or self.config.data.image_size
        shape = (num_images, self.num_bands, size, size)
        return run_sampler(
            net,
            self.schedule,
            self.config,
            shape,
            spec or self.sampling_spec(),
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
