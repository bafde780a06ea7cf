"""ImplicitSRNet: the rendered condition follows the output size and steers the denoiser."""

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


def _live_net() -> ImplicitSRNet:
    """:func:`_net` with its zero-initialised UNet output layer given random weights.

    A fresh UNet predicts exactly zero whatever its inputs, so any comparison of outputs would
    hold for a broken net too.
    """
    net = _net().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.denoiser.out.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return net


def test_forward_is_steered_by_both_condition_paths() -> None:
    """The rendered LR features and the bicubic LR image both reach the prediction."""
    net = _live_net()
    g = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 4, 8, 8, generator=g) * 2 - 1
    x_t, t = torch.randn(1, 4, 16, 16, generator=g), torch.tensor([10.0])
    with torch.no_grad():
        out = net(x_t, t, lr)
        cond = net.condition(lr, (16, 16))
        no_render, no_bicubic = cond.clone(), cond.clone()
        no_render[:, :6] = 0
        no_bicubic[:, 6:] = 0
        other_lr = net(x_t, t, torch.flip(lr, dims=[-1]))
        assert out.abs().mean() > 1e-3
        for changed in (net.denoise(x_t, t, no_render), net.denoise(x_t, t, no_bicubic), other_lr):
            assert (changed - out).abs().mean() > 1e-3 * out.abs().mean()


def test_forward_trains_the_encoder_and_the_implicit_decoder() -> None:
    """Training calls ``forward``: a loss on it must give gradients to every part of the net."""
    net = _live_net().train()
    g = torch.Generator().manual_seed(2)
    lr, x_t = torch.rand(2, 4, 8, 8, generator=g) * 2 - 1, torch.randn(2, 4, 16, 16, generator=g)
    net(x_t, torch.tensor([10.0, 500.0]), lr).square().mean().backward()
    for part in (net.encoder, net.decoder, net.denoiser):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(gr is not None for gr in grads), type(part).__name__
        assert sum(float(gr.abs().sum()) for gr in grads) > 0, type(part).__name__


def test_forward_treats_each_image_of_a_batch_alone() -> None:
    """One image's prediction does not depend on the others it is batched with."""
    net = _live_net()
    g = torch.Generator().manual_seed(3)
    lr = torch.rand(3, 4, 8, 8, generator=g) * 2 - 1
    x_t, t = torch.randn(3, 4, 16, 24, generator=g), torch.tensor([5.0, 50.0, 500.0])
    with torch.no_grad():
        batch = net(x_t, t, lr)
        alone = torch.cat([net(x_t[i : i + 1], t[i : i + 1], lr[i : i + 1]) for i in range(3)])
    assert batch.shape == x_t.shape
    torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-5)


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
