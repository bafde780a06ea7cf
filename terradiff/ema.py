"""Exponential moving average of network weights, as used for sampling in DDPM (Ho et al. 2020, App.
B).

The EMA lives outside any DDP wrapper, on the unwrapped module's parameters, so it is updated and
saved the same way on one process or many (the failure of diffusers issue 1895).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class _Pairing:
    """The shadow's tensors beside the followed model's, matched by name once (see
    :meth:`EMA.update`)."""

    model: weakref.ref[nn.Module]
    targets: list[Tensor]
    sources: list[Tensor]
    cast: bool  # a parameter's dtype differs from its shadow's: cast at each update
    buffer_targets: list[Tensor]
    buffer_sources: list[Tensor]


class EMA:
    """Shadow copy of a module whose weights follow ``w_ema <- d w_ema + (1 - d) w``.

    With ``warmup`` the decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates
    (TensorFlow's ExponentialMovingAverage with ``num_updates``), so early weights do
    not dominate a short run.

    Args:
        model: the module to follow (its current weights initialise the shadow).
        decay: the final decay (default 0.995).
        warmup: ramp the decay up over the first updates.
    """

    def __init__(self, model: nn.Module, decay: float = 0.995, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairing: _Pairing | None = None

    def current_decay(self) -> float:
        """The decay applied at the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards ``model``'s (buffers are copied).

        All parameters move in one multi-tensor ``torch._foreach_lerp_`` (one fused kernel
        launch per group on CUDA instead of one per parameter; the same arithmetic as
        ``lerp_`` per tensor, so results are identical).

        The shadow's parameters and buffers are matched to ``model``'s by name at the first
        update with ``model`` and the lists are kept: walking both modules' parameters every
        step took ~3 ms per step for the tests' tiny UNet on a 2-core CPU (cProfile time of
        ``benchmarks/bench_train_loop.py``, which inflates Python calls), host time that a
        small net's short GPU step cannot hide. The
        kept lists hold the parameter objects themselves, which optimizers, ``load_state_dict``
        and ``Module.to`` update in place; a model whose parameters are replaced by new objects
        needs :meth:`forget_pairing`.
        """
        decay = self.current_decay()
        pairing = self._paired_with(model)
        if pairing.targets:
            sources = pairing.sources
            if pairing.cast:
                sources = [s.to(t.dtype) for t, s in zip(pairing.targets, sources, strict=True)]
            torch._foreach_lerp_(pairing.targets, sources, 1.0 - decay)
        if pairing.buffer_targets:
            torch._foreach_copy_(pairing.buffer_targets, pairing.buffer_sources)
        self.num_updates += 1

    def forget_pairing(self) -> None:
        """Match the shadow to the model's tensors by name again at the next update."""
        self._pairing = None

    def _paired_with(self, model: nn.Module) -> _Pairing:
        """The kept :class:`_Pairing` of ``model``, built by name when ``model`` is new."""
        pairing = self._pairing
        if pairing is not None and pairing.model() is model:
            return pairing
        shadow_params = dict(self.shadow.named_parameters())
        targets, sources = [], []
        for name, param in model.named_parameters():
            targets.append(shadow_params[name])
            sources.append(param)
        shadow_buffers = dict(self.shadow.named_buffers())
        buffers = [(shadow_buffers[name], buffer) for name, buffer in model.named_buffers()]
        self._pairing = _Pairing(
            model=weakref.ref(model),
            targets=targets,
            sources=sources,
            cast=any(t.dtype != s.dtype for t, s in zip(targets, sources, strict=True)),
            buffer_targets=[t for t, _ in buffers],
            buffer_sources=[b for _, b in buffers],
        )
        return self._pairing

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set the shadow equal to ``model`` (used before EMA starts)."""
        self.shadow.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights (what ``ema.safetensors`` holds)."""
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore the shadow weights and the update counter."""
        self.shadow.load_state_dict(state)
        self.num_updates = num_updates
