"""The UNet's encoder state and the residuals a control branch adds to it.

:meth:`terradiff.nets.unet.UNet.encode` runs the input convolution, the encoder and the middle
block and returns a :class:`UNetEncoding`; :meth:`~terradiff.nets.unet.UNet.decode` finishes the
pass, optionally adding :class:`ControlResiduals` to the skip connections and to the middle
block's output first. That is the interface of ControlNet (Zhang et al. 2023, "Adding Conditional
Control to Text-to-Image Diffusion Models", Sec. 3.2, Fig. 3): the trainable copy's encoder
features, through zero convolutions, are added to the frozen model's skip connections and middle
block. :class:`terradiff.nets.controlnet.ControlNet` builds on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

__all__ = ["ControlResiduals", "UNetEncoding"]


@dataclass
class UNetEncoding:
    """What the first half of a UNet pass computed (see :meth:`UNet.encode`).

    Attributes:
        skips: The encoder activations the decoder concatenates, in encoder order (input conv,
            then every residual block and downsampling); ``skips[i]`` has
            ``UNet.skip_channels[i]`` channels.
        middle: The middle block's output (``UNet.middle_channels`` channels, lowest resolution).
        emb: The time (+ condition) embedding ``[B, 4 * base_channels]`` the decoder uses.
        channels_last_input: Whether ``x`` came in ``torch.channels_last`` (the output keeps it).
    """

    skips: list[Tensor]
    middle: Tensor
    emb: Tensor
    channels_last_input: bool


@dataclass(frozen=True)
class ControlResiduals:
    """Residuals added to a UNet's skip connections and middle block before decoding.

    Attributes:
        skips: One tensor per skip connection, each shaped like ``UNetEncoding.skips[i]``.
        middle: Shaped like ``UNetEncoding.middle``.
    """

    skips: Sequence[Tensor]
    middle: Tensor
