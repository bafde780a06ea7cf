"""Tests of terradiff.nets.unet.UNet: shapes, input validation, config round trip, learning."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from terradiff.nets.blocks import AttentionBlock
from terradiff.nets.unet import SMALL_64, UNet, attention_levels

TINY: dict[str, Any] = {
    "base_channels": 16,
    "channel_mults": (1, 2, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (16,),
    "image_size": 32,
    "num_groups": 8,
    "head_channels": 16,
}


def _randomize(net: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Random values for every parameter (zero-initialised output layers would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _tiny(in_channels: int = 3, **kwargs: Any) -> UNet:
    return UNet(in_channels, **{**TINY, **kwargs})


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("bands", [1, 3, 4, 13])
@pytest.mark.parametrize("cond_channels", [0, 3])
@pytest.mark.parametrize("size", [(32, 32), (64, 64), (32, 48)])
def test_output_shape_any_bands_cond_and_size(
    bands: int, cond_channels: int, size: tuple[int, int]
) -> None:
    net = _tiny(bands, cond_channels=cond_channels)
    x = torch.randn(2, bands, *size)
    cond = torch.randn(2, cond_channels, *size) if cond_channels else None
    with torch.no_grad():
        out = net(x, torch.tensor([3, 700]), cond)
    assert out.shape == x.shape
    assert out.dtype == torch.float32 and out.is_contiguous()


def test_out_channels_differ_from_in() -> None:
    net = _tiny(4, out_channels=8)
    with torch.no_grad():
        assert net(torch.randn(1, 4, 32, 32), torch.tensor([1.0])).shape == (1, 8, 32, 32)


def test_condition_changes_the_output() -> None:
    net = _tiny(3, cond_channels=2)
    _randomize(net)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 10])
    with torch.no_grad():
        a = net(x, t, torch.zeros(2, 2, 32, 32))
        b = net(x, t, torch.ones(2, 2, 32, 32))
    assert not torch.allclose(a, b)


def test_float_and_scalar_timesteps() -> None:
    net = _tiny()
    _randomize(net)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out_5 = net(x, torch.tensor([5, 5]))
        out_5f = net(x, torch.tensor([5.0, 5.0]))
        out_55 = net(x, torch.tensor([5.5, 5.5]))
        out_scalar = net(x, 5.0)
    torch.testing.assert_close(out_5, out_5f)
    torch.testing.assert_close(out_scalar, out_5f)
    assert not torch.allclose(out_5, out_55)


# ----------------------------------------------------------------------------- validation


def test_wrong_channels_error_names_expected_and_got() -> None:
    net = _tiny(3)
    with pytest.raises(ValueError, match=r"expects x with 3 channels \(in_channels\), got 4"):
        net(torch.randn(1, 4, 32, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"shape \[B, C, H, W\]"):
        net(torch.randn(3, 32, 32), torch.tensor([1]))


def test_bad_size_error_names_needed_multiple() -> None:
    net = _tiny(3)  # 3 levels -> multiples of 4
    with pytest.raises(ValueError, match="multiples of 4, got 30x32"):
        net(torch.randn(1, 3, 30, 32), torch.tensor([1]))
    deep = UNet(3, **{**TINY, "channel_mults": (1, 1, 2, 2)})
    with pytest.raises(ValueError, match="multiples of 8"):
        deep(torch.randn(1, 3, 36, 36), torch.tensor([1]))


def test_cond_errors() -> None:
    cond_net = _tiny(3, cond_channels=2)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([1])
    with pytest.raises(ValueError, match=r"conditional.*pass cond"):
        cond_net(x, t)
    with pytest.raises(ValueError, match=r"expects cond with 2 channels .*got 3"):
        cond_net(x, t, torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="batch and size of x"):
        cond_net(x, t, torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="cond_channels=0"):
        _tiny(3)(x, t, torch.randn(1, 2, 32, 32))


def test_timestep_shape_error() -> None:
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \[2\]"):
        _tiny(3)(torch.randn(2, 3, 32, 32), torch.tensor([1, 2, 3]))


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="num_groups=32 must divide"):
        UNet(3, base_channels=48, num_groups=32)
    with pytest.raises(ValueError, match="in_channels must be an integer >= 1"):
        UNet(0)
    with pytest.raises(ValueError, match="dropout"):
        UNet(3, **{**TINY, "dropout": 1.5})


# ----------------------------------------------------------------------------- attention levels


def test_attention_resolution_to_level_mapping() -> None:
    assert attention_levels((16, 8), 64, 4) == (2, 3)
    assert attention_levels((64,), 64, 4) == (0,)
    assert attention_levels((16,), 32, 3) == (1,)
    assert attention_levels((), 64, 4) == ()
    with pytest.raises(ValueError, match="levels work at 64, 32, 16, 8 pixels"):
        attention_levels((12,), 64, 4)
    with pytest.raises(ValueError, match="attention resolution 4"):
        attention_levels((4,), 64, 4)  # 4 px would need a 5th level


def test_attention_blocks_sit_at_the_mapped_levels() -> None:
    net = UNet(3, **{**TINY, "attention_resolutions": (16, 8), "mid_attention": False})
    assert net.attention_levels == (1, 2)
    per_down = [sum(isinstance(m, AttentionBlock) for m in level.attn) for level in net.down]
    per_up = [sum(isinstance(m, AttentionBlock) for m in level.attn) for level in net.up]
    assert per_down == [0, 1, 1]  # num_res_blocks = 1
    assert per_up == [2, 2, 0]  # decoder levels coarse -> fine, num_res_blocks + 1 each
    # same net at another size: the levels (not the pixel sizes) carry the attention
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64), torch.tensor([1])).shape == (1, 3, 64, 64)


# ----------------------------------------------------------------------------- config


def test_config_round_trip_gives_same_outputs() -> None:
    net = _tiny(4, cond_channels=2, out_channels=5, dropout=0.1, scale_shift=False)
    _randomize(net)
    config = json.loads(json.dumps(net.config))  # JSON-serialisable, as in a checkpoint
    rebuilt = UNet.from_config(config)
    assert rebuilt.config == net.config
    rebuilt.load_state_dict(net.state_dict())
    net.eval()
    rebuilt.eval()
    x, c = torch.randn(2, 4, 32, 32), torch.randn(2, 2, 32, 32)
    t = torch.tensor([0.0, 999.0])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, t, c), net(x, t, c))
    assert rebuilt.num_parameters() == net.num_parameters()


def test_from_config_rejects_unknown_keys() -> None:
    config = {**_tiny().config, "channel_mult": [1, 2]}
    with pytest.raises(ValueError, match=r"unknown UNet config keys \['channel_mult'\]"):
        UNet.from_config(config)


def test_num_parameters_and_small_64_default() -> None:
    net = UNet(3, **SMALL_64)
    assert net.num_parameters() == sum(p.numel() for p in net.parameters())
    assert 18_000_000 < net.num_parameters() < 21_000_000
    assert net.attention_levels == (2, 3)
    net.time_embed.requires_grad_(False)
    frozen = sum(p.numel() for p in net.time_embed.parameters())
    assert net.num_parameters(trainable_only=True) == net.num_parameters() - frozen


# ----------------------------------------------------------------------------- training


def test_every_parameter_gets_a_gradient() -> None:
    net = _tiny(3, cond_channels=1)
    _randomize(net)  # zero-initialised layers would block gradients on the first step
    x, cond = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    net(x, torch.tensor([1.0, 2.0]), cond).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_net_learns_a_fixed_batch() -> None:
    torch.manual_seed(0)
    net = _tiny(3)
    x = torch.randn(4, 3, 32, 32)
    t = torch.tensor([10.0, 200.0, 500.0, 900.0])
    target = torch.randn(4, 3, 32, 32)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = F.mse_loss(net(x, t), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


# ----------------------------------------------------------------------------- memory format


def test_channels_last_and_contiguous_inputs_agree() -> None:
    net = _tiny(4, cond_channels=2)
    _randomize(net)
    nchw = UNet.from_config({**net.config, "channels_last": False})
    nchw.load_state_dict(net.state_dict())
    x, cond = torch.randn(2, 4, 32, 48), torch.randn(2, 2, 32, 48)
    t = torch.tensor([3.0, 400.0])
    with torch.no_grad():
        out = net(x, t, cond)
        out_cl = net(
            x.contiguous(memory_format=torch.channels_last),
            t,
            cond.contiguous(memory_format=torch.channels_last),
        )
        out_nchw = nchw(x, t, cond)
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_nchw, out, rtol=1e-4, atol=1e-5)
    assert out.is_contiguous()
    assert out_cl.is_contiguous(memory_format=torch.channels_last)  # follows the input


def test_bf16_autocast_forward_close_to_fp32() -> None:
    net = _tiny(3)
    _randomize(net, std=0.03)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5.0, 50.0])
    with torch.no_grad():
        reference = net(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x, t)
    assert out.shape == reference.shape
    error = (out.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05


# ----------------------------------------------------------------------------- features


def test_forward_features_shapes_and_same_output() -> None:
    net = _tiny(3)
    _randomize(net)
    x, t = torch.randn(2, 3, 32, 48), torch.tensor([1, 2])
    with torch.no_grad():
        out, feats = net.forward_features(x, t)
        torch.testing.assert_close(out, net(x, t))
    assert net.feature_channels == (32, 32, 16)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 12), (2, 32, 16, 24), (2, 16, 32, 48)]


def test_context_tokens_are_fused_at_the_bottleneck() -> None:
    from terradiff.nets.blocks import CrossAttentionFusion

    torch.manual_seed(0)
    net = UNet(
        1,
        cond_channels=2,
        base_channels=16,
        channel_mults=(1, 2),
        num_groups=4,
        attention_resolutions=(),
        image_size=16,
        context_channels=12,
    )
    assert UNet.from_config(net.config).context_channels == 12
    x, cond = torch.randn(2, 1, 16, 16), torch.randn(2, 2, 16, 16)
    context = torch.randn(2, 5, 12)
    # the fusion starts as the identity: same output as the same net without it
    fusion = net.mid_fusion
    assert isinstance(fusion, CrossAttentionFusion)
    torch.nn.init.normal_(net.out[1].weight)
    base = net(x, 3, cond, context)
    net.mid_fusion = None
    net.context_channels = 0
    torch.testing.assert_close(net(x, 3, cond), base)
    net.mid_fusion, net.context_channels = fusion, 12
    # once trained (non-zero projections) the output depends on the context
    torch.nn.init.normal_(fusion.proj.weight)
    assert not torch.allclose(net(x, 3, cond, context), net(x, 3, cond, context * 2))
    with pytest.raises(ValueError, match="context_channels=12"):
        net(x, 3, cond)
    with pytest.raises(ValueError, match=r"\[2, N, 12\]"):
        net(x, 3, cond, torch.randn(2, 5, 7))


# ----------------------------------------------------------------------------- encode / decode


def test_encode_decode_is_forward_and_zero_control_changes_nothing() -> None:
    from terradiff.nets.residuals import ControlResiduals

    net = _tiny(4)
    _randomize(net)
    x, t = torch.randn(2, 4, 32, 32), torch.tensor([3, 500])
    with torch.no_grad():
        expected = net(x, t)
        encoding = net.encode(x, t)
        assert [s.shape[1] for s in encoding.skips] == list(net.skip_channels)
        assert encoding.middle.shape[1] == net.middle_channels
        assert torch.equal(net.decode(encoding), expected)
        zeros = ControlResiduals(
            [torch.zeros_like(s) for s in encoding.skips], torch.zeros_like(encoding.middle)
        )
        assert torch.equal(net(x, t, control=zeros), expected)
        with pytest.raises(ValueError, match="skip residuals"):
            net.decode(encoding, control=ControlResiduals(zeros.skips[:-1], zeros.middle))
