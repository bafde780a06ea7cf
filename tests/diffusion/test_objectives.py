"""Tests of terradiff.diffusion.objectives: targets, conversions, losses, min-SNR weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terradiff.diffusion.objectives import (
    PREDICTIONS,
    diffusion_loss,
    min_snr_weights,
    noised_batch,
    predict_x0_eps,
    target,
    to_eps,
    to_v,
    to_x0,
)
from terradiff.diffusion.schedules import NoiseSchedule

SCHED = NoiseSchedule.create("cosine", 1000)


def _batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(6, 4, 5, 5, generator=g) * 2 - 1).to(dtype)
    noise = torch.randn(6, 4, 5, 5, generator=g).to(dtype)
    t = torch.tensor([0, 1, 100, 500, 900, 999])
    return x0, noise, t


def test_targets_by_definition() -> None:
    x0, noise, t = _batch()
    assert torch.equal(target("eps", x0, noise, t, SCHED), noise)
    assert torch.equal(target("x0", x0, noise, t, SCHED), x0)
    ab = SCHED.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(
        target("v", x0, noise, t, SCHED), ab.sqrt() * noise - (1 - ab).sqrt() * x0
    )


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_round_trip(prediction: str) -> None:
    x0, noise, t = _batch()
    x_t = SCHED.q_sample(x0, t, noise)
    out = target(prediction, x0, noise, t, SCHED)
    v = target("v", x0, noise, t, SCHED)
    # float64 keeps even t = 999 (alpha_bar ~ 2e-9, x0 = (x_t - sigma eps) / 5e-5) accurate
    x0_hat = to_x0(prediction, out, x_t, t, SCHED)
    eps_hat = to_eps(prediction, out, x_t, t, SCHED)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, noise)
    torch.testing.assert_close(to_v(prediction, out, x_t, t, SCHED), v)
    # and back: the model output is recovered from the converted x0 and eps
    for source, value in (("x0", x0_hat), ("eps", eps_hat)):
        x0_back = to_x0(source, value, x_t, t, SCHED)
        eps_back = to_eps(source, value, x_t, t, SCHED)
        torch.testing.assert_close(target(prediction, x0_back, eps_back, t, SCHED), out)


def test_conversions_float32_and_float_t() -> None:
    x0, noise, t = _batch(torch.float32)
    x_t = SCHED.q_sample(x0, t.float(), noise)  # float t = interpolated alpha_bar at integers
    torch.testing.assert_close(x_t, SCHED.q_sample(x0, t, noise))
    v = target("v", x0, noise, t, SCHED)
    assert v.dtype == torch.float32
    torch.testing.assert_close(to_x0("v", v, x_t, t, SCHED), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_eps("v", v, x_t, t, SCHED), noise, atol=1e-5, rtol=1e-5)


def test_predict_x0_eps_with_scalars() -> None:
    x_t = torch.tensor([1.0, -2.0])
    alpha, sigma = 0.6, 0.8
    x0, eps = predict_x0_eps("v", torch.tensor([0.5, 0.5]), x_t, alpha, sigma)
    torch.testing.assert_close(x0, torch.tensor([0.6 - 0.4, -1.2 - 0.4]))
    torch.testing.assert_close(eps, torch.tensor([0.8 + 0.3, -1.6 + 0.3]))
    with pytest.raises(ValueError, match="unknown prediction 'score'"):
        predict_x0_eps("score", x_t, x_t, alpha, sigma)  # type: ignore[arg-type]


def test_unmasked_losses() -> None:
    pred = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -1.0]]]])
    tgt = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 1.0]]]])
    assert float(diffusion_loss(pred, tgt)) == pytest.approx((1 + 4 + 0 + 4) / 4)
    assert float(diffusion_loss(pred, tgt, loss_type="l1")) == pytest.approx((1 + 2 + 0 + 2) / 4)
    w = torch.tensor([2.0, 0.5])
    # mean_b(w_b * mean_i err_bi) = (2 * 2.5 + 0.5 * 2) / 2
    assert float(diffusion_loss(pred, tgt, weights=w)) == pytest.approx(3.0)


def test_masked_loss_hand_computed() -> None:
    # B=2, C=2, H=1, W=3; the mask is [B, 1, H, W]
    pred = torch.tensor(
        [[[[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]]], [[[1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0]]]]
    )
    tgt = torch.zeros_like(pred)
    mask = torch.tensor([[[[1.0, 0.0, 1.0]]], [[[0.0, 0.0, 1.0]]]])
    # valid squared errors: sample 0 -> pixels 0, 2 in both channels: 1, 9, 0, 0;
    # sample 1 -> pixel 2: 1, 4. Mean over the 6 valid elements.
    assert float(diffusion_loss(pred, tgt, mask=mask)) == pytest.approx(15 / 6)
    assert float(diffusion_loss(pred, tgt, mask=mask.bool())) == pytest.approx(15 / 6)
    assert float(diffusion_loss(pred, tgt, loss_type="l1", mask=mask)) == pytest.approx(7 / 6)
    w = torch.tensor([0.5, 3.0])
    assert float(diffusion_loss(pred, tgt, mask=mask, weights=w)) == pytest.approx(
        (0.5 * 10 + 3.0 * 5) / 6
    )
    # a per-channel mask gives the same result as its expansion
    full = mask.expand(-1, 2, -1, -1).clone()
    full[0, 1] = 0.0  # and now drop sample 0's second channel (errors 0, 0)
    assert float(diffusion_loss(pred, tgt, mask=full)) == pytest.approx(15 / 4)


def test_masked_loss_ignores_invalid_pixels_and_gradients() -> None:
    pred = torch.zeros(2, 3, 4, 4, requires_grad=True)
    tgt = torch.zeros(2, 3, 4, 4)
    tgt[:, :, :, 2:] = 100.0  # garbage under the nodata mask
    mask = torch.ones(2, 1, 4, 4)
    mask[:, :, :, 2:] = 0.0
    loss = diffusion_loss(pred, tgt, mask=mask)
    assert loss.item() == 0.0
    loss.backward()
    assert float(pred.grad.abs().sum()) == 0.0
    empty = diffusion_loss(pred, tgt, mask=torch.zeros(2, 1, 4, 4))
    assert empty.item() == 0.0 and empty.requires_grad


def test_loss_errors() -> None:
    pred = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="shapes differ"):
        diffusion_loss(pred, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_loss(pred, pred, loss_type="huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask"):
        diffusion_loss(pred, pred, mask=torch.ones(2, 2, 4, 4))
    with pytest.raises(ValueError, match="mask"):
        diffusion_loss(pred, pred, mask=torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        diffusion_loss(pred, pred, weights=torch.ones(3))


def test_min_snr_weights_hand_checked() -> None:
    sched = NoiseSchedule.create("linear", 1000)
    t = torch.tensor([0, 200, 500, 999])
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t.numpy()]
    snr = ab / (1 - ab)
    gamma = 5.0
    # t=0: snr ~ 1e4 (clamped); t=999: snr ~ 4e-5 (not clamped)
    assert snr[0] > gamma > snr[-1]
    np.testing.assert_allclose(
        min_snr_weights(sched, t, "eps", gamma).numpy(), np.minimum(snr, gamma) / snr, rtol=1e-6
    )
    np.testing.assert_allclose(
        min_snr_weights(sched, t, "x0", gamma).numpy(), np.minimum(snr, gamma), rtol=1e-6
    )
    np.testing.assert_allclose(
        min_snr_weights(sched, t, "v", gamma).numpy(),
        np.minimum(snr, gamma) / (snr + 1),
        rtol=1e-6,
    )
    w = min_snr_weights(sched, t, "eps", gamma)
    assert w.dtype == torch.float32 and w.shape == (4,)
    assert float(w[0]) == pytest.approx(5.0 * (1 - 0.9999) / 0.9999, rel=1e-6)
    assert float(w[-1]) == 1.0
    with pytest.raises(ValueError, match="gamma"):
        min_snr_weights(sched, t, "eps", 0.0)


def test_noised_batch_on_the_cpu_draws_from_the_step_generator() -> None:
    schedule = NoiseSchedule.create("cosine", 50)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    batch = noised_batch(schedule, x0, torch.Generator().manual_seed(7), "eps")
    reference = torch.Generator().manual_seed(7)
    t = torch.randint(0, 50, (4,), generator=reference)
    eps = torch.randn(x0.shape, generator=reference)
    assert torch.equal(batch.timesteps, t) and torch.equal(batch.noise, eps)
    assert torch.equal(batch.x_t, schedule.q_sample(x0, t, eps))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noised_batch_on_cuda_draws_on_the_device_as_a_function_of_the_seed() -> None:
    schedule = NoiseSchedule.create("cosine", 50)
    x0 = torch.rand(4, 3, 8, 8, device="cuda") * 2 - 1
    first = noised_batch(schedule, x0, torch.Generator().manual_seed(7), "eps")
    again = noised_batch(schedule, x0, torch.Generator().manual_seed(7), "eps")
    other = noised_batch(schedule, x0, torch.Generator().manual_seed(8), "eps")
    assert first.noise.device.type == "cuda" and first.timesteps.device.type == "cuda"
    assert torch.equal(first.noise, again.noise) and torch.equal(first.timesteps, again.timesteps)
    assert not torch.equal(first.noise, other.noise)
