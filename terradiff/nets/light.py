"""Lightweight single-step super-resolution student (SlimDiffSR's light modules, pixel space).

SlimDiffSR distils a single-step diffusion SR teacher into a small student that runs once, with no
time embedding. Its student replaces the teacher UNet's expensive parts by three kinds of module;
the paper's text was not available to us, so these are our implementations of what the issue
describes (each documented below), not transcriptions:

* :class:`FrequencySeparableConv` -- a 3x3 convolution split by frequency: the low-pass part of
  the input (2x2 average, i.e. a quarter of the pixels) and the high-pass residual each get a
  depthwise 3x3 kernel, and a pointwise 1x1 mixes the channels. Cost per pixel
  ``~ 9C + 9C/4 + C^2`` instead of ``9 C^2``.
* :class:`DirectionSeparableConv` -- a 3x3 receptive field from a horizontal 1xk and a vertical
  kx1 depthwise kernel (two directions, summed) and a pointwise mix: ``2kC + C^2``.
* :class:`QueryGlobalAggregation` -- self-attention's global context at linear cost: a learned
  query scores every pixel's key, the softmax over pixels weights the values into one context
  vector per image (``g = sum_p softmax_p(q . k_p / sqrt(d)) v_p``), which is projected and added
  to every pixel (in the manner of a global-context block; the issue's Eq. 14-15).

:class:`LightSRNet` assembles them: the teacher's encoder-decoder shape with its deepest levels
removed and replaced by one residual block (+ global aggregation), every 3x3 convolution in the
blocks replaced by the separable ones, no time embedding, one forward pass. Switching a module off
(``fs_conv``, ``ds_conv``, ``global_aggregation``) gives the ablations of the paper's Table 7.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.blocks import GroupNorm, GroupNormSiLU, check_groups
from terradiff.nets.memory import use_channels_last

__all__ = [
    "DirectionSeparableConv",
    "FrequencySeparableConv",
    "LightBlock",
    "LightSRNet",
    "QueryGlobalAggregation",
]


class FrequencySeparableConv(nn.Module):
    """Depthwise 3x3 on the low- and high-frequency parts, then a pointwise mix.

    ``low = up(avgpool2(x))``, ``high = x - low``; ``y = pw(dw_low(avgpool2(x)) upsampled +
    dw_high(high))``. Input sizes must be even (the student's levels are).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.low = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        self.high = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H, W]``."""
        pooled = F.avg_pool2d(x, 2)
        high = _with_upsampled(torch.sub, x, pooled)
        return self.pointwise(_with_upsampled(torch.add, self.high(high), self.low(pooled)))


def _with_upsampled(op: Callable[[Tensor, Tensor], Tensor], full: Tensor, half: Tensor) -> Tensor:
    """``op(full, nearest_upsample_x2(half))`` without writing the up-sampled tensor.

    Each pixel of ``half`` is broadcast over its 2x2 block of ``full`` through a view that splits
    the two spatial axes; the view is taken in the tensors' memory order (channels-last or not),
    so the result keeps ``full``'s layout and no copy is made. On a CPU this cuts the memory
    traffic of the frequency split, which bounds its speed, by about half.
    """
    B, C, H, W = full.shape
    if full.is_contiguous(memory_format=torch.channels_last) and C > 1:
        f = full.permute(0, 2, 3, 1).view(B, H // 2, 2, W // 2, 2, C)
        h = half.permute(0, 2, 3, 1).reshape(B, H // 2, 1, W // 2, 1, C)
        return op(f, h).view(B, H, W, C).permute(0, 3, 1, 2)
    f = full.contiguous().view(B, C, H // 2, 2, W // 2, 2)
    h = half.reshape(B, C, H // 2, 1, W // 2, 1)
    return op(f, h).view(B, C, H, W)


class DirectionSeparableConv(nn.Module):
    """Horizontal ``1 x k`` + vertical ``k x 1`` depthwise kernels, summed, then a pointwise mix."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        c = in_channels
        self.horizontal = nn.Conv2d(c, c, (1, kernel_size), padding=(0, pad), groups=c)
        self.vertical = nn.Conv2d(c, c, (kernel_size, 1), padding=(pad, 0), groups=c)
        self.pointwise = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H, W]``.

        ``horizontal(x) + vertical(x)`` is one depthwise ``k x k`` convolution whose kernel is the
        cross of the two (row ``k//2`` from the horizontal kernel, column ``k//2`` from the
        vertical one) and whose bias is the sum: computed so, the layer reads its input once
        and writes one tensor instead of three (the parameters, and their gradients, are still
        the ``2k`` per channel of the two directional kernels).
        """
        pad = self.horizontal.padding[1]
        cross = F.pad(self.horizontal.weight, (0, 0, pad, pad)) + F.pad(
            self.vertical.weight, (pad, pad)
        )
        bias = self.horizontal.bias + self.vertical.bias
        return self.pointwise(F.conv2d(x, cross, bias, padding=pad, groups=x.shape[1]))


class QueryGlobalAggregation(nn.Module):
    """Global context from one learned query per head, added to every pixel (linear in pixels).

    ``k = W_k GN(x)``, ``v = W_v GN(x)`` (1x1), per head ``a_p = softmax_p(q . k_p / sqrt(d))``,
    ``g = sum_p a_p v_p``; ``out = x + W_o g`` broadcast over the pixels (``W_o`` starts at zero,
    so the block starts as the identity).
    """

    def __init__(self, channels: int, *, head_channels: int = 32, num_groups: int = 8) -> None:
        super().__init__()
        check_groups(channels, num_groups)
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            raise ValueError(f"{self.heads} heads do not divide {channels} channels")
        self.norm = GroupNorm(num_groups, channels)
        self.kv = nn.Conv2d(channels, 2 * channels, 1)
        self.query = nn.Parameter(torch.randn(self.heads, channels // self.heads) * 0.02)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        B, C, H, W = x.shape
        d = C // self.heads
        k, v = self.kv(self.norm(x)).view(B, 2, self.heads, d, H * W).unbind(1)
        scores = torch.einsum("hd,bhdp->bhp", self.query.to(k.dtype), k) / math.sqrt(d)
        weights = scores.softmax(dim=-1)  # over the pixels
        context = torch.einsum("bhp,bhdp->bhd", weights, v).reshape(B, C)
        return x + self.out(context).view(B, C, 1, 1)


def _conv(kind: str, c_in: int, c_out: int) -> nn.Module:
    if kind == "fs":
        return FrequencySeparableConv(c_in, c_out)
    if kind == "ds":
        return DirectionSeparableConv(c_in, c_out)
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class LightBlock(nn.Module):
    """Residual block without time conditioning: ``x + conv2(SiLU(GN(conv1(SiLU(GN(x))))))``.

    ``conv1``/``conv2`` are a frequency-separable and a direction-separable convolution (or
    standard 3x3 ones where switched off); ``conv2`` starts at zero (identity block).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        first: str = "fs",
        second: str = "ds",
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.norm1 = GroupNormSiLU(num_groups, in_channels)
        self.conv1 = _conv(first, in_channels, out_channels)
        self.norm2 = GroupNormSiLU(num_groups, out_channels)
        self.conv2 = _conv(second, out_channels, out_channels)
        last = self.conv2.pointwise if hasattr(self.conv2, "pointwise") else self.conv2
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        same = in_channels == out_channels
        self.skip = nn.Identity() if same else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H, W]``."""
        return self.skip(x) + self.conv2(self.norm2(self.conv1(self.norm1(x))))


class LightSRNet(nn.Module):
    """The single-step student: bicubic-upsampled LR -> HR residual, one pass, no time input.

    Shape: input conv; ``len(channel_mults)`` encoder levels of ``blocks`` :class:`LightBlock` s
    (downsampling by strided 3x3 between levels); at the bottom ONE residual block and a
    :class:`QueryGlobalAggregation` (where the teacher has its deepest levels and self-attention);
    a mirrored decoder with skip connections; output conv (zero-initialised: the net starts as
    bicubic). :meth:`forward_features` also returns each decoder level's output, coarse to fine,
    for feature distillation.

    Args:
        in_channels: Bands.
        base_channels: Width of the first level.
        channel_mults: Width multipliers of the kept levels.
        blocks: Light blocks per level.
        num_groups: GroupNorm groups.
        fs_conv, ds_conv: Use the separable convolutions (else standard 3x3; Table 7 ablations).
        global_aggregation: Use query-driven global aggregation at the bottom (else none).
        adapter_channels: For feature distillation: the teacher's width for each feature of
            :meth:`forward_features` (0 = not distilled); builds the 1x1 adapters (SlimDiffSR
            Eq. 16) that map the student's features to the teacher's. Used in training only.

    Attributes:
        channels_last: memory format of the activations (see
            :func:`terradiff.nets.memory.use_channels_last`; None = channels-last on CPU only).
    """

    channels_last: bool | None = None

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 16,
        channel_mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        num_groups: int = 8,
        fs_conv: bool = True,
        ds_conv: bool = True,
        global_aggregation: bool = True,
        adapter_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        mults = [int(m) for m in channel_mults]
        if not mults or min(mults) < 1 or blocks < 1:
            raise ValueError(f"channel_mults {channel_mults!r} and blocks {blocks} must be >= 1")
        self.config = {
            "in_channels": in_channels,
            "base_channels": base_channels,
            "channel_mults": mults,
            "blocks": blocks,
            "num_groups": num_groups,
            "fs_conv": fs_conv,
            "ds_conv": ds_conv,
            "global_aggregation": global_aggregation,
            "adapter_channels": list(adapter_channels) if adapter_channels else None,
        }
        first, second = ("fs" if fs_conv else "std"), ("ds" if ds_conv else "std")
        chans = [base_channels * m for m in mults]
        for c in chans:
            check_groups(c, num_groups)

        def block(c_in: int, c_out: int) -> LightBlock:
            return LightBlock(c_in, c_out, first=first, second=second, num_groups=num_groups)

        self.input_conv = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cur = chans[0]
        for c in chans:
            self.down.append(
                nn.Sequential(*[block(cur if j == 0 else c, c) for j in range(blocks)])
            )
            cur = c
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = block(cur, cur)
        self.aggregate = (
            QueryGlobalAggregation(cur, num_groups=num_groups) if global_aggregation else None
        )
        self.up = nn.ModuleList()
        for c in reversed(chans):
            self.up.append(
                nn.Sequential(*[block(cur + c if j == 0 else c, c) for j in range(blocks)])
            )
            cur = c
        self.out = nn.Sequential(
            GroupNormSiLU(num_groups, cur), nn.Conv2d(cur, in_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)
        self.downsample_factor = 2 ** len(chans)
        self.feature_channels: tuple[int, ...] = (chans[-1], *reversed(chans))
        """Channels of :meth:`forward_features`' features, coarse to fine (bottom, then levels)."""
        self.adapters: nn.ModuleList | None = None
        if adapter_channels:
            if len(adapter_channels) != len(self.feature_channels):
                raise ValueError(
                    f"adapter_channels needs one width per feature ({len(self.feature_channels)}),"
                    f" got {list(adapter_channels)}"
                )
            self.adapters = nn.ModuleList(
                nn.Conv2d(c, int(t), 1) if int(t) > 0 else nn.Identity()
                for c, t in zip(self.feature_channels, adapter_channels, strict=True)
            )

    def num_parameters(self, inference_only: bool = True) -> int:
        """Number of parameters (without the training-only adapters unless asked)."""
        skip = set()
        if inference_only and self.adapters is not None:
            skip = {id(p) for p in self.adapters.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(residual [B, C, H, W], features coarse to fine)`` for a bicubic image ``x``."""
        if x.shape[-2] % self.downsample_factor or x.shape[-1] % self.downsample_factor:
            raise ValueError(
                f"LightSRNet needs sizes that are multiples of {self.downsample_factor}, got "
                f"{tuple(x.shape[-2:])}"
            )
        out_format = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else torch.contiguous_format
        )
        if use_channels_last(self.channels_last, x.device):
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.input_conv(x)
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            h = level(h)
            skips.append(h)
            h = down(h)
        h = self.middle(h)
        if self.aggregate is not None:
            h = self.aggregate(h)
        features = [h]
        for level in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = level(torch.cat([h, skip], dim=1))
            features.append(h)
        return self.out(h).contiguous(memory_format=out_format), features

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        """The HR residual for a bicubic image ``x``; ``t`` is ignored (no time embedding)."""
        return self.forward_features(x)[0]
