"""VGG-style multi-scale feature extractor for any band count (the IIDM paper's condition encoder).

The layouts are configurations A (VGG-11), D (VGG-16) and E (VGG-19) of Simonyan & Zisserman
(ICLR 2015, Table 1): stages of 3x3 convolutions + ReLU separated by 2x2 max pooling, widths
64-128-256-512-512. :class:`VGGFeatures` returns the output of each stage (before its pooling), so
stage ``k`` has ``H / 2**k`` pixels -- the multi-scale features ``f`` of the image that IIDM
concatenates with ``y_t`` and attends to.

Differences from the classification network, on purpose: the input has any number of bands;
``width`` scales every stage (the paper's KD-VGG is a narrow student of the same layout); only the
first ``num_stages`` stages are built (64x64 crops have little left after four poolings);
optional BatchNorm after each convolution. Weights are trained with the model or loaded from a
user's *local* file by :func:`load_vgg_weights`; nothing is ever downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from terradiff.errors import CheckpointError
from terradiff.weights import read_weights

VGG_LAYOUTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
"""Convolution widths per stage (Simonyan & Zisserman 2015, Table 1, configurations A, D, E)."""


class VGGFeatures(nn.Module):
    """Stage outputs of a VGG layout (see the module docstring).

    Args:
        in_channels: Image bands.
        layout: ``"vgg11"``, ``"vgg16"`` or ``"vgg19"``.
        width: Multiplier of every stage's width (e.g. 0.25: 16-32-64-128-128).
        num_stages: Stages built (1-5); the features are the outputs of these.
        batch_norm: BatchNorm after each convolution (the ``_bn`` variants).
        channels: Explicit widths per stage (overrides ``layout`` widths and ``width``; e.g. the
            channel counts a PCA distillation selected), one tuple per stage.
        linear_heads: End every stage with a 1x1 convolution after its ReLU (no activation):
            a PCA-distilled student outputs signed principal coordinates there
            (:class:`KDVGGFeatures`), which a ReLU could not.
    """

    def __init__(
        self,
        in_channels: int,
        layout: str = "vgg16",
        *,
        width: float = 1.0,
        num_stages: int = 4,
        batch_norm: bool = False,
        channels: Sequence[Sequence[int]] | None = None,
        linear_heads: bool = False,
    ) -> None:
        super().__init__()
        if layout not in VGG_LAYOUTS:
            raise ValueError(f"unknown VGG layout {layout!r}; choose one of {list(VGG_LAYOUTS)}")
        if not 1 <= num_stages <= 5:
            raise ValueError(f"num_stages must be 1-5, got {num_stages}")
        if in_channels < 1 or width <= 0:
            raise ValueError(f"in_channels must be >= 1 and width > 0, got {in_channels}, {width}")
        if channels is None:
            stages = [
                tuple(max(1, round(c * width)) for c in stage)
                for stage in VGG_LAYOUTS[layout][:num_stages]
            ]
        else:
            stages = [tuple(int(c) for c in stage) for stage in channels]
            expected = [len(s) for s in VGG_LAYOUTS[layout][: len(stages)]]
            if [len(s) for s in stages] != expected:
                raise ValueError(
                    f"channels {stages} do not follow the {layout} layout "
                    f"(convolutions per stage {expected})"
                )
        self.layout = layout
        self.in_channels = in_channels
        self.batch_norm = batch_norm
        self.stage_channels = [list(s) for s in stages]
        self.stages = nn.ModuleList()
        c_in = in_channels
        for stage in stages:
            layers: list[nn.Module] = []
            for c_out in stage:
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            if linear_heads:
                layers.append(nn.Conv2d(c_in, c_in, 1))
            self.stages.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2)
        self.feature_channels = tuple(s[-1] for s in stages)
        """Channels of each returned feature map, fine to coarse."""

    @property
    def downsample_factor(self) -> int:
        """Input sizes must be multiples of this (``2 ** (num_stages - 1)``)."""
        return 2 ** (len(self.stages) - 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[f_0 (H), f_1 (H/2), ...]``: each stage's output before pooling, fine to coarse."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"VGGFeatures expects [B, {self.in_channels}, H, W] images, got {tuple(x.shape)}"
            )
        features = []
        h = x
        for k, stage in enumerate(self.stages):
            if k > 0:
                h = self.pool(h)
            h = stage(h)
            features.append(h)
        return features

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())


class KDVGGFeatures(nn.Module):
    """A PCA-distilled VGG extractor that stands in for its teacher (the IIDM paper's KD-VGG).

    The student (:class:`VGGFeatures` with the selected widths, each stage ending in a linear
    1x1 convolution) outputs,
    per stage ``n``, ``S_n ~ W_n (F_n - mu_n)``: the teacher's stage features in their first
    ``k_n`` principal directions (:mod:`terradiff.distill.pca`, Eq. 11). :meth:`forward` maps them
    back, ``mu_n + W_n^T S_n``, so the module has the teacher's :attr:`feature_channels` and
    whatever consumed the teacher's features (IIDM's projection and cross-attention) takes these
    unchanged: the swap is a config change (``carbon.vgg_channels``), no retraining needed. The
    back-projection is a fixed ``k_n x C_n`` matrix per stage (buffers ``basis_n`` and
    ``mean_n``), cheap next to the convolutions it replaces.

    Args:
        in_channels: Image bands.
        layout: The teacher's layout (convolutions per stage).
        channels: The student's widths per stage (the last of each = ``k_n``).
        teacher_channels: The teacher's stage output widths ``C_n``.
        batch_norm: BatchNorm in the student (as the teacher).
    """

    def __init__(
        self,
        in_channels: int,
        layout: str,
        channels: Sequence[Sequence[int]],
        teacher_channels: Sequence[int],
        *,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.student = VGGFeatures(
            in_channels,
            layout,
            num_stages=len(channels),
            batch_norm=batch_norm,
            channels=channels,
            linear_heads=True,
        )
        teacher_channels = tuple(int(c) for c in teacher_channels)
        if len(teacher_channels) != len(self.student.stages):
            raise ValueError(
                f"{len(teacher_channels)} teacher widths for {len(self.student.stages)} stages"
            )
        for n, (k, c) in enumerate(
            zip(self.student.feature_channels, teacher_channels, strict=True)
        ):
            if k > c:
                raise ValueError(f"stage {n}: the student keeps {k} > {c} teacher channels")
            self.register_buffer(f"basis_{n}", torch.zeros(k, c))
            self.register_buffer(f"mean_{n}", torch.zeros(c))
        self.layout = layout
        self.in_channels = in_channels
        self.feature_channels = teacher_channels
        """The teacher's stage widths (what :meth:`forward` returns)."""
        self.student_channels = tuple(self.student.feature_channels)

    @property
    def downsample_factor(self) -> int:
        """Input sizes must be multiples of this."""
        return self.student.downsample_factor

    def basis(self, stage: int) -> tuple[Tensor, Tensor]:
        """``(W_n [k, C], mu_n [C])`` of a stage."""
        return getattr(self, f"basis_{stage}"), getattr(self, f"mean_{stage}")

    def set_basis(self, stage: int, weight: Tensor, mean: Tensor) -> None:
        """Install a learned eigenbasis (rows orthonormal) and mean for ``stage``."""
        w, mu = self.basis(stage)
        w.copy_(weight.detach())
        mu.copy_(mean.detach())

    def forward_projected(self, x: Tensor) -> list[Tensor]:
        """The student's outputs ``S_n`` (``k_n`` channels each), fine to coarse."""
        return self.student(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[mu_n + W_n^T S_n]``: the teacher-space features, fine to coarse."""
        out = []
        for n, s in enumerate(self.forward_projected(x)):
            w, mu = self.basis(n)
            back = torch.einsum("kc,bkhw->bchw", w.to(s.dtype), s)
            out.append(back + mu.view(1, -1, 1, 1).to(s.dtype))
        return out

    def num_parameters(self) -> int:
        """Number of parameters (the fixed bases are buffers, not counted)."""
        return sum(p.numel() for p in self.parameters())


def _torchvision_keys(net: VGGFeatures) -> dict[str, str]:
    """Our parameter names -> torchvision's ``features.<i>.*`` names for the same layers."""
    mapping: dict[str, str] = {}
    index = 0
    for k, stage in enumerate(net.stages):
        if k > 0:
            index += 1  # torchvision's MaxPool2d between stages
        for j, layer in enumerate(stage):
            for name, _ in layer.named_parameters(recurse=False):
                mapping[f"stages.{k}.{j}.{name}"] = f"features.{index}.{name}"
            for name, _ in layer.named_buffers(recurse=False):
                mapping[f"stages.{k}.{j}.{name}"] = f"features.{index}.{name}"
            index += 1
    return mapping


def load_vgg_weights(net: VGGFeatures, path: str | Path) -> VGGFeatures:
    """Initialise ``net`` from a local weights file (never downloaded).

    Accepted: a ``.safetensors`` file, or a ``.pt``/``.pth`` state dict (read with
    ``torch.load(weights_only=True)``, so nothing is unpickled), with either terradiff's keys
    (``stages.<k>.<j>.weight``) or torchvision's VGG keys (``features.<i>.weight``; ``classifier.*``
    is ignored). When the file's first convolution has 3 input bands and ``net`` has ``C`` bands,
    its kernel is averaged over the 3 and repeated ``C`` times, scaled by ``3 / C`` (the usual
    adaptation of an RGB backbone to multispectral input).

    Raises:
        CheckpointError: missing file, or shapes that do not fit the layout (the message names the
            first mismatching layer).
    """
    path = Path(path)
    state = read_weights(
        path,
        what="VGG weights",
        hint="terradiff never downloads weights: pass a local file (e.g. torchvision's "
        "vgg16-397923af.pth copied here), or train the extractor with the model "
        "(model.vgg_weights: null)",
    )
    ours = net.state_dict()
    mapping = _torchvision_keys(net)
    torchvision_style = any(k.startswith("features.") for k in state)
    new_state = {}
    for key, target in ours.items():
        source_key = mapping.get(key, key) if torchvision_style else key
        if source_key not in state:
            raise CheckpointError(f"{path} has no tensor {source_key!r} (for layer {key})")
        value = state[source_key]
        if key == "stages.0.0.weight" and value.shape[1] != target.shape[1] and value.shape[1] == 3:
            value = value.mean(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1)
            value = value * (3.0 / target.shape[1])
        if value.shape != target.shape:
            raise CheckpointError(
                f"{path}: {source_key} has shape {tuple(value.shape)}, the {net.layout} extractor "
                f"needs {tuple(target.shape)} for {key}; check model.vgg_layout/vgg_width"
            )
        new_state[key] = value
    net.load_state_dict(new_state)
    return net


def save_kd_vgg(net: KDVGGFeatures, folder: str | Path, meta: Mapping[str, object]) -> Path:
    """Write ``folder/kd_vgg.safetensors`` (student + bases) and ``folder/kd_vgg.json`` (its
    widths and ``meta``), atomically; returns the weights path."""
    from safetensors.torch import save_file

    from terradiff.io import atomic_path, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "kd_vgg.safetensors"
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    info = {
        "layout": net.layout,
        "in_channels": net.in_channels,
        "student_channels": [list(s) for s in net.student.stage_channels],
        "teacher_channels": list(net.feature_channels),
        **meta,
    }
    atomic_write_text(folder / "kd_vgg.json", json.dumps(info, indent=1) + "\n")
    return weights


def load_kd_vgg(net: KDVGGFeatures, path: str | Path) -> KDVGGFeatures:
    """Load KD-VGG weights (``kd_vgg.safetensors``, or the folder holding it) into ``net``.

    Raises:
        CheckpointError: missing file, or weights of other widths than ``net``'s (the message
            gives the widths the file was made with, from ``kd_vgg.json``).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "kd_vgg.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"KD-VGG weights not found: {path}. Make them with 'terradiff compress RUN --out DIR' "
            "and point carbon.kd_vgg at DIR/kd_vgg.safetensors"
        )
    state = load_file(str(path))
    try:
        net.load_state_dict(state)
    except RuntimeError:
        info = path.with_suffix(".json")
        made = json.loads(info.read_text()).get("student_channels") if info.is_file() else "?"
        raise CheckpointError(
            f"{path} holds a KD-VGG of widths {made}; the config asks for "
            f"{[list(s) for s in net.student.stage_channels]} (carbon.vgg_channels)"
        ) from None
    return net
