"""Regional compilation: ``torch.compile`` each repeated block of a network, in place.

A diffusion UNet spends a small GPU's time in memory-bound element-wise work (GroupNorm, SiLU,
scale-shift, residual adds) and in kernel launches, which ``torch.compile`` fuses. Compiling the
whole network takes minutes; compiling its repeated blocks (each :class:`ResBlock` and
:class:`AttentionBlock`) reuses one compiled graph for every block of the same shape, so warm-up
stays short (PyTorch's "regional compilation" recipe). Blocks are compiled in place with
:meth:`torch.nn.Module.compile`: parameter names, ``state_dict`` keys and checkpoints are those
of the eager network.

``train.compile: graphs`` is the other way: the whole network compiled in
``torch.compile``'s ``reduce-overhead`` mode, whose compiled forward and backward are replayed as
CUDA graphs (PyTorch's "CUDA graph trees"): no kernel is launched from Python, which matters when
a step leaves the GPU waiting for the host. It compiles longer (the whole net, not a few
blocks) and holds the graphs' memory pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from terradiff.nets.blocks import AttentionBlock, ResBlock

__all__ = [
    "COMPILED_BLOCKS",
    "CompilePlan",
    "compile_for_training",
    "compile_plan",
    "compile_regions",
    "resolve_compile",
]

#: What ``train.compile`` does on a device: nothing, the blocks, or the whole net as CUDA graphs.
CompilePlan = Literal["off", "blocks", "graphs"]

#: The block classes compiled by :func:`compile_regions`.
COMPILED_BLOCKS: tuple[type[nn.Module], ...] = (ResBlock, AttentionBlock)
#: Compiled graphs kept per block code: one per (channels, resolution) of a UNet's levels.
RECOMPILE_LIMIT = 64


def compile_plan(setting: str, device: torch.device | str) -> CompilePlan:
    """``train.compile`` as a plan: ``on`` = the blocks, ``graphs`` = the whole net as CUDA
    graphs, ``off``; ``auto`` = the blocks with CUDA, off elsewhere (on a 2-core Xeon the
    compiled blocks trained 4-15% slower, ``benchmarks/results/train_compile_cpu.txt``)."""
    if setting not in ("auto", "on", "off", "graphs"):
        raise ValueError(f"compile must be 'auto', 'on', 'off' or 'graphs', got {setting!r}")
    if setting == "auto":
        return "blocks" if torch.device(device).type == "cuda" else "off"
    return {"on": "blocks", "off": "off", "graphs": "graphs"}[setting]  # type: ignore[return-value]


def resolve_compile(setting: str, device: torch.device | str) -> bool:
    """Whether ``train.compile`` compiles anything on ``device`` (see :func:`compile_plan`)."""
    return compile_plan(setting, device) != "off"


def _no_step_marker() -> None:
    """What a step starts with when no CUDA graph trees run: nothing."""


def compile_for_training(
    net: nn.Module, plan: CompilePlan, *, backend: str = "inductor"
) -> Callable[[], None]:
    """Compile ``net`` in place as ``plan`` says; return what to call at the start of each step.

    ``blocks``: :func:`compile_regions`. ``graphs``: the whole net with
    :meth:`torch.nn.Module.compile` in ``reduce-overhead`` mode (names and checkpoints unchanged),
    and the step marker is :func:`torch.compiler.cudagraph_mark_step_begin`: a replay may
    overwrite the previous step's outputs, which the marker declares dead (the training loop
    keeps only the loss, computed outside the net). Off CUDA the mode compiles without graphs.
    ``backend`` other than inductor (``"eager"``: the wiring without a compiler) drops the mode.
    """
    if plan == "blocks":
        compile_regions(net, backend=backend)
    elif plan == "graphs":
        _raise_recompile_limits()
        mode = "reduce-overhead" if backend == "inductor" else None
        net.compile(mode=mode, dynamic=False, backend=backend)
        return torch.compiler.cudagraph_mark_step_begin
    elif plan != "off":
        raise ValueError(f"unknown compile plan {plan!r}")
    return _no_step_marker


def _raise_recompile_limits() -> None:
    """Allow :data:`RECOMPILE_LIMIT` graphs per code object (one per shape and mode)."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))


def compile_regions(net: nn.Module, *, mode: str | None = None, backend: str = "inductor") -> int:
    """Compile every block of :data:`COMPILED_BLOCKS` in ``net`` in place; the number compiled.

    Blocks of one class share compiled code and recompile once per input shape (a UNet level),
    so the recompile limit of ``torch._dynamo`` is raised to :data:`RECOMPILE_LIMIT`.
    ``backend`` is ``torch.compile``'s (``"eager"`` checks the wiring without a compiler).
    """
    _raise_recompile_limits()
    blocks = [m for m in net.modules() if isinstance(m, COMPILED_BLOCKS)]
    for block in blocks:
        block.compile(mode=mode, dynamic=False, backend=backend)
    return len(blocks)
