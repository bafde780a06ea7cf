"""Weight names of terradiff's UNet <-> diffusers' ``UNet2DModel`` (same tensors, renamed).

Blocks map one to one (``down.{i}.res.{j}`` <-> ``down_blocks.{i}.resnets.{j}``, ``mid_res1`` <->
``mid_block.resnets.0``, ...; see :data:`PREFIXES`). Inside them, terradiff's fused attention
projection ``qkv`` is diffusers' ``to_q``, ``to_k`` and ``to_v`` stacked along the output
dimension, in the same head layout; diffusers' pre-0.14 attention names (``query``, ``key``,
``value``, ``proj_attn``) are read too. With ``flip_sin_to_cos: false`` diffusers' time embedding
is ``[sin, cos]``, terradiff's ``[cos, sin]``: the first time-MLP layer's input columns swap
halves, which makes the two nets compute the same function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from terradiff.errors import ConfigError

__all__ = ["PREFIXES", "state_dict_from_diffusers", "state_dict_to_diffusers"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

#: (terradiff prefix, diffusers prefix); ``{i}``/``{j}`` are block and layer indices.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("time_embed.mlp.0.", "time_embedding.linear_1."),
    ("time_embed.mlp.2.", "time_embedding.linear_2."),
    ("input_conv.", "conv_in."),
    ("out.0.", "conv_norm_out."),
    ("out.1.", "conv_out."),
    ("mid_res1.", "mid_block.resnets.0."),
    ("mid_res2.", "mid_block.resnets.1."),
    ("mid_attn.", "mid_block.attentions.0."),
    ("down.{i}.res.{j}.", "down_blocks.{i}.resnets.{j}."),
    ("down.{i}.attn.{j}.", "down_blocks.{i}.attentions.{j}."),
    ("down.{i}.resample.", "down_blocks.{i}.downsamplers.0."),
    ("up.{i}.res.{j}.", "up_blocks.{i}.resnets.{j}."),
    ("up.{i}.attn.{j}.", "up_blocks.{i}.attentions.{j}."),
    ("up.{i}.resample.", "up_blocks.{i}.upsamplers.0."),
)
#: (terradiff, diffusers) names inside a residual or attention block.
_LEAVES: tuple[tuple[str, str], ...] = (
    ("emb_proj.", "time_emb_proj."),
    ("skip.", "conv_shortcut."),
    ("norm.", "group_norm."),
    ("proj.", "to_out.0."),
)
#: diffusers' attention names before 0.14 -> today's.
_DEPRECATED: tuple[tuple[str, str], ...] = (
    ("query.", "to_q."),
    ("key.", "to_k."),
    ("value.", "to_v."),
    ("proj_attn.", "to_out.0."),
)
_QKV = ("to_q.", "to_k.", "to_v.")


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[ij]\})", template)
    body = "".join(f"(?P<{p[1]}>\\d+)" if p in ("{i}", "{j}") else re.escape(p) for p in parts)
    return re.compile("^" + body)


_TO = [(_pattern(t), d) for t, d in PREFIXES]
_FROM = [(_pattern(d), t) for t, d in PREFIXES]


def _split(key: str, rules: list[tuple[re.Pattern[str], str]]) -> tuple[str, str] | None:
    """``(mapped prefix, rest of the key)``, or None when no rule matches."""
    for pattern, template in rules:
        match = pattern.match(key)
        if match:
            return template.format(**match.groupdict()), key[match.end() :]
    return None


def _rename(rest: str, pairs: tuple[tuple[str, str], ...], reverse: bool = False) -> str:
    for a, b in pairs:
        src, dst = (b, a) if reverse else (a, b)
        if rest.startswith(src):
            return dst + rest[len(src) :]
    return rest


def state_dict_to_diffusers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A terradiff UNet ``state_dict`` under diffusers' ``UNet2DModel`` names.

    Raises:
        ConfigError: a weight with no diffusers counterpart (e.g. a condition embedding).
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        split = _split(key, _TO)
        if split is None:
            raise ConfigError(
                f"UNet weight {key!r} has no counterpart in diffusers' UNet2DModel; export a "
                "plain (unconditioned, no cross-attention) UNet"
            )
        prefix, rest = split
        if rest.startswith("qkv."):
            leaf = rest[len("qkv.") :]
            for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{prefix}{name}{leaf}"] = part.contiguous().clone()
        else:
            out[prefix + _rename(rest, _LEAVES)] = value.detach().contiguous().clone()
    return out


def state_dict_from_diffusers(
    state: Mapping[str, Tensor], *, flip_sin_to_cos: bool = True, source: str = WEIGHTS_NAME
) -> dict[str, Tensor]:
    """A diffusers ``UNet2DModel`` ``state_dict`` under terradiff's UNet names.

    Args:
        state: diffusers' weights (current or pre-0.14 attention names).
        flip_sin_to_cos: the config's flag; False swaps the sin and cos halves of the first
            time-MLP layer's inputs (terradiff's embedding is ``[cos, sin]``).
        source: the file named in errors.

    Raises:
        ConfigError: a weight terradiff's UNet has no place for, or an incomplete attention.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        split = _split(key, _FROM)
        if split is None:
            raise ConfigError(
                f"{source}: weight {key!r} has no place in terradiff's UNet (a block type or "
                "embedding outside the shared architecture)"
            )
        prefix, rest = split
        rest = _rename(rest, _DEPRECATED)
        if rest.startswith(_QKV):
            qkv.setdefault(prefix, {})[rest] = value
        else:
            out[prefix + _rename(rest, _LEAVES, reverse=True)] = value
    for prefix, parts in qkv.items():
        for leaf in ("weight", "bias"):
            names = [f"{q}{leaf}" for q in _QKV]
            missing = [n for n in names if n not in parts]
            if missing:
                raise ConfigError(f"{source}: attention {prefix} lacks {missing}")
            out[f"{prefix}qkv.{leaf}"] = torch.cat([parts[n] for n in names], dim=0)
    if not flip_sin_to_cos and "time_embed.mlp.0.weight" in out:
        w = out["time_embed.mlp.0.weight"]
        half = w.shape[1] // 2
        out["time_embed.mlp.0.weight"] = torch.cat(
            [w[:, half : 2 * half], w[:, :half], w[:, 2 * half :]], dim=1
        )
    return out
