"""Samplers: pure functions that turn noise ``x_T`` into samples with any ``model_fn``.

Every sampler has the signature ``sampler(model_fn, schedule, x_T, *, prediction, cond, generator,
progress, return_trajectory, clip_denoised, ...) -> SamplerOutput`` (k-diffusion style), so a
terradiff UNet, a diffusers model or a distilled student all plug in through ``model_fn(x_t, t,
cond) -> output``, where ``t`` is a float32 tensor ``[B]`` of 0-based timestep indices in
``[0, T-1]`` and ``output`` is an ``eps``, ``x0`` or ``v`` prediction (``prediction``).

Conventions:

* Maths in float32 on the device of ``x_T``; per-step coefficients are precomputed once per call
  in float64 on the CPU and enter the loop as Python floats, so the loop issues no host syncs.
* Strided samplers (DDIM, DPM-Solver++) use **"trailing"** timesteps (Lin et al. 2024, "Common
  diffusion noise schedules and sample steps are flawed", Table 2; diffusers'
  ``timestep_spacing="trailing"``): ``t_k = round(T - k T / S) - 1`` for ``k = 0..S-1``, so the
  first model call is at ``t = T-1`` (the noisiest level) and the last step goes to the clean data
  (``alpha_bar = 1``, diffusers' ``set_alpha_to_one=True`` / ``final_sigmas_type="zero"``).
  See :func:`spaced_timesteps`.
* Step noise is drawn from ``generator`` (``None``: the global RNG) on ``x_T``'s device. A
  generator on another device (e.g. a CPU generator for CUDA sampling) seeds, once per call, a
  generator on ``x_T``'s device, which avoids a blocking copy per step; so a seed reproduces the
  samples on a given device. With the generator on ``x_T``'s device the noise is drawn exactly as
  diffusers' schedulers draw it.
* Trajectories use the paper's 1-based labels (Ho et al. 2020: ``x_T, ..., x_1, x_0``): the state
  the model sees at index ``t`` is labelled ``t + 1`` and the final sample is labelled ``0``. The
  first entry is ``(T, x_T)`` for DDPM and trailing DDIM / DPM-Solver++.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import Tensor

from terradiff.diffusion.objectives import Prediction, check_prediction, predict_x0_eps
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.progress import progress_bar

ModelFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""``model_fn(x_t, t, cond) -> prediction``; ``t`` is float ``[B]`` in ``[0, T-1]``."""


@dataclass
class SamplerOutput:
    """What a sampler returns.

    Attributes:
        sample: The final samples ``x_0``, float32, shaped like ``x_T``.
        trajectory: ``[(label, x), ...]`` from ``x_T`` to the sample when requested (else empty):
            ``label = t + 1`` for the state fed to the model at index ``t``, ``0`` for the final
            sample (Ho et al.'s ``x_T .. x_0`` numbering). Tensors stay on the sampling device.
        spec: the :class:`~terradiff.diffusion.spec.SamplingSpec` that produced ``sample``
            (None for one-pass models, which sample nothing).
    """

    sample: Tensor
    trajectory: list[tuple[int, Tensor]] = field(default_factory=list)
    spec: Any = None


def spaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps, "trailing" (descending, starting at ``T-1``).

    ``t_k = round(T - k T / steps) - 1`` (numpy's round-half-to-even), identical to diffusers'
    ``timestep_spacing="trailing"``; e.g. ``T=1000, steps=50`` gives ``999, 979, ..., 19``.

    Raises:
        ValueError: ``steps`` not in ``[1, T]``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}], got {steps!r}")
    k = torch.arange(steps, dtype=torch.float64)
    ts = torch.round(num_timesteps + k * (-num_timesteps / steps)).long() - 1
    return ts.tolist()


def _start(
    schedule: NoiseSchedule,
    x_T: Tensor,  # noqa: N803
    prediction: str,
    timesteps: list[int],
) -> tuple[Tensor, Tensor]:
    """Validate; return float32 ``x`` and the ``[S, B]`` float32 timestep rows for ``model_fn``."""
    check_prediction(prediction)
    if not isinstance(x_T, Tensor) or not x_T.is_floating_point() or x_T.ndim < 1:
        raise ValueError("x_T must be a floating-point tensor [B, ...]")
    x = x_T.to(torch.float32)
    # non_blocking: a pageable host-to-device copy is staged at once, without a stream sync
    t_rows = torch.tensor(timesteps, dtype=torch.float32).to(x.device, non_blocking=True)
    t_rows = t_rows[:, None].expand(len(timesteps), x.shape[0]).contiguous()
    return x, t_rows


