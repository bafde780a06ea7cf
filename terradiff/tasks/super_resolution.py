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
from terradiff.distill.mmd import feature_mmd
from terradiff.distill.uncertainty import (
    alpha_bar_target,
    jeffreys_uncertainty_loss,
    total_variation,
)
from terradiff.errors import CheckpointError, ConfigError, DataError
from terradiff.metrics.image_quality import LPIPS, load_lpips
from terradiff.nets.light import LightSRNet
from terradiff.nets.slim import SingleStepSRNet
from terradiff.nets.sr import ImplicitSRNet
from terradiff.nets.translation import PatchDiscriminator, simultaneous_gan_losses
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
        elif self.sr.method == "single_step":
            estimator = build_unet(config, bands, 2 * bands)
            denoiser = build_unet(config, bands, bands, cond_channels=bands + 1)
            critic = None
            if self.sr.adversarial_weight > 0:
                critic = PatchDiscriminator(2 * bands, config.model.base_channels)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 1)
                self.net = SingleStepSRNet(bands, estimator, denoiser, discriminator=critic)
            self._lpips: LPIPS | None = None
        elif self.sr.method == "student":
            self.teacher: SuperResolutionTask | None = None
            adapters = None
            if self.sr.distill != "none":
                adapters = self.band_info.get("teacher_features")
                if adapters is None:  # training: read the teacher (inference has it stored)
                    self.teacher = self._load_teacher()
                    adapters = self._adapter_widths(self.teacher)
                    self.band_info = {**self.band_info, "teacher_features": adapters}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 1)
                self.net = LightSRNet(
                    bands,
                    base_channels=self.sr.student_channels,
                    channel_mults=self.sr.student_mults,
                    blocks=self.sr.student_blocks,
                    num_groups=config.model.num_groups,
                    fs_conv=self.sr.fs_conv,
                    ds_conv=self.sr.ds_conv,
                    global_aggregation=self.sr.global_aggregation,
                    adapter_channels=adapters,
                )
        else:
            cond = bands if self.sr.method == "sr3" else 0
            self.net = build_unet(config, bands, bands, cond_channels=cond)

    # ------------------------------------------------------------------ distillation
    def _load_teacher(self) -> SuperResolutionTask:
        """The frozen teacher of a student (``sr.teacher``), checked to be of a usable kind."""
        from terradiff.tasks import load_task

        assert self.sr.teacher is not None
        teacher, ckpt = load_task(self.sr.teacher, use_ema=True)
        if not isinstance(teacher, SuperResolutionTask) or teacher.sr.method not in (
            "single_step",
            "regression",
        ):
            kind = teacher.config.task
            if isinstance(teacher, SuperResolutionTask):
                kind = f"super_resolution/{teacher.sr.method}"
            raise CheckpointError(
                f"sr.teacher {ckpt.path} is a {kind} model; a student distils a one-pass "
                "super-resolution teacher (sr.method 'single_step' or 'regression')"
            )
        if teacher.sr.scale != self.sr.scale or teacher.num_bands != self.num_bands:
            raise CheckpointError(
                f"sr.teacher {ckpt.path} is a x{teacher.sr.scale:g} model of "
                f"{teacher.num_bands} bands; this student is x{self.sr.scale:g} on "
                f"{self.num_bands} bands"
            )
        for p in teacher.net.parameters():
            p.requires_grad_(False)
        teacher.net.eval()
        return teacher

    def _adapter_widths(self, teacher: SuperResolutionTask) -> list[int]:
        """The teacher's decoder width for each student feature of the same resolution (or 0).

        Student features are (bottom, levels coarse to fine) at ``H / 2**len(mults)``, ...,
        ``H``; teacher features coarse to fine at ``H / 2**(L-1)``, ..., ``H``.
        """
        unet = teacher.net.denoiser if isinstance(teacher.net, SingleStepSRNet) else teacher.net
        levels = len(self.sr.student_mults)
        student_factors = [2**levels] + [2**i for i in reversed(range(levels))]
        teacher_factors = {
            2 ** (len(unet.feature_channels) - 1 - k): c
            for k, c in enumerate(unet.feature_channels)
        }
        return [int(teacher_factors.get(f, 0)) for f in student_factors]

    def _one_step(
        self,
        net: SingleStepSRNet,
        bicubic: torch.Tensor,
        generator: torch.Generator | None,
        hr: torch.Tensor | None = None,
        features: bool = False,
    ) -> dict[str, Any]:
        """The single-step teacher's pass (training when ``hr`` is given: Eq. 9-10 targets)."""
        mean, log_sigma = net.estimate(bicubic)
        alpha_pred = net.predict_alpha(mean.detach(), log_sigma.detach())
        alpha_target = None
        if hr is not None:
            alpha_target = alpha_bar_target(hr, log_sigma.detach(), window=self.sr.power_window)
        alpha = alpha_target if alpha_target is not None else alpha_pred.clamp(1e-3, 0.9999)
        noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device)
        x_t = alpha.sqrt() * mean.detach() + (1 - alpha).sqrt() * noise
        t = self.schedule.timestep_from_alpha_bar(alpha.mean(dim=(1, 2, 3)))
        x0, feats = net.denoise_features(x_t, t.to(x_t.device), bicubic, alpha)
        return {
            "x0": x0.float(),
            "features": feats if features else None,
            "mean": mean,
            "log_sigma": log_sigma,
            "alpha_pred": alpha_pred,
            "alpha_target": alpha_target,
            "t": t,
        }

    def _teacher_outputs(
        self, bicubic: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's HR estimate and decoder features (no gradients)."""
        assert self.teacher is not None
        net = self.teacher.net
        device = bicubic.device
        if next(net.parameters()).device != device:
            net.to(device)
        with torch.no_grad():
            if isinstance(net, SingleStepSRNet):
                out = self._one_step(net, bicubic, generator, features=True)
                return out["x0"], out["features"]
            zero_t = torch.zeros(bicubic.shape[0], device=device)
            residual, feats = net.forward_features(bicubic, zero_t)
            return bicubic + residual.float(), feats

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
        if self.sr.method == "single_step":
            return self._single_step_loss(net, bicubic, hr, mask, generator)
        if self.sr.method == "student":
            return self._student_loss(net, bicubic, hr, mask, generator)
        return diffusion_loss(
            net, self.schedule, self.config, hr, generator, mask=mask, cond=bicubic
        )

    def _single_step_loss(
        self,
        net: nn.Module,
        bicubic: torch.Tensor,
        hr: torch.Tensor,
        mask: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """L1 of the one-step HR estimate + uncertainty (Eq. 5) + alpha_bar head (L1, TV Eq. 21)."""
        out = self._one_step(_unwrap(net), bicubic, generator, hr=hr)
        sr = self.sr
        loss = objectives.diffusion_loss(out["x0"], hr, loss_type="l1", mask=mask)
        loss = loss + sr.uncertainty_weight * jeffreys_uncertainty_loss(
            out["mean"], out["log_sigma"], hr.float(), mask
        )
        alpha_l1 = (out["alpha_pred"] - out["alpha_target"]).abs().mean()
        loss = loss + sr.alpha_weight * alpha_l1 + sr.tv_weight * total_variation(out["alpha_pred"])
        if sr.lpips_weight > 0:
            lpips = self._lpips_module(out["x0"].device)
            rgb = list(self.config.data.rgb_bands or range(3))
            loss = loss + sr.lpips_weight * lpips(out["x0"][:, rgb], hr[:, rgb].float()).mean()
        if sr.adversarial_weight > 0:
            critic = _unwrap(net).discriminator
            assert critic is not None
            generator_adv, critic_loss = simultaneous_gan_losses(
                critic, bicubic.float(), out["x0"], hr.float()
            )
            loss = loss + sr.adversarial_weight * generator_adv + critic_loss
        return loss

    def _lpips_module(self, device: torch.device) -> LPIPS:
        """The frozen LPIPS network of ``sr.lpips_weights`` (read once, kept out of checkpoints)."""
        if self._lpips is None:
            try:
                self._lpips = load_lpips(self.sr.lpips_weights)
            except FileNotFoundError as error:
                raise ConfigError(f"sr.lpips_weights: {error}") from None
            if self.num_bands < 3 and not self.config.data.rgb_bands:
                raise ConfigError(
                    f"sr.lpips_weight needs 3 bands for LPIPS; these images have {self.num_bands}"
                )
        return self._lpips.to(device)

    def _student_loss(
        self,
        net: nn.Module,
        bicubic: torch.Tensor,
        hr: torch.Tensor,
        mask: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """L1 to HR; with distillation + MSE to the teacher's output and adapted features, and
        + lambda MMD of the features (``mse_mmd``; SlimDiffSR Eq. 16-19)."""
        student = _unwrap(net)
        residual, features = student.forward_features(bicubic)
        prediction = bicubic + residual.float()
        loss = objectives.diffusion_loss(prediction, hr, loss_type="l1", mask=mask)
        if self.sr.distill == "none":
            return loss
        if self.teacher is None:
            raise CheckpointError(
                "this student was rebuilt from a checkpoint without its teacher; training it "
                "further needs sr.teacher (distillation) or sr.distill: none"
            )
        target, teacher_features = self._teacher_outputs(bicubic, generator)
        loss = loss + torch.nn.functional.mse_loss(prediction, target)
        by_size = {tuple(f.shape[-2:]): f for f in teacher_features}
        assert student.adapters is not None
        for feature, adapter in zip(features, student.adapters, strict=True):
            goal = by_size.get(tuple(feature.shape[-2:]))
            if goal is None or isinstance(adapter, nn.Identity):
                continue
            adapted = adapter(feature).float()
            goal = goal.float()
            loss = loss + torch.nn.functional.mse_loss(adapted, goal) / goal.var().clamp_min(1e-6)
            if self.sr.distill == "mse_mmd":
                loss = loss + self.sr.mmd_weight * feature_mmd(adapted, goal, generator=generator)
        return loss

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
        if self.sr.method in ("single_step", "student"):
            was_training = net.training
            net.eval()
            try:
                if self.sr.method == "student":
                    hr = bicubic + net(bicubic).float()
                else:
                    hr = self._one_step(_unwrap(net), bicubic, generator)["x0"]
                return SamplerOutput(sample=hr.clamp(-1, 1))
            finally:
                net.train(was_training)
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


def _unwrap(net: nn.Module) -> Any:
    """The module under a distributed/compiled wrapper (its own methods are needed)."""
    while hasattr(net, "module") and isinstance(net.module, nn.Module):
        net = net.module
    return getattr(net, "_orig_mod", net)


class _Denoiser(nn.Module):
    """``model_fn`` view of an :class:`ImplicitSRNet`: its UNet on precomputed conditions."""

    def __init__(self, net: ImplicitSRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x_t, t, cond)
