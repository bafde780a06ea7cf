"""ControlNet: a trainable encoder copy that steers a frozen UNet with an image condition.

Zhang, Rao & Agrawala 2023, "Adding Conditional Control to Text-to-Image Diffusion Models"
(ICCV 2023), Sec. 3.1-3.2 and Fig. 3, in pixel space and for terradiff's
:class:`~terradiff.nets.unet.UNet`:

* the trained generator is **locked** (``requires_grad=False``, always in eval mode);
* a **trainable copy** of its input convolution, encoder and middle block (same weights at the
  start) reads the same ``x_t``, ``t`` and condition, plus the control image ``c`` (for temporal
  generation: the *before* image, as in DiffusionSat's temporal ControlNet, Khanna et al. 2024,
  Sec. 3.3) through a small hint block ending in a **zero convolution**, added to the copy's
  input-convolution output -- Eq. 2's ``x + Z(c; Theta_z1)``, the place where Zhang et al.'s code
  adds its condition features;
* every skip connection and the middle block's output of the copy go through a **zero-initialised
  1x1 convolution** (Eq. 2's ``Z(.; Theta_z2)``) and are added to the locked model's skip
  connections and middle block before its decoder runs (:meth:`UNet.decode`).

Because every zero convolution outputs exactly 0 at initialisation, the output is *identical* to
the locked model's until the first optimizer step (Zhang et al., Sec. 3.1: "harmful noise cannot
influence the hidden states"); the gradients of the zero convolutions are not zero, so training
starts at once.

Optionally the copy gets extra metadata the locked model does not know (``branch_spec``; e.g.
the source date and the years between the dates of a temporal pair), embedded by a
:class:`~terradiff.nets.conditioning.ConditionEmbedding` added to the copy's time embedding.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from terradiff.nets.conditioning import Condition, ConditionEmbedding, ConditionSpec
from terradiff.nets.residuals import ControlResiduals
from terradiff.nets.unet import UNet

__all__ = ["ControlNet", "zero_conv"]


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Conv2d:
    """A convolution with weight and bias initialised to zero (Zhang et al. 2023, Sec. 3.1)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlNet(nn.Module):
    """A locked :class:`UNet` plus a trainable encoder copy fed a control image.

    ``forward(x, t, cond=None, context=None, *, control_image, condition=None,
    branch_condition=None)`` predicts what the locked UNet predicts (noise, x0 or v), steered by
    ``control_image``.

    Args:
        locked: The trained generator. Its parameters are frozen here (``requires_grad_(False)``)
            and it stays in eval mode.
        control_channels: Bands of the control image (e.g. the before image's bands).
        hint_channels: Width of the hint block (default: the UNet's first-level channels).
        branch_spec: Extra class/metadata conditioning of the copy only (a
            :class:`~terradiff.nets.conditioning.ConditionSpec` or its ``to_dict()``); None:
            none. (Its embedding reaches the output only through the zero convolutions.)

    Attributes:
        locked: The frozen generator.
        branch: The trainable copy (encoder and middle block; its decoder is removed).
        hint: Control image -> features added to the copy's input convolution output.
        skip_zero: One zero 1x1 convolution per skip connection.
        middle_zero: The zero 1x1 convolution of the middle block.
        config: JSON-ready constructor arguments (with the locked UNet's config).
    """

    def __init__(
        self,
        locked: UNet,
        control_channels: int,
        *,
        hint_channels: int | None = None,
        branch_spec: ConditionSpec | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(control_channels, bool) or not isinstance(control_channels, int):
            raise ValueError(f"control_channels must be an integer >= 1, got {control_channels!r}")
        if control_channels < 1:
            raise ValueError(f"control_channels must be an integer >= 1, got {control_channels}")
        first = locked.skip_channels[0]
        hint_channels = first if hint_channels is None else int(hint_channels)
        if branch_spec is not None and not isinstance(branch_spec, ConditionSpec):
            branch_spec = ConditionSpec.from_dict(branch_spec)
        spec = branch_spec if branch_spec is not None and branch_spec.enabled else None
        self.config: dict[str, Any] = {
            "unet": dict(locked.config),
            "control_channels": control_channels,
            "hint_channels": hint_channels,
            "branch_spec": None if spec is None else spec.to_dict(),
        }
        self.control_channels = control_channels
        branch = copy.deepcopy(locked)
        branch.up = nn.ModuleList()  # the copy's decoder is never run
        branch.out = nn.Identity()
        self.branch = branch.requires_grad_(True)
        self.locked = locked.requires_grad_(False).eval()
        self.hint = nn.Sequential(
            nn.Conv2d(control_channels, hint_channels, 3, padding=1),
            nn.SiLU(),
            zero_conv(hint_channels, first, 3),
        )
        self.skip_zero = nn.ModuleList(zero_conv(c, c) for c in locked.skip_channels)
        self.middle_zero = zero_conv(locked.middle_channels, locked.middle_channels)
        self.branch_embed: ConditionEmbedding | None = None
        if spec is not None:
            base = int(locked.config["base_channels"])
            self.branch_embed = ConditionEmbedding(spec, 4 * base, base)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ControlNet:
        """Rebuild from :attr:`config` (weights come from a state dict afterwards)."""
        config = dict(config)
        locked = UNet.from_config(config.pop("unet"))
        return cls(locked, **config)

    @property
    def downsample_factor(self) -> int:
        """The locked UNet's: input sides must be multiples of it."""
        return int(self.locked.downsample_factor)

    def train(self, mode: bool = True) -> ControlNet:
        """Set the training mode of the trainable parts; the locked UNet stays in eval mode."""
        super().train(mode)
        self.locked.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters an optimizer should update (everything but the locked UNet)."""
        for name, param in self.named_parameters():
            if not name.startswith("locked."):
                yield param

    def _check_control(self, x: Tensor, control_image: Tensor) -> None:
        expected = (x.shape[0], self.control_channels, *x.shape[2:])
        if control_image.ndim != 4 or tuple(control_image.shape) != expected:
            raise ValueError(
                f"control_image must have shape {list(expected)} (the batch and size of x, "
                f"control_channels={self.control_channels}), got {tuple(control_image.shape)}"
            )

    def residuals(
        self,
        x: Tensor,
        t: Tensor | float,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        *,
        control_image: Tensor,
        condition: Condition | None = None,
        branch_condition: Condition | None = None,
        scale: float = 1.0,
    ) -> ControlResiduals:
        """The residuals the copy adds to the locked UNet (arguments as :meth:`forward`)."""
        self._check_control(x, control_image)
        extra = None
        if self.branch_embed is not None:
            extra = self.branch_embed(branch_condition, x.shape[0])
        elif branch_condition is not None:
            raise ValueError(
                "branch_condition was given but this ControlNet has no branch conditioning; "
                "build it with branch_spec=ConditionSpec(...)"
            )
        hint = self.hint(control_image.to(x.dtype))
        encoding = self.branch.encode(
            x,
            t,
            cond,
            context,
            condition=condition,
            input_residual=hint,
            emb_residual=extra,
        )
        skips = [zero(s) for zero, s in zip(self.skip_zero, encoding.skips, strict=True)]
        middle = self.middle_zero(encoding.middle)
        if scale != 1.0:
            skips = [s * scale for s in skips]
            middle = middle * scale
        return ControlResiduals(skips, middle)

    def forward(
        self,
        x: Tensor,
        t: Tensor | float,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        *,
        control_image: Tensor,
        condition: Condition | None = None,
        branch_condition: Condition | None = None,
        scale: float = 1.0,
    ) -> Tensor:
        """The locked UNet's prediction for ``x_t`` at ``t``, steered by ``control_image``.

        Args:
            x, t, cond, context, condition: As for :meth:`UNet.forward`; both the locked model
                and the copy see them.
            control_image: ``[B, control_channels, H, W]`` in [-1, 1] (e.g. the before image).
            branch_condition: The copy's extra condition (``branch_spec``); None = null.
            scale: Multiplies the residuals (ControlNet's "control strength"; 0 = the locked
                model alone).

        Returns:
            ``[B, out_channels, H, W]``.
        """
        control = self.residuals(
            x,
            t,
            cond,
            context,
            control_image=control_image,
            condition=condition,
            branch_condition=branch_condition,
            scale=scale,
        )
        encoding = self.locked.encode(x, t, cond, context, condition=condition)
        return self.locked.decode(encoding, control=control)

    def extra_repr(self) -> str:
        """Summary line for ``print(net)``."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        locked = sum(p.numel() for p in self.locked.parameters())
        return f"trainable={trainable:,}, locked={locked:,}"
