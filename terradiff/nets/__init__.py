"""Networks (``torch.nn.Module`` only; they know nothing of noise schedules or files).

* :class:`~terradiff.nets.unet.UNet` -- the SR3-style denoiser, any band count, optional
  concatenated condition; :data:`~terradiff.nets.unet.SMALL_64` is the default 64x64 config.
* :mod:`terradiff.nets.blocks` -- time embedding, residual / attention / resampling blocks.
* :class:`~terradiff.nets.implicit.LocalImplicitDecoder` (LIIF) and
  :class:`~terradiff.nets.implicit.MultiScaleImplicitDecoder` (IDM-style, feature pyramid ->
  any output size); :func:`~terradiff.nets.implicit.make_coord` is their coordinate grid.
* :mod:`terradiff.nets.vgg` (VGG extractors, KD-VGG), :mod:`terradiff.nets.iidm` (IIDM),
  :mod:`terradiff.nets.translation` (VAE, pix2pix), :mod:`terradiff.nets.sr` (implicit SR),
  :mod:`terradiff.nets.slim` (single-step SR teacher), :mod:`terradiff.nets.light` (its student).
"""

from torch import nn

from terradiff.nets.blocks import (
    AttentionBlock,
    Downsample,
    GroupNorm,
    GroupNormSiLU,
    ResBlock,
    TimeEmbedding,
    Upsample,
    timestep_embedding,
)
from terradiff.nets.implicit import (
    LocalImplicitDecoder,
    MultiScaleImplicitDecoder,
    make_cell,
    make_coord,
)
from terradiff.nets.unet import SMALL_64, UNet, attention_levels


def count_parameters(net: nn.Module) -> int:
    """Parameters a model uses at inference: its ``num_parameters()`` where it defines one (e.g. a
    distilled student leaves out its training-only adapters), else all of them."""
    count = getattr(net, "num_parameters", None)
    return int(count()) if callable(count) else sum(p.numel() for p in net.parameters())


__all__ = [
    "SMALL_64",
    "AttentionBlock",
    "Downsample",
    "GroupNorm",
    "GroupNormSiLU",
    "LocalImplicitDecoder",
    "MultiScaleImplicitDecoder",
    "ResBlock",
    "TimeEmbedding",
    "UNet",
    "Upsample",
    "attention_levels",
    "count_parameters",
    "make_cell",
    "make_coord",
    "timestep_embedding",
]
