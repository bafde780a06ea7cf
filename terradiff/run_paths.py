"""Relative paths in a saved run's config, found again when the run is used from another folder.

A config names its data relative to the folder ``terradiff train`` ran in (``data.root:
data/samples/aid``). Read back by ``sample`` or ``evaluate`` from any other folder, that path
would point nowhere. The trainer therefore records its working folder in ``config.json``
(``working_dir``); for checkpoints written before that, the folder is recovered from the run
folder's own path and its relative ``output_dir`` (``/work/proj/outputs/run`` trained with
``output_dir: outputs/run`` was trained from ``/work/proj``).

A relative path is only rebased when it does not exist from the current folder and does exist
from the training folder, so a path that resolves where the user stands always wins.

The same rule serves ``terradiff train`` started from another folder than the one its config's
paths are written for (``cd /tmp && terradiff train /work/proj/configs/demo_aid.yaml``): a path
missing from the current folder is looked for beside the config file and then in the folders
above it (:func:`config_file_bases`), the way ``configs/`` sits one level below a project root.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKING_DIR_KEY = "working_dir"
"""The key of ``config.json`` that holds the folder a run was trained from (absolute)."""

PATH_FIELDS: tuple[tuple[str, str], ...] = (
    ("data", "root"),
    ("condition", "classes"),
    ("condition", "metadata_sidecar"),
    ("evaluate", "encoder"),
    ("evaluate", "encoder_weights"),
    ("sr", "teacher"),
    ("sr", "lpips_weights"),
    ("sr", "feature_distance_encoder"),
    ("carbon", "vgg_weights"),
    ("carbon", "kd_vgg"),
    ("change", "generator"),
    ("temporal", "generator"),
)
"""``(section, key)`` of the config values that may be file or folder paths, read at use time."""

NOT_PATHS: frozenset[str] = frozenset({"folders", "aid-cnn", "inception"})
"""Values of those keys that are names of built-in choices, never paths."""


def training_folder(checkpoint_dir: Path, saved: dict[str, Any]) -> Path | None:
    """The folder the run of ``checkpoint_dir`` (a ``step_*`` folder) was trained from.

    Args:
        checkpoint_dir: the checkpoint's folder (``<run>/checkpoints/step_*``).
        saved: its ``config.json``.

    Returns:
        ``saved["working_dir"]`` when recorded; else the prefix of the run folder's absolute path
        before the config's relative ``output_dir``; ``None`` when neither is known.
    """
    recorded = saved.get(WORKING_DIR_KEY)
    if isinstance(recorded, str) and recorded:
        return Path(recorded)
    output_dir = (saved.get("config") or {}).get("output_dir")
    if not isinstance(output_dir, str) or not output_dir or Path(output_dir).is_absolute():
        return None
    parts = Path(output_dir).parts
    if ".." in parts or checkpoint_dir.parent.name != "checkpoints":
        return None
    run_dir = checkpoint_dir.parent.parent.resolve()
    kept = [part for part in parts if part != "."]
    if not kept or list(run_dir.parts[-len(kept) :]) != kept:
        return None
    return Path(*run_dir.parts[: -len(kept)])


def config_file_bases(config_path: Path) -> list[Path]:
    """The folders a config file's relative paths may be written from: the file's own folder,
    then each folder above it, nearest first, without the filesystem root (where a relative
    ``data`` would match the unrelated ``/data``)."""
    folder = config_path.resolve().parent
    return [base for base in (folder, *folder.parents) if base.parent != base]


def rebase_relative_paths(
    raw: dict[str, Any], base: Path | None, *, cwd: Path | None = None
) -> list[str]:
    """Point the relative paths of ``raw`` (a config dict, changed in place) at ``base``.

    A value of :data:`PATH_FIELDS` is rewritten to ``base / value`` when it is relative, does not
    exist from ``cwd`` (default: the current folder) and exists under ``base``.

    Returns:
        One line per rewritten value (``data.root data/x -> /abs/data/x``), also logged.
    """
    if base is None:
        return []
    here = Path.cwd() if cwd is None else cwd
    notes = []
    for section, key in PATH_FIELDS:
        values = raw.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if not isinstance(value, str) or not value or value in NOT_PATHS:
            continue
        path = Path(value)
        if path.is_absolute() or (here / path).exists() or not (base / path).exists():
            continue
        values[key] = str(base / path)
        notes.append(f"{section}.{key} {value} -> {values[key]}")
    for note in notes:
        log.debug("not found from %s, found under %s: %s", here, base, note)
    return notes
