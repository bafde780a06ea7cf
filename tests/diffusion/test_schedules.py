"""Tests of terradiff.diffusion.schedules: shapes, endpoints, diffusers agreement, inversion."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from terradiff.diffusion.schedules import SCHEDULE_KINDS, NoiseSchedule, make_betas

T_VALUES = (500, 1000, 2000)


@pytest.mark.parametrize("num_t", T_VALUES)
@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_schedule_properties(kind: str, num_t: int) -> None:
    T = num_t
    betas = make_betas(kind, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert bool(((betas > 0) & (betas < 1)).all())
    ab = NoiseSchedule(betas).alphas_cumprod
    assert bool((ab[1:] < ab[:-1]).all()), "alphas_cumprod must be strictly decreasing"
    # scaled_linear (LDM) adds less noise: alpha_bar_{T-1} ~ 2.7e-2 at T=500 with 1e-4 .. 0.02
    last = 5e-2 if kind == "scaled_linear" and T < 1000 else 1e-2
    assert 0.0 < float(ab[-1]) < last and 0.99 < float(ab[0]) < 1.0


@pytest.mark.parametrize("num_t", T_VALUES)
@pytest.mark.parametrize(("beta_start", "beta_end"), [(1e-4, 0.02), (1e-6, 0.01)])
def test_linear_endpoints(num_t: int, beta_start: float, beta_end: float) -> None:
    T = num_t
    betas = make_betas("linear", T, beta_start=beta_start, beta_end=beta_end)
    assert float(betas[0]) == pytest.approx(beta_start, rel=1e-12)
    assert float(betas[-1]) == pytest.approx(beta_end, rel=1e-12)
    steps = betas[1:] - betas[:-1]
    assert torch.allclose(steps, torch.full_like(steps, (beta_end - beta_start) / (T - 1)))


@pytest.mark.parametrize("num_t", T_VALUES)
def test_cosine_matches_eq17(num_t: int) -> None:
    T = num_t
    ab = NoiseSchedule.create("cosine", T).alphas_cumprod.numpy()
    s = 8e-3
    t = np.arange(1, T + 1) / T
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    # every beta but the last (capped at 0.999) is uncapped, so alpha_bar follows Eq. 17 exactly
    np.testing.assert_allclose(ab[:-1], f[:-1], rtol=1e-9)
    assert ab[0] > 0.9999
    assert float(make_betas("cosine", T)[-1]) == pytest.approx(0.999)


@pytest.mark.parametrize("num_t", T_VALUES)
def test_sigmoid_is_chen_2023(num_t: int) -> None:
    T = num_t
    sched = NoiseSchedule.create("sigmoid", T)
    ab = sched.alphas_cumprod
    # Chen (2023) Algorithm 1, evaluated independently in numpy at t/T for t = 1..T-1
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    t = np.arange(1, T) / T
    ref = (sig(3.0) - sig(t * 6.0 - 3.0)) / (sig(3.0) - sig(-3.0))
    np.testing.assert_allclose(ab[:-1].numpy(), ref, rtol=1e-9)
    # the last beta is capped at 0.999: alpha_bar_T ~ 3e-7 at T=1000, scaling like 1/T
    assert float(ab[-1]) == pytest.approx(3e-7 * 1000 / T, rel=0.05)
    # and it is not diffusers' "sigmoid" (GeoDiff's sigmoid over the betas)
    other = NoiseSchedule.create("sigmoid_betas", T).alphas_cumprod
    assert float((ab - other).abs().max()) > 0.1


@pytest.mark.parametrize("num_t", T_VALUES)
@pytest.mark.parametrize(("beta_start", "beta_end"), [(1e-4, 0.02), (0.00085, 0.012)])
def test_scaled_linear_is_rombach_2022(num_t: int, beta_start: float, beta_end: float) -> None:
    T = num_t
    betas = make_betas("scaled_linear", T, beta_start=beta_start, beta_end=beta_end)
    # Rombach et al. (2022): sqrt(beta) evenly spaced from sqrt(beta_start) to sqrt(beta_end)
    root = np.sqrt(beta_start) + np.arange(T) / (T - 1) * (np.sqrt(beta_end) - np.sqrt(beta_start))
    np.testing.assert_allclose(betas.numpy(), root**2, rtol=1e-12)
    assert float(betas[0]) == pytest.approx(beta_start, rel=1e-12)
    assert float(betas[-1]) == pytest.approx(beta_end, rel=1e-12)
    steps = betas.sqrt()[1:] - betas.sqrt()[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, float(steps.mean())))
    # below the linear schedule with the same endpoints (a convex curve between them)
    linear = make_betas("linear", T, beta_start=beta_start, beta_end=beta_end)
    assert bool((betas[1:-1] < linear[1:-1]).all())
    sched = NoiseSchedule.create("scaled_linear", T, beta_start=beta_start, beta_end=beta_end)
    assert sched.params == {"beta_start": beta_start, "beta_end": beta_end}


def test_sigmoid_betas_shape() -> None:
    betas = make_betas("sigmoid_betas", 1000, beta_start=1e-4, beta_end=0.02)
    assert float(betas[0]) == pytest.approx(1e-4 + (0.02 - 1e-4) / (1 + math.exp(6)), rel=1e-9)
    assert float(betas[500]) == pytest.approx(1e-4 + (0.02 - 1e-4) * 0.5, rel=1e-2)
    assert float(NoiseSchedule(betas).alphas_cumprod[-1]) == pytest.approx(4e-5, rel=0.5)


@pytest.mark.parametrize("num_t", T_VALUES)
@pytest.mark.parametrize(
    ("kind", "diffusers_name", "kwargs"),
    [
        ("linear", "linear", {}),
        ("linear", "linear", {"beta_start": 1e-6, "beta_end": 0.01}),
        ("cosine", "squaredcos_cap_v2", {}),
        ("sigmoid_betas", "sigmoid", {}),
        ("scaled_linear", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ],
)
def test_matches_diffusers(kind: str, diffusers_name: str, kwargs: dict, num_t: int) -> None:
    T = num_t
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=diffusers_name, **kwargs)
    ours = NoiseSchedule.create(kind, T, **kwargs)
    torch.testing.assert_close(ours.betas, ref.betas.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.double(), atol=1e-5, rtol=0)


def test_q_sample_matches_diffusers_add_noise() -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    ours = NoiseSchedule.create("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(ours.q_sample(x0, t, noise), ref.add_noise(x0, noise, t))


def test_q_sample_formula_and_dtype() -> None:
    sched = NoiseSchedule.create("linear", 1000)
    x0 = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    noise = torch.full((2, 1, 2, 2), -1.0, dtype=torch.float64)
    t = torch.tensor([3, 700])
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t]
    expected = ab.sqrt() * 0.5 - (1 - ab).sqrt()
    out = sched.q_sample(x0, t, noise)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0, 0, 0], expected)
    assert sched.q_sample(x0.float(), t, noise.float()).dtype == torch.float32
    assert sched.q_sample(x0.bfloat16(), t, noise.bfloat16()).dtype == torch.bfloat16


def test_alpha_bar_int_and_float() -> None:
    sched = NoiseSchedule.create("cosine", 1000)
    ab = sched.alphas_cumprod
    t = torch.tensor([0, 1, 998, 999])
    torch.testing.assert_close(sched.alpha_bar(t), ab[t].float())
    tf = torch.tensor([2.5, 10.25, -3.0, 1500.0], dtype=torch.float64)
    expected = torch.stack([0.5 * (ab[2] + ab[3]), 0.75 * ab[10] + 0.25 * ab[11], ab[0], ab[999]])
    torch.testing.assert_close(sched.alpha_bar(tf), expected)
    assert sched.alpha_bar(tf.float()).dtype == torch.float32
    snr = sched.snr(t)
    torch.testing.assert_close(snr, (ab[t] / (1 - ab[t])).float())


@pytest.mark.parametrize("num_t", T_VALUES)
@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_timestep_from_alpha_bar_round_trip(kind: str, num_t: int) -> None:
    T = num_t
    sched = NoiseSchedule.create(kind, T)
    t_int = torch.arange(T)
    back = sched.timestep_from_alpha_bar(sched.alphas_cumprod)
    assert back.dtype == torch.float64
    torch.testing.assert_close(back, t_int.double(), atol=1e-6, rtol=0)
    g = torch.Generator().manual_seed(T)
    t_frac = torch.rand(256, generator=g, dtype=torch.float64) * (T - 1)
    back = sched.timestep_from_alpha_bar(sched.alpha_bar(t_frac))
    torch.testing.assert_close(back, t_frac, atol=1e-6, rtol=0)


def test_timestep_from_alpha_bar_clamps_and_keeps_shape() -> None:
    sched = NoiseSchedule.create("linear", 1000)
    ab = sched.alphas_cumprod
    values = torch.tensor(
        [[1.0, 0.0], [float(ab[0]) + 1e-9, float(ab[-1]) / 2]], dtype=torch.float64
    )
    out = sched.timestep_from_alpha_bar(values)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, torch.tensor([[0.0, 999.0], [0.0, 999.0]], dtype=torch.float64))
    # a value half-way between two entries lands half-way between their indices
    mid = 0.5 * (ab[100] + ab[101])
    assert float(sched.timestep_from_alpha_bar(mid)) == pytest.approx(100.5, abs=1e-9)


def test_posterior_matches_bayes_rule() -> None:
    sched = NoiseSchedule.create("linear", 1000)
    betas = sched.betas
    ab = sched.alphas_cumprod
    t = torch.tensor([1, 250, 999])
    x0 = torch.tensor([0.3, -0.7, 0.9], dtype=torch.float64).view(3, 1, 1, 1)
    xt = torch.tensor([1.1, 0.2, -2.0], dtype=torch.float64).view(3, 1, 1, 1)
    mean, var, log_var = sched.posterior_mean_variance(x0, xt, t)
    # Gaussian product: q(x_{t-1}|x0) = N(sqrt(ab_prev) x0, 1 - ab_prev),
    # q(x_t|x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t).
    ab_prev, b = ab[t - 1].view(3, 1, 1, 1), betas[t].view(3, 1, 1, 1)
    prec = 1 / (1 - ab_prev) + (1 - b) / b
    ref_var = 1 / prec
    ref_mean = ref_var * (ab_prev.sqrt() * x0 / (1 - ab_prev) + (1 - b).sqrt() * xt / b)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)
    torch.testing.assert_close(log_var, ref_var.log())
    # t = 0: the posterior is the data point; the clipped log-variance borrows t=1's
    mean0, var0, log_var0 = sched.posterior_mean_variance(x0, xt, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(mean0, x0)
    assert float(var0.abs().max()) == 0.0
    torch.testing.assert_close(log_var0, torch.log(sched.posterior_variance[1]).expand(3, 1, 1, 1))


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("linear", {"beta_start": 1e-6, "beta_end": 0.01}),
        ("cosine", {"cosine_s": 0.01}),
        ("sigmoid", {"sigmoid_start": -2.0, "sigmoid_end": 4.0, "sigmoid_tau": 0.7}),
        ("sigmoid_betas", {}),
        ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ],
)
def test_dict_round_trip(kind: str, kwargs: dict) -> None:
    sched = NoiseSchedule.create(kind, 2000, **kwargs)
    data = json.loads(json.dumps(sched.to_dict()))
    assert data["kind"] == kind and data["num_timesteps"] == 2000
    for key, value in kwargs.items():
        assert data["params"][key] == value
    back = NoiseSchedule.from_dict(data)
    assert back == sched
    assert torch.equal(back.alphas_cumprod, sched.alphas_cumprod)
    assert back != NoiseSchedule.create(kind, 1000, **kwargs)


def test_custom_betas_round_trip_and_pickle() -> None:
    betas = torch.linspace(1e-4, 0.05, 300, dtype=torch.float64) ** 1.5
    sched = NoiseSchedule(betas)
    assert sched.kind == "custom"
    back = NoiseSchedule.from_dict(json.loads(json.dumps(sched.to_dict())))
    assert torch.equal(back.betas, betas)
    sched.alpha_bar(torch.tensor([3]))  # fills the device cache
    clone = pickle.loads(pickle.dumps(sched))
    assert clone == sched
    assert torch.equal(clone.alpha_bar(torch.tensor([3])), sched.alpha_bar(torch.tensor([3])))
    assert float(sched.alpha_bar(3)) == pytest.approx(float(torch.cumprod(1 - betas, 0)[3]))


def test_immutable() -> None:
    sched = NoiseSchedule.create("linear", 100)
    with pytest.raises(AttributeError):
        sched.num_timesteps = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        sched.foo = 1  # type: ignore[attr-defined]
    sched.alphas_cumprod[0] = 0.0  # a copy: the schedule is unchanged
    assert float(sched.alphas_cumprod[0]) == pytest.approx(1 - 1e-4)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown schedule kind 'quadratic'"):
        make_betas("quadratic", 1000)
    with pytest.raises(ValueError, match="beta_start"):
        make_betas("linear", 1000, beta_start=0.02, beta_end=1e-4)
    with pytest.raises(ValueError, match="num_timesteps"):
        make_betas("linear", 0)
    with pytest.raises(ValueError, match=r"beta\[1\]"):
        NoiseSchedule(torch.tensor([0.1, 1.0, 0.2]))
    with pytest.raises(ValueError, match="unknown schedule parameter"):
        NoiseSchedule.create("linear", 100, beta_min=0.1)
    with pytest.raises(ValueError, match="num_timesteps"):
        NoiseSchedule.from_dict({"kind": "custom", "num_timesteps": 3, "params": {"betas": [0.1]}})
