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
from terradiff.diffusion import objectives
from terradiff.diffusion.samplers import SAMPLERS, SamplerOutput
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.errors import CheckpointError
from terradiff.nets.unet import UNet
from terradiff.tasks.base import Task


def build_schedule(config: ExperimentConfig) -> NoiseSchedule:
    """The noise schedule described by ``config.diffusion``."""
    diffusion = config.diffusion
    return NoiseSchedule.create(
        diffusion.schedule, diffusion.num_timesteps, **diffusion.schedule_kwargs()
    )


def build_dataset(config: ExperimentConfig, *, train: bool = True) -> Dataset:
    """The dataset described by ``config.data`` (augmented when ``train``)."""
    data = config.data
    common: dict[str, Any] = {
        "image_size": data.image_size,
        "bands": data.bands,
        "scaling": data.scaling,
        "random_flip": data.random_flip and train,
        "crop": data.crop if train else ("center" if data.crop == "random" else data.crop),
        "max_images": data.max_images,
        "seed": config.seed,
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
        if band_info is None:
            dataset = self.build_dataset()
            band_info = {
                "count": int(dataset.num_bands),
                "names": list(dataset.band_names),
                "scaling": config.data.scaling,
            }
        self.band_info = band_info
        self.schedule = build_schedule(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the initial weights are a function of the config
            self.net = self._build_net(band_info, config)

    @staticmethod
    def _build_net(band_info: dict[str, Any], config: ExperimentConfig) -> UNet:
        model = config.model
        return UNet(
            band_info["count"],
            band_info["count"],
            base_channels=model.base_channels,
            channel_mults=tuple(model.channel_mults),
            num_res_blocks=model.num_res_blocks,
            attention_resolutions=tuple(model.attention_resolutions),
            image_size=config.data.image_size,
            dropout=model.dropout,
            num_groups=model.num_groups,
            head_channels=model.head_channels,
        )

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
        x0 = batch["image"]
        device = x0.device
        timesteps = torch.randint(
            0, self.schedule.num_timesteps, (x0.shape[0],), generator=generator
        ).to(device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
        x_t = self.schedule.q_sample(x0, timesteps, noise)
        if x_t.ndim == 4 and getattr(self.config.train, "channels_last", False):
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        prediction = net(x_t, timesteps.float())
        diffusion = self.config.diffusion
        target = objectives.target(diffusion.prediction, x0, noise, timesteps, self.schedule)
        weights = None
        if diffusion.min_snr_gamma is not None:
            weights = objectives.min_snr_weights(
                self.schedule, timesteps, diffusion.prediction, gamma=diffusion.min_snr_gamma
            )
        mask = batch.get("mask")
        return objectives.diffusion_loss(
            prediction.float(), target, loss_type=diffusion.loss, mask=mask, weights=weights
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
        sample_cfg = self.config.sample
        name = sampler or sample_cfg.sampler
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
        size = image_size or self.config.data.image_size
        device = next(net.parameters()).device
        shape = (num_images, self.num_bands, size, size)
        x_T = torch.randn(shape, generator=generator).to(device)
        was_training = net.training
        net.eval()

        def model_fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
            return net(x_t, t).float()

        kwargs: dict[str, Any] = {
            "prediction": self.config.diffusion.prediction,
            "generator": generator,
            "progress": progress,
            "return_trajectory": return_trajectory,
            "clip_denoised": sample_cfg.clip_denoised,
        }
        if name != "ddpm":
            kwargs["steps"] = steps or sample_cfg.steps
        if name == "ddim":
            kwargs["eta"] = sample_cfg.eta
        try:
            return SAMPLERS[name](model_fn, self.schedule, x_T, **kwargs)
        finally:
            net.train(was_training)
