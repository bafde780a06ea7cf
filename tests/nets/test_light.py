"""The light student modules (frequency-/direction-separable conv, global aggregation) and net."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.light import (
    DirectionSeparableConv,
    FrequencySeparableConv,
    LightSRNet,
    QueryGlobalAggregation,
)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_separable_convs_keep_shapes_and_cost_less_than_a_3x3() -> None:
    x = torch.randn(2, 16, 8, 8)
    dense = nn.Conv2d(16, 24, 3, padding=1)
    for conv in (FrequencySeparableConv(16, 24), DirectionSeparableConv(16, 24)):
        assert conv(x).shape == (2, 24, 8, 8)
        assert _params(conv) < _params(dense) / 2


def test_frequency_split_is_exact_for_identity_kernels() -> None:
    """With identity depthwise kernels and pointwise, low + high = the input."""
    conv = FrequencySeparableConv(3, 3)
    with torch.no_grad():
        for dw in (conv.low, conv.high):
            dw.weight.zero_()
            dw.weight[:, 0, 1, 1] = 1
            dw.bias.zero_()
        conv.pointwise.weight.copy_(torch.eye(3)[:, :, None, None])
        conv.pointwise.bias.zero_()
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(conv(x), x)


def test_direction_separable_conv_sees_a_cross() -> None:
    conv = DirectionSeparableConv(1, 1)
    with torch.no_grad():
        for p in conv.parameters():
            p.fill_(1.0)
        for layer in (conv.horizontal, conv.vertical, conv.pointwise):
            layer.bias.zero_()
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = conv(x)[0, 0]
    assert out[2, 2] == 2  # both directions
    assert out[1, 2] == 1 and out[2, 1] == 1 and out[1, 1] == 0  # a cross, no diagonal


def test_global_aggregation_starts_as_identity_and_is_global() -> None:
    block = QueryGlobalAggregation(16, head_channels=8, num_groups=4)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(block(x), x)
    nn.init.normal_(block.out.weight)
    y = block(x)
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0  # change one pixel: every pixel's output changes (global context)
    assert ((block(x2) - y)[:, :, 5, 5].abs() > 0).all()
    # the added context is the same vector at every pixel
    delta = y - x
    torch.testing.assert_close(delta, delta[:, :, :1, :1].expand_as(delta))


@pytest.mark.parametrize("flags", [(True, True, True), (False, True, True), (True, False, False)])
def test_light_net_runs_once_with_features(flags: tuple[bool, bool, bool]) -> None:
    fs, ds, ga = flags
    net = LightSRNet(
        4,
        base_channels=8,
        channel_mults=(1, 2),
        fs_conv=fs,
        ds_conv=ds,
        global_aggregation=ga,
        adapter_channels=[32, 32, 0],
    )
    x = torch.randn(2, 4, 16, 16)
    out, features = net.forward_features(x)
    assert out.shape == x.shape and out.abs().max() == 0  # zero-initialised output: bicubic
    assert [f.shape[-1] for f in features] == [4, 8, 16]
    assert [f.shape[1] for f in features] == list(net.feature_channels)
    assert net.num_parameters() < net.num_parameters(inference_only=False)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 4, 18, 18))


# ------------------------------------------- fused forwards against plain references (issue 14)
#
# The references below follow the modules' documented definitions step by step, with no
# F.conv2d and no fused broadcasting: an explicit sum of shifted copies for each depthwise kernel,
# an explicit 2x2 block mean and nearest up-sampling, an einsum for the pointwise mix. They run in
# float64 on float64 copies of the weights, so the float32 fused forwards (and their gradients)
# are compared at float32 round-off.


def _depthwise(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Depthwise cross-correlation with zero padding ``k//2``, as a sum of shifted copies."""
    kh, kw = weight.shape[-2:]
    ph, pw = kh // 2, kw // 2
    H, W = x.shape[-2:]
    padded = F.pad(x, (pw, pw, ph, ph))
    out = bias.view(1, -1, 1, 1).expand_as(x)
    for i in range(kh):
        for j in range(kw):
            out = out + weight[:, 0, i, j].view(1, -1, 1, 1) * padded[:, :, i : i + H, j : j + W]
    return out


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return torch.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x) + bias.view(1, -1, 1, 1)


def _block_mean(x: Tensor) -> Tensor:
    """Mean of each 2x2 block: ``[B, C, H, W] -> [B, C, H/2, W/2]``."""
    return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 4


def _nearest_up(x: Tensor) -> Tensor:
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _reference_fs(w: dict[str, Tensor], x: Tensor) -> Tensor:
    """``pw(up(dw_low(avgpool2(x))) + dw_high(x - up(avgpool2(x))))``, unfused."""
    pooled = _block_mean(x)
    high = x - _nearest_up(pooled)
    low_out = _depthwise(pooled, w["low.weight"], w["low.bias"])
    high_out = _depthwise(high, w["high.weight"], w["high.bias"])
    return _pointwise(_nearest_up(low_out) + high_out, w["pointwise.weight"], w["pointwise.bias"])


def _reference_ds(w: dict[str, Tensor], x: Tensor) -> Tensor:
    """``pw(horizontal_1xk(x) + vertical_kx1(x))``, each kernel applied on its own."""
    horizontal = _depthwise(x, w["horizontal.weight"], w["horizontal.bias"])
    vertical = _depthwise(x, w["vertical.weight"], w["vertical.bias"])
    return _pointwise(horizontal + vertical, w["pointwise.weight"], w["pointwise.bias"])


