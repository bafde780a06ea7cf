"""Exponential moving average of network weights, as used for sampling in DDPM (Ho et al. 2020, App.
B).

The EMA lives outside any DDP wrapper, on the unwrapped module's parameters, so it is updated and
saved the same way on one process or many (the failure of diffusers issue 1895).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


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
        """
        decay = self.current_decay()
        shadow_params = dict(self.shadow.named_parameters())
        targets, sources = [], []
        for name, param in model.named_parameters():
            target = shadow_params[name]
            targets.append(target)
            sources.append(param.detach().to(target.dtype))
        if targets:
            torch._foreach_lerp_(targets, sources, 1.0 - decay)
        shadow_buffers = dict(self.shadow.named_buffers())
        pairs = [(shadow_buffers[name], buffer) for name, buffer in model.named_buffers()]
        if pairs:
            torch._foreach_copy_([t for t, _ in pairs], [b for _, b in pairs])
        self.num_updates += 1

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
