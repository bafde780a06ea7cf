"""The ``"aid-cnn"`` FID/KID encoder: terradiff's own small AID scene classifier, shipped offline.

This module's one job is that encoder: its architecture (:class:`AidCnn`, a residual CNN with
GroupNorm, He et al. 2016 / Wu & He 2018), its JSON config, the frozen :class:`AidCnnExtractor`
(256-d penultimate features of ``[-1, 1]`` images resized to 64x64) and :func:`load_aid_encoder`.
It was trained on the 30 scene classes of AID (Xia et al., 2017) by
``scripts/train_fid_encoder.py``; weights and config are in ``terradiff/assets``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from terradiff.metrics.extractor import EvalOnlyExtractor, file_fingerprint

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
AID_ENCODER_WEIGHTS = ASSETS_DIR / "aid_encoder.safetensors"
AID_ENCODER_CONFIG = ASSETS_DIR / "aid_encoder.json"
ENCODER_FORMAT = "terradiff-aid-encoder"


@dataclass
class AidCnnConfig:
    """Architecture of the aid-cnn encoder (stored in ``aid_encoder.json`` under ``architecture``).

    Attributes:
        widths: Channels of the four stages (resolutions input/2, /4, /8, /16).
        blocks: Residual blocks per stage (the first block of stages 2-4 downsamples by 2).
        num_groups: GroupNorm groups (per-sample normalisation: batch-independent features).
        num_classes: Classes of the classification head.
        in_channels: Input bands.
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 2, 1)
    num_groups: int = 8
    num_classes: int = 30
    in_channels: int = 3

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AidCnnConfig:
        """Build from the ``architecture`` entry of the JSON config (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown aid-cnn architecture keys {sorted(unknown)}; known {known}")
        kw = dict(d)
        for key in ("widths", "blocks"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["blocks"] = list(self.blocks)
        return d


class _ResBlock(nn.Module):
    """Residual block (He et al., 2016): conv-GN-SiLU-conv-GN, plus the skip, then SiLU."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.skip: nn.Module
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.GroupNorm(groups, cout)
            )
        else:
            self.skip = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class AidCnn(nn.Module):
    """Small residual CNN classifier (the trainable network behind the aid-cnn extractor).

    Stem conv 3x3 stride 2, four stages of residual blocks with GroupNorm (Wu & He, 2018), global
    average pooling to ``widths[-1]`` features, linear head. Takes normalised images (see
    :class:`AidCnnExtractor` for the ``[-1, 1]`` -> normalised step).
    """

    def __init__(self, config: AidCnnConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        if len(w) != len(config.blocks):
            raise ValueError(f"widths {w} and blocks {config.blocks} must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w[0], 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(config.num_groups, w[0]),
            nn.SiLU(),
        )
        stages = []
        cin = w[0]
        for i, (cout, nb) in enumerate(zip(w, config.blocks, strict=True)):
            layers = []
            for j in range(nb):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_ResBlock(cin, cout, stride, config.num_groups))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(w[-1], config.num_classes)

    @property
    def feature_dim(self) -> int:
        return self.config.widths[-1]

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``[B, widths[-1]]`` (global average pool of the last stage)."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.features(x))


@dataclass
class AidEncoderInfo:
    """The parts of ``aid_encoder.json`` needed to rebuild the extractor."""

    architecture: AidCnnConfig
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    name: str = "aid-cnn"
    extra: dict[str, Any] = field(default_factory=dict)


def read_encoder_config(path: str | Path) -> AidEncoderInfo:
    """Read and validate an aid-cnn encoder JSON config.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it is not an aid-cnn encoder config or misses keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder config {path} not found; an encoder is a .safetensors file with a .json of "
            "the same name beside it (as written by scripts/train_fid_encoder.py)"
        )
    cfg = json.loads(path.read_text())
    if cfg.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path}: 'format' is {cfg.get('format')!r}, expected {ENCODER_FORMAT!r}")
    try:
        norm = cfg["normalization"]
        return AidEncoderInfo(
            architecture=AidCnnConfig.from_dict(cfg["architecture"]),
            input_size=int(cfg["input_size"]),
            mean=tuple(float(v) for v in norm["mean"]),
            std=tuple(float(v) for v in norm["std"]),
            classes=list(cfg.get("classes", [])),
            name=str(cfg.get("name", "aid-cnn")),
            extra=cfg,
        )
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err} in the encoder config") from err


class AidCnnExtractor(EvalOnlyExtractor):
    """The aid-cnn feature extractor: ``[-1, 1]`` images -> 256-d penultimate features.

    Images are resized to ``input_size`` (bilinear, anti-aliased), mapped to ``[0, 1]`` and
    normalised with the training set's per-channel mean/std, then passed through :class:`AidCnn`.

    Args:
        net: The trained classifier.
        input_size: Side of the square input (64 for the shipped encoder).
        mean: Per-channel mean of the training images in ``[0, 1]`` units.
        std: Per-channel standard deviation in ``[0, 1]`` units.
        classes: Class names, index-aligned with the head's logits.
        name: Reported encoder name.
        fingerprint: Hash of the weights file.
    """

    def __init__(
        self,
        net: AidCnn,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str] = (),
        name: str = "aid-cnn",
        fingerprint: str = "",
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.feature_dim = net.feature_dim
        self.in_channels = net.config.in_channels
        self.input_size = int(input_size)
        self.classes = list(classes)
        self.fingerprint = fingerprint
        c = self.in_channels
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean/std need {c} values, got {len(mean)}/{len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))
        self._freeze()

    def preprocess(self, images: Tensor) -> Tensor:
        """Resize ``[-1, 1]`` images to ``input_size`` and normalise them for the network."""
        x = self.resize(images).to(self.mean.device)
        return ((x + 1.0) * 0.5 - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        """Features ``[B, feature_dim]`` of images ``[B, 3, H, W]`` in ``[-1, 1]``."""
        self._ensure_eval()
        return self.net.features(self.preprocess(images))

    def logits(self, images: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]`` (index-aligned with :attr:`classes`)."""
        self._ensure_eval()
        return self.net(self.preprocess(images))


def load_aid_encoder(
    weights: str | Path = AID_ENCODER_WEIGHTS, config: str | Path | None = None
) -> AidCnnExtractor:
    """Load an aid-cnn encoder from ``weights`` (.safetensors) and its JSON config.

    Args:
        weights: The safetensors file (never a pickle).
        config: The JSON config; default ``weights`` with the suffix ``.json``.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: the config is invalid or the tensors do not fit the architecture.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(
            f"encoder weights {weights} not found (train one with scripts/train_fid_encoder.py)"
        )
    info = read_encoder_config(config if config is not None else weights.with_suffix(".json"))
    net = AidCnn(info.architecture)
    state = load_file(str(weights))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{weights} does not fit the aid-cnn architecture in its config: {err}"
        ) from err
    return AidCnnExtractor(
        net,
        input_size=info.input_size,
        mean=info.mean,
        std=info.std,
        classes=info.classes,
        name=info.name,
        fingerprint=file_fingerprint(weights),
    )


__all__ = [
    "AID_ENCODER_CONFIG",
    "AID_ENCODER_WEIGHTS",
    "ASSETS_DIR",
    "ENCODER_FORMAT",
    "AidCnn",
    "AidCnnConfig",
    "AidCnnExtractor",
    "AidEncoderInfo",
    "load_aid_encoder",
    "read_encoder_config",
]
