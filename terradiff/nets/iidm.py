"""The improved implicit diffusion model (IIDM) for image-to-image estimation (e.g. carbon density).

The IIDM paper (forest carbon from GF-1 WFV imagery, Huize County; its Fig. 2 and Eq. 4) predicts a
quantity map ``y`` (carbon density) from an image ``x`` with a conditional diffusion model:

1. a VGG-style extractor gives multi-scale features ``f`` of ``x``
   (:class:`~terradiff.nets.vgg.VGGFeatures`);
2. ``f`` (brought to the map's size and projected) is concatenated with ``y_t`` (and ``x``) and
   encoded by the denoising UNet (its condition channels);
3. cross-attention + MLP fuse the condition (the deepest VGG features as tokens) with the
   denoiser's bottleneck features (:class:`~terradiff.nets.blocks.CrossAttentionFusion`);
4. the implicit coordinate-MLP decoder (:class:`~terradiff.nets.implicit.MultiScaleImplicitDecoder`,
   the super-resolution issue's module, here at scale 1) reads the UNet decoder's multi-scale
   features out at every pixel to produce the prediction (``eps``, Eq. 4).

Switching parts off gives the paper's ablations (its Table 1) and the IDM baseline: no extractor
(the image itself is the condition), no fusion (``context_channels=0``), no implicit decoder (the
UNet's own output convolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.implicit import MultiScaleImplicitDecoder
from terradiff.nets.unet import UNet
from terradiff.nets.vgg import KDVGGFeatures, VGGFeatures

__all__ = ["IIDMNet"]


class IIDMNet(nn.Module):
    """Conditional denoiser ``eps(y_t, t | x)`` of IIDM (see the module docstring).

    Args:
        image_bands: Bands of the condition image ``x``.
        denoiser: The UNet; ``in_channels`` = target bands; ``cond_channels`` = ``image_bands`` +
            ``feature_channels`` (with an extractor) or ``image_bands`` (without);
            ``context_channels`` = the extractor's deepest width for the fusion, or 0.
        extractor: VGG-style features of ``x`` (None: the IDM ablation).
        feature_channels: Channels the extractor's pyramid is projected to at full resolution.
        implicit_decoder: Produce the output with the implicit decoder over the UNet decoder's
            features (else the UNet's own output convolution alone).
        decoder_hidden: Width of the implicit decoder.
    """

    def __init__(
        self,
        image_bands: int,
        denoiser: UNet,
        *,
        extractor: VGGFeatures | KDVGGFeatures | None = None,
        feature_channels: int = 32,
        implicit_decoder: bool = True,
        decoder_hidden: int = 64,
    ) -> None:
        super().__init__()
        expected_cond = image_bands + (feature_channels if extractor is not None else 0)
        if denoiser.cond_channels != expected_cond:
            raise ValueError(
                f"the denoiser takes {denoiser.cond_channels} condition channels; this IIDM needs "
                f"{expected_cond} (image bands {image_bands}"
                f"{f' + feature_channels {feature_channels}' if extractor is not None else ''})"
            )
        if denoiser.context_channels:
            if extractor is None:
                raise ValueError("cross-attention fusion needs the VGG extractor (its tokens)")
            if denoiser.context_channels != extractor.feature_channels[-1]:
                raise ValueError(
                    f"the denoiser's context_channels ({denoiser.context_channels}) must equal the "
                    f"extractor's deepest width ({extractor.feature_channels[-1]})"
                )
        self.image_bands = image_bands
        self.target_bands = denoiser.out_channels
        self.extractor = extractor
        self.project = (
            nn.Conv2d(sum(extractor.feature_channels), feature_channels, 1)
            if extractor is not None
            else None
        )
        self.denoiser = denoiser
        self.decoder = (
            MultiScaleImplicitDecoder(
                denoiser.feature_channels,
                self.target_bands,
                hidden=decoder_hidden,
                head_hidden=(decoder_hidden,),
                scale_modulation=False,  # always scale 1 here
            )
            if implicit_decoder
            else None
        )
        factor = denoiser.downsample_factor
        if extractor is not None:
            factor = max(factor, extractor.downsample_factor)
        self.downsample_factor = factor

    def condition(self, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(cond [B, cond_channels, H, W], context [B, N, C] or None)`` of an image.

        Computed once per image; a sampler reuses it at every step (:meth:`denoise`).
        """
        if image.ndim != 4 or image.shape[1] != self.image_bands:
            raise ValueError(
                f"IIDM expects images [B, {self.image_bands}, H, W], got {tuple(image.shape)}"
            )
        if self.extractor is None or self.project is None:
            return image, None
        features = self.extractor(image)
        size = image.shape[-2:]
        stacked = torch.cat(
            [features[0]]
            + [
                F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                for f in features[1:]
            ],
            dim=1,
        )
        cond = torch.cat([image, self.project(stacked)], dim=1)
        context = None
        if self.denoiser.context_channels:
            deepest = features[-1]
            context = deepest.flatten(2).transpose(1, 2)  # [B, h*w, C]
        return cond, context

    def denoise(
        self, y_t: Tensor, t: Tensor | float, cond: Tensor, context: Tensor | None
    ) -> Tensor:
        """The prediction for ``y_t`` given precomputed :meth:`condition` outputs."""
        if self.decoder is None:
            return self.denoiser(y_t, t, cond, context)
        out, features = self.denoiser.forward_features(y_t, t, cond, context)
        rendered = self.decoder(features, y_t.shape[-2:])
        return rendered.to(out.dtype) + out

    def forward(self, y_t: Tensor, t: Tensor | float, image: Tensor) -> Tensor:
        """``eps(y_t, t | image)``: :meth:`condition`, then :meth:`denoise`."""
        cond, context = self.condition(image)
        return self.denoise(y_t, t, cond, context)

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())
