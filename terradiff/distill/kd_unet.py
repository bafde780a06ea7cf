"""PCA-based knowledge distillation of an IIDM's denoising UNet into KD-UNet (IIDM paper, app. 2).

The same procedure as KD-VGG (:mod:`terradiff.distill.kd_vgg`), adapted to a UNet:

1. **Analysis.** On the teacher's own training inputs (``y_t`` at random timesteps, the image's
   condition), the mCEV (Eq. 14-15) of every level's encoder output and decoder output. A UNet's
   skip connections pair encoder level ``l`` with decoder level ``l``, so a level keeps the
   larger of the two counts, and the widths keep the teacher's ratios (``base * mult_l``; the
   paper's Table A2 "Selected": counts that double per level) --
   :func:`~terradiff.distill.pca.unet_selected_channels`. The student is the same UNet with that
   ``model.base_channels``: a config change.
2. **Eigenbases** ``W`` (``base * mult_l`` x ``C_l``) for every encoder and decoder level output
   (Eq. 9-10).
3. **Encoder blocks** (Eq. 11): the student's input convolution, time embedding and encoder
   levels learn to output ``W_enc,l (F_enc,l - mu)`` at every level, the rest frozen.
4. **Decoder blocks** with three terms (our reading of Eq. 12-13): the decoder levels' outputs
   against ``W_dec,l (F_dec,l - mu)`` (features), the student's prediction against the teacher's
   (output distillation) and against the true noise under the forest mask (the task's own
   loss, Eq. 4); the encoder is frozen, the middle block, the decoder levels, the output layer
   and the implicit decoder train.

The VGG extractor and its projection are the teacher's (copied, frozen): KD-VGG and KD-UNet are
separate switches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.distill.kd_vgg import cycle_passes
from terradiff.distill.pca import (
    MIN_IMAGES,
    Eigenbasis,
    EigenbasisLearner,
    McevAccumulator,
    channels_for_mcev,
    check_threshold,
    unet_selected_channels,
)
from terradiff.errors import DataError
from terradiff.nets.iidm import IIDMNet
from terradiff.nets.unet import UNet
from terradiff.progress import progress_bar

__all__ = [
    "DenoiserInputs",
    "KDUNetReport",
    "UNetLevelRow",
    "distill_iidm_unet",
    "unet_level_modules",
]


@dataclass
class UNetLevelRow:
    """One row of the paper's Table A2 for a UNet level."""

    level: int
    channels: int
    mcev_encoder: int
    mcev_decoder: int
    selected: int


@dataclass
class KDUNetReport:
    """What :func:`distill_iidm_unet` measured and did."""

    threshold: float
    images: int
    levels: list[UNetLevelRow]
    base_channels: int
    teacher_parameters: int
    student_parameters: int
    encoder_losses: list[float] = field(default_factory=list)
    decoder_losses: list[float] = field(default_factory=list)
    feature_errors: dict[str, list[float]] = field(default_factory=dict)
    """Per level (encoder levels, then decoder levels), the student's feature error relative to
    the teacher's feature variance, ``E|mu + W^T S - F|^2 / E|F - mu|^2``, on the first batch:
    ``floor`` (the eigenbasis' own error with ``S = W (F - mu)``: no student can do better),
    ``initial`` (before distillation) and ``final`` (after it)."""

    @property
    def kd_ratio(self) -> float:
        """Teacher UNet parameters / student UNet parameters."""
        return self.teacher_parameters / max(1, self.student_parameters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "kd_ratio": self.kd_ratio}


def unet_level_modules(unet: UNet) -> tuple[list[nn.Module], list[nn.Module]]:
    """The modules whose outputs are each level's encoder and decoder output, level 0 first."""
    encoder = [level.attn[-1] for level in unet.down]
    decoder = [level.attn[-1] for level in reversed(unet.up)]
    return encoder, decoder


