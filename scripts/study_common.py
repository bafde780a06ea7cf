"""Helpers shared by the study scripts (``*_study.py``): train or finish a run, describe the
machine, read a run's losses, open a results JSON stamped with its provenance, and let several
processes share one study (saves that merge, cells claimed by one process each)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from terradiff.checkpoint import list_checkpoints
from terradiff.config import ExperimentConfig, config_from_dict, method_config_class
from terradiff.config_loading import apply_override, load_config
from terradiff.io import atomic_write_text
from terradiff.nets import count_parameters
from terradiff.provenance import cpu_model, provenance_record
from terradiff.tasks import build_task, load_task
from terradiff.train import Trainer


def load_variant(
    config_path: Path, overrides: list[str], method: tuple[str, str] | None = None
) -> ExperimentConfig:
    """``config_path`` with ``method = (section, name)`` switched, then ``overrides`` applied.

    A method section holds only its method's keys, so switching keeps the keys the new method
    shares with the old one (splits, max_density, ...) and drops the old method's own.
    """
    if method is None:
        return load_config(config_path, overrides)
    section, name = method
    raw = yaml.safe_load(config_path.read_text())
    keys = method_config_class(section, name).model_fields
    raw[section] = {k: v for k, v in raw.get(section, {}).items() if k in keys}
    raw[section]["method"] = name
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw, f"{config_path} with {section}.method={name}")


def train(
    name: str,
    config_path: Path,
    overrides: list[str] | None = None,
    method: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Train (or finish training) the run of ``config_path``; what was trained and for how long.

    ``method`` switches the method (see :func:`load_variant`). A finished run
    (:func:`is_finished`: final checkpoint, or stopped at its time limit) is not touched; an
    interrupted one is resumed exactly.
    ``train_minutes`` is the training wall time recorded in the checkpoint (all resumed parts);
    for checkpoints written before terradiff recorded it, the time between the run's
    ``config.json`` and its final checkpoint.
    """
    from accelerate.state import AcceleratorState

    config = load_variant(config_path, overrides or [], method)
    run_dir = Path(config.output_dir)
    if not is_finished(run_dir, config.train.max_steps):
        AcceleratorState._reset_state(reset_partial_state=True)
        resume = "latest" if list_checkpoints(run_dir) else None
        # a run killed before its first checkpoint left only config.json/metrics: start it over
        Trainer(build_task(config), run_dir, resume=resume, overwrite=resume is None).fit()
    task, ckpt = load_task(run_dir)
    seconds = ckpt.trainer_meta.get("train_seconds")
    if seconds is None:
        seconds = ckpt.path.stat().st_mtime - (run_dir / "config.json").stat().st_mtime
    return {
        "name": name,
        "config": str(config_path),
        "run_dir": str(run_dir),
        "steps": ckpt.step,
        "batch_size": config.train.batch_size,
        "parameters": count_parameters(task.net),
        "train_minutes": round(float(seconds) / 60.0, 1),
        "final_loss": ckpt.trainer_meta["losses"][-1][1],
    }


def is_finished(run_dir: Path, max_steps: int) -> bool:
    """Whether the run in ``run_dir`` is done: its ``max_steps`` checkpoint exists, or it stopped
    at its ``train.max_minutes`` time limit (``stopped_by`` in the last line of its
    ``metrics.jsonl``) and its latest checkpoint is that step. A time-limited run is final as it
    stands: resuming it would train on and change the weights under any results measured from
    it. A run stopped by a signal or a crash is not finished."""
    checkpoints = list_checkpoints(run_dir)
    if any(p.name == f"step_{max_steps:08d}" for p in checkpoints):
        return True
    metrics = run_dir / "metrics.jsonl"
    if not checkpoints or not metrics.is_file():
        return False
    lines = metrics.read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    if last.get("stopped_by") != "max_minutes":
        return False
    return checkpoints[-1].name == f"step_{int(last['step']):08d}"


def machine_description() -> str:
    """CPU model, thread count and torch version, for the report."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu_model()} ({torch.get_num_threads()} threads, {gpu}), torch {torch.__version__}"


def read_losses(run_dir: Path) -> tuple[list[int], list[float]]:
    """Steps and losses of ``run_dir/metrics.jsonl``."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows], [r["loss"] for r in rows]


def is_report_only(argv: Sequence[str] | None = None) -> bool:
    """Whether the command line asks only to re-render a report (``--report-only``)."""
    return "--report-only" in (sys.argv[1:] if argv is None else argv)


