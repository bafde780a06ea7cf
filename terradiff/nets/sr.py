"""The implicit continuous-scale super-resolution net: LR encoder -> implicit decoder -> denoiser.

IDM (Gao et al., CVPR 2023, "Implicit Diffusion Models for Continuous Super-Resolution", Sec. 3)
conditions the denoising UNet on features of the low-resolution (LR) image rendered *at the output
size* by an implicit neural representation, so one model produces any output size. Here:

1. a small convolutional encoder turns the LR image into a two-level feature pyramid;
2. :class:`~terradiff.nets.implicit.MultiScaleImplicitDecoder` (LIIF-style local implicit functions
   with a scale-dependent modulation) renders those features at the high-resolution (HR) size;
3. the rendered features, with the bicubic up-sampled LR image, are concatenated with ``x_t`` as
   the condition channels of the SR3-style :class:`~terradiff.nets.unet.UNet`.

:meth:`ImplicitSRNet.condition` renders once per image, so a sampler that calls the denoiser many
times reuses it (:meth:`ImplicitSRNet.denoise`); :meth:`ImplicitSRNet.forward` does both, which
is what training calls (through any DDP wrapper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.implicit import MultiScaleImplicitDecoder
from terradiff.nets.unet import UNet

__all__ = ["ImplicitSRNet", "LREncoder"]


class _ConvBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))``: a residual block without time conditioning."""

    def __init__(self, channels: int, num_groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(num_groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(num_groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class LREncoder(nn.Module):
    """Two-level features of an LR image: ``[coarse (2C, h/2), fine (C, h)]`` (coarse first).

    Args:
        in_channels: LR bands.
        channels: ``C``, the fine level's width.
        num_groups: GroupNorm groups (must divide ``C``).
    """

    def __init__(self, in_channels: int, channels: int = 64, num_groups: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.fine = nn.Sequential(
            _ConvBlock(channels, num_groups), _ConvBlock(channels, num_groups)
        )
        self.down = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.coarse = nn.Sequential(
            _ConvBlock(2 * channels, num_groups), _ConvBlock(2 * channels, num_groups)
        )
        self.feature_channels = (2 * channels, channels)

    def forward(self, lr: Tensor) -> list[Tensor]:
        fine = self.fine(self.stem(lr))
        return [self.coarse(self.down(fine)), fine]


class ImplicitSRNet(nn.Module):
    """Continuous-scale SR denoiser (see the module docstring).

    Args:
        bands: Bands of the LR input and of the HR output.
        denoiser: A :class:`UNet` built with ``cond_channels = render_channels + bands``.
        render_channels: Channels the implicit decoder renders at the HR size.
        encoder_channels: Width of the LR encoder's fine level.
        num_groups: GroupNorm groups of the encoder.
        hidden: Width of the implicit decoder.
    """

    def __init__(
        self,
        bands: int,
        denoiser: UNet,
        *,
        render_channels: int = 32,
        encoder_channels: int = 64,
        num_groups: int = 8,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if denoiser.cond_channels != render_channels + bands:
            raise ValueError(
                f"the denoiser takes {denoiser.cond_channels} condition channels; it needs "
                f"render_channels + bands = {render_channels + bands}"
            )
        self.bands = bands
        self.encoder = LREncoder(bands, encoder_channels, num_groups)
        self.decoder = MultiScaleImplicitDecoder(
            self.encoder.feature_channels, render_channels, hidden=hidden, head_hidden=(hidden,)
        )
        self.denoiser = denoiser
        self.downsample_factor = denoiser.downsample_factor

    def condition(self, lr: Tensor, size: Sequence[int]) -> Tensor:
        """Condition channels at HR ``size``: rendered LR features and the bicubic LR image."""
        height, width = int(size[0]), int(size[1])
        rendered = self.decoder(self.encoder(lr), (height, width))
        bicubic = F.interpolate(
            lr, size=(height, width), mode="bicubic", align_corners=False, antialias=False
        ).clamp(-1, 1)
        return torch.cat([rendered.to(bicubic.dtype), bicubic], dim=1)

    def denoise(self, x_t: Tensor, t: Tensor | float, cond: Tensor) -> Tensor:
        """The UNet's prediction for ``x_t`` given precomputed :meth:`condition` channels."""
        return self.denoiser(x_t, t, cond)

    def forward(self, x_t: Tensor, t: Tensor | float, lr: Tensor) -> Tensor:
        """Render the condition for ``lr`` at ``x_t``'s size, then denoise."""
        return self.denoise(x_t, t, self.condition(lr, x_t.shape[-2:]))
