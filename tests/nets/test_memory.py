"""One memory-format policy per net (``train.channels_last``)."""

from __future__ import annotations

import torch

from terradiff.nets.light import LightSRNet
from terradiff.nets.memory import set_channels_last, use_channels_last
from terradiff.nets.unet import UNet


def test_none_means_cpu_only() -> None:
    assert use_channels_last(None, torch.device("cpu"))
    assert not use_channels_last(None, torch.device("meta"))
    assert not use_channels_last(False, torch.device("cpu"))
    assert use_channels_last(True, torch.device("meta"))


def test_set_channels_last_reaches_every_net_and_keeps_outputs() -> None:
    net = UNet(
        3,
        3,
        base_channels=16,
        channel_mults=(1, 2),
        attention_resolutions=(),
        image_size=8,
        num_groups=8,
    )
    net.student = LightSRNet(3, base_channels=8)  # a nested net gets the same policy
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 5.0])
    with torch.no_grad():
        before = net(x, t)
    set_channels_last(net, False)
    assert net.channels_last is False and net.student.channels_last is False
    set_channels_last(net, True)
    assert net.input_conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        after = net(x, t)
    assert after.is_contiguous()  # the output follows the input's format
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
