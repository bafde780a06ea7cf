"""Perceptual loss terms of the one-pass super-resolution methods: LPIPS and the AID distance.

This module's one job is the keys of those terms (:class:`PerceptualLossConfig`, the config
base of every one-pass method) and :class:`PerceptualLoss`, which reads their frozen networks
once, keeps them out of checkpoints and returns

    lpips_weight * LPIPS(x, y) + feature_distance_weight * d_AID(x, y)

on the RGB bands of the estimate ``x`` and the HR image ``y``: the feature-reconstruction loss
of Johnson et al. (2016, ECCV, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", Eq. 2) in the form of Zhang et al. (2018, CVPR, Eq. 1). LPIPS needs local
weights (:mod:`terradiff.metrics.lpips`, never downloaded); the AID feature distance
(:mod:`terradiff.metrics.feature_distance`) is the offline default, the same form in the AID
encoder terradiff ships. Both see RGB images in ``[-1, 1]``: data in other units reach them as
the model's scaling maps them, so the AID distance suits 8-bit RGB aerial imagery best.

Scoring a model trained with the AID distance by the AID distance is circular (the network can
learn what that one encoder cannot see): ``reports/perceptual_loss`` reads it beside PSNR and
the detail above the LR Nyquist frequency, which no network defines.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from safetensors import SafetensorError
from torch import nn

from terradiff.errors import ConfigError
from terradiff.metrics.aid_encoder import AID_ENCODER_WEIGHTS
from terradiff.metrics.feature_distance import load_feature_distance
from terradiff.metrics.lpips import load_lpips
from terradiff.tasks.super_resolution.method import SRMethodConfig


class PerceptualLossConfig(SRMethodConfig):
    """The perceptual terms a one-pass method may add to its loss (module docstring)."""

    lpips_weight: float = Field(
        0.0, ge=0.0, description="Weight of LPIPS to HR (needs sr.lpips_weights)."
    )
    lpips_weights: str | None = Field(
        None,
        description="Local LPIPS weights file (.safetensors or .pth; never downloaded), read "
        "when lpips_weight > 0.",
    )
    feature_distance_weight: float = Field(
        0.0,
        ge=0.0,
        description="Weight of the AID feature distance to HR (LPIPS's form in terradiff's "
        "shipped AID encoder; offline; RGB bands, suited to 8-bit RGB imagery).",
    )
    feature_distance_encoder: str | None = Field(
        None,
        description="An aid-cnn encoder's weights for feature_distance_weight (default: the "
        "one terradiff ships).",
    )

    @model_validator(mode="after")
    def _lpips_weights_given(self) -> PerceptualLossConfig:
        if self.lpips_weight > 0 and not self.lpips_weights:
            raise ValueError(
                "sr.lpips_weight > 0 needs sr.lpips_weights: the path of a local LPIPS weights "
                "file (terradiff never downloads weights); or set sr.lpips_weight: 0, or use "
                "sr.feature_distance_weight (offline)"
            )
        return self


class PerceptualLoss:
    """The weighted perceptual terms of a method's :class:`PerceptualLossConfig`, read lazily.

    Args:
        method: The one-pass method (its ``config``, and its ``task``'s band count and
            ``data.rgb_bands``), read at each call.
    """

    def __init__(self, method: Any) -> None:
        self.method = method
        self._networks: dict[str, nn.Module] | None = None

    @property
    def config(self) -> PerceptualLossConfig:
        """The method's config section (a :class:`PerceptualLossConfig` whenever ``active``)."""
        return self.method.config

    @property
    def active(self) -> bool:
        """Whether any term has a positive weight (never for a method whose config has no
        perceptual keys, e.g. a new one-pass method on a plain ``SRMethodConfig``)."""
        config = self.config
        if not isinstance(config, PerceptualLossConfig):
            return False
        return config.lpips_weight > 0 or config.feature_distance_weight > 0

    def __call__(
        self, prediction: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The weighted sum of the batch-mean distances (a 0-d tensor; 0 when none is active).

        ``mask`` (1 = valid, ``[B, 1|C, H, W]``): nodata pixels of the estimate are replaced by
        HR's before the networks see them, so they differ nowhere there (their receptive fields
        still reach across the edge of the valid area).
        """
        if not self.active:
            return prediction.new_zeros(())
        rgb = self._rgb_bands()
        x, y = prediction[:, rgb].float(), hr[:, rgb].float()
        if mask is not None:
            valid = mask if mask.shape[1] == 1 else mask[:, rgb]
            x = torch.where(valid.bool(), x, y)
        weights = {
            "lpips": self.config.lpips_weight,
            "feature_distance": self.config.feature_distance_weight,
        }
        total = prediction.new_zeros((), dtype=torch.float32)
        for name, network in self._load(prediction.device).items():
            total = total + weights[name] * network(x, y).mean()
        return total

    def prepare(self) -> None:
        """Check the bands and read the networks of the active terms now (training calls it
        before the run folder is made, so a missing or corrupt file is refused first)."""
        if self.active:
            self._rgb_bands()
            self._load(torch.device("cpu"))

    def _rgb_bands(self) -> list[int]:
        """The bands shown to the networks: ``data.rgb_bands`` or the first three."""
        task = self.method.task
        chosen, bands = task.config.data.rgb_bands, task.num_bands
        if not chosen and bands < 3:
            raise ConfigError(
                f"sr.lpips_weight / sr.feature_distance_weight compare RGB images; these images "
                f"have {bands} band(s): set both to 0"
            )
        return list(chosen or range(3))

    def _load(self, device: torch.device) -> dict[str, nn.Module]:
        """The frozen networks of the active terms, on ``device`` (read once)."""
        if self._networks is None:
            networks: dict[str, nn.Module] = {}
            if self.config.lpips_weight > 0:
                try:
                    networks["lpips"] = load_lpips(self.config.lpips_weights)
                except (OSError, ValueError, SafetensorError) as error:
                    raise ConfigError(f"sr.lpips_weights: {error}") from None
            if self.config.feature_distance_weight > 0:
                encoder = self.config.feature_distance_encoder or AID_ENCODER_WEIGHTS
                try:
                    networks["feature_distance"] = load_feature_distance(encoder)
                except (OSError, ValueError, SafetensorError) as error:
                    raise ConfigError(
                        f"sr.feature_distance_encoder {encoder}: {error} (an aid-cnn "
                        "encoder's .safetensors with its .json beside it)"
                    ) from None
            for network in networks.values():
                network.requires_grad_(False).eval()
            self._networks = networks
        for name, network in self._networks.items():
            self._networks[name] = network.to(device)
        return self._networks


__all__ = ["PerceptualLoss", "PerceptualLossConfig"]
