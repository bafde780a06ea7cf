"""SlimDiffSR's light one-pass student, distilled from a one-pass teacher.

A :class:`terradiff.nets.light.LightSRNet` (frequency- and direction-separable convolutions,
query-driven global aggregation, no time embedding) predicts the HR residual on the bicubic image.
It is trained with L1 to HR and, when distilled, + MSE to the teacher's output and to its decoder
features through 1x1 adapters, + lambda MMD of the features (``mse_mmd``; SlimDiffSR Eq. 16-19).
With ``sr.distill: none`` it needs no teacher: on AID x4 the student trained alone matched or beat
the distilled one with either teacher tried (``reports/distill_teacher``). Perceptual terms
(LPIPS, the offline AID feature distance: :mod:`terradiff.tasks.super_resolution.perceptual`)
may join the L1 (``reports/perceptual_loss``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.diffusion import objectives
from terradiff.distill.mmd import feature_mmd
from terradiff.errors import CheckpointError, WrongCheckpointError
from terradiff.nets.light import LightSRNet
from terradiff.tasks.base import fixed_seed_net, unwrap
from terradiff.tasks.registry import registered_methods
from terradiff.tasks.super_resolution.method import OnePassSRMethod, SRBatch
from terradiff.tasks.super_resolution.perceptual import PerceptualLossConfig


class StudentSRConfig(PerceptualLossConfig):
    """``sr.method: student``: the light network and how it is distilled."""

    uses_model_unet: ClassVar[bool] = False  # the student is a LightSRNet of its own

    method: Literal["student"] = "student"
    teacher: str | None = Field(
        None,
        description="The teacher run/checkpoint (a one-pass method that can teach); not needed "
        "with sr.distill: none.",
    )
    distill: Literal["none", "mse", "mse_mmd"] = Field(
        "mse_mmd",
        description="No distillation (L1 to HR only), + MSE to the teacher's output and "
        "1x1-adapted features, or + lambda MMD on the features too (SlimDiffSR Eq. 16-19).",
    )
    mmd_weight: float = Field(0.1, ge=0.0, description="lambda of the MMD term.")
    student_channels: int = Field(16, ge=1, description="Width of its first level.")
    student_mults: list[int] = Field(
        default_factory=lambda: [1, 2], description="Width multipliers of its levels."
    )
    student_blocks: int = Field(1, ge=1, description="Light blocks per level.")
    fs_conv: bool = Field(True, description="Frequency-separable convolutions.")
    ds_conv: bool = Field(True, description="Direction-separable convolutions.")
    global_aggregation: bool = Field(
        True, description="Query-driven global aggregation at the bottom."
    )
    adapter_channels: list[int] | None = Field(
        None,
        description="Teacher feature width matched by each student feature (0: none); filled "
        "from the teacher when training starts and stored in the checkpoint; leave it unset.",
    )

    @model_validator(mode="after")
    def _has_teacher(self) -> StudentSRConfig:
        if self.distill != "none" and not self.teacher:
            raise ValueError(
                f"sr.method 'student' with sr.distill {self.distill!r} needs sr.teacher: the run "
                "or checkpoint to distil from (or sr.distill: none to train it without one)"
            )
        return self


class StudentSR(OnePassSRMethod):
    """The light student (SlimDiffSR)."""

    name: ClassVar[str] = "student"
    config_class = StudentSRConfig
    needs_teacher: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "SlimDiffSR's light one-pass student, distilled from sr.teacher or trained alone"
    )

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self.teacher: Any = None

    def build_net(self) -> nn.Module:
        cfg, task = self.config, self.task
        if cfg.distill != "none" and cfg.adapter_channels is None:
            # training: read the teacher (a checkpoint of the student has the widths stored)
            self.teacher = self._load_teacher()
            cfg.adapter_channels = self._adapter_widths()
        return fixed_seed_net(
            task.config.seed + 1,
            lambda: LightSRNet(
                task.num_bands,
                base_channels=cfg.student_channels,
                channel_mults=cfg.student_mults,
                blocks=cfg.student_blocks,
                num_groups=task.config.model.num_groups,
                fs_conv=cfg.fs_conv,
                ds_conv=cfg.ds_conv,
                global_aggregation=cfg.global_aggregation,
                adapter_channels=cfg.adapter_channels if cfg.distill != "none" else None,
            ),
        )

    def _load_teacher(self) -> Any:
        """The frozen teacher (``sr.teacher``), checked to be a one-pass model that can teach."""
        from terradiff.tasks import load_task

        teachers = sorted(m.name for m in registered_methods("sr") if m.can_teach)
        teacher, ckpt = load_task(self.config.teacher, use_ema=True)
        method = getattr(teacher, "method", None)
        if teacher.config.task != self.task.config.task or not getattr(method, "can_teach", 0):
            kind = method.describe() if method is not None else teacher.config.task
            raise WrongCheckpointError(
                f"sr.teacher {ckpt.path}",
                f"{kind} model",
                f"a student distils a one-pass super-resolution teacher (sr.method one of "
                f"{teachers})",
            )
        scale, bands = self.config.scale, self.task.num_bands
        if teacher.sr.scale != scale or teacher.num_bands != bands:
            raise CheckpointError(
                f"sr.teacher {ckpt.path} is a x{teacher.sr.scale:g} model of "
                f"{teacher.num_bands} bands; this student is x{scale:g} on {bands} bands"
            )
        for p in teacher.net.parameters():
            p.requires_grad_(False)
        teacher.net.eval()
        return teacher

    def _adapter_widths(self) -> list[int]:
        """The teacher's decoder width for each student feature of the same resolution (or 0).

        Student features are (bottom, levels coarse to fine) at ``H / 2**len(mults)``, ...,
        ``H``; teacher features coarse to fine at ``H / 2**(L-1)``, ..., ``H``.
        """
        widths = self.teacher.method.teacher_feature_channels(self.teacher.net)
        levels = len(self.config.student_mults)
        student_factors = [2**levels] + [2**i for i in reversed(range(levels))]
        teacher_factors = {2 ** (len(widths) - 1 - k): c for k, c in enumerate(widths)}
        return [int(teacher_factors.get(f, 0)) for f in student_factors]

    def _teacher_outputs(
        self, bicubic: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's HR estimate and decoder features (no gradients)."""
        net = self.teacher.net
        if next(net.parameters()).device != bicubic.device:
            net.to(bicubic.device)
        with torch.no_grad():
            return self.teacher.method.teach(net, bicubic, generator)

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """L1 to HR (+ perceptual terms); with distillation + MSE to the teacher's output and
        adapted features, and + lambda MMD of the features (``mse_mmd``; SlimDiffSR Eq. 16-19)."""
        cfg, bicubic = self.config, batch.bicubic
        student = unwrap(net)
        residual, features = student.forward_features(bicubic)
        prediction = bicubic + residual.float()
        loss = objectives.diffusion_loss(prediction, batch.hr, loss_type="l1", mask=batch.mask)
        loss = loss + self.perceptual(prediction, batch.hr, batch.mask)
        if cfg.distill == "none":
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
            if cfg.distill == "mse_mmd":
                loss = loss + cfg.mmd_weight * feature_mmd(adapted, goal, generator=generator)
        return loss

    def forward(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return bicubic + net(bicubic).float()
