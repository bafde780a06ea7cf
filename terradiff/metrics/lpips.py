"""LPIPS (Zhang et al., 2018, CVPR, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"), built from local weights only.

This module's one job is the LPIPS network (torchvision's VGG16 or AlexNet ``features`` written
in plain torch, plus the learned linear heads) and :func:`load_lpips`, which reads the weights
through :func:`terradiff.weights.read_weights`; nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from terradiff.errors import CheckpointError, DataError
from terradiff.metrics.full_reference import check_pair
from terradiff.weights import read_weights

LPIPS_WEIGHTS_HELP = (
    "LPIPS weights are not shipped with terradiff and are never downloaded. On a machine with "
    "internet access, save the backbone and the LPIPS v0.1 linear heads to one file, e.g.\n"
    "    import torch, torchvision; from safetensors.torch import save_file\n"
    "    sd = torchvision.models.vgg16(weights='IMAGENET1K_V1').features.state_dict()\n"
    "    sd = {f'features.{k}': v for k, v in sd.items()}\n"
    "    sd.update(torch.load('lpips/weights/v0.1/vgg.pth'))  # from the lpips package\n"
    "    save_file({k: v.contiguous() for k, v in sd.items()}, 'lpips_vgg.safetensors')\n"
    "(or torch.save(lpips.LPIPS(net='vgg').state_dict(), 'lpips_vgg.pth'); use alexnet / "
    "alex.pth for net='alex'), copy the file here and call load_lpips('lpips_vgg.safetensors'). "
    "The torchvision .pth and the lpips heads' .pth can also be given separately: "
    "load_lpips('vgg16-397923af.pth', lin_path='vgg.pth')."
)

# torchvision layer layouts: ("C", out_channels, kernel, stride, padding), ("R",), ("M", k, s).
_VGG16_LAYERS: tuple[tuple[int | str, ...], ...] = (
    *(("C", 64, 3, 1, 1), ("R",), ("C", 64, 3, 1, 1), ("R",), ("M", 2, 2)),
    *(("C", 128, 3, 1, 1), ("R",), ("C", 128, 3, 1, 1), ("R",), ("M", 2, 2)),
    *(("C", 256, 3, 1, 1), ("R",)) * 3,
    ("M", 2, 2),
    *(("C", 512, 3, 1, 1), ("R",)) * 3,
    ("M", 2, 2),
    *(("C", 512, 3, 1, 1), ("R",)) * 3,
)
_ALEXNET_LAYERS: tuple[tuple[int | str, ...], ...] = (
    ("C", 64, 11, 4, 2),
    ("R",),
    ("M", 3, 2),
    ("C", 192, 5, 1, 2),
    ("R",),
    ("M", 3, 2),
    ("C", 384, 3, 1, 1),
    ("R",),
    ("C", 256, 3, 1, 1),
    ("R",),
    ("C", 256, 3, 1, 1),
    ("R",),
)
# Layer indices whose outputs LPIPS compares: relu1_2 .. relu5_3 (VGG), relu1 .. relu5 (AlexNet).
_LPIPS_NETS: dict[str, tuple[tuple[tuple[int | str, ...], ...], tuple[int, ...]]] = {
    "vgg": (_VGG16_LAYERS, (3, 8, 15, 22, 29)),
    "alex": (_ALEXNET_LAYERS, (1, 4, 7, 9, 11)),
}


def _build_features(layers: tuple[tuple[int | str, ...], ...]) -> nn.Sequential:
    modules: list[nn.Module] = []
    channels = 3
    for spec in layers:
        if spec[0] == "C":
            out, k, s, p = (int(v) for v in spec[1:])
            modules.append(nn.Conv2d(channels, out, k, stride=s, padding=p))
            channels = out
        elif spec[0] == "R":
            modules.append(nn.ReLU())
        else:
            modules.append(nn.MaxPool2d(int(spec[1]), stride=int(spec[2])))
    return nn.Sequential(*modules)


class _LinearHead(nn.Module):
    """LPIPS ``NetLinLayer``: (dropout,) 1x1 conv to one channel, no bias.

    Index 0 stands for the dropout of the original (inactive at evaluation), so the weight's key
    is ``model.1.weight`` as in the LPIPS weight files.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))
        # Untrained heads weigh all channels equally (the lpips package's lpips=False variant).
        nn.init.ones_(self.model[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al., 2018, CVPR, Eq. 1).

    ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2`` where ``f_l`` are the
    channel-unit-normalised activations of five backbone layers and ``w_l`` the learned linear
    heads. The backbone is torchvision's VGG16 (``net="vgg"``) or AlexNet (``net="alex"``)
    ``features``, written here in plain torch with torchvision's state-dict keys
    (``features.0.weight`` ...); the heads use LPIPS's keys (``lin0.model.1.weight`` ...).

    A freshly constructed instance has random backbone weights and unit heads; it is a
    deterministic distance but not LPIPS. Use :func:`load_lpips` for the real metric.

    Args:
        net: ``"vgg"`` (LPIPS's recommendation as a metric) or ``"alex"``.
    """

    def __init__(self, net: Literal["vgg", "alex"] = "vgg") -> None:
        super().__init__()
        if net not in _LPIPS_NETS:
            raise DataError(f"LPIPS net={net!r} must be 'vgg' or 'alex'")
        layers, taps = _LPIPS_NETS[net]
        self.net = net
        self.features = _build_features(layers)
        self.taps = taps
        widths = [self.features[i - 1].out_channels for i in taps]  # conv before each ReLU tap
        for k, width in enumerate(widths):
            self.add_module(f"lin{k}", _LinearHead(width))
        # LPIPS ScalingLayer: maps [-1, 1] inputs to ImageNet-normalised ones.
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def _activations(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        outs = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if i == last:
                break
        return outs

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS distance of RGB images ``[B, 3, H, W]`` in ``[-1, 1]``; returns ``[B]``."""
        check_pair(pred, target, "lpips")
        if pred.shape[1] != 3:
            raise DataError(
                f"lpips needs RGB images [B, 3, H, W] in [-1, 1], got {pred.shape[1]} bands; "
                "select the red, green, blue bands first (e.g. x[:, [3, 2, 1]])"
            )
        param = self.features[0].weight
        pred = pred.to(device=param.device, dtype=param.dtype)
        target = target.to(device=param.device, dtype=param.dtype)
        both = self._activations(torch.cat((pred, target)))
        total = torch.zeros(pred.shape[0], dtype=param.dtype, device=param.device)
        for k, f in enumerate(both):
            f_pred, f_target = f.chunk(2)
            head = getattr(self, f"lin{k}")
            total = total + head((f_pred - f_target).square()).mean(dim=(1, 2, 3))
        return total


def _read_state(path: str | Path | None, what: str) -> dict[str, Tensor]:
    """Tensors of an LPIPS weights file with the keys :class:`LPIPS` uses.

    Drops a ``module.`` prefix and renames the ``net.slice<k>.<i>.*`` keys of an
    ``lpips.LPIPS`` state dict to torchvision's ``features.<i>.*``.
    """
    state = read_weights(path, what=f"LPIPS {what}", hint=LPIPS_WEIGHTS_HELP)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("net.slice"):
            # lpips.LPIPS state dicts: net.slice<k>.<torchvision index>.<param>
            key = "features." + key.split(".", 2)[2]
        out[key] = value
    return out


def load_lpips(
    weights_path: str | Path | None,
    *,
    lin_path: str | Path | None = None,
    net: Literal["vgg", "alex"] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """Build LPIPS from local weights (never downloads); returns a frozen module in eval mode.

    Args:
        weights_path: A ``.safetensors`` file (preferred) or a ``.pth`` (read with
            ``torch.load(weights_only=True)``) holding the backbone with torchvision's keys
            (``features.<i>.weight/bias``; ``classifier.*`` is ignored) and, unless
            ``lin_path`` is given, the LPIPS heads (``lin<k>.model.1.weight``). A saved
            ``lpips.LPIPS(...).state_dict()`` (``net.slice<k>.<i>...`` keys) works too.
        lin_path: Optional second file with the heads (e.g. the lpips package's
            ``weights/v0.1/vgg.pth``).
        net: ``"vgg"`` or ``"alex"``; inferred from the first conv's kernel size when ``None``.
        device: Where to put the module.

    Returns:
        An :class:`LPIPS` in eval mode with ``requires_grad=False`` parameters.

    Raises:
        FileNotFoundError: ``weights_path`` is None or missing (or ``lin_path`` missing), as a
            :class:`~terradiff.weights.WeightsNotFoundError`; the message says how to obtain the
            weights.
        CheckpointError: the file's tensors do not form an LPIPS network.
    """
    state = _read_state(weights_path, "weights_path")
    path = Path(weights_path)  # type: ignore[arg-type]  # read_weights raised if it was None
    if lin_path is not None:
        state.update(_read_state(lin_path, "lin_path"))
    first = state.get("features.0.weight")
    if first is None:
        raise CheckpointError(
            f"{path} has no 'features.0.weight': not a VGG16/AlexNet backbone state dict. "
            f"{LPIPS_WEIGHTS_HELP}"
        )
    if net is None:
        net = "alex" if first.shape[-1] == 11 else "vgg"
    model = LPIPS(net)
    state = {k: v for k, v in state.items() if k.startswith(("features.", "lin"))}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}{' + ' + str(lin_path) if lin_path else ''} is not an LPIPS-{net} state dict: "
            f"missing {missing[:4]} ({len(missing)}), unexpected {unexpected[:4]} "
            f"({len(unexpected)}), wrong shape {wrong[:4]} ({len(wrong)}). The heads "
            f"(lin0.model.1.weight ...) may be in a separate file: pass lin_path=. "
            f"{LPIPS_WEIGHTS_HELP}"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval().requires_grad_(False)
    return model.to(device)


__all__ = ["LPIPS", "LPIPS_WEIGHTS_HELP", "load_lpips"]
