"""The uncertainty loss (Eq. 5), the alpha_bar target (Eq. 9-10) and total variation (Eq. 21)."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.distill.uncertainty import (
    alpha_bar_target,
    jeffreys_uncertainty_loss,
    total_variation,
)


def test_uncertainty_loss_is_smallest_at_half_the_mean_absolute_error() -> None:
    """Laplace errors of scale b (variance 2 b^2): the loss is minimised at sigma = b / 2."""
    b = 0.3
    torch.manual_seed(0)
    errors = torch.distributions.Laplace(0.0, b).sample((200_000,))
    target, mean = errors, torch.zeros_like(errors)
    # closed form: the minimiser of mean(exp(-s)|e|) + 2 s is s = log(mean|e| / 2)
    log_sigma = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([log_sigma], lr=0.05)
    for _ in range(600):
        loss = jeffreys_uncertainty_loss(mean, log_sigma.expand_as(errors), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sigma = float(log_sigma.detach().exp())
    assert sigma == pytest.approx(float(errors.abs().mean()) / 2, rel=1e-3)
    assert sigma == pytest.approx(b / 2, rel=0.02)  # the known scale of the errors


def test_uncertainty_loss_value_and_mask() -> None:
    mean = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]]])
    log_sigma = torch.tensor([[[[0.0, math.log(2.0)]]]])
    # pixel 1: 1 + 0; pixel 2: 3/2 + 2 log 2
    expected = (1.0 + 1.5 + 2 * math.log(2.0)) / 2
    assert float(jeffreys_uncertainty_loss(mean, log_sigma, target)) == pytest.approx(expected)
    mask = torch.tensor([[[[1.0, 0.0]]]])
    assert float(jeffreys_uncertainty_loss(mean, log_sigma, target, mask)) == pytest.approx(1.0)


def test_alpha_bar_target_matches_the_signal_to_noise_ratio() -> None:
    hr = torch.full((1, 2, 8, 8), 0.5)  # power 0.25 everywhere
    log_sigma = torch.full((1, 2, 8, 8), math.log(0.25))  # noise variance 2 * 0.0625 = 0.125
    alpha = alpha_bar_target(hr, log_sigma, window=3)
    assert alpha.shape == (1, 1, 8, 8)
    torch.testing.assert_close(alpha, torch.full_like(alpha, 0.25 / (0.25 + 0.125)))
    # a confident estimate keeps almost all of the signal, a hopeless one almost none
    assert float(alpha_bar_target(hr, torch.full_like(hr, -9.0)).min()) > 0.99
    assert float(alpha_bar_target(hr, torch.full_like(hr, 4.0)).max()) < 0.01
    with pytest.raises(ValueError, match="odd"):
        alpha_bar_target(hr, log_sigma, window=4)


def test_timestep_inversion_of_the_target_round_trips() -> None:
    schedule = NoiseSchedule.create("linear", 1000)
    t = torch.tensor([0.0, 10.5, 500.0, 998.0])
    assert torch.allclose(schedule.timestep_from_alpha_bar(schedule.alpha_bar(t)), t, atol=1e-3)


def test_total_variation() -> None:
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert float(total_variation(x)) == pytest.approx(1.0)  # horizontal steps of 1, vertical 0
    assert float(total_variation(torch.ones(1, 1, 4, 4))) == 0.0
