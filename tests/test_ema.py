"""EMA: the documented update rule and warm-up."""

from __future__ import annotations

import torch
from torch import nn

from terradiff.ema import EMA


def test_update_follows_formula_without_warmup() -> None:
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    expected = 0.9 * start + 0.1 * (start + 1.0)
    torch.testing.assert_close(ema.shadow.weight, expected)


def test_warmup_ramps_decay() -> None:
    ema = EMA(nn.Linear(2, 2), decay=0.995, warmup=True)
    assert ema.current_decay() == 0.1  # (1 + 0) / (10 + 0)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.995


def test_shadow_is_frozen_copy() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model)
    assert all(not p.requires_grad for p in ema.shadow.parameters())
    assert ema.shadow.weight.data_ptr() != model.weight.data_ptr()
