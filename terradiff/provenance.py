"""Where a measurement came from: the exact command, data, code, machine, software and date.

Every study and benchmark JSON carries one :func:`provenance_record` written by the code that
measured, never by hand (issue 14, "Evidence machinery"): a reader can rerun the exact ``argv``
on the recorded commit, and see whether the tree had uncommitted changes, which data folders the
command named, and on what CPU/GPU and torch version the numbers were made. Re-rendering a report
from its JSON records its own environment separately and leaves the measured one alone (see
``scripts/study_common.py``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_model", "git_state", "machine_record", "paths_in_argv", "provenance_record"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_record() -> dict[str, Any]:
    """CPU model, logical cores (all, and usable by this process), torch threads, GPUs, OS."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "platform": platform.platform(),
    }


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"commit", "dirty", "changed"}`` of the repository at ``root`` (None where git fails).

    ``dirty`` counts modified tracked files only (untracked files do not change what ran);
    ``changed`` lists up to 20 of them.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(changed),
        "changed": changed[:20],
    }


def paths_in_argv(argv: Sequence[str]) -> list[str]:
    """Absolute paths of the existing files and folders that ``argv`` names.

    Both plain arguments and the values of ``key=value`` overrides count (``data.root=...``).
    """
    found: list[str] = []
    for arg in argv:
        for candidate in (arg, arg.split("=", 1)[1] if "=" in arg else ""):
            if candidate and not candidate.startswith("-") and Path(candidate).exists():
                resolved = str(Path(candidate).resolve())
                if resolved not in found:
                    found.append(resolved)
    return found


def provenance_record(
    argv: Sequence[str] | None = None, data_paths: Iterable[str | Path] = ()
) -> dict[str, Any]:
    """What a results JSON records about the run that measured it.

    Args:
        argv: The command as run (default: the interpreter and ``sys.argv``, unedited).
        data_paths: Data folders or files used but not named on the command line (e.g. a
            config's ``data.root``); added to the paths found in ``argv``.

    Returns:
        ``{"argv", "cwd", "data_paths", "shared_data", "git", "machine", "python", "torch",
        "date"}``; ``date`` is ISO 8601 in UTC.
    """
    argv = [Path(sys.executable).name, *sys.argv] if argv is None else list(argv)
    paths = paths_in_argv(argv)
    for extra in data_paths:
        resolved = str(Path(extra).resolve())
        if resolved not in paths:
            paths.append(resolved)
    return {
        "argv": argv,
        "cwd": str(Path.cwd()),
        "data_paths": [{"path": p, "exists": Path(p).exists()} for p in paths],
        "shared_data": os.environ.get("TERRADIFF_SHARED_DATA"),
        "git": git_state(),
        "machine": machine_record(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
