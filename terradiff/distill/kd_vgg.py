"""PCA-based knowledge distillation of a VGG extractor into KD-VGG (IIDM paper, appendix 2).

The procedure (Chiu & Gurari, CVPR 2022, as the IIDM paper applies it to its VGG-19 extractor):

1. **Analysis.** Run the teacher over a dataset; for every convolution (its ReLU output) measure the
   mean cumulative explained variance (:class:`~terradiff.distill.pca.McevAccumulator`, Eq. 14-15)
   and keep the smallest channel count reaching the threshold (0.85): the student's widths (the
   paper's Table A2: channels, mCEV channels, selected).
2. **Eigenbases.** For each stage output ``F_n`` (the features the downstream model consumes) learn
   the global eigenbasis ``W_n`` (``k_n x C_n``, ``W W^T = I``) and mean by mini-batch gradient
   descent (Eq. 9-10; :func:`~terradiff.distill.pca.learn_eigenbasis`).
3. **Blockwise student training** (Eq. 11). Stage ``n`` of the student takes the *teacher's*
   projected previous features ``pool(W_{n-1} (F_{n-1} - mu_{n-1}))`` (the image for ``n = 0``)
   and is trained to output ``W_n (F_n - mu_n)``; so every block learns on its own, from exact
   inputs, and all blocks train at once (their losses share no parameters).
4. **Chain fine-tuning.** A short end-to-end pass on the student chain (each stage fed by the
   student's own previous output, the same targets) removes the error that compounds when the
   blocks are stacked.

The result is a :class:`~terradiff.nets.vgg.KDVGGFeatures`: the student plus the fixed bases that
map its outputs back to the teacher's feature space, so it replaces the teacher in a trained IIDM
as is (:func:`swap_extractor`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.distill.pca import (
    MIN_IMAGES,
    Eigenbasis,
    EigenbasisLearner,
    McevAccumulator,
    channels_for_mcev,
    check_threshold,
)
from terradiff.nets.vgg import KDVGGFeatures, VGGFeatures
from terradiff.progress import progress_bar

__all__ = ["KDVGGReport", "LayerRow", "analyse_vgg", "cycle_passes", "distill_vgg"]

BatchSource = Callable[[], Iterable[Tensor]]
"""A function that returns a fresh pass over image batches ``[B, C, H, W]`` (one epoch)."""


@dataclass
class LayerRow:
    """One row of the paper's Table A2 for a convolution of the teacher."""

    layer: str
    channels: int
    mcev_channels: int
    selected: int
    mcev_at_selected: float


