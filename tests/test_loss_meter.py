"""``terradiff.loss_meter``: the loss read on the host only at log and checkpoint points."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.loss_meter import LossMeter


def test_mean_of_a_window_read_in_parts_equals_the_plain_mean() -> None:
    values = [0.5, 0.25, 0.125, 1.0, 2.0]
    meter = LossMeter("cpu")
    assert meter.flush() is None and meter.check() is None
    for step, value in enumerate(values[:2], start=11):
        meter.add(torch.tensor(value, dtype=torch.float32), step)
    part = meter.check()  # a checkpoint in the middle of a log window
    assert part is not None and part.finite and part.steps == 2 and part.mean == 0.375
    for step, value in enumerate(values[2:], start=13):
        meter.add(torch.tensor(value), step)
    window = meter.flush()
    assert window is not None and (window.first_step, window.last_step) == (11, 15)
    assert window.mean == pytest.approx(sum(values) / 5, rel=1e-15) and len(meter) == 0
    meter.add(torch.tensor(3.0), 16)  # a new window after the flush
    assert meter.flush().mean == 3.0  # type: ignore[union-attr]


def test_the_first_non_finite_step_is_named_even_across_checks() -> None:
    meter = LossMeter("cpu")
    meter.add(torch.tensor(1.0), 1)
    meter.add(torch.tensor(2.0), 2)
    assert meter.check().finite  # type: ignore[union-attr]
    meter.add(torch.tensor(1.0), 3)
    meter.add(torch.tensor(float("inf")), 4)
    meter.add(torch.tensor(float("nan")), 5)
    window = meter.check()
    assert window is not None and not window.finite and window.first_bad_step == 4
    assert math.isnan(window.mean)
    meter.add(torch.tensor(1.0), 6)
    assert meter.flush().first_bad_step == 4  # type: ignore[union-attr]
    meter.add(torch.tensor(1.0), 7)
    assert meter.flush().finite  # type: ignore[union-attr]


def test_adding_a_loss_does_not_read_it_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = LossMeter("cpu")
    for name in ("item", "tolist", "__float__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, _forbidden, raising=True)
    meter.add(torch.tensor(1.0, requires_grad=True) * 2, 1)
    monkeypatch.undo()
    assert meter.flush().mean == 2.0  # type: ignore[union-attr]


def _forbidden(*_: object) -> None:
    raise AssertionError("the loss was read on the host")
