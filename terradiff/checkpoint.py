"""Checkpoints as folders of safetensors + JSON: safe to load, atomic to write, exact to resume.

Layout of one checkpoint (GUIDE.md, "Conventions")::

    step_00001000/
        config.json                 the full experiment config + band list + terradiff version
        model.safetensors           network weights
        ema.safetensors             EMA weights (used for sampling)
        trainer_state.safetensors   optimizer moments and RNG states (tensors)
        trainer_state.json          step, LR scheduler, optimizer hyper-parameters, losses

Nothing is ever unpickled: tensors go through safetensors, everything else through JSON. A
checkpoint folder is written under a temporary name and renamed when complete
(:func:`terradiff.io.atomic_directory`), so a crash during a save leaves the previous checkpoint
intact."""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from terradiff.errors import CheckpointError
from terradiff.io import atomic_directory, temporary_name

CHECKPOINT_FILES = ("config.json", "model.safetensors")
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint folder."""

    path: Path
    config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None = None
    trainer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    trainer_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        """The optimisation step at which it was saved (0 when unknown)."""
        return int(self.trainer_meta.get("step", 0))


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors needs contiguous tensors that share no storage."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def flatten_optimizer_state(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a ``torch.optim`` state dict into tensors (for safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group and isinstance(group["betas"], list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch, CUDA, NumPy and Python RNG states as tensors + JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (missing parts are left alone)."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if "rng.numpy" in tensors and "numpy" in meta:
        name, pos, has_gauss, gauss = meta["numpy"]
        keys = tensors["rng.numpy"].numpy().astype(np.uint32)
        np.random.set_state((name, keys, pos, has_gauss, gauss))
    if "python" in meta:
        version, state, gauss = meta["python"]
        random.setstate((version, tuple(state), gauss))


def save_checkpoint(
    path: Path,
    *,
    config: dict[str, Any],
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (a failure leaves the previous ``path`` intact)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        if trainer_tensors is not None or trainer_meta is not None:
            save_file(_contiguous(trainer_tensors or {}), str(tmp / "trainer_state.safetensors"))
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_meta or {}, indent=1) + "\n")
    return path


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint file {file} is corrupt or unreadable ({error}); resume from an earlier "
            f"checkpoint with --resume PATH, or delete the folder {file.parent}"
        ) from None


def _load_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint file {file} is corrupt or unreadable ({error}); resume from an earlier "
            f"checkpoint with --resume PATH, or delete the folder {file.parent}"
        ) from None


def is_checkpoint_dir(path: Path) -> bool:
    """True when ``path`` holds the files every checkpoint has."""
    return Path(path).is_dir() and all((Path(path) / f).is_file() for f in CHECKPOINT_FILES)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP_DIR.match(p.name)) and is_checkpoint_dir(p)
    ]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder or a run folder (its latest checkpoint);
    a run's ``checkpoints`` folder itself stands for the run (what tab completion offers).

    Raises:
        CheckpointError: nothing usable is there; the message says what was looked for.
    """
    path = Path(path)
    if is_checkpoint_dir(path):
        return path
    if not path.exists():
        raise CheckpointError(
            f"checkpoint not found: {path} (give a run folder or a step_* folder)"
        )
    if path.name == "checkpoints" and not (path / "checkpoints").is_dir():
        path = path.parent
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(
            f"no complete checkpoint in {path}: expected {path}/checkpoints/step_*/ with "
            f"{' and '.join(CHECKPOINT_FILES)}"
        )
    return found[-1]


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """Only the ``config.json`` of a checkpoint (or of a run's latest one): no weights are read."""
    return _load_json(resolve_checkpoint(path) / "config.json")


def load_checkpoint(path: str | Path, *, with_trainer_state: bool = False) -> Checkpoint:
    """Load a checkpoint folder (or the latest checkpoint of a run folder)."""
    folder = resolve_checkpoint(path)
    config = _load_json(folder / "config.json")
    model_state = _load_tensors(folder / "model.safetensors")
    ema_state = (
        _load_tensors(folder / "ema.safetensors")
        if (folder / "ema.safetensors").is_file()
        else None
    )
    trainer_tensors: dict[str, torch.Tensor] = {}
    trainer_meta: dict[str, Any] = {}
    if (folder / "trainer_state.json").is_file():
        trainer_meta = _load_json(folder / "trainer_state.json")
    if with_trainer_state:
        state_file = folder / "trainer_state.safetensors"
        if not state_file.is_file():
            raise CheckpointError(
                f"{folder} has no trainer_state.safetensors: it is an export, not a resumable "
                "checkpoint; start a new run from it instead of resuming"
            )
        trainer_tensors = _load_tensors(state_file)
    return Checkpoint(folder, config, model_state, ema_state, trainer_tensors, trainer_meta)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints of a run.

    Each is first renamed to a hidden temporary name (:func:`terradiff.io.temporary_name`), so
    that an interrupted deletion never leaves a half-deleted ``step_*`` folder that looks like a
    checkpoint; a leftover is removed at the next start (:func:`terradiff.io.
    remove_stale_temporaries`).
    """
    for old in list_checkpoints(run_dir)[:-keep]:
        doomed = temporary_name(old, "tmp")
        try:
            old.rename(doomed)
        except OSError:  # gone already (another process pruned it)
            continue
        shutil.rmtree(doomed, ignore_errors=True)
