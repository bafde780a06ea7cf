"""The UNet options of the DDPM reference code (Ho et al. 2020): GroupNorm epsilon 1e-6 and
TensorFlow-style ("SAME") bottom/right padding of the stride-2 convolutions. Their defaults
must leave the net exactly as it was (same parameters, initial weights and outputs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from terradiff.nets.blocks import Downsample
from terradiff.nets.unet import UNet

SMALL = {
    "base_channels": 16,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8,),
    "image_size": 16,
    "num_groups": 8,
    "head_channels": 16,
}


def test_defaults_leave_the_net_unchanged() -> None:
    torch.manual_seed(0)
    plain = UNet(3, **SMALL)
    torch.manual_seed(0)
    explicit = UNet(3, **SMALL, norm_eps=1e-5, downsample_padding=1)
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, explicit.state_dict()[key]), key
    assert all(m.eps == 1e-5 for m in plain.modules() if isinstance(m, nn.GroupNorm))
    assert UNet.from_config({k: v for k, v in plain.config.items() if k != "norm_eps"}).config == (
        plain.config
    )


def test_norm_eps_reaches_every_group_norm() -> None:
    net = UNet(3, **SMALL, norm_eps=1e-6)
    norms = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) > 5 and all(m.eps == 1e-6 for m in norms)
    assert UNet.from_config(net.config).config["norm_eps"] == 1e-6


def test_downsample_padding_zero_is_tensorflow_same() -> None:
    torch.manual_seed(1)
    down = Downsample(4, padding=0)
    x = torch.randn(2, 4, 8, 8)
    # TF "SAME" for a 3x3 stride-2 conv on an even size: one extra row/column, bottom/right
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
    torch.testing.assert_close(down(x), expected, rtol=0, atol=0)
    assert down(x).shape == (2, 4, 4, 4)
    same = Downsample(4)
    same.load_state_dict(down.state_dict())
    assert not torch.allclose(same(x), down(x))  # the padding really differs
    with pytest.raises(ValueError, match="padding"):
        Downsample(4, padding=2)
    with pytest.raises(ValueError, match="downsample_padding"):
        UNet(3, **SMALL, downsample_padding=2)