def _call(model_fn: ModelFn, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    out = model_fn(x, t, cond)
    if out.shape != x.shape:
        raise ValueError(
            f"model_fn returned shape {tuple(out.shape)} for input {tuple(x.shape)}; a sampler "
            "needs an output shaped like x_t"
        )
    return out.to(torch.float32)


def _on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it lives on ``device``; else a generator on ``device`` seeded once from it.

    Drawing each step's noise on a CPU generator and copying it to an accelerator would cost a
    blocking host-to-device copy per step, so the sampler instead derives one device generator
    per call: results are reproducible for a given seed and device.
    """
    if generator is None:
        return None
    gen_device = torch.device(generator.device)
    if gen_device.type == device.type and (gen_device.index or 0) == (device.index or 0):
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device))
    return torch.Generator(device=device).manual_seed(seed)


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _steps(n: int, progress: bool, desc: str) -> Iterable[int]:
    return progress_bar(range(n), desc=desc, leave=False) if progress else range(n)


@torch.no_grad()
def ddpm_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,  # noqa: N803 - the paper's name
    *,
    prediction: Prediction = "eps",
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    clip_denoised: bool = True,
) -> SamplerOutput:
    """Ancestral sampling over all ``T`` steps (Ho et al. 2020, Algorithm 2).

    At each ``t = T-1 .. 0``: ``x0_hat`` from the model output (clipped to ``[-1, 1]`` when
    ``clip_denoised``), then ``x_{t-1} ~ N(mu_tilde(x_t, x0_hat), beta_tilde_t)`` with the
    posterior mean and "fixed small" variance ``beta_tilde_t`` of Eqs. 6-7 (diffusers'
    ``variance_type="fixed_small"``); no noise at the last step. Without clipping this equals
    Algorithm 2's ``(x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) + sigma_t z``.

    Args:
        model_fn: ``model_fn(x_t, t, cond)``.
        schedule: The training noise schedule.
        x_T: Initial noise ``[B, ...]``.
        prediction: What ``model_fn`` predicts (``"eps"``, ``"x0"``, ``"v"``).
        cond: Passed through to ``model_fn``.
        generator: RNG of the step noise (see the module docstring for other devices).
        progress: Show progress (:func:`terradiff.progress.progress_bar`).
        return_trajectory: Keep every state (``T + 1`` tensors, on the device).
        clip_denoised: Clip ``x0_hat`` to ``[-1, 1]``.

    Returns:
        :class:`SamplerOutput` (float32 sample).
    """
    T = schedule.num_timesteps
    timesteps = list(range(T - 1, -1, -1))
    x, t_rows = _start(schedule, x_T, prediction, timesteps)
    alpha = schedule.table("sqrt_alphas_cumprod").tolist()
    sigma = schedule.table("sqrt_one_minus_alphas_cumprod").tolist()
    c1 = schedule.table("posterior_mean_coef1").tolist()
    c2 = schedule.table("posterior_mean_coef2").tolist()
    std = schedule.table("posterior_variance").sqrt().tolist()
    generator = _on_device(generator, x.device)
    trajectory: list[tuple[int, Tensor]] = [(T, x)] if return_trajectory else []
    for k in _steps(T, progress, "ddpm"):
        t = timesteps[k]
        out = _call(model_fn, x, t_rows[k], cond)
        x0, _ = predict_x0_eps(prediction, out, x, alpha[t], sigma[t])
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean = c1[t] * x0 + c2[t] * x
        x = mean + std[t] * _noise(x, generator) if t > 0 else mean
        if return_trajectory:
            trajectory.append((t, x))
    return SamplerOutput(sample=x, trajectory=trajectory)


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,  # noqa: N803 - the paper's name
    *,
    steps: int = 20,
    eta: float = 0.0,
    prediction: Prediction = "eps",
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    clip_denoised: bool = True,
) -> SamplerOutput:
    """DDIM (Song et al. 2021, Eq. 12) on ``steps`` trailing timesteps (:func:`spaced_timesteps`).

    ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z`` with
    ``sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)`` (Eq. 16); the last
    step goes to ``ab_prev = 1`` and returns ``x0_hat``. When ``clip_denoised``, ``x0_hat`` is
    clipped to ``[-1, 1]`` and ``eps_hat`` re-derived from it (as in GLIDE / guided-diffusion,
    diffusers' ``use_clipped_model_output=True``). For ``eta > 0`` noise is drawn at every step
    (also the last, where ``sigma = 0``), as diffusers' ``DDIMScheduler.step`` does.

    Args:
        model_fn: ``model_fn(x_t, t, cond)``.
        schedule: The training noise schedule.
        x_T: Initial noise ``[B, ...]``.
        steps: Number of model calls (``1 .. T``).
        eta: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise.
        prediction: What ``model_fn`` predicts.
        cond: Passed through to ``model_fn``.
        generator: RNG of the step noise (``eta > 0``).
        progress: Show progress (:func:`terradiff.progress.progress_bar`).
        return_trajectory: Keep every state (``steps + 1`` tensors).
        clip_denoised: Clip ``x0_hat`` to ``[-1, 1]``.

    Returns:
        :class:`SamplerOutput` (float32 sample).
    """
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    timesteps = spaced_timesteps(schedule.num_timesteps, steps)
    x, t_rows = _start(schedule, x_T, prediction, timesteps)
    ab_all = schedule.table("alphas_cumprod").tolist()
    ab = [ab_all[t] for t in timesteps] + [1.0]
    generator = _on_device(generator, x.device) if eta > 0.0 else None
    trajectory: list[tuple[int, Tensor]] = [(timesteps[0] + 1, x)] if return_trajectory else []
    for k in _steps(len(timesteps), progress, "ddim"):
        a_t, a_prev = ab[k], ab[k + 1]
        alpha, sigma = math.sqrt(a_t), math.sqrt(1.0 - a_t)
        std = eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        direction = math.sqrt(max(1.0 - a_prev - std * std, 0.0))
        out = _call(model_fn, x, t_rows[k], cond)
        x0, eps = predict_x0_eps(prediction, out, x, alpha, sigma)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - alpha * x0) / sigma
        x = math.sqrt(a_prev) * x0 + direction * eps
        if eta > 0.0:
            x = x + std * _noise(x, generator)
        if return_trajectory:
            label = timesteps[k + 1] + 1 if k + 1 < len(timesteps) else 0
            trajectory.append((label, x))
    return SamplerOutput(sample=x, trajectory=trajectory)


@torch.no_grad()
def dpm_solver_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,  # noqa: N803 - the paper's name
    *,
    steps: int = 20,
    prediction: Prediction = "eps",
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    clip_denoised: bool = True,
) -> SamplerOutput:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): data-prediction multistep
    second-order solver of the diffusion ODE, on ``steps`` trailing timesteps.

    With ``alpha_t = sqrt(ab_t)``, ``sigma_t = sqrt(1 - ab_t)``, ``lambda_t = log(alpha_t /
    sigma_t)``, ``h_i = lambda_{t_i} - lambda_{t_{i-1}}`` and ``r_i = h_{i-1} / h_i``:
    ``x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i`` with
    ``D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}``. The first step is first order
    (``D = x0``, i.e. DDIM), and so is the last, which goes to ``sigma = 0`` and returns the last
    ``x0_hat`` (diffusers' ``final_sigmas_type="zero"``). ``clip_denoised`` clips every
    ``x0_hat`` to ``[-1, 1]`` (the solver's "thresholding" of data predictions).

    Args:
        model_fn: ``model_fn(x_t, t, cond)``.
        schedule: The training noise schedule.
        x_T: Initial noise ``[B, ...]``.
        steps: Number of model calls (``1 .. T``).
        prediction: What ``model_fn`` predicts.
        cond: Passed through to ``model_fn``.
        generator: Unused (the solver is deterministic); accepted for the common signature.
        progress: Show progress (:func:`terradiff.progress.progress_bar`).
        return_trajectory: Keep every state (``steps + 1`` tensors).
        clip_denoised: Clip ``x0_hat`` to ``[-1, 1]``.

    Returns:
        :class:`SamplerOutput` (float32 sample).
    """
    del generator  # deterministic solver
    timesteps = spaced_timesteps(schedule.num_timesteps, steps)
    x, t_rows = _start(schedule, x_T, prediction, timesteps)
    ab_all = schedule.table("alphas_cumprod").tolist()
    alpha = [math.sqrt(ab_all[t]) for t in timesteps]
    sigma = [math.sqrt(1.0 - ab_all[t]) for t in timesteps]
    lam = [math.log(a / s) for a, s in zip(alpha, sigma, strict=True)]
    n = len(timesteps)
    trajectory: list[tuple[int, Tensor]] = [(timesteps[0] + 1, x)] if return_trajectory else []
    x0_prev: Tensor | None = None
    for k in _steps(n, progress, "dpm-solver++"):
        out = _call(model_fn, x, t_rows[k], cond)
        x0, _ = predict_x0_eps(prediction, out, x, alpha[k], sigma[k])
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        if k == n - 1:
            x = x0  # first-order step to sigma = 0: x = alpha_0 x0_hat with alpha_0 = 1
        else:
            h = lam[k + 1] - lam[k]
            coef_x = sigma[k + 1] / sigma[k]
            coef_d = -alpha[k + 1] * math.expm1(-h)
            if x0_prev is None:
                d = x0
            else:
                half_inv_r = 0.5 * h / (lam[k] - lam[k - 1])
                d = (1.0 + half_inv_r) * x0 - half_inv_r * x0_prev
            x = coef_x * x + coef_d * d
        x0_prev = x0
        if return_trajectory:
            trajectory.append((timesteps[k + 1] + 1 if k + 1 < n else 0, x))
    return SamplerOutput(sample=x, trajectory=trajectory)


SAMPLERS: Final[dict[str, Callable[..., SamplerOutput]]] = {
    "ddpm": ddpm_sample,
    "ddim": ddim_sample,
    "dpm_solver": dpm_solver_sample,
}
"""Sampler name -> function (the names configs and the CLI use)."""