class _Tap:
    """Records the outputs of ``modules`` during a forward pass (forward hooks)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.outputs: list[Tensor | None] = [None] * len(modules)
        self._handles = [
            m.register_forward_hook(lambda _m, _i, out, k=k: self._store(k, out))
            for k, m in enumerate(modules)
        ]

    def _store(self, k: int, out: Tensor) -> None:
        self.outputs[k] = out

    def take(self) -> list[Tensor]:
        """The recorded outputs (all must have been seen)."""
        if any(o is None for o in self.outputs):
            raise RuntimeError("a tapped level produced no output")
        out = [o for o in self.outputs if o is not None]
        self.outputs = [None] * len(out)
        return out

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()


@dataclass
class DenoiserInputs:
    """One batch as the denoiser sees it in training."""

    y_t: Tensor
    t: Tensor
    truth: Tensor
    """What the net should predict (the noise for an eps model)."""
    cond: Tensor
    context: Tensor | None
    mask: Tensor


InputSource = Callable[[], Iterable[DenoiserInputs]]
"""Returns a fresh pass over :class:`DenoiserInputs` (one epoch)."""


def _relative_errors(
    bases: Sequence[Eigenbasis], teacher: Sequence[Tensor], student: Sequence[Tensor]
) -> tuple[list[float], list[float]]:
    """``(floor, student)`` per level: the relative feature error of the eigenbasis itself and
    of the student's features read back through it (see :attr:`KDUNetReport.feature_errors`)."""
    floors, errors = [], []
    with torch.no_grad():
        for basis, f, s in zip(bases, teacher, student, strict=True):
            f = f.float()
            variance = (f - basis.mean.view(1, -1, 1, 1)).pow(2).mean().clamp_min(1e-12)
            floors.append(float(basis.reconstruction_error(f) / variance))
            errors.append(float((basis.reconstruct(s.float()) - f).pow(2).mean() / variance))
    return floors, errors


def _normalised_mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a.float(), b.float()) / b.float().var().clamp_min(1e-6)


