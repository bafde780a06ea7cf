"""What a super-resolution diffusion model diffuses: the HR image, or its residual on bicubic.

SR3 (Saharia et al. 2021) and IDM (Gao et al. 2023) diffuse the high-resolution (HR) image. SRDiff
(Li et al. 2022, Sec. 3.2, "residual prediction") diffuses the difference between the HR image and
the bicubic-upsampled low-resolution image instead, here divided by a scale ``s``:
``x_0 = (HR - bicubic) / s``, and the HR estimate of a sample is ``bicubic + s x_0``. The residual
holds only the detail bicubic misses, so a short training run has far less to learn.

The config keys are those of :class:`DiffusionTargetConfig`; :func:`to_target` and
:func:`from_target` are the two directions of the map.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from terradiff.tasks.super_resolution.method import SRMethodConfig


class DiffusionTargetConfig(SRMethodConfig):
    """The keys of a super-resolution method that diffuses ``target``."""

    target: Literal["image", "residual"] = Field(
        "image",
        description="Diffuse the HR image (SR3, IDM) or (HR - bicubic) / residual_scale (SRDiff).",
    )
    residual_scale: float = Field(
        1.0,
        gt=0.0,
        le=2.0,
        description="s in x_0 = (HR - bicubic) / s (target 'residual' only). Sampling clips each "
        "step's x_0 estimate to [-1, 1] in this space, so the residual is kept within +-s.",
    )


def to_target(
    config: DiffusionTargetConfig, hr: torch.Tensor, bicubic: torch.Tensor
) -> torch.Tensor:
    """What is diffused: ``hr``, or ``(hr - bicubic) / residual_scale``."""
    if config.target == "image":
        return hr
    return (hr - bicubic) / config.residual_scale


def from_target(
    config: DiffusionTargetConfig, x0: torch.Tensor, bicubic: torch.Tensor
) -> torch.Tensor:
    """The HR image of a sampled target (the inverse of :func:`to_target`), in [-1, 1]."""
    if config.target == "image":
        return x0
    return (bicubic + config.residual_scale * x0).clamp(-1.0, 1.0)


__all__ = ["DiffusionTargetConfig", "from_target", "to_target"]