REFERENCES = {FrequencySeparableConv: _reference_fs, DirectionSeparableConv: _reference_ds}


def _reference(conv: nn.Module, x: Tensor, *, grad: bool = False) -> tuple[Tensor, dict]:
    """The reference output on float64 copies of ``x`` and the weights (which may take grads)."""
    w = {n: p.detach().double().requires_grad_(grad) for n, p in conv.named_parameters()}
    x64 = x.detach().double().requires_grad_(grad)
    return REFERENCES[type(conv)](w, x64), {"input": x64, **w}


def _randomise(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))


def _layouts(x: Tensor) -> dict[str, Tensor]:
    """The same values as contiguous NCHW, channels-last, and a strided (non-contiguous) view."""
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
    wide[..., ::2] = x
    layouts = {
        "contiguous": x.contiguous(),
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": wide[..., ::2],
    }
    assert layouts["channels_last"].is_contiguous(memory_format=torch.channels_last)
    assert not layouts["channels_last"].is_contiguous() and not layouts["strided"].is_contiguous()
    return layouts


def _make(kind: str, c_in: int, c_out: int, kernel_size: int) -> nn.Module:
    if kind == "fs":
        return FrequencySeparableConv(c_in, c_out)
    return DirectionSeparableConv(c_in, c_out, kernel_size)


FUSED_CASES = [(1, 3, 5, 6, 10), (2, 8, 8, 8, 8), (3, 16, 4, 12, 6)]
KINDS = [("fs", 3), ("ds", 3), ("ds", 5)]


@pytest.mark.parametrize(("batch", "c_in", "c_out", "height", "width"), FUSED_CASES)
@pytest.mark.parametrize(("kind", "kernel_size"), KINDS)
@pytest.mark.parametrize("weights_channels_last", [False, True])
def test_fused_separable_convs_match_the_unfused_definition(
    batch: int,
    c_in: int,
    c_out: int,
    height: int,
    width: int,
    kind: str,
    kernel_size: int,
    weights_channels_last: bool,
) -> None:
    """Random kernels, random inputs, every memory format: the fused forward is the definition."""
    conv = _make(kind, c_in, c_out, kernel_size)
    _randomise(conv, seed=c_in + kernel_size)
    if weights_channels_last:
        conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, c_in, height, width, generator=torch.Generator().manual_seed(width))
    expected, _ = _reference(conv, x)
    assert expected.abs().mean() > 1  # random kernels: a wrong term cannot hide under round-off
    for layout, xin in _layouts(x).items():
        with torch.no_grad():
            out = conv(xin)
        assert out.shape == expected.shape, layout
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5, msg=layout)


@pytest.mark.parametrize(("kind", "kernel_size"), KINDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fused_separable_convs_backpropagate_like_the_definition(
    kind: str, kernel_size: int, layout: str
) -> None:
    """Training runs through the fused forwards too: their gradients must be the reference's."""
    conv = _make(kind, 6, 4, kernel_size)
    _randomise(conv, seed=7)
    x = torch.randn(2, 6, 8, 10, generator=torch.Generator().manual_seed(1))
    probe = torch.randn(2, 4, 8, 10, generator=torch.Generator().manual_seed(2))
    xin = _layouts(x)[layout].clone().requires_grad_(True)
    (conv(xin) * probe).sum().backward()
    got = {"input": xin.grad, **{n: p.grad for n, p in conv.named_parameters()}}
    out64, leaves = _reference(conv, x, grad=True)
    (out64 * probe.double()).sum().backward()
    for name, leaf in leaves.items():
        torch.testing.assert_close(got[name].double(), leaf.grad, rtol=1e-5, atol=1e-4, msg=name)


def test_the_reference_frequency_split_is_not_any_upsampler() -> None:
    """The reference itself bites: a bilinear low-pass (not the documented 2x2 nearest) differs."""
    conv = FrequencySeparableConv(4, 4)
    _randomise(conv, seed=3)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    expected, w = _reference(conv, x)
    pooled = _block_mean(x.double())
    bilinear = F.interpolate(pooled, scale_factor=2, mode="bilinear", align_corners=False)
    wrong = _pointwise(
        F.interpolate(
            _depthwise(pooled, w["low.weight"], w["low.bias"]), scale_factor=2, mode="bilinear"
        )
        + _depthwise(x.double() - bilinear, w["high.weight"], w["high.bias"]),
        w["pointwise.weight"],
        w["pointwise.bias"],
    )
    assert (wrong - expected).abs().max() > 0.1
    assert (conv(x).double() - wrong).abs().max() > 0.1


@pytest.mark.parametrize("kind", ["fs", "ds"])
def test_light_net_gives_the_same_output_in_both_memory_formats(kind: str) -> None:
    """The whole student, with random (non-zero) weights, under both ``channels_last`` policies."""
    net = LightSRNet(3, base_channels=8, channel_mults=(1, 2), fs_conv=kind == "fs",
                     ds_conv=kind == "ds", num_groups=4)  # fmt: skip
    _randomise(net, seed=11)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)  # keep activations O(1) through the residual stack
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(5))
    outs = {}
    for policy in (False, True):
        net.channels_last = policy
        with torch.no_grad():
            outs[policy] = net(x)
    assert outs[False].abs().mean() > 0.1
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-4, atol=1e-4)
