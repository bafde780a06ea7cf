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


def test_multi_tensor_update_equals_the_per_parameter_rule() -> None:
    """The foreach update is exactly ``lerp_`` per parameter, and buffers are copied."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    ema = EMA(model, decay=0.99, warmup=True)
    reference = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        weight = 1.0 - ema.current_decay()
        for name, param in model.named_parameters():
            reference[name].lerp_(param.detach(), weight)
        for name, buffer in model.named_buffers():
            reference[name].copy_(buffer)
        ema.update(model)
    for name, value in ema.shadow.state_dict().items():
        assert torch.equal(value, reference[name]), name
