"""The single-step, uncertainty-guided super-resolution teacher (SlimDiffSR's teacher, pixel space).

Three parts, each one forward pass (:mod:`terradiff.distill.uncertainty` has the formulas):

1. ``estimator`` (a UNet run at ``t = 0``): the bicubic image -> a first HR estimate ``mu``
   (a residual on the bicubic image) and a per-pixel ``log sigma``;
2. ``alpha_head`` (three 3x3 convolutions): ``(mu, log sigma)`` -> the noise level
   ``alpha_bar`` in (0, 1) at every pixel (trained to match the HR-derived target of Eq. 9-10);
3. ``denoiser`` (the SR3 UNet, predicting ``x_0``): from ``x_t = sqrt(a) mu + sqrt(1 - a) eps``
   at the timestep of the image's mean ``a`` (Eq. 11), conditioned on the bicubic image and the
   ``a`` map (so it knows how much noise each pixel holds), ONE step to the HR image.

An optional ``discriminator`` (a PatchGAN on (bicubic, HR-or-output) pairs) is held too when the
teacher is trained with the adversarial term (``sr.adversarial_weight > 0``); it is only used by
the training loss. The super-resolution task (``sr.method: single_step``) composes the training
losses and the sampling; this module only holds the networks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from terradiff.nets.unet import UNet

__all__ = ["SingleStepSRNet"]


class SingleStepSRNet(nn.Module):
    """Uncertainty estimator + noise-level head + one-step denoiser (see the module docstring).

    Args:
        bands: Bands of the images.
        estimator: UNet with ``in_channels = bands``, ``out_channels = 2 * bands``, no condition.
        denoiser: UNet with ``in_channels = out_channels = bands``, ``cond_channels = bands + 1``.
        alpha_hidden: Width of the noise-level head.
        discriminator: Optional conditional discriminator for the adversarial loss (training only).
    """

    def __init__(
        self,
        bands: int,
        estimator: UNet,
        denoiser: UNet,
        alpha_hidden: int = 32,
        discriminator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if estimator.in_channels != bands or estimator.out_channels != 2 * bands:
            raise ValueError(
                f"the estimator must map {bands} -> {2 * bands} channels (mean and log sigma), got "
                f"{estimator.in_channels} -> {estimator.out_channels}"
            )
        if denoiser.in_channels != bands or denoiser.cond_channels != bands + 1:
            raise ValueError(
                f"the denoiser must take {bands} channels and {bands + 1} condition channels "
                "(bicubic + alpha_bar map)"
            )
        self.bands = bands
        self.estimator = estimator
        self.denoiser = denoiser
        self.alpha_head = nn.Sequential(
            nn.Conv2d(2 * bands, alpha_hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(alpha_hidden, alpha_hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(alpha_hidden, 1, 3, padding=1),
        )
        self.discriminator = discriminator
        self.downsample_factor = max(estimator.downsample_factor, denoiser.downsample_factor)

    def estimate(self, bicubic: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_sigma)``, each ``[B, bands, H, W]``, from the bicubic image."""
        zero_t = torch.zeros(bicubic.shape[0], device=bicubic.device)
        out = self.estimator(bicubic, zero_t).float()
        return bicubic.float() + out[:, : self.bands], out[:, self.bands :]

    def predict_alpha(self, mean: Tensor, log_sigma: Tensor) -> Tensor:
        """The noise level ``alpha_bar`` ``[B, 1, H, W]`` in (0, 1) from the estimate."""
        x = torch.cat([mean, log_sigma.clamp(-10.0, 5.0)], dim=1)
        return torch.sigmoid(self.alpha_head(x.to(self.alpha_head[0].weight.dtype)).float())

    def denoise_features(
        self, x_t: Tensor, t: Tensor, bicubic: Tensor, alpha_bar: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """``(x0 prediction, the denoiser's decoder features coarse to fine)``."""
        cond = torch.cat([bicubic, alpha_bar * 2.0 - 1.0], dim=1).to(x_t.dtype)
        return self.denoiser.forward_features(x_t, t, cond)

    def denoise(self, x_t: Tensor, t: Tensor, bicubic: Tensor, alpha_bar: Tensor) -> Tensor:
        """The ``x_0`` prediction from ``x_t`` in one step."""
        return self.denoise_features(x_t, t, bicubic, alpha_bar)[0]

    def num_parameters(self) -> int:
        """Number of parameters of the super-resolution networks (not the discriminator)."""
        critic = set() if self.discriminator is None else set(self.discriminator.parameters())
        return sum(p.numel() for p in self.parameters() if p not in critic)
