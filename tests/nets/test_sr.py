"""ImplicitSRNet: the rendered condition follows the output size; forward = condition + denoise."""

from __future__ import annotations

import pytest
import torch

from terradiff.nets.sr import ImplicitSRNet, LREncoder
from terradiff.nets.unet import UNet


def _net(bands: int = 4, render: int = 6) -> ImplicitSRNet:
    unet = UNet(
        bands,
        cond_channels=render + bands,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=16,
        num_groups=8,
        head_channels=16,
    )
    return ImplicitSRNet(bands, unet, render_channels=render, encoder_channels=16, hidden=16)


def test_encoder_pyramid_is_coarse_first() -> None:
    features = LREncoder(3, 16)(torch.zeros(2, 3, 11, 9))
    assert [tuple(f.shape) for f in features] == [(2, 32, 6, 5), (2, 16, 11, 9)]


@pytest.mark.parametrize("size", [(16, 16), (24, 32), (37, 41)])
def test_condition_is_rendered_at_any_size(size: tuple[int, int]) -> None:
    net = _net()
    lr = torch.rand(2, 4, 8, 8) * 2 - 1
    cond = net.condition(lr, size)
    assert cond.shape == (2, 6 + 4, *size)
    # the last bands are the bicubic LR image
    assert torch.allclose(cond[:, 6:].mean(), lr.mean(), atol=0.05)


def test_forward_equals_condition_then_denoise() -> None:
    net = _net().eval()
    lr, x_t, t = torch.rand(1, 4, 8, 8), torch.randn(1, 4, 16, 16), torch.tensor([10.0])
    with torch.no_grad():
        assert torch.allclose(net(x_t, t, lr), net.denoise(x_t, t, net.condition(lr, (16, 16))))


def test_mismatched_denoiser_is_refused() -> None:
    unet = UNet(
        3,
        cond_channels=3,
        base_channels=16,
        channel_mults=(1,),
        attention_resolutions=(),
        num_groups=8,
    )
    with pytest.raises(ValueError, match="render_channels"):
        ImplicitSRNet(3, unet, render_channels=8)