def distill_iidm_unet(
    teacher: IIDMNet,
    inputs: InputSource,
    build_student: Callable[[int], IIDMNet],
    *,
    channel_mults: Sequence[int],
    num_groups: int,
    threshold: float = 0.85,
    basis_epochs: int = 2,
    encoder_steps: int = 200,
    decoder_steps: int = 200,
    lr: float = 1e-3,
    min_images: int = MIN_IMAGES,
    progress: bool = True,
) -> tuple[IIDMNet, KDUNetReport]:
    """Distil ``teacher``'s UNet (steps 1-4 of the module docstring).

    Args:
        teacher: The trained IIDM (its weights are not changed; they stop requiring grad).
        inputs: Training inputs of the denoiser (``y_t``, ``t``, the true target, the condition,
            the loss mask), e.g. from the carbon task's training crops.
        build_student: Builds the student IIDM for a UNet base width (the task's own builder,
            so the result is exactly what the compressed config describes).
        channel_mults, num_groups: The teacher UNet's (the student keeps them).
        threshold: mCEV threshold in (0, 1].
        basis_epochs: Passes over ``inputs`` to learn the eigenbases.
        encoder_steps, decoder_steps: Steps of the two training phases.
        lr: Adam's learning rate.

    Returns:
        ``(student, report)``; the student's extractor and projection are the teacher's.

    Raises:
        DataError: the threshold keeps the teacher's widths (nothing to compress).
    """
    threshold = check_threshold(threshold)
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    t_unet = teacher.denoiser
    t_enc, t_dec = unet_level_modules(t_unet)
    levels = len(t_enc)

    # 1. analysis
    tap = _Tap([*t_enc, *t_dec])
    accumulators = [McevAccumulator() for _ in range(2 * levels)]
    images = 0
    try:
        with torch.no_grad():
            for batch in inputs():
                teacher.denoise(batch.y_t, batch.t, batch.cond, batch.context)
                for acc, out in zip(accumulators, tap.take(), strict=True):
                    acc.update(out)
                images += int(batch.y_t.shape[0])
    finally:
        tap.close()
    counts = [channels_for_mcev(acc.mcev(min_images), threshold) for acc in accumulators]
    enc_counts, dec_counts = counts[:levels], counts[levels:]
    teacher_widths = [t_unet.config["base_channels"] * m for m in channel_mults]
    base = unet_selected_channels(
        [max(e, d) for e, d in zip(enc_counts, dec_counts, strict=True)],
        channel_mults,
        num_groups,
    )
    if base >= t_unet.config["base_channels"]:
        raise DataError(
            f"at mCEV >= {threshold:.0%} the UNet keeps {base} base channels, not fewer than the "
            f"teacher's {t_unet.config['base_channels']}: nothing to compress. Lower the threshold"
        )
    widths = [base * int(m) for m in channel_mults]
    rows = [
        UNetLevelRow(level, c, e, d, w)
        for level, (c, e, d, w) in enumerate(
            zip(teacher_widths, enc_counts, dec_counts, widths, strict=True)
        )
    ]

    student = build_student(base)
    if student.extractor is not None and teacher.extractor is not None:
        student.extractor.load_state_dict(teacher.extractor.state_dict())
    if student.project is not None and teacher.project is not None:
        student.project.load_state_dict(teacher.project.state_dict())
    for module in (student.extractor, student.project):
        if module is not None:
            for p in module.parameters():
                p.requires_grad_(False)

    # 2. eigenbases for every encoder and decoder level output
    bases = [Eigenbasis(c, w) for c, w in zip(teacher_widths * 2, widths * 2, strict=True)]
    learners = [EigenbasisLearner(b) for b in bases]
    tap = _Tap([*t_enc, *t_dec])
    try:
        passes = itertools.chain.from_iterable(inputs() for _ in range(basis_epochs))
        for batch in progress_bar(
            passes, desc="UNet eigenbases", disable=not progress, leave=False
        ):
            with torch.no_grad():
                teacher.denoise(batch.y_t, batch.t, batch.cond, batch.context)
            for learner, out in zip(learners, tap.take(), strict=True):
                learner.step(out)
    finally:
        tap.close()

    s_unet = student.denoiser
    s_enc, s_dec = unet_level_modules(s_unet)
    teacher_tap = _Tap([*t_enc, *t_dec])
    student_tap = _Tap([*s_enc, *s_dec])
    data = cycle_passes(inputs)

    def step_targets(batch: DenoiserInputs) -> tuple[Tensor, list[Tensor]]:
        with torch.no_grad():
            out = teacher.denoise(batch.y_t, batch.t, batch.cond, batch.context)
            feats = teacher_tap.take()
            return out, [b.project(f) for b, f in zip(bases, feats, strict=True)]

    encoder_params = [
        *s_unet.input_conv.parameters(),
        *s_unet.time_embed.parameters(),
        *s_unet.down.parameters(),
    ]
    encoder_ids = {id(p) for p in encoder_params}
    decoder_params = [
        p for p in student.parameters() if p.requires_grad and id(p) not in encoder_ids
    ]
    encoder_losses: list[float] = []
    decoder_losses: list[float] = []
    # the batch the feature errors are measured on, before and after (the first of a pass of
    # its own, so the training batches are those of a run without the measurement)
    check = next(iter(inputs()))

    def feature_errors() -> tuple[list[float], list[float]]:
        with torch.no_grad():
            teacher.denoise(check.y_t, check.t, check.cond, check.context)
            student.denoise(check.y_t, check.t, check.cond, check.context)
        return _relative_errors(bases, teacher_tap.take(), student_tap.take())

    try:
        floor, initial = feature_errors()
        # 3. encoder blocks against the projected teacher encoder features (Eq. 11)
        optimizer = torch.optim.Adam(encoder_params, lr=lr)
        bar = progress_bar(range(encoder_steps), desc="KD-UNet encoder", disable=not progress)
        for _ in bar:
            batch = next(data)
            _, goals = step_targets(batch)
            student.denoise(batch.y_t, batch.t, batch.cond, batch.context)
            feats = student_tap.take()
            loss = sum(
                _normalised_mse(s, g) for s, g in zip(feats[:levels], goals[:levels], strict=True)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            encoder_losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{encoder_losses[-1]:.4f}")
        # 4. decoder blocks: features + output distillation + the task's masked loss; the encoder
        # is frozen (no gradients computed for it)
        for p in encoder_params:
            p.requires_grad_(False)
        optimizer = torch.optim.Adam(decoder_params, lr=lr)
        bar = progress_bar(range(decoder_steps), desc="KD-UNet decoder", disable=not progress)
        for _ in bar:
            batch = next(data)
            target_out, goals = step_targets(batch)
            out = student.denoise(batch.y_t, batch.t, batch.cond, batch.context).float()
            feats = student_tap.take()
            features = sum(
                _normalised_mse(s, g) for s, g in zip(feats[levels:], goals[levels:], strict=True)
            )
            output = (out - target_out.float()).abs().mean()
            weights = batch.mask.expand_as(out)
            truth = ((out - batch.truth).pow(2) * weights).sum() / weights.sum().clamp_min(1.0)
            loss = features + output + truth
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decoder_losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{decoder_losses[-1]:.4f}")
        _, final = feature_errors()
    finally:
        teacher_tap.close()
        student_tap.close()
        for p in encoder_params:
            p.requires_grad_(True)
    report = KDUNetReport(
        threshold=threshold,
        images=images,
        levels=rows,
        base_channels=base,
        teacher_parameters=sum(p.numel() for p in t_unet.parameters()),
        student_parameters=sum(p.numel() for p in s_unet.parameters()),
        encoder_losses=encoder_losses,
        decoder_losses=decoder_losses,
        feature_errors={"floor": floor, "initial": initial, "final": final},
    )
    return student.eval(), report
