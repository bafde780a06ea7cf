"""Tests of terradiff.nets.blocks: time embedding, residual, attention and resampling blocks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from terradiff.nets.blocks import (
    AttentionBlock,
    Downsample,
    GroupNorm,
    GroupNormSiLU,
    ResBlock,
    TimeEmbedding,
    Upsample,
    check_groups,
    timestep_embedding,
)


def _randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Give every parameter random values (the zero-initialised layers would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


# ----------------------------------------------------------------------------- time embedding


def test_timestep_embedding_values_at_zero_and_formula() -> None:
    emb = timestep_embedding(torch.tensor([0.0, 3.0]), 8)
    assert emb.shape == (2, 8) and emb.dtype == torch.float32
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(4) / 4)
    expected = torch.cat([torch.cos(3.0 * freqs), torch.sin(3.0 * freqs)])
    torch.testing.assert_close(emb[1], expected)


def test_timestep_embedding_distinguishes_timesteps_and_takes_float_t() -> None:
    t = torch.tensor([5, 6])
    emb_int = timestep_embedding(t, 64)
    emb_float = timestep_embedding(torch.tensor([5.0, 5.5, 6.0]), 64)
    torch.testing.assert_close(emb_float[[0, 2]], emb_int)
    assert not torch.allclose(emb_int[0], emb_int[1])
    # a fractional timestep embeds strictly between its neighbours (no rounding), continuously
    assert not torch.allclose(emb_float[1], emb_float[0])
    assert not torch.allclose(emb_float[1], emb_float[2])
    near = timestep_embedding(torch.tensor([5.0 + 1e-4]), 64)
    assert (near - emb_float[0]).abs().max() < 1e-3


def test_timestep_embedding_odd_dim_and_bad_shape() -> None:
    emb = timestep_embedding(torch.arange(3), 7)
    assert emb.shape == (3, 7)
    assert torch.all(emb[:, -1] == 0)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        timestep_embedding(torch.zeros(2, 1), 8)


def test_time_embedding_mlp_shape_and_sensitivity() -> None:
    module = TimeEmbedding(32, 128)
    out = module(torch.tensor([0.0, 10.0, 10.5]))
    assert out.shape == (3, 128)
    assert not torch.allclose(out[1], out[2])


# ----------------------------------------------------------------------------- norms


def test_check_groups_message() -> None:
    check_groups(64, 32)
    with pytest.raises(ValueError, match="num_groups=32 must divide the channel count 48"):
        check_groups(48, 32)


def test_group_norm_silu_matches_reference_with_and_without_grad() -> None:
    module = GroupNormSiLU(4, 16)
    _randomize(module)
    x = torch.randn(2, 16, 8, 8)
    reference = F.silu(F.group_norm(x, 4, module.weight, module.bias, module.eps))
    with torch.no_grad():  # in-place SiLU path
        torch.testing.assert_close(module(x), reference)
    x_grad = x.clone().requires_grad_()
    module(x_grad).square().sum().backward()
    x_ref = x.clone().requires_grad_()
    F.silu(F.group_norm(x_ref, 4, module.weight, module.bias)).square().sum().backward()
    torch.testing.assert_close(x_grad.grad, x_ref.grad)


def test_group_norm_keeps_bf16_and_channels_last() -> None:
    module = GroupNorm(4, 16)
    x = torch.randn(2, 16, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    out = module(x)
    assert out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- ResBlock


def _resblock_reference(block: ResBlock, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """The textbook computation (Nichol & Dhariwal 2021 scale-shift / DDPM additive)."""
    h = block.conv1(F.silu(F.group_norm(x, block.num_groups, block.norm1.weight, block.norm1.bias)))
    e = block.emb_proj(F.silu(emb))[:, :, None, None]
    norm2 = block.norm2
    if block.scale_shift:
        scale, shift = e.chunk(2, dim=1)
        h = F.group_norm(h, block.num_groups, norm2.weight, norm2.bias) * (1 + scale) + shift
    else:
        h = F.group_norm(h + e, block.num_groups, norm2.weight, norm2.bias)
    h = block.conv2(F.silu(h))
    return block.skip(x) + h


@pytest.mark.parametrize("scale_shift", [True, False])
@pytest.mark.parametrize(("c_in", "c_out"), [(16, 16), (16, 32)])
def test_resblock_matches_reference(scale_shift: bool, c_in: int, c_out: int) -> None:
    block = ResBlock(c_in, c_out, 24, num_groups=4, scale_shift=scale_shift)
    _randomize(block)
    x, emb = torch.randn(3, c_in, 8, 8), torch.randn(3, 24)
    out = block(x, emb)
    assert out.shape == (3, c_out, 8, 8)
    assert isinstance(block.skip, torch.nn.Conv2d) == (c_in != c_out)
    torch.testing.assert_close(out, _resblock_reference(block, x, emb), rtol=1e-4, atol=1e-5)
    # the time embedding matters
    assert not torch.allclose(out, block(x, emb.flip(0)))


def test_resblock_starts_as_identity_and_gradients_flow() -> None:
    block = ResBlock(16, 16, 8, num_groups=4)
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = block(x, torch.randn(2, 8))
    torch.testing.assert_close(out, x)  # conv2 is zero-initialised
    out.sum().backward()
    assert block.conv2.weight.grad is not None and block.conv2.weight.grad.abs().sum() > 0


def test_resblock_dropout_only_in_training() -> None:
    block = ResBlock(8, 8, 4, num_groups=2, dropout=0.5)
    _randomize(block)
    x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 4)
    block.eval()
    torch.testing.assert_close(block(x, emb), block(x, emb))
    block.train()
    assert not torch.allclose(block(x, emb), block(x, emb))


def test_resblock_bf16_autocast_close_to_fp32_and_channels_last() -> None:
    block = ResBlock(32, 32, 16, num_groups=8)
    _randomize(block, std=0.05)
    x = torch.randn(2, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    emb = torch.randn(2, 16)
    reference = block(x, emb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x, emb)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.float() - reference).abs().max() < 0.05 * reference.abs().max()


# ----------------------------------------------------------------------------- attention


def _attention_reference(block: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    heads, d = block.heads, C // block.heads
    h = F.group_norm(x, block.norm.num_groups, block.norm.weight, block.norm.bias)
    seq = h.flatten(2).transpose(1, 2)  # [B, HW, C]
    q, k, v = block.qkv(seq).split(C, dim=-1)
    q, k, v = (z.reshape(B, H * W, heads, d).transpose(1, 2) for z in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(B, H * W, C)
    out = block.proj(out).transpose(1, 2).reshape(B, C, H, W)
    return x + out


@pytest.mark.parametrize(("channels", "head_channels", "heads"), [(32, 16, 2), (32, 64, 1)])
def test_attention_matches_reference(channels: int, head_channels: int, heads: int) -> None:
    block = AttentionBlock(channels, head_channels=head_channels, num_groups=8)
    assert block.heads == heads
    _randomize(block)
    x = torch.randn(2, channels, 4, 6)
    out = block(x)
    torch.testing.assert_close(out, _attention_reference(block, x), rtol=1e-4, atol=1e-5)
    out_cl = block(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-6)


def test_attention_starts_as_identity_and_rejects_bad_heads() -> None:
    block = AttentionBlock(16, head_channels=8, num_groups=4)
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(block(x), x)  # zero-initialised output projection
    with pytest.raises(ValueError, match="heads, which do not divide 100"):
        AttentionBlock(100, head_channels=30, num_groups=4)


# ----------------------------------------------------------------------------- resampling


def test_down_and_upsample_shapes() -> None:
    x = torch.randn(2, 8, 12, 16)
    assert Downsample(8)(x).shape == (2, 8, 6, 8)
    up = Upsample(8)
    assert up(x).shape == (2, 8, 24, 32)
    _randomize(up)
    # nearest upsampling then conv: equals conv of the repeat-interleaved map
    repeated = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(up(x), up.conv(repeated))


def test_group_norm_backward_on_a_channels_last_input_without_gradient() -> None:
    """torch 2.13 crashes here on the raw op; terradiff's group norm takes the safe layout."""
    from terradiff.nets.blocks import GroupNorm, GroupNormSiLU

    for cls in (GroupNorm, GroupNormSiLU):
        norm = cls(8, 16)
        x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
        out = norm(x)
        assert out.is_contiguous(memory_format=torch.channels_last)
        out.square().sum().backward()
        assert norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0
        expected = torch.nn.functional.group_norm(x.contiguous(), 8, norm.weight, norm.bias)
        if cls is GroupNormSiLU:
            expected = torch.nn.functional.silu(expected)
        torch.testing.assert_close(out, expected)
