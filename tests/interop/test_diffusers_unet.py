"""terradiff UNet <-> diffusers UNet2DModel: configs, weights and forward passes.

Equality tests need diffusers (the ``dev`` extra) and are skipped with that reason without it.
Tolerance: the two forward passes agree to ``atol = rtol = 1e-5`` in float32 (measured ~1e-6:
the sinusoidal time embedding and attention are computed in a different order).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from terradiff.errors import CheckpointError, ConfigError
from terradiff.interop.diffusers_unet import (
    DIFFUSERS_DEFAULTS,
    diffusers_unet_config,
    read_diffusers_unet,
    state_dict_from_diffusers,
    state_dict_to_diffusers,
    unet_from_diffusers,
    unet_kwargs_from_diffusers,
)
from terradiff.nets.unet import UNet

ATOL = RTOL = 1e-5


def diffusers_or_skip():
    return pytest.importorskip(
        "diffusers", reason="diffusers is not installed (pip install 'terradiff[dev]')"
    )


def random_unet(**overrides) -> UNet:
    """A small UNet with every weight random (the zero-initialised layers too)."""
    kwargs = {
        "base_channels": 16,
        "channel_mults": (1, 2, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (8,),
        "image_size": 16,
        "num_groups": 8,
        "head_channels": 8,
        **overrides,
    }
    net = UNet(kwargs.pop("in_channels", 3), **kwargs).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return net


def write_diffusers_folder(net: UNet, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(diffusers_unet_config(net.config)))
    save_file(
        state_dict_to_diffusers(net.state_dict()),
        str(folder / "diffusion_pytorch_model.safetensors"),
    )


@pytest.mark.parametrize(
    ("overrides", "cond"),
    [
        ({}, 0),
        ({"scale_shift": False}, 0),
        ({"mid_attention": False, "attention_resolutions": ()}, 0),
        ({"head_channels": 64}, 0),  # one head of the level's width everywhere
        ({"cond_channels": 2}, 2),  # SR3: diffusers takes cat([x, cond])
        ({"time_freq_shift": 1.0}, 0),
        ({"norm_eps": 1e-6, "downsample_padding": 0, "scale_shift": False}, 0),  # DDPM's
    ],
)
def test_export_loads_in_diffusers_with_equal_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict, cond: int
) -> None:
    diffusers = diffusers_or_skip()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if overrides.get("head_channels") == 64:
        overrides = {**overrides, "channel_mults": (1, 2), "attention_resolutions": (8,)}
    net = random_unet(**overrides)
    write_diffusers_folder(net, tmp_path / "d")
    theirs = diffusers.UNet2DModel.from_pretrained(tmp_path / "d").eval()
    x = torch.randn(2, 3, 16, 16)
    c = torch.randn(2, cond, 16, 16) if cond else None
    t = torch.tensor([0, 999])
    with torch.no_grad():
        ours = net(x, t, c)
        out = theirs(x if c is None else torch.cat([x, c], dim=1), t).sample
    torch.testing.assert_close(out, ours, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("freq_shift", [0, 1])  # 1 with flip False: the DDPM reference net
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("shift", ["scale_shift", "default"])
def test_import_of_a_diffusers_net_gives_its_outputs(
    tmp_path: Path, flip: bool, shift: str, freq_shift: int
) -> None:
    diffusers = diffusers_or_skip()
    torch.manual_seed(2)
    theirs = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        attention_head_dim=8,
        norm_num_groups=8,
        attn_norm_num_groups=8,
        flip_sin_to_cos=flip,
        freq_shift=freq_shift,
        resnet_time_scale_shift=shift,
    ).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(0.2 * torch.randn(p.shape))
    theirs.save_pretrained(tmp_path / "d")
    ours = unet_from_diffusers(tmp_path / "d")
    assert ours.attention_levels == (1,)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([5, 731])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t), theirs(x, t).sample, atol=ATOL, rtol=RTOL)


def test_weight_names_round_trip_without_diffusers() -> None:
    net = random_unet(cond_channels=1)
    state = net.state_dict()
    theirs = state_dict_to_diffusers(state)
    assert "down_blocks.1.attentions.0.to_q.weight" in theirs
    assert "mid_block.resnets.1.time_emb_proj.weight" in theirs
    assert "up_blocks.0.upsamplers.0.conv.weight" in theirs
    back = state_dict_from_diffusers(theirs)
    assert back.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def test_pre_014_attention_names_are_read() -> None:
    theirs = state_dict_to_diffusers(random_unet().state_dict())
    old = {}
    for key, value in theirs.items():
        for new, dep in (
            ("to_q.", "query."),
            ("to_k.", "key."),
            ("to_v.", "value."),
            ("to_out.0.", "proj_attn."),
        ):
            key = key.replace(new, dep)
        old[key] = value
    assert state_dict_from_diffusers(old).keys() == random_unet().state_dict().keys()


def test_config_round_trip() -> None:
    net = random_unet(dropout=0.1)
    kwargs, flip = unet_kwargs_from_diffusers(diffusers_unet_config(net.config))
    assert flip is True
    expected = {k: net.config[k] for k in kwargs}
    assert kwargs == expected


BASE = {
    "sample_size": 16,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("freq_shift", 8),  # not below half the embedding width (16 / 2)
        ("time_embedding_type", "fourier"),
        ("center_input_sample", True),
        ("norm_eps", 0.0),
        ("downsample_padding", 2),
        ("act_fn", "gelu"),
        ("mid_block_scale_factor", 2),
        ("downsample_type", "resnet"),
        ("class_embed_type", "timestep"),
        ("num_class_embeds", 10),
        ("time_embedding_dim", 100),
        ("block_out_channels", [16, 24]),
        ("down_block_types", ["DownBlock2D", "CrossAttnDownBlock2D"]),
        ("up_block_types", ["UpBlock2D", "AttnUpBlock2D"]),
        ("attention_head_dim", 12),
        ("resnet_time_scale_shift", "spatial"),
        ("some_future_key", 1),
        ("_class_name", "UNet2DConditionModel"),
    ],
)
def test_unsupported_keys_are_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=repr(key).replace("[", r"\[")):
        unet_kwargs_from_diffusers({**BASE, key: value})


def test_scale_shift_without_attention_norm_groups_is_refused() -> None:
    config = {**BASE, "resnet_time_scale_shift": "scale_shift", "attn_norm_num_groups": None}
    with pytest.raises(ConfigError, match="'attn_norm_num_groups'"):
        unet_kwargs_from_diffusers(config)
    config["add_attention"] = False  # no middle attention: nothing to normalise
    kwargs, _ = unet_kwargs_from_diffusers(config)
    assert kwargs["mid_attention"] is False


def test_defaults_describe_diffusers() -> None:
    diffusers = diffusers_or_skip()
    import inspect

    signature = inspect.signature(diffusers.UNet2DModel.__init__)
    for key, value in DIFFUSERS_DEFAULTS.items():
        default = signature.parameters[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_export_refuses_what_diffusers_cannot_hold() -> None:
    net = random_unet(condition_spec={"num_classes": 3})
    with pytest.raises(ConfigError, match="condition_spec"):
        diffusers_unet_config(net.config)
    with pytest.raises(ConfigError, match="condition"):
        state_dict_to_diffusers(net.state_dict())
    # heads of 8 channels at 16-channel level and one 32-wide head would need two head sizes
    net = random_unet(attention_resolutions=(16, 8), head_channels=24)
    with pytest.raises(ConfigError, match="head_channels"):
        diffusers_unet_config(net.config)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        read_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BASE))
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="pickle"):
        read_diffusers_unet(tmp_path)
