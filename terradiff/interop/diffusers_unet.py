"""terradiff's :class:`~terradiff.nets.unet.UNet` <-> diffusers' ``UNet2DModel`` (config, weights).

The two networks are the same DDPM / "improved DDPM" UNet (Ho et al. 2020, App. B; Nichol &
Dhariwal 2021, Sec. 3) written twice, so a diffusers ``UNet2DModel`` whose config stays inside
the shared part maps onto terradiff's net weight for weight:

=============================  ==============================================================
diffusers ``UNet2DModel``      terradiff ``UNet``
=============================  ==============================================================
``block_out_channels``         ``base_channels * channel_mults`` (every entry a multiple of
                               the first)
``layers_per_block``           ``num_res_blocks``
``Attn{Down,Up}Block2D``       the levels in ``attention_resolutions`` (the same levels on
                               both sides of the net)
``attention_head_dim``         ``head_channels`` (the same head count at every level)
``add_attention``              ``mid_attention``
``resnet_time_scale_shift``    ``scale_shift`` (``"scale_shift"`` / ``"default"``)
``norm_num_groups``            ``num_groups`` (``attn_norm_num_groups`` None or equal)
``flip_sin_to_cos``            True; False is imported by permuting the first time-MLP layer's
                               input columns (the embedding's sin and cos halves swap)
``freq_shift``                 ``time_freq_shift`` (1 in the DDPM reference code)
``norm_eps``                   ``norm_eps`` (1e-6 in the DDPM reference code)
``downsample_padding``         ``downsample_padding`` (0 in the DDPM reference code: TF "SAME")
``dropout``, ``sample_size``   ``dropout``, ``image_size``
=============================  ==============================================================

So the DDPM reference nets (Ho et al. 2020, converted to diffusers as ``google/ddpm-*``:
additive time embedding, ``freq_shift`` 1, ``flip_sin_to_cos`` false, ``norm_eps`` 1e-6,
``downsample_padding`` 0, one attention head) import, and so does every net terradiff exports.
Everything else must have the value both nets share (``act_fn`` silu,
``mid_block_scale_factor`` 1, conv up/down-sampling, positional time embedding, no class
embedding, no ``center_input_sample``);
:func:`unet_kwargs_from_diffusers` raises a :class:`~terradiff.errors.ConfigError` naming the
first key that is not, with its value and what terradiff supports.

The weights are renamed by :mod:`terradiff.interop.diffusers_weights`. Nothing here imports
diffusers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor

from terradiff.errors import CheckpointError, ConfigError
from terradiff.interop.diffusers_weights import (
    WEIGHTS_NAME,
    state_dict_from_diffusers,
    state_dict_to_diffusers,
)
from terradiff.nets.unet import UNet, attention_levels

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "diffusers_unet_config",
    "read_diffusers_unet",
    "state_dict_from_diffusers",
    "state_dict_to_diffusers",
    "unet_from_diffusers",
    "unet_kwargs_from_diffusers",
]

CONFIG_NAME = "config.json"
MIN_DIFFUSERS_VERSION = "0.30.0"
"""Written as ``_diffusers_version`` when diffusers is not installed (the ``dev`` extra's floor)."""

#: diffusers' ``UNet2DModel`` defaults (diffusers 0.30-0.42): what a config without the key means.
DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

#: Keys whose value must be exactly this (diffusers' spelling) for the nets to correspond.
_FIXED: dict[str, tuple[Any, ...]] = {
    "center_input_sample": (False,),
    "time_embedding_type": ("positional",),
    "mid_block_type": ("UNetMidBlock2D",),
    "mid_block_scale_factor": (1,),
    "downsample_padding": (0, 1),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "act_fn": ("silu", "swish"),
    "resnet_time_scale_shift": ("default", "scale_shift"),
    "class_embed_type": (None,),
    "num_class_embeds": (None,),
}

_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


def _refuse(key: str, value: Any, supported: str, source: str) -> ConfigError:
    return ConfigError(
        f"{source}: diffusers key {key!r} = {value!r} has no counterpart in terradiff's UNet "
        f"({supported}); only UNet2DModel configs inside the shared architecture import"
    )


def _installed_diffusers_version() -> str:
    try:
        return metadata.version("diffusers")
    except metadata.PackageNotFoundError:
        return MIN_DIFFUSERS_VERSION


# --------------------------------------------------------------------------- configs


def _head_dim(net_config: Mapping[str, Any], chans: list[int], levels: tuple[int, ...]) -> int:
    """diffusers' ``attention_head_dim`` giving every attention block terradiff's head count."""
    head_channels = int(net_config["head_channels"])
    attended = [chans[i] for i in levels]
    if net_config.get("mid_attention", True):
        attended.append(chans[-1])
    dims = sorted({c // max(1, c // head_channels) for c in attended})
    if len(dims) > 1:
        raise ConfigError(
            f"head_channels={head_channels} gives attention heads of {dims} channels at "
            f"different levels; diffusers' UNet2DModel has one attention_head_dim for all, so "
            "this net cannot be exported (retrain with a head_channels dividing every attended "
            "level's channels)"
        )
    return dims[0] if dims else head_channels


def diffusers_unet_config(net_config: Mapping[str, Any]) -> dict[str, Any]:
    """The diffusers ``UNet2DModel`` config of a terradiff UNet (its :attr:`UNet.config`).

    A conditional net (``cond_channels > 0``) becomes a diffusers net with ``in_channels +
    cond_channels`` input channels: call it with ``torch.cat([x, cond], dim=1)``.

    Raises:
        ConfigError: parts diffusers' ``UNet2DModel`` has no counterpart for (class/metadata
            conditioning, cross-attention context, per-level head sizes).
    """
    if net_config.get("condition_spec"):
        raise ConfigError(
            "this UNet is class/metadata-conditioned (condition_spec); diffusers' UNet2DModel "
            "has no equivalent of terradiff's condition embedding, so it cannot be exported"
        )
    if net_config.get("context_channels"):
        raise ConfigError(
            "this UNet fuses condition tokens by cross-attention (context_channels > 0); "
            "diffusers' UNet2DModel has no such block, so it cannot be exported"
        )
    mults = [int(m) for m in net_config["channel_mults"]]
    chans = [int(net_config["base_channels"]) * m for m in mults]
    image_size = int(net_config["image_size"])
    levels = attention_levels(net_config["attention_resolutions"], image_size, len(chans))
    groups = int(net_config["num_groups"])
    return {
        "_class_name": "UNet2DModel",
        "_diffusers_version": _installed_diffusers_version(),
        "sample_size": image_size,
        "in_channels": int(net_config["in_channels"]) + int(net_config.get("cond_channels", 0)),
        "out_channels": int(net_config.get("out_channels") or net_config["in_channels"]),
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "time_embedding_dim": None,
        "freq_shift": _number(net_config.get("time_freq_shift", 0.0)),
        "flip_sin_to_cos": True,
        "down_block_types": [
            "AttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(len(chans))
        ],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": [
            "AttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(len(chans)))
        ],
        "block_out_channels": chans,
        "layers_per_block": int(net_config["num_res_blocks"]),
        "mid_block_scale_factor": 1,
        "downsample_padding": int(net_config.get("downsample_padding", 1)),
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": float(net_config.get("dropout", 0.0)),
        "act_fn": "silu",
        "attention_head_dim": _head_dim(net_config, chans, levels),
        "norm_num_groups": groups,
        # explicit: with scale_shift and None, diffusers' middle attention has no GroupNorm
        "attn_norm_num_groups": groups,
        "norm_eps": float(net_config.get("norm_eps", 1e-5)),
        "resnet_time_scale_shift": (
            "scale_shift" if net_config.get("scale_shift", True) else "default"
        ),
        "add_attention": bool(net_config.get("mid_attention", True)),
        "class_embed_type": None,
        "num_class_embeds": None,
        "num_train_timesteps": None,
    }


def _number(value: float) -> int | float:
    """``1.0`` -> ``1`` (diffusers' configs write integers), other values unchanged."""
    return int(value) if float(value).is_integer() else float(value)


def _image_size(value: Any, override: int | None, levels: int, source: str) -> int:
    factor = 2 ** (levels - 1)
    if override is not None:
        size = int(override)
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:
        size = int(value[0])
    else:
        raise ConfigError(
            f"{source}: sample_size {value!r} is not one square size; pass image_size (the "
            f"training image size, a multiple of {factor})"
        )
    if size < 1 or size % factor:
        raise ConfigError(
            f"{source}: image size {size} (sample_size or image_size) is not a multiple of "
            f"{factor}, which a net with {levels} levels (block_out_channels) needs"
        )
    return size


def _check_fixed(config: Mapping[str, Any], source: str) -> None:
    """Refuse the first key whose value only one of the two nets supports."""
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise _refuse("_class_name", name, "only UNet2DModel folders import", source)
    for key, allowed in _FIXED.items():
        value = config.get(key, DIFFUSERS_DEFAULTS[key])
        if key in ("mid_block_scale_factor", "downsample_padding"):
            ok = not isinstance(value, bool) and isinstance(value, int | float)
            ok = ok and float(value) in allowed
        else:
            ok = value in allowed
        if not ok:
            raise _refuse(key, value, f"supported: {' or '.join(map(repr, allowed))}", source)
    eps = config.get("norm_eps", DIFFUSERS_DEFAULTS["norm_eps"])
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0.0 < float(eps) < 1.0:
        raise _refuse("norm_eps", eps, "supported: a number in (0, 1)", source)
    unknown = sorted(k for k in config if not k.startswith("_") and k not in DIFFUSERS_DEFAULTS)
    if unknown:
        raise _refuse(unknown[0], config[unknown[0]], "a key this version does not know", source)


def _attention_levels(config: Mapping[str, Any], levels: int, source: str) -> list[int]:
    down = list(config.get("down_block_types", DIFFUSERS_DEFAULTS["down_block_types"]))
    up = list(config.get("up_block_types", DIFFUSERS_DEFAULTS["up_block_types"]))
    for key, types, known in (("down_block_types", down, _DOWN), ("up_block_types", up, _UP)):
        if len(types) != levels:
            raise _refuse(key, types, "one block type per block_out_channels entry", source)
        for block in types:
            if block not in known:
                raise _refuse(key, types, f"block types {' and '.join(known)} only", source)
    attended = [i for i, block in enumerate(down) if _DOWN[block]]
    mirrored = [levels - 1 - k for k, block in enumerate(up) if _UP[block]]
    if sorted(mirrored) != attended:
        raise _refuse(
            "up_block_types", up, "attention at the same levels as down_block_types", source
        )
    return attended


def unet_kwargs_from_diffusers(
    config: Mapping[str, Any],
    *,
    image_size: int | None = None,
    cond_channels: int = 0,
    source: str = "config.json",
) -> tuple[dict[str, Any], bool]:
    """terradiff ``UNet`` keyword arguments for a diffusers ``UNet2DModel`` config.

    Args:
        config: the ``config.json`` of the diffusers folder.
        image_size: the training image size when ``sample_size`` is missing or not square.
        cond_channels: how many of the ``in_channels`` are a concatenated condition (SR3).
        source: the file named in errors.

    Returns:
        ``(kwargs, flip_sin_to_cos)``; the flag tells :func:`state_dict_from_diffusers` how the
        time-embedding halves are ordered.

    Raises:
        ConfigError: a key terradiff's UNet cannot represent (named, with its value).
    """
    _check_fixed(config, source)
    get = lambda key: config.get(key, DIFFUSERS_DEFAULTS[key])  # noqa: E731
    chans = [int(c) for c in get("block_out_channels")]
    base = chans[0]
    if any(c % base for c in chans):
        raise _refuse(
            "block_out_channels", chans, f"every entry a multiple of the first ({base})", source
        )
    if get("time_embedding_dim") not in (None, 4 * base):
        raise _refuse(
            "time_embedding_dim", get("time_embedding_dim"), f"None or 4 x {base}", source
        )
    groups = get("norm_num_groups")
    if groups is None:
        raise _refuse("norm_num_groups", None, "an explicit group count", source)
    scale_shift = get("resnet_time_scale_shift") == "scale_shift"
    mid_attention = bool(get("add_attention"))
    attn_groups = get("attn_norm_num_groups")
    if attn_groups not in (None, groups):
        raise _refuse("attn_norm_num_groups", attn_groups, f"None or {groups}", source)
    if attn_groups is None and scale_shift and mid_attention:
        raise _refuse(
            "attn_norm_num_groups",
            None,
            "with resnet_time_scale_shift 'scale_shift' diffusers' middle attention then has no "
            f"GroupNorm; terradiff's always has one: {groups} is supported",
            source,
        )
    attended = _attention_levels(config, len(chans), source)
    size = _image_size(get("sample_size"), image_size, len(chans), source)
    head_dim = get("attention_head_dim")
    attended_chans = [chans[i] for i in attended] + ([chans[-1]] if mid_attention else [])
    for c in attended_chans:
        if head_dim is not None and (int(head_dim) < 1 or c % int(head_dim)):
            raise _refuse(
                "attention_head_dim", head_dim, f"a divisor of every attended width ({c})", source
            )
    head_channels = int(head_dim) if head_dim is not None else max(attended_chans, default=64)
    freq_shift = get("freq_shift")
    if not isinstance(freq_shift, int | float) or not 0 <= float(freq_shift) < base // 2:
        raise _refuse("freq_shift", freq_shift, f"a number in [0, {base // 2})", source)
    in_channels = int(get("in_channels")) - int(cond_channels)
    if in_channels < 1:
        raise ConfigError(
            f"{source}: cond_channels={cond_channels} leaves no image channels of in_channels="
            f"{get('in_channels')}"
        )
    kwargs = {
        "in_channels": in_channels,
        "out_channels": int(get("out_channels")),
        "cond_channels": int(cond_channels),
        "base_channels": base,
        "channel_mults": [c // base for c in chans],
        "num_res_blocks": int(get("layers_per_block")),
        "attention_resolutions": [size // 2**i for i in attended],
        "image_size": size,
        "dropout": float(get("dropout")),
        "num_groups": int(groups),
        "head_channels": head_channels,
        "scale_shift": scale_shift,
        "mid_attention": mid_attention,
        "time_freq_shift": float(freq_shift),
        "norm_eps": float(get("norm_eps")),
        "downsample_padding": int(get("downsample_padding")),
    }
    return kwargs, bool(get("flip_sin_to_cos"))


# --------------------------------------------------------------------------- folders


def _unet_folder(folder: Path) -> Path:
    """``folder`` or its ``unet/`` sub-folder (a pipeline's layout), whichever holds config.json."""
    for candidate in (folder, folder / "unet"):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise CheckpointError(
        f"{folder} is not a diffusers UNet2DModel folder: no {CONFIG_NAME} in it or in "
        f"{folder / 'unet'}"
    )


def _load_weights(folder: Path) -> dict[str, Tensor]:
    single = folder / WEIGHTS_NAME
    index = folder / f"{WEIGHTS_NAME}.index.json"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(load_file(str(folder / shard)))
            return state
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{folder}: unreadable diffusers weights ({error})") from None
    pickled = folder / "diffusion_pytorch_model.bin"
    hint = (
        f"; {pickled.name} is a pickle, which terradiff never loads: convert it with diffusers "
        "(UNet2DModel.from_pretrained(path).save_pretrained(path, safe_serialization=True))"
        if pickled.is_file()
        else ""
    )
    raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}{hint}")


def read_diffusers_unet(folder: str | Path) -> tuple[dict[str, Any], dict[str, Tensor], Path]:
    """The config and weights of a diffusers UNet folder (or a pipeline folder's ``unet/``).

    Returns:
        ``(config, state_dict, config_path)``.

    Raises:
        CheckpointError: no config, unreadable JSON, or no safetensors weights.
    """
    path = _unet_folder(Path(folder))
    config_path = path / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path}: unreadable diffusers config ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: a diffusers config is a JSON object")
    return config, _load_weights(path), config_path


def unet_from_diffusers(
    folder: str | Path, *, image_size: int | None = None, cond_channels: int = 0
) -> UNet:
    """A terradiff UNet with the weights of a diffusers ``UNet2DModel`` folder.

    Raises:
        ConfigError: a config key terradiff cannot represent, or weights that do not fit it.
        CheckpointError: the folder is not a readable diffusers UNet folder.
    """
    config, state, config_path = read_diffusers_unet(folder)
    kwargs, flip = unet_kwargs_from_diffusers(
        config, image_size=image_size, cond_channels=cond_channels, source=str(config_path)
    )
    net = UNet(kwargs.pop("in_channels"), **kwargs)
    mapped = state_dict_from_diffusers(
        state, flip_sin_to_cos=flip, source=str(config_path.parent / WEIGHTS_NAME)
    )
    try:
        net.load_state_dict(mapped)
    except RuntimeError as error:
        raise ConfigError(
            f"{config_path.parent}: the weights do not fit the net its config describes: {error}"
        ) from None
    return net.eval()
