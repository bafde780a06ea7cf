"""Tasks: what a user trains. Each composes a network, the diffusion maths and a dataset.

Super-resolution, carbon estimation, change detection and temporal generation choose a *method*
(one class per file, see :mod:`terradiff.tasks.registry`); importing this package registers the
built-in ones.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from terradiff.checkpoint import Checkpoint, load_checkpoint
from terradiff.config import ExperimentConfig, config_from_dict, method_config_class
from terradiff.data.band_info import BandInfo
from terradiff.errors import CheckpointError, ConfigError
from terradiff.run_paths import rebase_relative_paths, training_folder
from terradiff.tasks.base import CONFIG_FORMAT, Task
from terradiff.tasks.carbon import CarbonTask
from terradiff.tasks.change import ChangeTask
from terradiff.tasks.generation import GenerationTask
from terradiff.tasks.registry import Method, register_method, registered_methods
from terradiff.tasks.super_resolution import SuperResolutionTask
from terradiff.tasks.temporal import TemporalTask

__all__ = [
    "TASKS",
    "Method",
    "Task",
    "build_task",
    "checkpoint_experiment",
    "load_task",
    "migrate_checkpoint_config",
    "register_method",
    "registered_methods",
]

TASKS: dict[str, type[Task]] = {
    "generation": GenerationTask,
    "super_resolution": SuperResolutionTask,
    "carbon": CarbonTask,
    "change": ChangeTask,
    "temporal": TemporalTask,
}
"""``config.task`` -> the task class."""


def build_task(config: ExperimentConfig, band_info: BandInfo | None = None) -> Task:
    """The task named by ``config.task``."""
    if config.task not in TASKS:
        raise CheckpointError(f"unknown task {config.task!r}; choose one of {sorted(TASKS)}")
    return TASKS[config.task](config, band_info)


DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"
"""The values ``--device`` takes (see :func:`resolve_device`)."""


def _cuda_state() -> str:
    """Whether CUDA can be used here, for messages."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"
        return f"CUDA is available: {count} GPU{'s' if count != 1 else ''}, {names}"
    if torch.version.cuda is None:
        return f"CUDA is not available: this torch {torch.__version__} is a CPU-only build"
    return "CUDA is not available: torch was built with CUDA but finds no GPU (driver?)"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device ``device`` names, checked to be usable here.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``auto``/None for CUDA when it is
            available and the CPU otherwise; a ``torch.device`` is returned as it is.

    Raises:
        ConfigError: not a device name, or a device this machine does not have; the message
            names ``--device``, the valid choices and whether CUDA is available.
    """
    if isinstance(device, torch.device):  # from Python: the caller chose it (e.g. "meta")
        return device
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device).strip().lower() if isinstance(device, str) else device
    try:
        chosen = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(
            f"--device {device}: not a device; choose {DEVICE_CHOICES} ({_cuda_state()})"
        )
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: {_cuda_state()}; use --device cpu or auto here (the "
                f"choices: {DEVICE_CHOICES})"
            )
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise ConfigError(
                f"--device {device}: this machine has {count} GPU{'s' if count != 1 else ''}; "
                f"choose cuda:0..cuda:{count - 1}, cuda, cpu or auto"
            )
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"--device {device}: Apple's MPS is not available on this machine; choose "
            f"{DEVICE_CHOICES} ({_cuda_state()})"
        )
    return chosen


def migrate_checkpoint_config(
    saved: dict[str, Any], source: str = "config.json"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The experiment config and band record of a checkpoint's ``config.json``, made current.

    ``config_format`` 1 (checkpoints written before methods had their own sections) stored
    every method's keys in ``sr``/``carbon`` and a student's adapter widths in the band record
    (``teacher_features``). They load by keeping only the keys of the section's method and moving
    the widths to ``sr.adapter_channels``: nothing the saved method used is changed.

    Raises:
        CheckpointError: ``saved`` is not a terradiff checkpoint config.
    """
    if not isinstance(saved, dict) or "config" not in saved or "bands" not in saved:
        raise CheckpointError(
            f"{source} is not a terradiff checkpoint config (no 'config'/'bands'); point at a "
            "run folder or step_* folder written by 'terradiff train'"
        )
    raw = copy.deepcopy(saved["config"])
    bands = copy.deepcopy(saved["bands"])
    if not isinstance(raw, dict) or not isinstance(bands, dict):
        raise CheckpointError(f"{source}: 'config' and 'bands' must be mappings")
    if int(saved.get("config_format", 1)) >= CONFIG_FORMAT:
        return raw, bands
    for section in ("sr", "carbon"):
        values = raw.get(section)
        if not isinstance(values, dict):
            continue
        try:
            fields = method_config_class(section, values.get("method")).model_fields
        except ValueError as error:
            raise CheckpointError(f"{source}: {error}") from None
        if "teacher_features" in bands and "adapter_channels" in fields:
            values["adapter_channels"] = bands.pop("teacher_features")
        raw[section] = {k: v for k, v in values.items() if k in fields}
    bands.pop("teacher_features", None)
    return raw, bands


def checkpoint_experiment(
    ckpt: Checkpoint, data_root: str | Path | None = None
) -> tuple[ExperimentConfig, BandInfo]:
    """The experiment config and bands of a loaded checkpoint, made current
    (:func:`migrate_checkpoint_config`), with relative paths that resolve only from the training
    folder rebased there (:mod:`terradiff.run_paths`) and ``data.root`` replaced by ``data_root``
    when given."""
    source = f"{ckpt.path}/config.json"
    raw, bands = migrate_checkpoint_config(ckpt.config, source)
    rebase_relative_paths(raw, training_folder(ckpt.path, ckpt.config))
    if data_root is not None:
        raw.setdefault("data", {})["root"] = str(data_root)
    return config_from_dict(raw, source), BandInfo.from_dict(bands, source)


def load_task(
    path: str | Path,
    *,
    use_ema: bool = True,
    device: str | torch.device | None = None,
    data_root: str | Path | None = None,
) -> tuple[Task, Checkpoint]:
    """Rebuild a task from a checkpoint (folder or run folder) with its weights loaded.

    Relative paths of the saved config that do not resolve from the current folder are looked
    up from the folder the run was trained in (:mod:`terradiff.run_paths`).

    Args:
        path: a ``step_*`` checkpoint folder, or a run folder (its latest checkpoint).
        use_ema: load the EMA weights (what sampling should use) when the checkpoint has them.
        device: move the network there (``resolve_device`` picks one for ``"auto"``); default:
            leave it on the CPU.
        data_root: replaces the config's ``data.root`` (the images a conditional task's
            inputs come from), e.g. when the run was moved to another machine.
    """
    ckpt = load_checkpoint(path)
    config, band_info = checkpoint_experiment(ckpt, data_root)
    task = build_task(config, band_info=band_info)
    state = ckpt.ema_state if (use_ema and ckpt.ema_state is not None) else ckpt.model_state
    try:
        task.net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"weights in {ckpt.path} do not fit its config: {error}") from None
    task.net.eval()
    if device is not None:
        task.net.to(resolve_device(None if device == "auto" else device))
    return task, ckpt
