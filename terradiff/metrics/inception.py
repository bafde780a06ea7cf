"""The FID Inception-v3 (Szegedy et al., 2016, as ported to PyTorch by pytorch-fid), from local
weights.

This module's one job is the 2048-d pool3 feature network that the FID literature uses (Heusel et
al., 2017), with pytorch-fid's patches so that the 2015-12-05 weights give the standard features,
and :func:`load_inception`, which reads a user's local copy of those weights through
:func:`terradiff.weights.read_weights` (never downloads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.metrics.extractor import EvalOnlyExtractor, file_fingerprint
from terradiff.weights import read_weights

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
        FileNotFoundError: ``weights`` is None or missing (a
            :class:`~terradiff.weights.WeightsNotFoundError`); the message says how to get it.
        ValueError: the file's tensors do not match the network.
    """
    state = read_weights(weights, what="Inception weights", hint=INCEPTION_WEIGHTS_HELP)
    path = Path(weights)  # type: ignore[arg-type]  # read_weights raised if it was None
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


__all__ = ["INCEPTION_NAMES", "INCEPTION_WEIGHTS_HELP", "FIDInceptionV3", "load_inception"]
