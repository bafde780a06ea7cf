"""terradiff schedules <-> diffusers DDPMScheduler / DDIMScheduler configs.

The arrays are compared with diffusers' own ``betas`` and ``alphas_cumprod`` (float32) after the
config round trip. terradiff's tables are float64, so the stated agreement is float32 rounding:
betas to ``rtol`` 4e-7 (<= 4 ulp; diffusers computes linspace/sigmoid in float32, and squares
a float32 linspace for ``scaled_linear``: measured 3.1e-7), and
``alphas_cumprod`` to ``rtol`` 1e-6, except the capped last cosine beta (0.999 is not a float32
number, and ``1 - beta`` magnifies its rounding to 1.3e-5): ``rtol`` 2e-5 there.
"""

from __future__ import annotations

import json

import pytest
import torch

from terradiff.config import DiffusionConfig
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.errors import ConfigError
from terradiff.interop.diffusers_schedule import run_sections_from_scheduler, scheduler_config

BETAS_RTOL = 4e-7


def diffusers_or_skip():
    return pytest.importorskip(
        "diffusers", reason="diffusers is not installed (pip install 'terradiff[dev]')"
    )


def schedule_of(sections: dict) -> NoiseSchedule:
    """The schedule a run built from the imported ``diffusion`` section uses."""
    diffusion = DiffusionConfig(**sections)
    return NoiseSchedule.create(
        diffusion.schedule, diffusion.num_timesteps, **diffusion.schedule_kwargs()
    )


CASES = [
    ("DDPMScheduler", "linear", {}),
    ("DDPMScheduler", "linear", {"beta_start": 1e-6, "beta_end": 0.01}),
    ("DDPMScheduler", "squaredcos_cap_v2", {}),
    ("DDPMScheduler", "sigmoid", {}),
    ("DDPMScheduler", "scaled_linear", {}),
    ("DDPMScheduler", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),  # LDM
    ("DDIMScheduler", "linear", {}),
    ("DDIMScheduler", "squaredcos_cap_v2", {}),
    ("DDIMScheduler", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
]


@pytest.mark.parametrize("num_t", [1000, 50])
@pytest.mark.parametrize(("cls", "beta_schedule", "kwargs"), CASES)
def test_imported_schedule_equals_diffusers_arrays(
    cls: str, beta_schedule: str, kwargs: dict, num_t: int
) -> None:
    diffusers = diffusers_or_skip()
    ref = getattr(diffusers, cls)(num_train_timesteps=num_t, beta_schedule=beta_schedule, **kwargs)
    saved = json.loads(ref.to_json_string())  # what scheduler_config.json holds
    diffusion, sample, _ = run_sections_from_scheduler(saved)
    ours = schedule_of(diffusion)
    assert sample["sampler"] == {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim"}[cls]
    torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=BETAS_RTOL, atol=0)
    ab_rtol = 2e-5 if beta_schedule == "squaredcos_cap_v2" else 1e-6
    torch.testing.assert_close(
        ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=ab_rtol, atol=0
    )
    if beta_schedule == "squaredcos_cap_v2":  # all but the capped last entry: float32 rounding
        torch.testing.assert_close(
            ours.alphas_cumprod[:-1].float(), ref.alphas_cumprod[:-1], rtol=1e-6, atol=0
        )


@pytest.mark.parametrize(
    ("kind", "kwargs", "sampler", "name"),
    [
        ("linear", {"beta_start": 1e-6, "beta_end": 0.01}, "ddim", "linear"),
        ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}, "ddpm", "scaled_linear"),
        ("scaled_linear", {}, "ddim", "scaled_linear"),
        ("cosine", {}, "ddpm", "squaredcos_cap_v2"),
        ("sigmoid_betas", {}, "ddpm", "sigmoid"),
        ("sigmoid_betas", {}, "ddim", None),  # DDIMScheduler has no "sigmoid": trained_betas
        ("sigmoid", {}, "ddpm", None),  # Chen (2023): no diffusers name
        ("cosine", {"cosine_s": 0.02}, "ddpm", None),
    ],
)
def test_exported_config_rebuilds_the_schedule(
    kind: str, kwargs: dict, sampler: str, name: str | None
) -> None:
    diffusers = diffusers_or_skip()
    ours = NoiseSchedule.create(kind, 200, **kwargs)
    config = scheduler_config(ours, prediction="v", sampler=sampler)
    assert config["beta_schedule"] == (name or "linear")
    assert (config["trained_betas"] is None) == (name is not None)
    cls = getattr(diffusers, config["_class_name"])
    ref = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    assert ref.config.prediction_type == "v_prediction"
    if name is None:  # raw betas: diffusers holds exactly their float32 rounding
        assert torch.equal(ref.betas, ours.betas.float())
    torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=BETAS_RTOL, atol=0)
    torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=2e-5, atol=0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("beta_schedule", "laplace"),  # diffusers-only (DDPMScheduler)
        ("trained_betas", [0.1, 0.2]),
        ("rescale_betas_zero_snr", True),
        ("variance_type", "learned_range"),
        ("prediction_type", "flow"),
        ("_class_name", "EulerDiscreteScheduler"),
    ],
)
def test_unsupported_scheduler_keys_are_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        run_sections_from_scheduler({"_class_name": "DDPMScheduler", key: value})


def test_sampling_only_settings_become_notes() -> None:
    diffusion, sample, notes = run_sections_from_scheduler(
        {"_class_name": "DDIMScheduler", "timestep_spacing": "trailing", "clip_sample": False}
    )
    assert diffusion == {
        "num_timesteps": 1000,
        "prediction": "eps",
        "schedule": "linear",
        "beta_start": 1e-4,
        "beta_end": 0.02,
    }
    assert sample == {"sampler": "ddim", "clip_denoised": False}
    assert len(notes) == 1 and "timestep_spacing" in notes[0]
