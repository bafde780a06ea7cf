"""terradiff's noise schedules <-> diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` configs.

Both libraries index timesteps from 0 (``alphas_cumprod[t]`` is what the net sees at ``t``), so a
net moves between them unchanged; only the betas must agree. The named schedules correspond:

===========================  =================================================================
terradiff ``schedule``       diffusers ``beta_schedule``
===========================  =================================================================
``linear``                   ``linear`` (``beta_start``, ``beta_end``)
``cosine`` (s=0.008, 0.999)  ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021, Eq. 17)
``sigmoid_betas``            ``sigmoid`` (``DDPMScheduler`` only; GeoDiff's sigmoid betas)
``scaled_linear``            ``scaled_linear`` (Rombach et al. 2022, LDM: ``beta_t =
                             linspace(sqrt(beta_start), sqrt(beta_end), T)[t] ** 2``)
===========================  =================================================================

terradiff computes its tables in float64, diffusers in float32: the betas agree to float32
rounding (at most 4 ulp, ``rtol`` 4e-7; measured 3.1e-7 for ``scaled_linear``, which squares
a float32 linspace) and ``alphas_cumprod`` to ``rtol`` 1e-6 (measured 9.5e-7), except the
cosine schedule's last entry, whose beta is capped at 0.999: there ``1 - beta`` carries
float32's rounding of 0.999 (relative 1.3e-5). ``tests/interop/test_diffusers_schedule.py``
checks this against diffusers' own arrays. Other terradiff schedules (Chen's ``sigmoid``, a
cosine with other parameters, raw betas) export as ``trained_betas``.

Imported scheduler configs become a run's ``diffusion`` and ``sample`` sections; keys that would
change the schedule or the net's output (``trained_betas``, ``rescale_betas_zero_snr``,
learned variances, a ``beta_schedule`` without a terradiff schedule such as ``laplace``) are
refused by name, and sampling-only settings terradiff does its own way (``timestep_spacing``,
``steps_offset``, ``thresholding``, ...) are returned as notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.errors import ConfigError

__all__ = [
    "PREDICTION_NAMES",
    "SCHEDULER_CONFIG_NAME",
    "run_sections_from_scheduler",
    "scheduler_config",
]

SCHEDULER_CONFIG_NAME = "scheduler_config.json"

PREDICTION_NAMES: dict[str, str] = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
"""terradiff's ``diffusion.prediction`` -> diffusers' ``prediction_type``."""

_SAMPLERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim"}
_COSINE = {"cosine_s": 0.008, "max_beta": 0.999}
# Sampling-only keys: how diffusers walks the chain, not what the schedule or net is.
_SAMPLING_ONLY = (
    "timestep_spacing",
    "steps_offset",
    "set_alpha_to_one",
    "thresholding",
    "clip_sample_range",
    "variance_type",
)


def scheduler_config(
    schedule: NoiseSchedule,
    *,
    prediction: str = "eps",
    clip_denoised: bool = True,
    sampler: str = "ddpm",
    diffusers_version: str = "0.30.0",
) -> dict[str, Any]:
    """The diffusers scheduler config of a terradiff schedule.

    Args:
        schedule: the run's noise schedule.
        prediction: the net's target (``eps``, ``x0`` or ``v``).
        clip_denoised: clip the ``x_0`` estimate to [-1, 1] (``clip_sample``).
        sampler: ``ddim`` writes a ``DDIMScheduler`` config, anything else a ``DDPMScheduler``.
        diffusers_version: written as ``_diffusers_version``.

    Raises:
        ConfigError: an unknown ``prediction``.
    """
    if prediction not in PREDICTION_NAMES:
        raise ConfigError(
            f"prediction {prediction!r} has no diffusers prediction_type; known: "
            f"{sorted(PREDICTION_NAMES)}"
        )
    name = "DDIMScheduler" if sampler == "ddim" else "DDPMScheduler"
    params = schedule.params
    config: dict[str, Any] = {
        "_class_name": name,
        "_diffusers_version": diffusers_version,
        "num_train_timesteps": schedule.num_timesteps,
        "beta_start": params.get("beta_start", 1e-4),
        "beta_end": params.get("beta_end", 2e-2),
        "beta_schedule": "linear",
        "trained_betas": None,
        "clip_sample": bool(clip_denoised),
        "clip_sample_range": 1.0,
        "prediction_type": PREDICTION_NAMES[prediction],
    }
    if name == "DDPMScheduler":
        config["variance_type"] = "fixed_small"  # terradiff's ancestral DDPM step
    kind = schedule.kind
    if kind in ("linear", "scaled_linear"):
        config["beta_schedule"] = kind
        return config
    if kind == "cosine" and all(abs(params[k] - v) < 1e-12 for k, v in _COSINE.items()):
        config["beta_schedule"] = "squaredcos_cap_v2"
    elif kind == "sigmoid_betas" and name == "DDPMScheduler":
        config["beta_schedule"] = "sigmoid"
    else:
        config["trained_betas"] = schedule.betas.tolist()
    return config


def _refuse(key: str, value: Any, why: str, source: str) -> ConfigError:
    return ConfigError(f"{source}: scheduler key {key!r} = {value!r} {why}")


def run_sections_from_scheduler(
    config: Mapping[str, Any], source: str = "scheduler_config.json"
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A run config's ``diffusion`` and ``sample`` sections from a diffusers scheduler config.

    Returns:
        ``(diffusion, sample, notes)``: the two sections as plain dicts and one line per
        sampling-only setting that terradiff does not copy.

    Raises:
        ConfigError: a scheduler class other than DDPM/DDIM, or a key whose value terradiff's
            schedules cannot reproduce (named, with the value).
    """
    name = config.get("_class_name", "DDPMScheduler")
    if name not in _SAMPLERS:
        raise _refuse("_class_name", name, f"is not one of {sorted(_SAMPLERS)}", source)
    if config.get("trained_betas") is not None:
        raise _refuse(
            "trained_betas",
            "[...]",
            "is given: a terradiff run names its schedule (linear, scaled_linear, cosine, "
            "sigmoid_betas)",
            source,
        )
    if config.get("rescale_betas_zero_snr"):
        raise _refuse("rescale_betas_zero_snr", True, "has no terradiff schedule", source)
    variance = config.get("variance_type", "fixed_small")
    if variance in ("learned", "learned_range"):
        raise _refuse(
            "variance_type",
            variance,
            "means the net also predicts variances; not supported",
            source,
        )
    prediction = config.get("prediction_type", "epsilon")
    by_diffusers = {v: k for k, v in PREDICTION_NAMES.items()}
    if prediction not in by_diffusers:
        raise _refuse(
            "prediction_type", prediction, f"is not one of {sorted(by_diffusers)}", source
        )
    T = int(config.get("num_train_timesteps", 1000))
    beta_schedule = config.get("beta_schedule", "linear")
    diffusion: dict[str, Any] = {"num_timesteps": T, "prediction": by_diffusers[prediction]}
    if beta_schedule in ("linear", "scaled_linear", "sigmoid") and not (
        beta_schedule == "sigmoid" and name != "DDPMScheduler"
    ):
        diffusion["schedule"] = "sigmoid_betas" if beta_schedule == "sigmoid" else beta_schedule
        diffusion["beta_start"] = float(config.get("beta_start", 1e-4))
        diffusion["beta_end"] = float(config.get("beta_end", 2e-2))
    elif beta_schedule == "squaredcos_cap_v2":
        diffusion["schedule"] = "cosine"
        diffusion["cosine_s"] = _COSINE["cosine_s"]
    else:
        raise _refuse(
            "beta_schedule",
            beta_schedule,
            "has no terradiff schedule (supported: linear, scaled_linear, squaredcos_cap_v2, and "
            "sigmoid for DDPMScheduler)",
            source,
        )
    sample = {"sampler": _SAMPLERS[name], "clip_denoised": bool(config.get("clip_sample", True))}
    notes = [
        f"{key}={config[key]!r} is a diffusers sampling setting; terradiff's {sample['sampler']} "
        "sampler uses its own"
        for key in _SAMPLING_ONLY
        if key in config and config[key] not in (None, False, 0, 1.0, "fixed_small", "leading")
    ]
    return diffusion, sample, notes