@dataclass
class KDVGGReport:
    """What :func:`distill_vgg` measured and did (saved beside the weights)."""

    threshold: float
    images: int
    layers: list[LayerRow]
    student_channels: list[list[int]]
    teacher_parameters: int
    student_parameters: int
    basis_kept_variance: list[float]
    block_losses: list[list[float]] = field(default_factory=list)
    chain_losses: list[float] = field(default_factory=list)
    relative_feature_error: list[float] = field(default_factory=list)
    basis_floor_error: list[float] = field(default_factory=list)

    @property
    def kd_ratio(self) -> float:
        """Teacher parameters / student parameters (the paper's Table A3 "KD ratio")."""
        return self.teacher_parameters / max(1, self.student_parameters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["kd_ratio"] = self.kd_ratio
        return out


def _relu_outputs(teacher: VGGFeatures) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the teacher's per-convolution activations, in order."""
    out = []
    for n, stage in enumerate(teacher.stages):
        conv = 0
        for layer in stage:
            if isinstance(layer, nn.Conv2d):
                conv += 1
            if isinstance(layer, nn.ReLU):
                out.append((f"stage{n + 1}.conv{conv}", layer))
    return out


@torch.no_grad()
def analyse_vgg(
    teacher: VGGFeatures,
    batches: Iterable[Tensor],
    threshold: float = 0.85,
    *,
    min_images: int = MIN_IMAGES,
) -> list[LayerRow]:
    """mCEV of every convolution of ``teacher`` over ``batches`` (step 1; Table A2 rows)."""
    threshold = check_threshold(threshold)
    layers = _relu_outputs(teacher)
    accumulators = [McevAccumulator() for _ in layers]
    handles = [
        module.register_forward_hook(lambda _m, _i, out, acc=acc: acc.update(out))
        for (_, module), acc in zip(layers, accumulators, strict=True)
    ]
    was_training = teacher.training
    teacher.eval()
    try:
        for images in batches:
            teacher(images)
    finally:
        for handle in handles:
            handle.remove()
        teacher.train(was_training)
    rows = []
    for (name, _), acc in zip(layers, accumulators, strict=True):
        mcev = acc.mcev(min_images)
        k = channels_for_mcev(mcev, threshold)
        rows.append(LayerRow(name, int(mcev.numel()), k, k, float(mcev[k - 1])))
    return rows


def _student_widths(teacher: VGGFeatures, rows: list[LayerRow]) -> list[list[int]]:
    widths, it = [], iter(rows)
    for stage in teacher.stage_channels:
        widths.append([next(it).selected for _ in stage])
    return widths


def cycle_passes(source: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """Endless batches from a function that returns one pass (one epoch) per call."""
    while True:
        yield from source()


def distill_vgg(
    teacher: VGGFeatures,
    batches: BatchSource,
    *,
    threshold: float = 0.85,
    basis_epochs: int = 3,
    block_steps: int = 300,
    chain_steps: int = 100,
    lr: float = 1e-3,
    basis_lr: float = 1e-2,
    min_images: int = MIN_IMAGES,
    progress: bool = True,
) -> tuple[KDVGGFeatures, KDVGGReport]:
    """Distil ``teacher`` into a :class:`KDVGGFeatures` (steps 1-4 of the module docstring).

    Args:
        teacher: The trained extractor (its weights are not changed; they stop requiring grad).
        batches: Returns one pass over image batches each call (e.g. a DataLoader's images).
        threshold: mCEV threshold in (0, 1].
        basis_epochs: Passes over ``batches`` to learn the eigenbases.
        block_steps: Steps of blockwise training (step 3).
        chain_steps: Steps of chain fine-tuning (step 4; 0 skips it).
        lr: Adam learning rate of the student.
        basis_lr: Adam learning rate of the eigenbases.
        min_images: Fewest images the analysis accepts.
        progress: Show progress bars.

    Returns:
        ``(kd_vgg, report)``.
    """
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    rows = analyse_vgg(teacher, batches(), threshold, min_images=min_images)
    num_images = sum(int(b.shape[0]) for b in batches())
    widths = _student_widths(teacher, rows)
    kd = KDVGGFeatures(
        teacher.in_channels,
        teacher.layout,
        widths,
        teacher.feature_channels,
        batch_norm=teacher.batch_norm,
    )
    bases = [
        Eigenbasis(c, k) for c, k in zip(teacher.feature_channels, kd.student_channels, strict=True)
    ]
    learners = [EigenbasisLearner(basis, basis_lr) for basis in bases]
    epochs = itertools.chain.from_iterable(batches() for _ in range(basis_epochs))
    for images in progress_bar(epochs, desc="eigenbases", disable=not progress, leave=False):
        with torch.no_grad():
            features = teacher(images)
        for learner, f in zip(learners, features, strict=True):
            learner.step(f)
    kept = [learner.result().kept_variance for learner in learners]
    for n, basis in enumerate(bases):
        kd.set_basis(n, basis.frozen(), basis.mean)

    def targets(images: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return [basis.project(f) for basis, f in zip(bases, teacher(images), strict=True)]

    student = kd.student
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    block_losses: list[list[float]] = []
    data = cycle_passes(batches)
    bar = progress_bar(range(block_steps), desc="KD-VGG blocks", disable=not progress)
    for _ in bar:
        images = next(data)
        goal = targets(images)
        losses = [
            F.mse_loss(stage(images if n == 0 else student.pool(goal[n - 1])), goal[n])
            for n, stage in enumerate(student.stages)
        ]
        optimizer.zero_grad(set_to_none=True)
        sum(losses).backward()
        optimizer.step()
        block_losses.append([float(v.detach()) for v in losses])
        bar.set_postfix(loss=f"{sum(block_losses[-1]):.4f}")
    chain_losses: list[float] = []
    if chain_steps:
        optimizer = torch.optim.Adam(student.parameters(), lr=lr * 0.3)
        bar = progress_bar(range(chain_steps), desc="KD-VGG chain", disable=not progress)
        for _ in bar:
            images = next(data)
            goal = targets(images)
            loss = sum(
                F.mse_loss(s, g) / g.var().clamp_min(1e-8)
                for s, g in zip(student(images), goal, strict=True)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            chain_losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{chain_losses[-1]:.4f}")
    errors, floor = feature_error(teacher, kd, batches())
    report = KDVGGReport(
        threshold=threshold,
        images=num_images,
        layers=rows,
        student_channels=widths,
        teacher_parameters=teacher.num_parameters(),
        student_parameters=kd.num_parameters(),
        basis_kept_variance=kept,
        block_losses=block_losses,
        chain_losses=chain_losses,
        relative_feature_error=errors,
        basis_floor_error=floor,
    )
    return kd.eval(), report


@torch.no_grad()
def feature_error(
    teacher: VGGFeatures, kd: KDVGGFeatures, batches: Iterable[Tensor]
) -> tuple[list[float], list[float]]:
    """Per stage, relative RMS errors of the teacher-space features ``F_n``:

    * of KD-VGG's back-projected output ``mu + W^T S`` (what the downstream model sees), and
    * of the best any ``k_n``-channel student could do with these bases, ``mu + W^T W (F - mu)``
      (the floor set by the kept variance).
    """
    stages = len(teacher.stages)
    num, floor, den = [0.0] * stages, [0.0] * stages, [0.0] * stages
    for images in batches:
        for n, (a, f) in enumerate(zip(kd(images), teacher(images), strict=True)):
            w, mu = kd.basis(n)
            centred = f - mu.view(1, -1, 1, 1)
            best = torch.einsum("kc,bkhw->bchw", w, torch.einsum("kc,bchw->bkhw", w, centred))
            num[n] += float((a - f).pow(2).sum())
            floor[n] += float((best - centred).pow(2).sum())
            den[n] += float(f.pow(2).sum())
    ratio = [math.sqrt(a / d) if d > 0 else float("nan") for a, d in zip(num, den, strict=True)]
    best = [math.sqrt(b / d) if d > 0 else float("nan") for b, d in zip(floor, den, strict=True)]
    return ratio, best
