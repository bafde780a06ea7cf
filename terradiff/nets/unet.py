"""SR3-style UNet denoiser for any number of bands, with optional concatenated conditioning.

Architecture (Ho et al. 2020, Appendix B; Saharia et al. 2021 "SR3", Sec. 2.4 and App. A; with
the multi-head attention and scale-shift norm of Nichol & Dhariwal 2021, Sec. 3):

* input: ``conv3x3(concat(x, cond))`` -- SR3 conditions on the (upsampled) low-resolution image by
  channel concatenation; ``cond_channels = 0`` gives an unconditional denoiser;
* encoder: ``len(channel_mults)`` levels of ``num_res_blocks`` residual blocks (+ self-attention at
  the levels listed in ``attention_resolutions``), a stride-2 conv between levels;
* middle: ResBlock, attention, ResBlock at the lowest resolution;
* decoder: per level ``num_res_blocks + 1`` residual blocks, each fed with the concatenated skip
  connection of the matching encoder activation, nearest+conv upsampling between levels;
* output: ``conv3x3(SiLU(GN(h)))``, zero-initialised (the net starts by predicting 0).

Optionally (``condition_spec``) a class label and numeric metadata, embedded by
:class:`~terradiff.nets.conditioning.ConditionEmbedding`, are added to the time embedding before
the residual blocks use it (Dhariwal & Nichol 2021, Sec. 4; DiffusionSat, Khanna et al. 2024,
Sec. 3), with learned null values for classifier-free guidance (Ho & Salimans 2022).

Timesteps go through a sinusoidal embedding and an MLP (float ``t`` works, so continuous
timesteps are fine). On CPU, activations run in ``torch.channels_last`` by default (oneDNN's
fast NHWC path; the weights stay contiguous so checkpoints are plain), which together with bf16
autocast is what makes CPU training and sampling practical.
At inference under bf16/fp16 autocast the input convolution and the output head run in fp32
(:func:`terradiff.nets.precision.full_precision`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from terradiff.nets.blocks import (
    AttentionBlock,
    CrossAttentionFusion,
    Downsample,
    GroupNormSiLU,
    ResBlock,
    TimeEmbedding,
    Upsample,
    check_groups,
)
from terradiff.nets.conditioning import (
    Condition,
    ConditionEmbedding,
    ConditionSpec,
    check_condition,
)
from terradiff.nets.memory import use_channels_last
from terradiff.nets.precision import full_precision
from terradiff.nets.residuals import ControlResiduals, UNetEncoding

__all__ = ["SMALL_64", "UNet", "attention_levels"]

#: The default small UNet for 64x64 generation (the ``model:`` defaults of
#: :class:`terradiff.config.ModelConfig`): base 64, multipliers (1, 2, 2, 4) -> 64/128/128/256
#: channels at 64/32/16/8 pixels, 2 residual blocks per level (3 in the decoder), attention at
#: 16x16 and 8x8 + middle (none at the two high-resolution levels, where attention costs most),
#: 64-channel heads, FiLM scale-shift. 19.4 M parameters for 3 bands; 13.0 GFLOP (2 x
#: multiply-adds) per 64x64 image per forward. Use as ``UNet(bands, **SMALL_64)``.
SMALL_64: dict[str, Any] = {
    "base_channels": 64,
    "channel_mults": (1, 2, 2, 4),
    "num_res_blocks": 2,
    "attention_resolutions": (16, 8),
    "image_size": 64,
    "head_channels": 64,
}


def attention_levels(
    attention_resolutions: Sequence[int], image_size: int, num_levels: int
) -> tuple[int, ...]:
    """Map attention resolutions in pixels (SR3 / guided-diffusion convention) to level indices.

    Level ``i`` works at ``image_size / 2**i`` pixels. Expressing attention as levels lets the same
    net run at other image sizes (e.g. larger tiles at inference).

    Args:
        attention_resolutions: Pixel sizes at the training ``image_size`` (e.g. ``(16, 8)``).
        image_size: Training image size.
        num_levels: ``len(channel_mults)``.

    Returns:
        Sorted level indices.

    Raises:
        ValueError: When a resolution is not one of the levels' sizes.
    """
    sizes = {image_size // 2**i: i for i in range(num_levels) if image_size % 2**i == 0}
    levels = []
    for res in attention_resolutions:
        if int(res) not in sizes:
            available = ", ".join(str(s) for s in sorted(sizes, reverse=True))
            raise ValueError(
                f"attention resolution {res} is not the size of any UNet level for image_size="
                f"{image_size} and {num_levels} levels; the levels work at {available} pixels"
            )
        levels.append(sizes[int(res)])
    return tuple(sorted(set(levels)))


class _Level(nn.Module):
    """Residual blocks (+ attention) of one resolution, then an optional resampling layer."""

    def __init__(
        self, res: list[ResBlock], attn: list[nn.Module], resample: nn.Module | None
    ) -> None:
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.resample = resample


class UNet(nn.Module):
    """SR3-style UNet: ``forward(x, t, cond=None) -> prediction`` with the shape of ``x``.

    Args:
        in_channels: Bands of ``x`` (1, 3, 4, 13, ...).
        out_channels: Bands of the output (default ``in_channels``).
        cond_channels: Channels of the optional condition concatenated with ``x`` (SR3: the
            bicubic-upsampled low-resolution image); 0 for an unconditional net.
        base_channels: Channels of the first level.
        channel_mults: Per-level channel multipliers; the net has ``len(channel_mults)`` levels and
            ``H, W`` must be multiples of ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks: Residual blocks per encoder level (the decoder has one more per level).
        attention_resolutions: Pixel sizes at ``image_size`` with self-attention.
        image_size: Training image size (only used to map ``attention_resolutions`` to levels).
        dropout: Dropout in the residual blocks.
        num_groups: GroupNorm groups (must divide every level's channels).
        head_channels: Channels per attention head.
        scale_shift: FiLM scale-shift time conditioning (Nichol & Dhariwal 2021) instead of the
            additive DDPM form.
        mid_attention: Self-attention in the middle block.
        channels_last: Run activations in ``torch.channels_last``; ``None`` (default) = only for
            CPU inputs. The output comes back in the memory format of ``x``.
        condition_spec: Class / metadata conditioning (a
            :class:`~terradiff.nets.conditioning.ConditionSpec` or its ``to_dict()``); None (or a
            spec with no classes and no fields) = none: exactly the unconditioned network, with
            the same parameters, ``state_dict`` keys and (for a given seed) initial weights. The
            embedding's parameters are created last, so a conditioned net's other weights are
            those of the unconditioned net built from the same seed.
        time_freq_shift: Frequency shift of the sinusoidal time embedding
            (:func:`~terradiff.nets.blocks.timestep_embedding`); 0 (terradiff's own) or the 1 of
            the DDPM reference code, for nets imported from diffusers with ``freq_shift: 1``.
        norm_eps: Epsilon of every GroupNorm; 1e-5 (terradiff's own) or the 1e-6 of the DDPM
            reference code (Ho et al. 2020; diffusers' ``norm_eps``).
        downsample_padding: 1 (terradiff's own) or 0: TensorFlow-style bottom/right padding
            of the stride-2 convolutions, as in the DDPM reference code (see
            :class:`~terradiff.nets.blocks.Downsample`; diffusers' ``downsample_padding``).

    Attributes:
        config: The constructor arguments as a JSON-serialisable dict (see :meth:`from_config`).
        attention_levels: Level indices with self-attention.
        feature_channels: Channels of the decoder features of :meth:`forward_features`.
        skip_channels: Channels of each skip connection (:attr:`UNetEncoding.skips`).
        middle_channels: Channels of the middle block's output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        cond_channels: int = 0,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        image_size: int = 64,
        dropout: float = 0.0,
        num_groups: int = 32,
        head_channels: int = 64,
        scale_shift: bool = True,
        mid_attention: bool = True,
        context_channels: int = 0,
        channels_last: bool | None = None,
        condition_spec: ConditionSpec | Mapping[str, Any] | None = None,
        time_freq_shift: float = 0.0,
        norm_eps: float = 1e-5,
        downsample_padding: int = 1,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("cond_channels", cond_channels, 0),
            ("context_channels", context_channels, 0),
            ("base_channels", base_channels, 1),
            ("num_res_blocks", num_res_blocks, 1),
            ("image_size", image_size, 1),
            ("num_groups", num_groups, 1),
            ("head_channels", head_channels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not channel_mults or any(int(m) < 1 for m in channel_mults):
            raise ValueError(f"channel_mults must be positive integers, got {channel_mults!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < norm_eps < 1.0 or downsample_padding not in (0, 1):
            raise ValueError(
                f"norm_eps must be in (0, 1) and downsample_padding 0 or 1, got {norm_eps!r} "
                f"and {downsample_padding!r}"
            )
        channel_mults = tuple(int(m) for m in channel_mults)
        if condition_spec is not None and not isinstance(condition_spec, ConditionSpec):
            condition_spec = ConditionSpec.from_dict(condition_spec)
        spec = condition_spec if condition_spec is not None and condition_spec.enabled else None
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "cond_channels": cond_channels,
            "base_channels": base_channels,
            "channel_mults": list(channel_mults),
            "num_res_blocks": num_res_blocks,
            "attention_resolutions": list(attention_resolutions),
            "image_size": image_size,
            "dropout": float(dropout),
            "num_groups": num_groups,
            "head_channels": head_channels,
            "scale_shift": bool(scale_shift),
            "mid_attention": bool(mid_attention),
            "context_channels": context_channels,
            "channels_last": channels_last,
            "condition_spec": None if spec is None else spec.to_dict(),
            "time_freq_shift": float(time_freq_shift),
            "norm_eps": float(norm_eps),
            "downsample_padding": int(downsample_padding),
        }
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cond_channels = cond_channels
        self.context_channels = context_channels
        self.channels_last = channels_last
        self.condition_spec = spec
        num_levels = len(channel_mults)
        self.downsample_factor = 2 ** (num_levels - 1)
        self.attention_levels = attention_levels(attention_resolutions, image_size, num_levels)
        chans = [base_channels * m for m in channel_mults]
        for c in chans:
            check_groups(c, num_groups)
        emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, emb_dim, freq_shift=time_freq_shift)

        def res(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(
                c_in,
                c_out,
                emb_dim,
                dropout=dropout,
                num_groups=num_groups,
                scale_shift=scale_shift,
                eps=norm_eps,
            )

        def attn(c: int, level: int) -> nn.Module:
            if level not in self.attention_levels:
                return nn.Identity()
            return AttentionBlock(
                c, head_channels=head_channels, num_groups=num_groups, eps=norm_eps
            )

        self.input_conv = nn.Conv2d(in_channels + cond_channels, chans[0], 3, padding=1)
        skips = [chans[0]]
        cur = chans[0]
        down: list[_Level] = []
        for i, c in enumerate(chans):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(res(cur, c))
                attns.append(attn(c, i))
                cur = c
                skips.append(cur)
            resample = None
            if i < num_levels - 1:
                resample = Downsample(cur, downsample_padding)
                skips.append(cur)
            down.append(_Level(blocks, attns, resample))
        self.down = nn.ModuleList(down)

        self.skip_channels: tuple[int, ...] = tuple(skips)
        self.middle_channels = cur
        self.mid_res1 = res(cur, cur)
        self.mid_attn = (
            AttentionBlock(cur, head_channels=head_channels, num_groups=num_groups, eps=norm_eps)
            if mid_attention
            else nn.Identity()
        )
        self.mid_fusion = (
            CrossAttentionFusion(
                cur, context_channels, head_channels=head_channels, num_groups=num_groups
            )
            if context_channels
            else None
        )
        self.mid_res2 = res(cur, cur)

        up: list[_Level] = []
        for i in reversed(range(num_levels)):
            c = chans[i]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(res(cur + skips.pop(), c))
                attns.append(attn(c, i))
                cur = c
            up.append(_Level(blocks, attns, Upsample(cur) if i > 0 else None))
        self.up = nn.ModuleList(up)
        self.feature_channels: tuple[int, ...] = tuple(reversed(chans))

        self.out = nn.Sequential(
            GroupNormSiLU(num_groups, cur, eps=norm_eps),
            nn.Conv2d(cur, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)
        # Created last: the rest of the net draws the same initial weights as without it.
        self.condition_embed = (
            None if spec is None else ConditionEmbedding(spec, emb_dim, base_channels)
        )

    # ------------------------------------------------------------------ config / bookkeeping

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> UNet:
        """Rebuild a net from :attr:`config` (e.g. read back from a checkpoint's JSON).

        Raises:
            ValueError: On keys that are not constructor arguments.
        """
        config = dict(config)
        known = set(cls._config_keys())
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown UNet config keys {unknown}; expected a subset of {sorted(known)}"
            )
        if "in_channels" not in config:
            raise ValueError("UNet config needs 'in_channels'")
        in_channels = config.pop("in_channels")
        return cls(in_channels, **config)

    @staticmethod
    def _config_keys() -> tuple[str, ...]:
        return (
            "in_channels",
            "out_channels",
            "cond_channels",
            "base_channels",
            "channel_mults",
            "num_res_blocks",
            "attention_resolutions",
            "image_size",
            "dropout",
            "num_groups",
            "head_channels",
            "scale_shift",
            "mid_attention",
            "context_channels",
            "channels_last",
            "condition_spec",
            "time_freq_shift",
            "norm_eps",
            "downsample_padding",
        )

    def config_json(self) -> str:
        """:attr:`config` as a JSON string."""
        return json.dumps(self.config, sort_keys=True)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def extra_repr(self) -> str:
        """Summary line for ``print(net)``."""
        return f"params={self.num_parameters():,}, attention_levels={self.attention_levels}"

    # ------------------------------------------------------------------ forward

    def _check_context(self, x: Tensor, context: Tensor | None) -> None:
        if self.context_channels and context is None:
            raise ValueError(
                f"this UNet fuses condition tokens (context_channels={self.context_channels}): "
                f"pass context of shape [{x.shape[0]}, N, {self.context_channels}]"
            )
        if not self.context_channels and context is not None:
            raise ValueError("this UNet has context_channels=0 but a context tensor was given")

    def _check_inputs(self, x: Tensor, t: Tensor | float, cond: Tensor | None) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects x of shape [B, C, H, W], got {tuple(x.shape)}")
        B, C, H, W = x.shape
        if self.in_channels != C:
            raise ValueError(
                f"UNet expects x with {self.in_channels} channels (in_channels), got {C} "
                f"(x shape {tuple(x.shape)})"
            )
        m = self.downsample_factor
        if H % m or W % m:
            raise ValueError(
                f"UNet with {len(self.down)} levels needs H and W that are multiples of {m}, got "
                f"{H}x{W}; pad or crop to e.g. {-(-H // m) * m}x{-(-W // m) * m}"
            )
        if self.cond_channels:
            if cond is None:
                raise ValueError(
                    f"this UNet is conditional (cond_channels={self.cond_channels}): pass cond "
                    f"of shape [{B}, {self.cond_channels}, {H}, {W}]"
                )
            if cond.ndim != 4 or cond.shape[0] != B or cond.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"cond must have shape [{B}, {self.cond_channels}, {H}, {W}] (batch and size "
                    f"of x), got {tuple(cond.shape)}"
                )
            if cond.shape[1] != self.cond_channels:
                raise ValueError(
                    f"UNet expects cond with {self.cond_channels} channels (cond_channels), got "
                    f"{cond.shape[1]}"
                )
        elif cond is not None:
            raise ValueError(
                "this UNet has cond_channels=0 (unconditional) but a cond tensor was given; "
                "build it with cond_channels=<channels of cond>"
            )
        if not isinstance(t, Tensor):
            t = torch.tensor(float(t), device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.ndim != 1 or t.shape[0] != B:
            raise ValueError(f"t must be a scalar or have shape [{B}], got {tuple(t.shape)}")
        return t

    def encode(
        self,
        x: Tensor,
        t: Tensor | float,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        *,
        condition: Condition | None = None,
        input_residual: Tensor | None = None,
        emb_residual: Tensor | None = None,
    ) -> UNetEncoding:
        """The first half of a pass: input conv, encoder and middle block.

        Arguments as :meth:`forward`, plus two hooks for a control branch (ControlNet, Zhang et
        al. 2023, Sec. 3.2): ``input_residual`` (``[B, skip_channels[0], H, W]``) is added to the
        input convolution's output and ``emb_residual`` (``[B, 4 * base_channels]``) to the time
        embedding. ``decode(encode(...))`` is exactly :meth:`forward`.
        """
        t = self._check_inputs(x, t, cond)
        self._check_context(x, context)
        if condition is not None:
            check_condition(condition, self.condition_spec, x.shape[0])
        channels_last = use_channels_last(self.channels_last, x.device)
        input_channels_last = x.is_contiguous(memory_format=torch.channels_last) and not (
            x.is_contiguous()
        )
        h = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)

        emb = self.time_embed(t)
        if self.condition_embed is not None:  # None = all null
            emb = emb + self.condition_embed(condition, x.shape[0])
        if emb_residual is not None:
            emb = emb + emb_residual
        h = full_precision(self.input_conv, h, self.training, cast_back=True)
        if input_residual is not None:
            h = h + input_residual
        hs = [h]
        for level in self.down:
            for block, attn in zip(level.res, level.attn, strict=True):
                h = attn(block(h, emb))
                hs.append(h)
            if level.resample is not None:
                h = level.resample(h)
                hs.append(h)

        h = self.mid_attn(self.mid_res1(h, emb))
        if self.mid_fusion is not None:
            h = self.mid_fusion(h, context)
        h = self.mid_res2(h, emb)
        return UNetEncoding(hs, h, emb, input_channels_last)

    def decode(
        self,
        encoding: UNetEncoding,
        *,
        control: ControlResiduals | None = None,
        features: list[Tensor] | None = None,
    ) -> Tensor:
        """The second half of a pass: decoder and output layer.

        Args:
            encoding: What :meth:`encode` returned.
            control: Residuals added to every skip connection and to the middle block's output
                before decoding (ControlNet's zero-convolution outputs); None = none.
            features: When a list, each decoder level's output is appended to it (see
                :meth:`forward_features`).

        Raises:
            ValueError: ``control`` with another number of skip residuals than skips.
        """
        hs = list(encoding.skips)
        h = encoding.middle
        if control is not None:
            if len(control.skips) != len(hs):
                raise ValueError(
                    f"control has {len(control.skips)} skip residuals, the UNet has {len(hs)} "
                    f"skip connections (channels {list(self.skip_channels)})"
                )
            hs = [s + r for s, r in zip(hs, control.skips, strict=True)]
            h = h + control.middle
        for level in self.up:
            for block, attn in zip(level.res, level.attn, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), encoding.emb))
            if features is not None:
                features.append(h)
            if level.resample is not None:
                h = level.resample(h)

        out = full_precision(self.out, h, self.training)
        if encoding.channels_last_input:
            return out.contiguous(memory_format=torch.channels_last)
        return out.contiguous()

    def forward(
        self,
        x: Tensor,
        t: Tensor | float,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        *,
        condition: Condition | None = None,
        control: ControlResiduals | None = None,
    ) -> Tensor:
        """Predict (noise, x0 or v -- the net does not care) for ``x_t`` at timestep ``t``.

        Args:
            x: Noisy images ``[B, in_channels, H, W]``; ``H, W`` multiples of
                :attr:`downsample_factor`.
            t: Timesteps ``[B]`` (long or float; fractional timesteps are fine) or a scalar.
            cond: Condition ``[B, cond_channels, H, W]`` when ``cond_channels > 0``, else None.
            context: Condition tokens ``[B, N, context_channels]`` fused by cross-attention at
                the bottleneck when ``context_channels > 0``, else None.
            condition: Class labels / metadata for a net built with ``condition_spec``; None (or
                null parts) = the null condition, the unconditional model of classifier-free
                guidance. An unconditioned net accepts only None or an empty condition.
            control: Residuals for the skip connections and the middle block (see
                :meth:`decode`; :class:`~terradiff.nets.controlnet.ControlNet`).

        Returns:
            ``[B, out_channels, H, W]``, in the memory format of ``x``.
        """
        encoding = self.encode(x, t, cond, context, condition=condition)
        return self.decode(encoding, control=control)

    def forward_features(
        self,
        x: Tensor,
        t: Tensor | float,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        *,
        condition: Condition | None = None,
        control: ControlResiduals | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Forward pass that also returns the decoder's multi-scale features.

        The features are the output of each decoder level (after its last residual/attention
        block, before upsampling), coarse to fine: ``features[k]`` has
        ``feature_channels[k]`` channels and ``H / 2**(L-1-k)`` pixels -- what an implicit
        (LIIF/IDM-style) decoder or a feature-distillation loss consumes. Arguments as
        :meth:`forward`.

        Returns:
            ``(output, features)``.
        """
        features: list[Tensor] = []
        encoding = self.encode(x, t, cond, context, condition=condition)
        out = self.decode(encoding, control=control, features=features)
        return out, features
