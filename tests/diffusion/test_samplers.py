"""Tests of terradiff.diffusion.samplers.

The analytic case: data ``x0 ~ N(mu, s^2)`` per dimension, for which the optimal predictors are
known in closed form (``E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)``), and
the probability-flow ODE maps ``x_T`` to ``mu + s z_T`` with ``z_T`` the standardised ``x_T``.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from terradiff.diffusion.samplers import (
    SAMPLERS,
    SamplerOutput,
    ddim_sample,
    ddpm_sample,
    dpm_solver_sample,
    spaced_timesteps,
)
from terradiff.diffusion.schedules import NoiseSchedule

MU, S = 0.3, 0.5
SCHED = NoiseSchedule.create("cosine", 1000)
# For step-by-step comparisons with diffusers (whose tables are float32): the cosine schedule's
# alpha_bar_{T-1} ~ 2e-9 makes x0 = (x_t - sigma eps) / alpha amplify float32 rounding of sigma by
# 1 / alpha ~ 2e4 at the first step, so two correct float32 implementations differ by ~1e-4 there.
LINEAR = NoiseSchedule.create("linear", 1000)
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def gaussian_model(schedule: NoiseSchedule, prediction: str, mu: float = MU, s: float = S):
    """The exact ``eps`` / ``x0`` / ``v`` predictor for data ``N(mu, s^2)``."""
    table = schedule.alphas_cumprod

    def model_fn(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        assert t.dtype == torch.float32 and t.shape == (x.shape[0],)
        assert t.device == x.device
        ab = table[t.round().long()].float().view(-1, *([1] * (x.ndim - 1)))
        k = ab * s**2 + 1 - ab
        centred = x - ab.sqrt() * mu
        eps = (1 - ab).sqrt() * centred / k
        x0 = mu + ab.sqrt() * s**2 * centred / k
        if prediction == "eps":
            return eps
        if prediction == "x0":
            return x0
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0

    return model_fn


def _start_noise(batch: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _standardised(
    x_T: torch.Tensor,  # noqa: N803
    schedule: NoiseSchedule = SCHED,
) -> torch.Tensor:
    """``x_T`` standardised under the true marginal ``N(sqrt(ab_T) mu, ab_T s^2 + 1 - ab_T)``."""
    ab = float(schedule.alphas_cumprod[-1])
    return (x_T - math.sqrt(ab) * MU) / math.sqrt(ab * S**2 + 1 - ab)


def _check_moments(sample: torch.Tensor, tol: float) -> None:
    # 16,384 values: the standard errors of the mean and std are 0.004 and 0.003
    assert float(sample.mean()) == pytest.approx(MU, abs=tol)
    assert float(sample.std()) == pytest.approx(S, abs=tol)


# -- the analytic case ----------------------------------------------------------------------------


def test_ddpm_gaussian() -> None:
    x_T = _start_noise()
    outs = {
        p: ddpm_sample(
            gaussian_model(SCHED, p),
            SCHED,
            x_T,
            prediction=p,
            clip_denoised=False,
            generator=torch.Generator().manual_seed(1),
        ).sample
        for p in ("eps", "x0", "v")
    }
    _check_moments(outs["eps"], tol=0.02)
    # the three parameterisations of the same predictor give the same chain (same noise)
    torch.testing.assert_close(outs["x0"], outs["eps"], atol=1e-4, rtol=0)
    torch.testing.assert_close(outs["v"], outs["eps"], atol=1e-4, rtol=0)
    # the stochastic chain forgets x_T: the samples are not the ODE map of x_T
    assert float(torch.corrcoef(torch.stack([outs["eps"].flatten(), x_T.flatten()]))[0, 1]) < 0.2


def test_ddpm_gaussian_short_schedule() -> None:
    # a T=250 linear schedule with betas scaled by 1000/250 (same alpha_bar_T ~ 4e-5)
    sched = NoiseSchedule.create("linear", 250, beta_start=4e-4, beta_end=0.08)
    out = ddpm_sample(
        gaussian_model(sched, "eps"),
        sched,
        _start_noise(seed=3),
        clip_denoised=False,
        generator=torch.Generator().manual_seed(4),
    ).sample
    _check_moments(out, tol=0.02)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_gaussian_is_exact(prediction: str) -> None:
    x_T = _start_noise()
    steps = 50
    out = ddim_sample(
        gaussian_model(SCHED, prediction),
        SCHED,
        x_T,
        steps=steps,
        prediction=prediction,
        clip_denoised=False,
    ).sample
    # With the exact predictor, one DDIM step maps the standardised state z_t to
    # z_prev = cos(theta_t - theta_prev) z_t, theta = atan(sqrt(1 - ab) / (sqrt(ab) s)); the
    # sample is mu + s C z_T with C the product of the cosines (< 1: DDIM's known contraction).
    ab = SCHED.alphas_cumprod.tolist()
    ts = spaced_timesteps(1000, steps)
    theta = [math.atan2(math.sqrt(1 - ab[t]), math.sqrt(ab[t]) * S) for t in ts] + [0.0]
    contraction = math.prod(math.cos(a - b) for a, b in itertools.pairwise(theta))
    assert 0.95 < contraction < 0.99
    expected = MU + S * contraction * _standardised(x_T)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    _check_moments(out, tol=0.03)


def test_ddim_stochastic_gaussian() -> None:
    out = ddim_sample(
        gaussian_model(SCHED, "eps"),
        SCHED,
        _start_noise(seed=5),
        steps=100,
        eta=1.0,
        clip_denoised=False,
        generator=torch.Generator().manual_seed(6),
    ).sample
    _check_moments(out, tol=0.025)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_dpm_solver_gaussian(prediction: str) -> None:
    x_T = _start_noise()
    out = dpm_solver_sample(
        gaussian_model(SCHED, prediction),
        SCHED,
        x_T,
        steps=20,
        prediction=prediction,
        clip_denoised=False,
    ).sample
    # the ODE solution, per sample: a second-order solver gets close in 20 steps
    torch.testing.assert_close(out, MU + S * _standardised(x_T), atol=0.02, rtol=0)
    _check_moments(out, tol=0.02)


def test_dpm_solver_converges_faster_than_ddim() -> None:
    x_T = _start_noise(batch=16)
    fn = gaussian_model(SCHED, "eps")
    exact = MU + S * _standardised(x_T)
    err_ddim = (ddim_sample(fn, SCHED, x_T, steps=20, clip_denoised=False).sample - exact).abs()
    err_dpm = (
        dpm_solver_sample(fn, SCHED, x_T, steps=20, clip_denoised=False).sample - exact
    ).abs()
    assert float(err_dpm.max()) < 0.2 * float(err_ddim.max())


# -- agreement with diffusers ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_matches_diffusers(clip: bool) -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        variance_type="fixed_small",
        clip_sample=clip,
    )
    fn = gaussian_model(LINEAR, "eps", mu=0.9 if clip else MU)  # mu=0.9 makes clipping matter
    x_T = _start_noise(batch=4)
    ours = ddpm_sample(
        fn,
        LINEAR,
        x_T,
        clip_denoised=clip,
        generator=torch.Generator().manual_seed(7),
        return_trajectory=True,
    )
    g = torch.Generator().manual_seed(7)
    x = x_T
    for k, t in enumerate(ref.timesteps):
        out = fn(x, torch.full((x.shape[0],), float(t)), None)
        x = ref.step(out, t, x, generator=g).prev_sample
        label, state = ours.trajectory[k + 1]
        assert label == int(t)
        # one step to 1e-5; along the 1000-step chain diffusers' float32 tables drift up to ~1e-4
        # from a float64 reference (ours stay within ~4e-6: test_ddpm_matches_algorithm_2)
        torch.testing.assert_close(state, x, atol=1e-5 if k == 0 else 3e-4, rtol=0)
    torch.testing.assert_close(ours.sample, x, atol=1e-4, rtol=0)


def test_ddpm_matches_algorithm_2() -> None:
    """The whole chain against Ho et al. (2020) Algorithm 2 in float64, with the same noise."""
    fn = gaussian_model(LINEAR, "eps")
    x_T = _start_noise(batch=4)
    ours = ddpm_sample(
        fn,
        LINEAR,
        x_T,
        clip_denoised=False,
        generator=torch.Generator().manual_seed(9),
        return_trajectory=True,
    )
    betas = LINEAR.betas
    ab = LINEAR.alphas_cumprod
    g = torch.Generator().manual_seed(9)
    x = x_T.double()
    for k, t in enumerate(range(999, -1, -1)):
        a = ab[t]
        eps = (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)
        x = (x - betas[t] / (1 - a).sqrt() * eps) / (1 - betas[t]).sqrt()
        if t > 0:
            sigma2 = betas[t] * (1 - ab[t - 1]) / (1 - a)  # "fixed small" beta_tilde
            x = x + sigma2.sqrt() * torch.randn(x.shape, generator=g).double()
        assert ours.trajectory[k + 1][0] == t
        torch.testing.assert_close(ours.trajectory[k + 1][1], x.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("prediction", "eta", "clip"),
    [("eps", 0.0, False), ("v", 0.0, False), ("x0", 0.0, True), ("eps", 1.0, False)],
)
def test_ddim_matches_diffusers(prediction: str, eta: float, clip: bool) -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=DIFFUSERS_PREDICTION[prediction],
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        steps_offset=0,
        clip_sample=clip,
    )
    steps = 50
    ref.set_timesteps(steps)
    fn = gaussian_model(SCHED, prediction, mu=0.9 if clip else MU)
    x_T = _start_noise(batch=4)
    ours = ddim_sample(
        fn,
        SCHED,
        x_T,
        steps=steps,
        eta=eta,
        prediction=prediction,
        clip_denoised=clip,
        generator=torch.Generator().manual_seed(8),
        return_trajectory=True,
    )
    assert [int(t) for t in ref.timesteps] == spaced_timesteps(1000, steps)
    g = torch.Generator().manual_seed(8)
    x = x_T
    for k, t in enumerate(ref.timesteps):
        out = fn(x, torch.full((x.shape[0],), float(t)), None)
        x = ref.step(out, t, x, eta=eta, generator=g, use_clipped_model_output=clip).prev_sample
        torch.testing.assert_close(ours.trajectory[k + 1][1], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.sample, x, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers + numpy 2 copy=False
@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_matches_diffusers(steps: int) -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    ref.set_timesteps(steps)
    fn = gaussian_model(LINEAR, "eps")
    x_T = _start_noise(batch=4)
    ours = dpm_solver_sample(fn, LINEAR, x_T, steps=steps, clip_denoised=False)
    x = x_T
    for t in ref.timesteps:
        x = ref.step(fn(x, torch.full((x.shape[0],), float(t)), None), t, x).prev_sample
    torch.testing.assert_close(ours.sample, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("num_t", "steps"), [(1000, 50), (1000, 30), (2000, 7), (500, 500), (10, 1)]
)
def test_spaced_timesteps_match_diffusers_trailing(num_t: int, steps: int) -> None:
    T = num_t
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    ref.set_timesteps(steps)
    ts = spaced_timesteps(T, steps)
    assert ts == [int(t) for t in ref.timesteps]
    assert ts[0] == T - 1 and len(set(ts)) == steps and ts == sorted(ts, reverse=True)


# -- behaviour ------------------------------------------------------------------------------------


def _recording_model(calls: list[torch.Tensor]):
    def model_fn(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        calls.append(t.clone())
        return torch.zeros_like(x)

    return model_fn


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_model_receives_float_timesteps_and_trajectory(name: str) -> None:
    sched = NoiseSchedule.create("linear", 100, beta_start=1e-3, beta_end=0.2)
    calls: list[torch.Tensor] = []
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    kwargs = {} if name == "ddpm" else {"steps": 10}
    out = SAMPLERS[name](
        _recording_model(calls),
        sched,
        x_T,
        generator=torch.Generator().manual_seed(0),
        return_trajectory=True,
        **kwargs,
    )
    assert isinstance(out, SamplerOutput)
    expected_t = list(range(99, -1, -1)) if name == "ddpm" else list(range(99, -1, -10))
    assert [c.tolist() for c in calls] == [[float(t)] * 3 for t in expected_t]
    assert all(c.dtype == torch.float32 for c in calls)
    labels = [label for label, _ in out.trajectory]
    assert labels == [t + 1 for t in expected_t] + [0]
    assert out.trajectory[0][1] is x_T or torch.equal(out.trajectory[0][1], x_T)
    assert out.trajectory[-1][1] is out.sample
    assert out.sample.shape == x_T.shape and out.sample.dtype == torch.float32


def test_no_trajectory_by_default_and_float64_input() -> None:
    out = ddim_sample(_recording_model([]), SCHED, torch.randn(2, 1, 4, 4, dtype=torch.float64))
    assert out.trajectory == [] and out.sample.dtype == torch.float32


def test_generator_reproducibility() -> None:
    fn = gaussian_model(SCHED, "eps")
    x_T = _start_noise(batch=2)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return ddim_sample(fn, SCHED, x_T, steps=20, eta=1.0, generator=gen).sample

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    # eta = 0 is deterministic whatever the generator
    det = [ddim_sample(fn, SCHED, x_T, steps=20).sample for _ in range(2)]
    assert torch.equal(det[0], det[1])


def test_cond_is_passed_through() -> None:
    cond = torch.randn(2, 3, 4, 4)
    seen: list[torch.Tensor | None] = []

    def model_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        seen.append(c)
        return torch.zeros_like(x)

    dpm_solver_sample(model_fn, SCHED, torch.randn(2, 1, 4, 4), steps=3, cond=cond)
    assert len(seen) == 3 and all(c is cond for c in seen)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_clip_denoised(name: str) -> None:
    def far_away(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return torch.full_like(x, 3.0)  # an x0 prediction far outside [-1, 1]

    sched = NoiseSchedule.create("linear", 50, beta_start=1e-3, beta_end=0.3)
    kwargs = {} if name == "ddpm" else {"steps": 5}
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    clipped = SAMPLERS[name](far_away, sched, x_T, prediction="x0", generator=gen, **kwargs)
    torch.testing.assert_close(clipped.sample, torch.ones_like(x_T))
    free = SAMPLERS[name](
        far_away, sched, x_T, prediction="x0", clip_denoised=False, generator=gen, **kwargs
    )
    torch.testing.assert_close(free.sample, torch.full_like(x_T, 3.0))


def test_progress_bar(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # captured stderr is no terminal: log lines (terradiff.progress), here one per step
    monkeypatch.setenv("TERRADIFF_PROGRESS_INTERVAL", "0")
    ddim_sample(_recording_model([]), SCHED, torch.randn(1, 1, 2, 2), steps=4, progress=True)
    err = capsys.readouterr().err
    assert "ddim: it 4/4 (100%)" in err and "\r" not in err


def test_errors() -> None:
    fn = _recording_model([])
    x_T = torch.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match="steps"):
        ddim_sample(fn, SCHED, x_T, steps=0)
    with pytest.raises(ValueError, match="steps"):
        dpm_solver_sample(fn, SCHED, x_T, steps=1001)
    with pytest.raises(ValueError, match="prediction"):
        ddpm_sample(fn, SCHED, x_T, prediction="score")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(fn, SCHED, x_T, eta=-0.1)
    with pytest.raises(ValueError, match="shape"):
        ddim_sample(lambda x, t, c: x[:, :1, :1], SCHED, x_T, steps=2)
    with pytest.raises(ValueError, match="x_T"):
        ddim_sample(fn, SCHED, torch.zeros(1, 1, 2, 2, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cuda_no_host_sync_and_reproducible(name: str) -> None:
    sched = NoiseSchedule.create("linear", 100, beta_start=1e-3, beta_end=0.2)
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).cuda()
    kwargs = {"eta": 1.0} if name == "ddim" else {}
    if name != "ddpm":
        kwargs["steps"] = 10

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)  # a CPU generator for CUDA sampling
        return SAMPLERS[name](lambda x, t, c: 0.1 * x, sched, x_T, generator=gen, **kwargs).sample

    run(0)  # warm-up (CUDA context, allocator)
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = run(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert first.device == x_T.device
    assert torch.equal(first, run(1))
