"""The optimizer step of a training step without the per-call host cost of accelerate's wrapper.

``accelerate``'s ``AcceleratedOptimizer.step`` (accelerate 1.15) asks
``importlib.util.find_spec("lomo_optim")`` twice per call, uncached: a search of ``sys.path`` on
disk, 0.8 ms per training step in a cProfile of ``benchmarks/bench_train_loop.py`` on a 2-core
CPU. A small net's step on a GPU takes a few milliseconds, so that host time is a share of the
step the loop cannot hide. With no gradient scaler (fp16), no XLA device and no gradient
accumulation the wrapper's step only calls the wrapped optimizer's, so :func:`optimizer_step`
returns that one; otherwise the wrapper's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType

__all__ = ["optimizer_step"]


def optimizer_step(accelerator: Accelerator, optimizer: Any) -> Callable[[], Any]:
    """The call a training step makes to step ``optimizer`` (as returned by
    ``accelerator.prepare``): the wrapped torch optimizer's ``step`` where accelerate's wrapper
    adds nothing (see the module docstring), else the wrapper's."""
    inner = getattr(optimizer, "optimizer", None)
    plain = (
        inner is not None
        and getattr(optimizer, "scaler", None) is None
        and accelerator.distributed_type != DistributedType.XLA
        and accelerator.gradient_accumulation_steps == 1
    )
    return inner.step if plain else optimizer.step
