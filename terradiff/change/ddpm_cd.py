"""DDPM-CD: multi-scale decoder features of a frozen diffusion UNet, and a change detector.

Bandara, Nair & Patel 2022, "DDPM-CD: Remote Sensing Change Detection using Denoising Diffusion
Probabilistic Models", Sec. 3: a DDPM is trained on unlabelled images; for change detection it is
frozen, each date's image ``x0`` is diffused to a few timesteps ``t`` (``x_t = q(x_t | x0)``, Ho
et al. 2020, Eq. 4, :meth:`~terradiff.diffusion.schedules.NoiseSchedule.q_sample`), the denoiser
runs once per ``t``, and the decoder's multi-scale features (:meth:`UNet.forward_features`) --
per level, concatenated over the timesteps -- feed a light change head trained on the labels
(DDPM-CD's best setting used ``t`` in {50, 100, 400} of 2,000 steps and all decoder levels).

:class:`DiffusionFeatures` is that extractor (no gradients; the UNet's weights are frozen). The
two dates of a pair get the **same** noise (:meth:`DiffusionFeatures.pair`), so where nothing
changed the two feature maps differ only through the images. :class:`DDPMChangeDetector` adds a
:class:`~terradiff.nets.change.ChangeHead`: ``detector(before, after) -> logits``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.nets.change import ChangeHead
from terradiff.nets.unet import UNet

__all__ = ["DDPMChangeDetector", "DiffusionFeatures"]


class DiffusionFeatures(nn.Module):
    """Frozen diffusion UNet -> per-level decoder features at several timesteps.

    Args:
        unet: The trained (unconditional, no ``cond_channels``) denoiser; frozen here.
        schedule: Its noise schedule.
        timesteps: Timesteps the image is diffused to (each ``< schedule.num_timesteps``).
        levels: Decoder levels to keep, indices into :meth:`UNet.forward_features`'s list (0 =
            the coarsest); default all.

    Attributes:
        feature_channels: Channels of each kept level (``len(timesteps) x`` the UNet's).

    Raises:
        ValueError: A conditional UNet, no timestep, a timestep or level out of range.
    """

    def __init__(
        self,
        unet: UNet,
        schedule: NoiseSchedule,
        timesteps: Sequence[int] = (50, 100, 400),
        levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if unet.cond_channels or unet.context_channels:
            raise ValueError(
                "DiffusionFeatures needs an unconditional denoiser (cond_channels=0, "
                "context_channels=0): DDPM-CD's generator is trained on single images"
            )
        timesteps = tuple(int(t) for t in timesteps)
        bad = [t for t in timesteps if not 0 <= t < schedule.num_timesteps]
        if not timesteps or bad:
            raise ValueError(
                f"timesteps must be a non-empty list in [0, {schedule.num_timesteps}), got "
                f"{list(timesteps)}"
            )
        num_levels = len(unet.feature_channels)
        levels = tuple(range(num_levels)) if levels is None else tuple(int(i) for i in levels)
        if not levels or any(not 0 <= i < num_levels for i in levels):
            raise ValueError(f"levels must be indices in [0, {num_levels}), got {list(levels)}")
        self.unet = unet.requires_grad_(False).eval()
        self.schedule = schedule
        self.timesteps = timesteps
        self.levels = levels
        self.feature_channels = tuple(len(timesteps) * unet.feature_channels[i] for i in levels)

    def train(self, mode: bool = True) -> DiffusionFeatures:
        """The frozen UNet stays in eval mode."""
        super().train(mode)
        self.unet.eval()
        return self

    def noise(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise ``[len(timesteps), *image.shape]`` (drawn on the CPU
        ``generator``, so it is the same on every device)."""
        shape = (len(self.timesteps), *image.shape)
        return torch.randn(shape, generator=generator).to(image.device, image.dtype)

    @torch.no_grad()
    def forward(self, image: Tensor, noise: Tensor | None = None) -> list[Tensor]:
        """Per-level features ``[B, feature_channels[k], H_k, W_k]`` of ``image`` in [-1, 1].

        Args:
            image: ``[B, bands, H, W]``.
            noise: From :meth:`noise` (default: fresh noise from the global RNG).
        """
        noise = self.noise(image) if noise is None else noise
        per_level: list[list[Tensor]] = [[] for _ in self.levels]
        for k, t in enumerate(self.timesteps):
            steps = torch.full((image.shape[0],), t, device=image.device, dtype=torch.long)
            x_t = self.schedule.q_sample(image, steps, noise[k])
            _, features = self.unet.forward_features(x_t, steps)
            for slot, level in enumerate(self.levels):
                per_level[slot].append(features[level])
        return [torch.cat(f, dim=1) for f in per_level]

    def pair(
        self, before: Tensor, after: Tensor, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Features of both dates, diffused with the same noise."""
        if before.shape != after.shape:
            raise ValueError(
                f"before {tuple(before.shape)} and after {tuple(after.shape)} must match"
            )
        noise = self.noise(before, generator)
        return self(before, noise), self(after, noise)


class DDPMChangeDetector(nn.Module):
    """:class:`DiffusionFeatures` + a trainable :class:`~terradiff.nets.change.ChangeHead`.

    Args:
        features: The extractor.
        hidden, num_groups, out_channels: The head's (see :class:`ChangeHead`).
    """

    def __init__(
        self,
        features: DiffusionFeatures,
        *,
        hidden: int = 64,
        num_groups: int = 8,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = ChangeHead(
            features.feature_channels,
            hidden=hidden,
            num_groups=num_groups,
            out_channels=out_channels,
        )

    @property
    def downsample_factor(self) -> int:
        """Input sides must be multiples of this (the frozen UNet's down-sampling)."""
        return int(self.features.unet.downsample_factor)

    def forward(
        self, before: Tensor, after: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Change logits ``[B, out_channels, H, W]`` for images ``[B, bands, H, W]`` in [-1, 1]."""
        a, b = self.features.pair(before, after, generator)
        return self.head(a, b, size=tuple(before.shape[-2:]))
