"""Feature extractors for generation metrics (FID, KID), usable offline.

FID and KID compare two image sets through the features of a fixed network (Heusel et al., 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"; Binkowski et
al., 2018, "Demystifying MMD GANs"). The numbers mean something only if that network is fixed:
always in eval mode, with features that do not depend on the batch they were computed in, and with
weights that are available where the metric is computed. terradiff therefore offers:

* ``"aid-cnn"`` (the default): a small CNN that terradiff trained itself on the 30 scene classes of
  the AID aerial dataset (Xia et al., 2017) at 64x64 pixels, shipped in the package
  (``terradiff/assets/aid_encoder.safetensors`` + ``aid_encoder.json``; the command that made it is
  ``scripts/train_fid_encoder.py``). Features are its 256-d penultimate layer (after global average
  pooling). GroupNorm, no BatchNorm and no dropout: features are independent of the batch.
* ``"inception"``: the FID Inception-v3 of pytorch-fid / torch-fidelity (the 2015-12-05 TensorFlow
  graph ported to PyTorch), 2048-d pool features, for numbers comparable with the literature. Its
  weights are not shipped and are never downloaded: pass a local file with ``weights=``.
* a path to a ``.safetensors`` file with a ``.json`` beside it: a user's own encoder of the aid-cnn
  architecture (e.g. trained with ``scripts/train_fid_encoder.py`` on other data).

Every extractor maps images ``[B, C, H, W]`` in ``[-1, 1]`` to features ``[B, D]``; it resizes the
images to its own input size inside. RGB encoders need 3 bands: for multispectral images select
the bands first (``rgb_bands=`` in :mod:`terradiff.metrics.fid`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
AID_ENCODER_WEIGHTS = ASSETS_DIR / "aid_encoder.safetensors"
AID_ENCODER_CONFIG = ASSETS_DIR / "aid_encoder.json"
ENCODER_FORMAT = "terradiff-aid-encoder"

INCEPTION_WEIGHTS_HELP = (
    "The FID Inception-v3 weights are not shipped with terradiff and are never downloaded. Get "
    "'pt_inception-2015-12-05-6726825d.pth' (pytorch-fid release v0.1.0: "
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth; torch-fidelity's "
    "'weights-inception-2015-12-05-6726825d.pth' is the same network) on a machine with internet "
    "access, copy it to this machine, and pass its path: "
    "load_feature_extractor('inception', weights='/path/to/pt_inception-2015-12-05-6726825d.pth'). "
    "Or use the offline default encoder: load_feature_extractor('aid-cnn')."
)


@runtime_checkable
class FeatureExtractor(Protocol):
    """What FID/KID need from a network: images in ``[-1, 1]`` -> features.

    Implementations are ``nn.Module`` s that stay in eval mode (``.train()`` is a no-op) and resize
    their input to ``input_size`` themselves.

    Attributes:
        name: Short identifier reported with every metric (e.g. ``"aid-cnn"``).
        feature_dim: ``D``, the length of a feature vector.
        in_channels: Number of image bands the network takes (3 for RGB encoders).
        input_size: Square side the images are resized to before the network.
        fingerprint: Hash of the weights; part of every cache key.
    """

    name: str
    feature_dim: int
    in_channels: int
    input_size: int
    fingerprint: str

    def __call__(self, images: Tensor) -> Tensor:
        """Map images ``[B, in_channels, H, W]`` in ``[-1, 1]`` to features ``[B, feature_dim]``."""
        ...


def file_fingerprint(path: str | Path, length: int = 16) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


class EvalOnlyExtractor(nn.Module):
    """Base class: a frozen feature network that can never leave eval mode.

    ``train(True)`` is ignored, all parameters have ``requires_grad=False``, and :meth:`forward`
    re-asserts eval mode on every sub-module (a user may call ``.train()`` on a child directly).
    This removes the classic FID bugs: BatchNorm batch statistics or active dropout making features
    depend on the batch (pytorch-fid #99-style reports; GUIDE.md).
    """

    name: str = "extractor"
    feature_dim: int = 0
    in_channels: int = 3
    input_size: int = 0
    fingerprint: str = ""
    #: Resize with an anti-aliasing filter when downsampling (torch ``antialias=True``).
    antialias: bool = True

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> EvalOnlyExtractor:
        """Stay in eval mode whatever ``mode`` is (feature networks for metrics are frozen)."""
        return super().train(False)

    def _ensure_eval(self) -> None:
        for module in self.modules():
            if module.training:
                module.training = False

    def resize(self, images: Tensor) -> Tensor:
        """Check ``images`` and resize them (bilinear) to ``input_size`` x ``input_size``.

        Args:
            images: ``[B, in_channels, H, W]`` float tensor in ``[-1, 1]``.

        Returns:
            ``[B, in_channels, input_size, input_size]`` float32 tensor.

        Raises:
            ValueError: wrong rank or band count.
        """
        if images.ndim != 4:
            raise ValueError(
                f"{self.name}: expected images [B, C, H, W], got shape {tuple(images.shape)}"
            )
        if images.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected {self.in_channels} bands, got {images.shape[1]} "
                f"(shape {tuple(images.shape)}); select RGB bands first, e.g. "
                "compute_features(..., rgb_bands=(3, 2, 1)) for Sentinel-2 B4,B3,B2"
            )
        x = images.float()
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.antialias,
            )
        return x

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, feature_dim={self.feature_dim}, input_size={self.input_size}, "
            f"fingerprint={self.fingerprint!r}"
        )


# ------------------------------------------------------------------------------------------------
# aid-cnn: terradiff's own small scene classifier
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# FID Inception-v3 (Szegedy et al., 2016, as ported to PyTorch by pytorch-fid for FID)
# ------------------------------------------------------------------------------------------------


class _ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, running statistics only) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], **kw: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's average pool ignores the zero padding (the "FID" patch of pytorch-fid).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class _InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class _InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            bd = layer(bd)
        return torch.cat([b1, b7, bd, self.branch_pool(_avg3(x))], 1)


class _InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        # pytorch-fid patch: the last block of the TF graph max-pools in this branch.
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(EvalOnlyExtractor):
    """Inception-v3 pool3 features (2048-d) as used for FID by pytorch-fid and torch-fidelity.

    Implements the network of Szegedy et al., 2016 ("Rethinking the Inception Architecture") with
    the FID patches of pytorch-fid (TF-style average pooling without padded zeros; max pooling in
    the branch-pool of ``Mixed_7c``), so the 2015-12-05 weights of Heusel et al. (2017) give the
    standard FID features. Module names equal the state-dict keys of
    ``pt_inception-2015-12-05-6726825d.pth`` (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b...``).

    Input ``[-1, 1]`` images are resized to 299x299 (bilinear, ``align_corners=False``, no
    anti-aliasing, as pytorch-fid) and used as they are (pytorch-fid's ``2x - 1`` of ``[0, 1]``).

    Args:
        fingerprint: Hash of the weights file (set by :func:`load_inception`).
    """

    antialias = False

    def __init__(self, fingerprint: str = "") -> None:
        super().__init__()
        self.name = "inception-v3-fid"
        self.feature_dim = 2048
        self.in_channels = 3
        self.input_size = 299
        self.fingerprint = fingerprint
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _InceptionA(192, 32)
        self.Mixed_5c = _InceptionA(256, 64)
        self.Mixed_5d = _InceptionA(288, 64)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, 128)
        self.Mixed_6c = _InceptionC(768, 160)
        self.Mixed_6d = _InceptionC(768, 160)
        self.Mixed_6e = _InceptionC(768, 192)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, max_pool=False)
        self.Mixed_7c = _InceptionE(2048, max_pool=True)
        self._freeze()

    def forward(self, images: Tensor) -> Tensor:
        """Pool3 features ``[B, 2048]`` of images ``[B, 3, H, W]`` in ``[-1, 1]``."""
        self._ensure_eval()
        x = self.resize(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(dim=(2, 3))


def load_inception(weights: str | Path | None) -> FIDInceptionV3:
    """Build the FID Inception-v3 and load local weights (never downloads).

    Args:
        weights: Path to ``pt_inception-2015-12-05-6726825d.pth`` (a torch state dict, read with
            ``torch.load(weights_only=True)``) or a ``.safetensors`` file with the same keys. The
            classifier (``fc.*``) and auxiliary (``AuxLogits.*``) entries are ignored.

    Raises:
        FileNotFoundError: ``weights`` is None or missing; the message says how to get the file.
        ValueError: the file's tensors do not match the network.
    """
    if weights is None:
        raise FileNotFoundError(
            f"no Inception weights given (weights=None). {INCEPTION_WEIGHTS_HELP}"
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights file {path} not found. {INCEPTION_WEIGHTS_HELP}"
        )
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {
        k: v
        for k, v in state.items()
        if not (k.startswith(("fc.", "AuxLogits.")) or k.endswith("num_batches_tracked"))
    }
    model = FIDInceptionV3(fingerprint=file_fingerprint(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not an FID Inception-v3 state dict: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}). "
            f"{INCEPTION_WEIGHTS_HELP}"
        )
    model._freeze()
    return model


INCEPTION_NAMES = ("inception", "inception-v3", "inception-v3-fid", "fid-inception")


def load_feature_extractor(
    name_or_path: str | Path | None = None, *, weights: str | Path | None = None
) -> EvalOnlyExtractor:
    """Load a frozen feature extractor for FID/KID; never touches the network.

    Args:
        name_or_path: ``None`` or ``"aid-cnn"``: terradiff's shipped AID encoder (64x64 input,
            256-d features). ``"inception"``: the FID Inception-v3 (299x299, 2048-d), whose local
            weights file must be given as ``weights``. A path to a ``.safetensors`` file with a
            ``.json`` of the same name beside it: your own aid-cnn-architecture encoder.
        weights: For ``"inception"``: path to the weights (required). For ``"aid-cnn"``: an
            alternative safetensors file of that architecture (json beside it).

    Returns:
        An :class:`EvalOnlyExtractor` (implements :class:`FeatureExtractor`), in eval mode.

    Raises:
        FileNotFoundError: missing weights/config (with how to obtain them).
        ValueError: unknown name.
    """
    if name_or_path is None or str(name_or_path) == "aid-cnn":
        return load_aid_encoder(weights if weights is not None else AID_ENCODER_WEIGHTS)
    key = str(name_or_path)
    if key.lower() in INCEPTION_NAMES:
        return load_inception(weights)
    path = Path(key)
    if path.suffix == ".safetensors" or path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: encoder weights must be a .safetensors file (no pickles)")
        return load_aid_encoder(path)
    raise ValueError(
        f"unknown feature extractor {key!r}: use None/'aid-cnn' (shipped, offline), 'inception' "
        "(with weights=local .pth), or a path to an encoder .safetensors with its .json beside it"
    )
