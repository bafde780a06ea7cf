"""``terradiff.accelerate_steps``: the optimizer step skips accelerate's wrapper only where the
wrapper adds nothing."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from accelerate.utils import DistributedType
from torch import nn

from terradiff.accelerate_steps import optimizer_step


def _wrapped(scaler: object = None) -> SimpleNamespace:
    inner = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    return SimpleNamespace(optimizer=inner, scaler=scaler, step=lambda: "wrapper")


def _accelerator(
    kind: DistributedType = DistributedType.NO, accumulate: int = 1
) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=kind, gradient_accumulation_steps=accumulate)


def test_a_plain_run_steps_the_torch_optimizer_itself() -> None:
    wrapped = _wrapped()
    step = optimizer_step(_accelerator(), wrapped)  # type: ignore[arg-type]
    assert step == wrapped.optimizer.step


def test_a_scaler_xla_or_accumulation_keeps_the_wrapper() -> None:
    for accelerator, wrapped in (
        (_accelerator(), _wrapped(scaler=object())),  # fp16: the scaler unscales and skips
        (_accelerator(DistributedType.XLA), _wrapped()),
        (_accelerator(accumulate=4), _wrapped()),
    ):
        assert optimizer_step(accelerator, wrapped)() == "wrapper"  # type: ignore[arg-type]
    bare = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)  # not wrapped at all
    assert optimizer_step(_accelerator(), bare) == bare.step  # type: ignore[arg-type]


def test_the_trainer_steps_a_real_accelerated_optimizer_directly() -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    net = nn.Linear(2, 2)
    net, optimizer = accelerator.prepare(net, torch.optim.SGD(net.parameters(), lr=0.1))
    assert optimizer_step(accelerator, optimizer) == optimizer.optimizer.step
