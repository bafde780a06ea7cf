"""Regional compilation: ``torch.compile`` each repeated block of a network, in place.

A diffusion UNet spends a small GPU's time in memory-bound element-wise work (GroupNorm, SiLU,
scale-shift, residual adds) and in kernel launches, which ``torch.compile`` fuses. Compiling the
whole network takes minutes; compiling its repeated blocks (each :class:`ResBlock` and
:class:`AttentionBlock`) reuses one compiled graph for every block of the same shape, so warm-up
stays short (PyTorch's "regional compilation" recipe). Blocks are compiled in place with
:meth:`torch.nn.Module.compile`: parameter names, ``state_dict`` keys and checkpoints are those
of the eager network.
"""

from __future__ import annotations

import torch
from torch import nn

from terradiff.nets.blocks import AttentionBlock, ResBlock

__all__ = ["COMPILED_BLOCKS", "compile_regions", "resolve_compile"]

#: The block classes compiled by :func:`compile_regions`.
COMPILED_BLOCKS: tuple[type[nn.Module], ...] = (ResBlock, AttentionBlock)
#: Compiled graphs kept per block code: one per (channels, resolution) of a UNet's levels.
RECOMPILE_LIMIT = 64


def resolve_compile(setting: str, device: torch.device | str) -> bool:
    """``train.compile`` as a decision: ``on``/``off`` as given, ``auto`` on for CUDA only
    (on CPU the compile time is rarely won back: measure before turning it on)."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be 'auto', 'on' or 'off', got {setting!r}")
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return setting == "on"


def compile_regions(net: nn.Module, *, mode: str | None = None, backend: str = "inductor") -> int:
    """Compile every block of :data:`COMPILED_BLOCKS` in ``net`` in place; the number compiled.

    Blocks of one class share compiled code and recompile once per input shape (a UNet level),
    so the recompile limit of ``torch._dynamo`` is raised to :data:`RECOMPILE_LIMIT`.
    ``backend`` is ``torch.compile``'s (``"eager"`` checks the wiring without a compiler).
    """
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
    blocks = [m for m in net.modules() if isinstance(m, COMPILED_BLOCKS)]
    for block in blocks:
        block.compile(mode=mode, dynamic=False, backend=backend)
    return len(blocks)
