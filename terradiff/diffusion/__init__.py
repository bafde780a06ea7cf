"""terradiff.diffusion: the maths (schedules, objectives, samplers); no networks, no I/O."""

from terradiff.diffusion.objectives import (
    PREDICTIONS,
    LossType,
    Prediction,
    check_prediction,
    diffusion_loss,
    min_snr_weights,
    predict_x0_eps,
    target,
    to_eps,
    to_v,
    to_x0,
)
from terradiff.diffusion.samplers import (
    SAMPLERS,
    ModelFn,
    SamplerOutput,
    ddim_sample,
    ddpm_sample,
    dpm_solver_sample,
    spaced_timesteps,
)
from terradiff.diffusion.schedules import SCHEDULE_KINDS, TABLE_NAMES, NoiseSchedule, make_betas

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULE_KINDS",
    "TABLE_NAMES",
    "LossType",
    "ModelFn",
    "NoiseSchedule",
    "Prediction",
    "SamplerOutput",
    "check_prediction",
    "ddim_sample",
    "ddpm_sample",
    "diffusion_loss",
    "dpm_solver_sample",
    "make_betas",
    "min_snr_weights",
    "predict_x0_eps",
    "spaced_timesteps",
    "target",
    "to_eps",
    "to_v",
    "to_x0",
]
