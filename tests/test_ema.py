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


def test_pairing_is_kept_and_follows_in_place_updates() -> None:
    """After the first update the model's parameters are not walked again; an optimizer's
    in-place step and ``load_state_dict`` are seen through the kept tensors."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.5, warmup=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ema.update(model)

    def walked(*args: object, **kwargs: object) -> None:
        raise AssertionError("named_parameters walked again")

    model.named_parameters = walked  # type: ignore[method-assign]
    model.named_buffers = walked  # type: ignore[method-assign]
    model(torch.randn(8, 3)).square().mean().backward()
    optimizer.step()
    before = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    ema.update(model)
    weight = model[0].weight.detach()
    torch.testing.assert_close(ema.shadow[0].weight, before["0.weight"].lerp(weight, 0.5))
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)
    previous = ema.shadow[0].bias.clone()
    model.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})
    ema.update(model)
    torch.testing.assert_close(ema.shadow[0].bias, 0.5 * previous)


def test_a_new_model_or_forget_pairing_matches_by_name_again() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    ema = EMA(first, decay=0.0, warmup=False)  # decay 0: the shadow becomes the model
    ema.update(first)
    ema.update(second)
    assert torch.equal(ema.shadow.weight, second.weight)
    ema.update(first)  # another model: matched again
    assert torch.equal(ema.shadow.weight, first.weight)
    first.weight = nn.Parameter(torch.full((2, 2), 3.0))  # a replaced parameter object
    ema.update(first)
    assert not torch.equal(ema.shadow.weight, first.weight)  # the kept list: the old object
    ema.forget_pairing()
    ema.update(first)
    assert torch.equal(ema.shadow.weight, first.weight)


def test_a_shadow_of_another_dtype_is_updated_through_a_cast() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5, warmup=False)
    ema.shadow.double()
    start = ema.shadow.weight.clone()
    ema.update(model)
    expected = start.lerp(model.weight.detach().double(), 0.5)
    assert ema.shadow.weight.dtype == torch.float64
    torch.testing.assert_close(ema.shadow.weight, expected)
