"""Change-detection networks: the light head on diffusion features, and a supervised U-Net.

* :class:`ChangeHead` -- the change head of DDPM-CD (Bandara, Nair & Patel 2022, "DDPM-CD: Remote
  Sensing Change Detection using Denoising Diffusion Probabilistic Models", Sec. 3.2 and Fig. 3),
  simplified: it takes the multi-scale decoder features of a frozen diffusion UNet for the two
  dates (per level, the features of several timesteps concatenated along the channels, as DDPM-CD
  does) and per level reduces each date with a shared 1x1 convolution, takes the **absolute
  difference** of the two dates, refines it with two 3x3 conv-GroupNorm-ReLU layers, upsamples
  it (bilinear) to the output size; the levels are **summed** and a 3x3 + 1x1 classifier gives
  change logits. DDPM-CD fuses the levels progressively from coarse to fine; the sum keeps the
  head light and order-free.
* :class:`SupervisedChangeUNet` -- the baseline DDPM-CD is compared with: a
  :class:`~terradiff.nets.unet.UNet` trained from scratch on the two dates stacked (6 bands for
  RGB pairs) that outputs change logits; its time input is held at 0, so the time embedding is
  a constant bias (no time conditioning). Pick ``base_channels`` etc. so its parameter count
  matches the head's (:func:`count_parameters`).

These modules know nothing of schedules or files; :mod:`terradiff.change` makes the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.blocks import check_groups
from terradiff.nets.unet import UNet

__all__ = ["ChangeHead", "SupervisedChangeUNet", "count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _conv_norm_relu(c_in: int, c_out: int, groups: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.ReLU()]


class ChangeHead(nn.Module):
    """DDPM-CD-style change head on per-level features of two dates (see the module docstring).

    Args:
        feature_channels: Channels of each level's features (e.g.
            :attr:`terradiff.change.DiffusionFeatures.feature_channels`), any order.
        hidden: Width of the head.
        out_channels: 1 (a change logit) or more (class logits).
        num_groups: GroupNorm groups (must divide ``hidden``).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        *,
        hidden: int = 64,
        out_channels: int = 1,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        if not feature_channels or any(int(c) < 1 for c in feature_channels):
            raise ValueError(f"feature_channels must be positive integers, got {feature_channels}")
        check_groups(hidden, num_groups)
        self.feature_channels = tuple(int(c) for c in feature_channels)
        self.config: dict[str, Any] = {
            "feature_channels": list(self.feature_channels),
            "hidden": hidden,
            "out_channels": out_channels,
            "num_groups": num_groups,
        }
        self.reduce = nn.ModuleList(nn.Conv2d(c, hidden, 1) for c in self.feature_channels)
        self.refine = nn.ModuleList(
            nn.Sequential(
                *_conv_norm_relu(hidden, hidden, num_groups),
                *_conv_norm_relu(hidden, hidden, num_groups),
            )
            for _ in self.feature_channels
        )
        self.classify = nn.Sequential(
            *_conv_norm_relu(hidden, hidden, num_groups), nn.Conv2d(hidden, out_channels, 1)
        )

    def _check(self, features: Sequence[Tensor], which: str) -> None:
        channels = tuple(int(f.shape[1]) for f in features)
        if channels != self.feature_channels:
            raise ValueError(
                f"{which} features have channels {list(channels)}, the head was built for "
                f"{list(self.feature_channels)}"
            )

    def forward(
        self,
        before: Sequence[Tensor],
        after: Sequence[Tensor],
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Change logits ``[B, out_channels, H, W]`` from the two dates' per-level features.

        Args:
            before, after: Per-level features ``[B, C_l, H_l, W_l]`` of the two dates.
            size: Output ``(H, W)``; default the largest level's size.
        """
        self._check(before, "before")
        self._check(after, "after")
        if size is None:
            size = max((tuple(f.shape[-2:]) for f in before), key=lambda s: s[0] * s[1])
        out: Tensor | None = None
        for reduce, refine, a, b in zip(self.reduce, self.refine, before, after, strict=True):
            diff = refine((reduce(a) - reduce(b)).abs())
            if tuple(diff.shape[-2:]) != tuple(size):
                diff = F.interpolate(diff, size=size, mode="bilinear", align_corners=False)
            out = diff if out is None else out + diff
        assert out is not None
        return self.classify(out)


class SupervisedChangeUNet(nn.Module):
    """A UNet from scratch on the stacked dates -> change logits (see the module docstring).

    ``forward(before, after) -> [B, out_channels, H, W]``.

    Args:
        bands: Bands of each date (3 for RGB).
        out_channels: 1 (a change logit) or more.
        **unet: :class:`~terradiff.nets.unet.UNet` arguments (``base_channels``,
            ``channel_mults``, ...).
    """

    def __init__(self, bands: int = 3, out_channels: int = 1, **unet: Any) -> None:
        super().__init__()
        self.bands = int(bands)
        self.unet = UNet(2 * self.bands, out_channels, **unet)
        # UNet zero-initialises its output layer (a denoiser starts at 0); a classifier trains
        # faster from the default initialisation.
        out = self.unet.out[1]
        nn.init.kaiming_uniform_(out.weight, a=5**0.5)
        nn.init.zeros_(out.bias)

    @property
    def downsample_factor(self) -> int:
        """Input sides must be multiples of this (the UNet halves them on the way down)."""
        return int(self.unet.downsample_factor)

    def forward(self, before: Tensor, after: Tensor) -> Tensor:
        """Change logits for the pair ``(before, after)``, each ``[B, bands, H, W]``."""
        if before.shape != after.shape or before.ndim != 4 or before.shape[1] != self.bands:
            raise ValueError(
                f"before and after must both be [B, {self.bands}, H, W], got "
                f"{tuple(before.shape)} and {tuple(after.shape)}"
            )
        t = torch.zeros(before.shape[0], device=before.device)
        return self.unet(torch.cat([before, after], dim=1), t)
