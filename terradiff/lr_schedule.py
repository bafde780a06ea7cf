"""The learning-rate schedule of every training run: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["cosine_warmup_lambda"]


def cosine_warmup_lambda(
    warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """LR factor: linear warm-up to 1, then half-cosine decay to ``min_ratio`` at ``total_steps``.

    (Loshchilov & Hutter 2017, SGDR, without restarts; the schedule of lucidrains' and diffusers'
    training scripts.) For :class:`torch.optim.lr_scheduler.LambdaLR`.
    """

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
