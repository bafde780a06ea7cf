"""Reading a trained generation run that another model builds on, frozen (DDPM-CD's feature
source, the ControlNet's locked generator).

The checks shared by every such use live here: the checkpoint loads, it is a ``generation``
model, and it was trained on the same bands and scaling as the data of the model built on it.
What the generator must be conditioned on differs per use and is checked by the caller. The
returned record (checkpoint, step, config, bands) is stored in the new model's checkpoint, so a
trained model loads without the generator run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from terradiff.checkpoint import load_checkpoint
from terradiff.config import ExperimentConfig, config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class FrozenGenerator:
    """A checked generation run: its config, what to store about it, and its weights (EMA when
    the checkpoint has them: what its samples come from)."""

    where: str
    config: ExperimentConfig
    record: dict[str, Any]
    weights: dict[str, torch.Tensor]


def read_frozen_generator(
    path: str, *, key: str, hint: str, band_info: BandInfo, data: str
) -> FrozenGenerator:
    """Load and check the generation run at ``path`` (named ``key`` in errors, with ``hint``).

    Raises:
        ConfigError: no checkpoint there, not a generation model, or trained on other bands or
            another scaling than ``band_info`` (``data`` names that data in the message).
    """
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as error:
        raise ConfigError(f"{key} {path}: {error}; {hint}") from None
    saved = ckpt.config
    where = f"{key} {path} ({ckpt.path})"
    if saved.get("task") != "generation":
        raise ConfigError(
            f"{where} is a {saved.get('task')!r} model; a 'generation' model is needed: {hint}"
        )
    config = config_from_dict(saved.get("config", {}), f"{ckpt.path}/config.json")
    bands = BandInfo.from_dict(saved.get("bands"), f"{ckpt.path}/config.json")
    same_scaling = bands.band_scaling().to_dict() == band_info.band_scaling().to_dict()
    if bands.count != band_info.count or not same_scaling:
        raise ConfigError(
            f"{where} was trained on {bands.describe()} scaled by {bands.scaling!r}; the {data} "
            f"are {band_info.describe()} scaled by {band_info.scaling!r}: train the generator on "
            f"the same bands and scaling ({hint})"
        )
    record = {
        "checkpoint": str(Path(ckpt.path).resolve()),
        "step": ckpt.step,
        "config": saved["config"],
        "bands": saved["bands"],
    }
    weights = ckpt.ema_state if ckpt.ema_state is not None else ckpt.model_state
    return FrozenGenerator(where, config, record, weights)


__all__ = ["FrozenGenerator", "read_frozen_generator"]
