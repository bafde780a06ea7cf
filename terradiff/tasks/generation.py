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
from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.errors import CheckpointError
from terradiff.tasks.base import Task, band_info_of, build_unet, diffusion_loss, run_sampler


def build_schedule(config: ExperimentConfig) -> NoiseSchedule:
    """The noise schedule described by ``config.diffusion``."""
    diffusion = config.diffusion
    return NoiseSchedule.create(
        diffusion.schedule, diffusion.num_timesteps, **diffusion.schedule_kwargs()
    )


def build_dataset(
    config: ExperimentConfig, *, train: bool = True, split: str | None = None
) -> Dataset:
    """The dataset described by ``config.data`` (augmented when ``train``).

    ``split`` overrides ``config.data.split`` (evaluation asks for ``"test"``).
    """
    data = config.data
    common: dict[str, Any] = {
        "image_size": data.image_size,
        "bands": data.bands,
        "scaling": data.scaling,
        "random_flip": data.random_flip and train,
        "crop": data.crop if train else ("center" if data.crop == "random" else data.crop),
        "max_images": data.max_images,
        "seed": config.seed,
        "split": split or data.split,
        "holdout_fraction": data.holdout_fraction,
    }
    if data.kind == "folder":
        return ImageFolderDataset(data.root, classes=data.classes, cache=data.cache, **common)
    return GeoTiffChipDataset(data.root, **common)


class GenerationTask(Task):
    """Unconditional generation of ``C``-band images of ``image_size`` pixels.

    Args:
        config: the experiment config.
        band_info: bands the net works on (``count``, ``names``, ``scaling``); read from the dataset
            when None (training) or from a checkpoint (inference).
    """

    def __init__(self, config: ExperimentConfig, band_info: dict[str, Any] | None = None) -> None:
        self.config = config
        self._dataset: Dataset | None = None
        self.band_info = band_info or band_info_of(self.build_dataset(), config)
        self.schedule = build_schedule(config)
        self.net = build_unet(config, self.num_bands, self.num_bands)

    @property
    def num_bands(self) -> int:
        """Bands of the images this task generates."""
        return int(self.band_info["count"])

    def build_dataset(self) -> Dataset:
        """The training dataset (built once)."""
        if self._dataset is None:
            self._dataset = build_dataset(self.config, train=True)
        return self._dataset

    def check_bands(self, dataset: Dataset) -> None:
        """Refuse a dataset whose band count differs from the net's."""
        if int(dataset.num_bands) != self.num_bands:
            raise CheckpointError(
                f"the model works on {self.num_bands} bands {self.band_info.get('names')}, but the "
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
        sampler: str | None = None,
        steps: int | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
        image_size: int | None = None,
    ) -> SamplerOutput:
        """Generate ``num_images`` images in [-1, 1] with the configured (or given) sampler."""
        size = image_size or self.config.data.image_size
        shape = (num_images, self.num_bands, size, size)
        return run_sampler(
            net,
            self.schedule,
            self.config,
            shape,
            sampler=sampler,
            steps=steps,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
