"""The improved implicit diffusion model (IIDM) for carbon density, and IDM without its features.

IIDM (the paper this task follows): the target ``y`` (carbon density scaled to [-1, 1]) is
generated conditioned on the image ``x``: VGG features of ``x`` are projected and concatenated
with it as the denoiser's condition, the deepest features are fused by cross-attention + MLP at
the bottleneck, and an implicit (LIIF-style) decoder renders the output; the noise prediction
``eps(y_t, t | x)`` is trained with the masked loss of the paper's Eq. 4 (only forest pixels count)
and sampled with 20-step DDIM. IDM drops the VGG features and the fusion: the image alone is the
condition. An ensemble of N samples gives a mean map and a per-pixel standard deviation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.diffusion.spec import SamplingSpec
from terradiff.nets.iidm import IIDMNet
from terradiff.nets.vgg import KDVGGFeatures, VGGFeatures, load_kd_vgg, load_vgg_weights
from terradiff.tasks.base import build_unet, diffusion_loss, fixed_seed_net, run_sampler
from terradiff.tasks.carbon.method import (
    CarbonBatch,
    CarbonMethod,
    DiffusionCarbonConfig,
)


class IDMConfig(DiffusionCarbonConfig):
    """``carbon.method: idm``: the image as the only condition."""

    method: Literal["idm"] = "idm"


class IIDMConfig(DiffusionCarbonConfig):
    """``carbon.method: iidm``: the VGG extractor and the fusion."""

    method: Literal["iidm"] = "iidm"
    vgg_layout: Literal["vgg11", "vgg16", "vgg19"] = "vgg16"
    vgg_width: float = Field(0.25, gt=0.0, le=1.0)
    vgg_stages: int = Field(3, ge=1, le=5)
    vgg_weights: str | None = Field(
        None, description="Local VGG weights to start from (never downloaded); null: trained."
    )
    vgg_channels: list[list[int]] | None = Field(
        None,
        description="Widths of a PCA-distilled extractor (KD-VGG), one list per stage, as "
        "'terradiff compress' prints them; null: the full extractor. The vgg_* fields above "
        "still describe the teacher, whose feature widths KD-VGG reproduces.",
    )
    kd_vgg: str | None = Field(
        None,
        description="Local KD-VGG weights (kd_vgg.safetensors from 'terradiff compress') to "
        "start from; needs vgg_channels.",
    )
    feature_channels: int = Field(32, ge=1)
    attention: bool = Field(True, description="Cross-attention + MLP fusion at the bottleneck.")

    @model_validator(mode="after")
    def _kd_vgg(self) -> IIDMConfig:
        if self.kd_vgg and not self.vgg_channels:
            raise ValueError("carbon.kd_vgg needs carbon.vgg_channels (the student's widths)")
        if self.kd_vgg and self.vgg_weights:
            raise ValueError("give carbon.kd_vgg or carbon.vgg_weights, not both")
        if self.vgg_channels is not None and (
            len(self.vgg_channels) != self.vgg_stages
            or any(not stage or min(stage) < 1 for stage in self.vgg_channels)
        ):
            raise ValueError(
                f"carbon.vgg_channels must hold {self.vgg_stages} lists (vgg_stages) of "
                f"positive widths, got {self.vgg_channels}"
            )
        return self


class IDM(CarbonMethod):
    """Conditional diffusion of the map on the image alone (IDM)."""

    name: ClassVar[str] = "idm"
    config_class = IDMConfig
    stochastic: ClassVar[bool] = True
    summary: ClassVar[str] = "the image as the only condition, no fusion"

    def extractor(self) -> VGGFeatures | KDVGGFeatures | None:
        """The feature extractor of the condition (none for IDM)."""
        return None

    def build_net(self) -> nn.Module:
        config, bands, c = self.task.config, self.task.num_bands, self.config
        extractor = self.extractor()
        features = getattr(c, "feature_channels", 32)  # only IIDM has features to project
        cond = bands + (features if extractor is not None else 0)
        context = extractor.feature_channels[-1] if extractor is not None and c.attention else 0
        denoiser = build_unet(config, 1, 1, cond_channels=cond, context_channels=context)
        return fixed_seed_net(
            config.seed + 2,
            lambda: IIDMNet(
                bands,
                denoiser,
                extractor=extractor,
                feature_channels=features,
                implicit_decoder=c.implicit_decoder,
                decoder_hidden=c.decoder_hidden,
            ),
        )

    def training_loss(
        self, net: nn.Module, batch: CarbonBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """The masked denoising loss (paper Eq. 4) of the map given the image."""
        task = self.task
        return diffusion_loss(
            net,
            task.schedule,
            task.config,
            batch.target,
            generator,
            mask=batch.mask,
            cond=batch.image,
        )

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
        """``members`` samples; the condition and context are computed once."""
        assert spec is not None, "a stochastic method needs a SamplingSpec"
        cond, context = net.condition(image)
        denoiser = _Conditioned(net, context)
        shape = (image.shape[0], 1, *image.shape[-2:])
        return [
            run_sampler(
                denoiser,
                self.task.schedule,
                self.task.config,
                shape,
                spec,
                cond=cond,
                generator=generator,
                progress=progress,
            )
            .sample.float()
            .clamp(-1, 1)
            for _ in range(members)
        ]


class IIDM(IDM):
    """IDM + VGG features, cross-attention/MLP fusion and the implicit decoder (IIDM)."""

    name: ClassVar[str] = "iidm"
    config_class = IIDMConfig
    summary: ClassVar[str] = (
        "VGG features + cross-attention/MLP fusion + implicit decoder (the IIDM paper)"
    )

    def extractor(self) -> VGGFeatures | KDVGGFeatures:
        """The VGG extractor (or its PCA-distilled KD-VGG), from local weights when given."""
        c, seed = self.config, self.task.config.seed
        bands = self.task.num_bands
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            extractor: VGGFeatures | KDVGGFeatures = VGGFeatures(
                bands, c.vgg_layout, width=c.vgg_width, num_stages=c.vgg_stages
            )
            if c.vgg_channels is not None:
                extractor = KDVGGFeatures(
                    bands, c.vgg_layout, c.vgg_channels, extractor.feature_channels
                )
        if c.vgg_weights and isinstance(extractor, VGGFeatures):
            load_vgg_weights(extractor, c.vgg_weights)
        if c.kd_vgg and isinstance(extractor, KDVGGFeatures):
            load_kd_vgg(extractor, c.kd_vgg)
        return extractor


class _Conditioned(nn.Module):
    """``model_fn`` view of an :class:`IIDMNet` on a precomputed condition and context."""

    def __init__(self, net: IIDMNet, context: torch.Tensor | None) -> None:
        super().__init__()
        self.net = net
        self.context = context

    def forward(self, y_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(y_t, t, cond, self.context)
