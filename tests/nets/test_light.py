"""The light student modules (frequency-/direction-separable conv, global aggregation) and net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