def stamp_results(
    results: dict[str, Any],
    *,
    report_only: bool | None = None,
    data_paths: Iterable[str | Path] = (),
) -> dict[str, Any]:
    """Record in ``results`` where its numbers come from, or where the report was rendered.

    A measuring run sets ``machine`` (the one-line description the reports print) and
    ``provenance`` (:func:`terradiff.provenance.provenance_record`: exact argv, data paths, git
    commit and dirtiness, machine, torch version, date); the provenance of an earlier measuring
    run of the same study (resumed, or adding rows) moves to ``provenance_earlier``, since the
    numbers may come from both. A ``--report-only`` run changes none of these and records its
    own environment as ``rendered_with`` instead.
    """
    record = provenance_record(data_paths=data_paths)
    if is_report_only() if report_only is None else report_only:
        results["rendered_with"] = record
        return results
    if "provenance" in results:
        results.setdefault("provenance_earlier", []).append(results["provenance"])
    results["machine"] = machine_description()
    results["provenance"] = record
    return results


def open_results(
    out: Path,
    redo: bool = False,
    *,
    report_only: bool | None = None,
    data_paths: Iterable[str | Path] = (),
    merge: Sequence[str] = (),
) -> tuple[dict[str, Any], Callable[[], None]]:
    """``(results, save)``: ``out/results.json`` as a dict (empty with ``redo``) and a function
    that writes it back atomically, so a study saves each measurement as it is made.

    The dict is stamped by :func:`stamp_results` (``report_only`` defaults to whether
    ``--report-only`` is on the command line): re-rendering keeps the measured machine.

    ``merge`` names top-level keys that several processes of one study may fill at once (e.g.
    ``"cells"``, one process per seed): ``save`` then holds a lock on ``out/.results.lock``,
    re-reads the file and first takes in the entries of those keys (dict items, list items) that
    another process saved and this one lacks, so no process overwrites another's measurements.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results: dict[str, Any] = {}
    if path.is_file() and not redo:
        results = json.loads(path.read_text())
    stamp_results(results, report_only=report_only, data_paths=data_paths)

    def save() -> None:
        with _exclusive(out / ".results.lock"):
            if merge and path.is_file():
                merge_missing(results, json.loads(path.read_text()), merge)
            atomic_write_text(path, json.dumps(results, indent=2) + "\n")

    return results, save


def merge_missing(results: dict[str, Any], other: dict[str, Any], keys: Sequence[str]) -> None:
    """Copy into ``results[key]`` what ``other[key]`` holds and it lacks, for each of ``keys``:
    dict entries by name (``results``'s own value wins), list items not already present."""
    for key in keys:
        theirs = other.get(key)
        if isinstance(theirs, dict):
            mine = results.setdefault(key, {})
            for name, value in theirs.items():
                mine.setdefault(name, value)
        elif isinstance(theirs, list):
            mine_list = results.setdefault(key, [])
            mine_list.extend(item for item in theirs if item not in mine_list)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) for the block; no lock where fcntl is
    missing (Windows), where the study runs one process at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def report_header(title: str, results: dict[str, Any]) -> list[str]:
    """The first lines of a study's README: its title, the commands that made its results (they
    resume) and the machine of the measurement; when the latest measuring run (``machine``) ran
    elsewhere than the first (``machine_measured``), both, so no row is put on the wrong CPU."""
    first, latest = results.get("machine_measured", "?"), results.get("machine")
    machine = f"Machine: {first}."
    if latest and latest != first:
        machine = (
            f"Machines: {first} (the first measurement); {latest} (the latest measuring run; "
            "the sections below say which rows each made)."
        )
    return [
        f"# {title}",
        "",
        "Commands (each measurement is saved as it is made, so they resume):",
        "",
        *[f"    {c}" for c in results.get("commands", [])],
        "",
        machine,
        "",
    ]


def record_command(results: dict[str, Any], argv: list[str] | None = None) -> None:
    """Add this invocation's command line to ``results["commands"]`` (once) and keep the machine
    of the first measurement in ``results["machine_measured"]`` (a study run in parts resumes).
    A ``--report-only`` invocation measures nothing, so it is not recorded."""
    import shlex
    import sys

    if is_report_only(argv):
        return
    words = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    command = "python " + " ".join(shlex.quote(w) for w in words)
    if command not in results.setdefault("commands", []):
        results["commands"].append(command)
    results.setdefault("machine_measured", machine_description())


def claim_cell(folder: Path, key: str) -> bool:
    """Claim ``key`` for this process (a file holding its pid, created exclusively), so that
    processes sharing a study measure different cells. A claim whose process is gone is taken
    over (a resumed study); False when a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (key.replace("/", "__") + ".pid")
    mine = folder / f".{os.getpid()}.tmp"
    mine.write_text(str(os.getpid()))
    try:
        for _ in range(2):
            try:
                os.link(mine, path)  # atomic: fails when a claim exists, never half-written
                return True
            except FileExistsError:
                holder = int(path.read_text())
                if holder == os.getpid():
                    return True
                if _alive(holder):
                    return False
                path.unlink(missing_ok=True)  # stale: its process ended
        return False
    finally:
        mine.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
