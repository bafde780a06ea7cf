"""Tasks: what a user trains. Each composes a network, the diffusion maths and a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from terradiff.checkpoint import Checkpoint, load_checkpoint
from terradiff.config import ExperimentConfig, config_from_dict
from terradiff.errors import CheckpointError
from terradiff.tasks.base import Task

__all__ = ["Task", "build_task", "load_task"]


def build_task(config: ExperimentConfig, band_info: dict[str, Any] | None = None) -> Task:
    """The task named by ``config.task``."""
    if config.task == "generation":
        from terradiff.tasks.generation import GenerationTask

        return GenerationTask(config, band_info)
    if config.task == "super_resolution":
        from terradiff.tasks.super_resolution import SuperResolutionTask

        return SuperResolutionTask(config, band_info)
    if config.task == "carbon":
        from terradiff.tasks.carbon import CarbonTask

        return CarbonTask(config, band_info)
    raise CheckpointError(f"unknown task {config.task!r}")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when it is available and the CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_task(
    path: str | Path, *, use_ema: bool = True, device: str | torch.device | None = None
) -> tuple[Task, Checkpoint]:
    """Rebuild a task from a checkpoint (folder or run folder) with its weights loaded.

    Args:
        path: a ``step_*`` checkpoint folder, or a run folder (its latest checkpoint).
        use_ema: load the EMA weights (what sampling should use) when the checkpoint has them.
        device: move the network there (``resolve_device`` picks one for ``"auto"``); default:
            leave it on the CPU.
    """
    ckpt = load_checkpoint(path)
    if "config" not in ckpt.config or "bands" not in ckpt.config:
        raise CheckpointError(
            f"{ckpt.path}/config.json is not a terradiff checkpoint config (no 'config'/'bands')"
        )
    config = config_from_dict(ckpt.config["config"], f"{ckpt.path}/config.json")
    task = build_task(config, band_info=ckpt.config["bands"])
    state = ckpt.ema_state if (use_ema and ckpt.ema_state is not None) else ckpt.model_state
    try:
        task.net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"weights in {ckpt.path} do not fit its config: {error}") from None
    task.net.eval()
    if device is not None:
        task.net.to(resolve_device(None if device == "auto" else device))
    return task, ckpt
