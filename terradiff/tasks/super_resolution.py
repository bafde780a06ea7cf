"""Super-resolution as conditional image-to-image diffusion (SR3) and its regression baseline.

SR3 (Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement", Sec. 2-2.4): the
low-resolution (LR) image is bicubic-upsampled to the high-resolution (HR) size and concatenated
with ``x_t`` as the UNet's condition channels; the net is trained with the usual denoising loss on
the HR image (Ho et al. 2020, Algorithm 1) and sampled with any sampler of
:mod:`terradiff.diffusion.samplers` (DDPM, DDIM, DPM-Solver++). The ``regression`` method trains the
same UNet with an L1 loss to predict the HR image from the upsampled LR image in one forward pass
(as a residual on the bicubic image), the baseline that SR3 is compared with. The ``implicit``
method (IDM, Gao et al. 2023; :class:`terradiff.nets.sr.ImplicitSRNet`) renders LR features at any
output size with a LIIF-style decoder and conditions the denoiser on them; it is trained on a
random scale per batch (``sr.train_scales``) and super-resolves at any scale.

Training pairs are made on the fly: HR crops come from the configured dataset and their LR
versions from :mod:`terradiff.data.degrade` (bicubic, or the Real-ESRGAN-style second-order
pipeline), seeded by the Trainer's per-step generator so that a resumed run sees the same pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from terradiff.config import ExperimentConfig
from terradiff.data.degrade import make_lr, upsample_to
from terradiff.diffusion import objectives
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.errors import DataError
from terradiff.nets.sr import ImplicitSRNet
from terradiff.tasks.base import (
    Task,
    band_info_of,
    build_dataset,
    build_schedule,
    build_unet,
    diffusion_loss,
    run_sampler,
)


class SuperResolutionTask(Task):
    """``scale``-times super-resolution of ``C``-band images (``config.sr``).

    Args:
        config: the experiment config; ``data.image_size`` is the HR crop size.
        band_info: bands the net works on; read from the dataset when None (training) or from a
            checkpoint (inference).
    """

    preview_columns = 3  # preview rows read: bicubic | super-resolved | HR

    def __init__(self, config: ExperimentConfig, band_info: dict[str, Any] | None = None) -> None:
        if config.sr is None:
            raise DataError("task 'super_resolution' needs the config section 'sr'")
        self.config = config
        self.sr = config.sr
        self.band_info = band_info or band_info_of(self.build_dataset(), config)
        self.schedule = build_schedule(config)
        bands = self.num_bands
        if self.sr.method == "implicit":
            render = self.sr.render_channels
            denoiser = build_unet(config, bands, bands, cond_channels=render + bands)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 1)
                self.net = ImplicitSRNet(bands, denoiser, render_channels=render)
        else:
            cond = bands if self.sr.method == "sr3" else 0
            self.net = build_unet(config, bands, bands, cond_channels=cond)

    # ------------------------------------------------------------------ pairs
    def degrade(
        self,
        hr: torch.Tensor,
        generator: torch.Generator | None = None,
        scale: float | None = None,
    ) -> torch.Tensor:
        """The LR image of ``hr`` under the configured degradation (on the CPU, seeded)."""
        factor = scale or self.sr.scale
        lr = make_lr(hr.detach().float().cpu(), factor, self.sr.degradation, generator)
        return lr.to(hr.device)

    def train_scale(self, generator: torch.Generator) -> float:
        """A scale drawn uniformly in ``sr.train_scales`` (implicit models), else ``sr.scale``."""
        if self.sr.method != "implicit":
            return self.sr.scale
        low, high = self.sr.train_scales
        return low + (high - low) * float(torch.rand((), generator=generator))

    def check_input(self, lr: torch.Tensor) -> None:
        """Refuse an LR batch with other bands than the net's."""
        if lr.ndim != 4 or lr.shape[1] != self.num_bands:
            raise DataError(
                f"the model super-resolves {self.num_bands}-band images "
                f"{self.band_info.get('names')}; got a tensor of shape {tuple(lr.shape)}. Give "
                "[B, C, H, W] with the checkpoint's bands, in its order"
            )

    # ------------------------------------------------------------------ training
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """SR3: denoising loss conditioned on the upsampled LR; regression: L1 on the HR image."""
        hr = batch["image"]
        mask = batch.get("mask")
        lr = self.degrade(hr, generator, self.train_scale(generator))
        if self.sr.method == "implicit":  # the net renders its condition from the LR image
            return diffusion_loss(
                net, self.schedule, self.config, hr, generator, mask=mask, cond=lr
            )
        bicubic = upsample_to(lr, hr.shape[-2:])
        if self.sr.method == "regression":
            prediction = self._regress(net, bicubic)
            return objectives.diffusion_loss(prediction, hr, loss_type="l1", mask=mask)
        return diffusion_loss(
            net, self.schedule, self.config, hr, generator, mask=mask, cond=bicubic
        )

    @staticmethod
    def _regress(net: nn.Module, bicubic: torch.Tensor) -> torch.Tensor:
        zero_t = torch.zeros(bicubic.shape[0], device=bicubic.device)
        return bicubic + net(bicubic, zero_t).float()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def super_resolve(
        self,
        net: nn.Module,
        lr: torch.Tensor,
        *,
        out_size: tuple[int, int] | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> SamplerOutput:
        """HR images ``[B, C, round(H * scale), round(W * scale)]`` in [-1, 1] from LR ``lr``.

        Args:
            net: the (EMA) network.
            lr: LR images in [-1, 1] with the checkpoint's bands.
            out_size: output size (default: the LR size times ``sr.scale``); sizes must be
                multiples of the UNet's down-sampling factor.
            sampler, steps: for SR3 (default: ``config.sample``); ignored by ``regression``.
            generator: seeds ``x_T`` (SR3).
        """
        self.check_input(lr)
        if out_size is None:
            out_size = (round(lr.shape[-2] * self.sr.scale), round(lr.shape[-1] * self.sr.scale))
        device = next(net.parameters()).device
        if self.sr.method == "implicit":
            return self._implicit_sample(
                net,
                lr.float().to(device),
                tuple(out_size),
                sampler,
                steps,
                generator,
                progress,
                return_trajectory,
            )
        bicubic = upsample_to(lr.float().cpu(), out_size).to(device)
        if self.sr.method == "regression":
            was_training = net.training
            net.eval()
            try:
                return SamplerOutput(sample=self._regress(net, bicubic).clamp(-1, 1))
            finally:
                net.train(was_training)
        return run_sampler(
            net,
            self.schedule,
            self.config,
            tuple(bicubic.shape),
            cond=bicubic,
            sampler=sampler,
            steps=steps,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )

    def _implicit_sample(
        self,
        net: nn.Module,
        lr: torch.Tensor,
        out_size: tuple[int, int],
        sampler: str | None,
        steps: int | None,
        generator: torch.Generator | None,
        progress: bool,
        return_trajectory: bool,
    ) -> SamplerOutput:
        """Render the condition once at ``out_size``, pad to the UNet's multiple, sample, crop."""
        was_training = net.training
        net.eval()
        try:
            cond = net.condition(lr, out_size)
        finally:
            net.train(was_training)
        multiple = net.downsample_factor
        pad_h, pad_w = (-out_size[0]) % multiple, (-out_size[1]) % multiple
        if pad_h or pad_w:
            cond = torch.nn.functional.pad(cond, (0, pad_w, 0, pad_h), mode="replicate")
        out = run_sampler(
            _Denoiser(net),
            self.schedule,
            self.config,
            (lr.shape[0], self.num_bands, *cond.shape[-2:]),
            cond=cond,
            sampler=sampler,
            steps=steps,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
        height, width = out_size
        return SamplerOutput(
            sample=out.sample[..., :height, :width],
            trajectory=[(label, x[..., :height, :width]) for label, x in out.trajectory],
        )

    def _preview_hr(self, num_images: int) -> torch.Tensor:
        """``num_images`` unaugmented HR images spread over the dataset (read once, then kept)."""
        cached = getattr(self, "_preview", None)
        if cached is None or len(cached) < num_images:
            dataset = build_dataset(self.config, train=False)
            count = min(num_images, len(dataset))
            step = max(1, len(dataset) // count)
            cached = torch.stack([dataset[i * step]["image"] for i in range(count)])
            self._preview = cached
        return cached[:num_images]

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
    ) -> SamplerOutput:
        """Super-resolve the (bicubic-degraded) first ``num_images`` images of the dataset."""
        hr = self._preview_hr(num_images)
        lr = make_lr(hr, self.sr.scale, "bicubic")
        return self.super_resolve(
            net,
            lr,
            out_size=tuple(hr.shape[-2:]),
            sampler=sampler,
            steps=steps,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of (bicubic, super-resolved, HR) for the Trainer's sample grid."""
        hr = self._preview_hr(min(num_images, 8))
        lr = make_lr(hr, self.sr.scale, "bicubic")
        sr = self.super_resolve(net, lr, out_size=tuple(hr.shape[-2:]), generator=generator)
        bicubic = upsample_to(lr, hr.shape[-2:])
        return torch.stack([bicubic, sr.sample.cpu(), hr], dim=1).flatten(0, 1)


class _Denoiser(nn.Module):
    """``model_fn`` view of an :class:`ImplicitSRNet`: its UNet on precomputed conditions."""

    def __init__(self, net: ImplicitSRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x_t, t, cond)
