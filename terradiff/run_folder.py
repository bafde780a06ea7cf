"""A training run's folder: what it holds, when a fresh run may start in it, replacing it.

A fresh run never mixes with an earlier one: a folder that holds a run is refused unless the run
is resumed (``--resume``) or replaced (``--overwrite``), and ``--overwrite`` deletes only what a
run writes. The old run is first moved aside under a temporary name of this process
(:func:`terradiff.io.temporary_name`, kind ``old``) in one rename, so a ``kill -9`` at any moment
leaves either the old run or nothing under the folder's name; the next start in the parent
folder (:func:`terradiff.io.remove_stale_temporaries`) puts an orphaned old run back.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from terradiff.checkpoint import list_checkpoints
from terradiff.errors import ConfigError
from terradiff.io import temporary_name

log = logging.getLogger(__name__)

RUN_ENTRIES: frozenset[str] = frozenset(
    {"README.md", "checkpoints", "config.json", "metrics.jsonl", "samples", "tensorboard"}
)
"""What a run folder holds (besides hidden leftovers of atomic writes): all that ``overwrite``
deletes. A folder with anything else in it is not replaced."""

RUN_MARKERS: tuple[str, ...] = ("checkpoints", "metrics.jsonl", "config.json")
"""Entries that show a folder already holds a run (which a fresh run must not mix with)."""


def holds_run(run_dir: Path) -> list[str]:
    """The :data:`RUN_MARKERS` present in ``run_dir`` (empty: no run there)."""
    return [name for name in RUN_MARKERS if (run_dir / name).exists()]


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run in ``run_dir`` when that would mix with or lose a run.

    Raises:
        ConfigError: ``run_dir`` is a file; it holds a run and neither ``resume`` nor
            ``overwrite`` is given (the message names the checkpoint ``--resume latest`` would
            continue from); or ``overwrite`` is given but the folder also holds files a run
            does not write (those are never deleted).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"the run folder {run_dir} (output_dir / --output-dir) is a file; choose a folder"
        )
    markers = holds_run(run_dir)
    if resume or not markers:
        return
    held = ", ".join(f"{name}/" if name == "checkpoints" else name for name in markers)
    if not overwrite:
        found = list_checkpoints(run_dir)
        how = (
            f"pass --resume latest to continue it (from {found[-1].name}), or"
            if found
            else "it has no complete checkpoint for --resume latest to continue from: pass"
        )
        raise ConfigError(
            f"the run folder {run_dir} (output_dir / --output-dir) already holds a run "
            f"({held}); {how} --overwrite to delete it and start again, or choose "
            "another --output-dir"
        )
    foreign = sorted(
        p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES and p.name[0] != "."
    )
    if foreign:
        raise ConfigError(
            f"--overwrite: the run folder {run_dir} also holds {foreign[:5]}, which a "
            "terradiff run does not write, so it is not deleted; move them out of it or "
            "choose another --output-dir"
        )


def delete_previous_run(run_dir: Path) -> None:
    """Move the run in ``run_dir`` aside in one rename, then delete it (nothing if none)."""
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return
    aside = temporary_name(run_dir, kind="old")
    os.replace(run_dir, aside)  # atomic: the folder is the old run or absent, never half
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        log.warning("--overwrite: could not delete all of %s; delete it by hand", aside)
    log.info("--overwrite: deleted the previous run in %s", run_dir)


__all__ = ["RUN_ENTRIES", "RUN_MARKERS", "check_run_folder", "delete_previous_run", "holds_run"]
