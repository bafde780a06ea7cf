"""The model card of a run folder: ``README.md``, a short page a person reads first.

:func:`write_model_card` is called at the end of :meth:`terradiff.train.Trainer.fit` (main
process only) and rewrites the card atomically each time the run is trained or resumed. It says
what the model does (task, method), what it was trained on (data root, band names and scaling,
image size), its budget (steps x images per step, wall time), how it ended (final loss, stop
reason), the command that trained it, and its checkpoints. ``config.json`` beside it holds the
whole configuration and ``metrics.jsonl`` the loss of every logged step.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from terradiff import __version__
from terradiff.checkpoint import list_checkpoints
from terradiff.io import atomic_write_text

#: The card's file name in a run folder (listed in :data:`terradiff.run_folder.RUN_ENTRIES`).
CARD_NAME = "README.md"


def _duration(seconds: float) -> str:
    """``seconds`` in words: ``42.0 s``, ``12.5 min`` or ``3.20 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def train_command(config_path: Any, overrides: Any, resume: str | None) -> str:
    """The ``terradiff train`` command line of a run (or the process's own when the run was
    started from Python, without a config file)."""
    if config_path is None:
        return f"(Python API) {shlex.join(sys.argv)}"
    words = ["terradiff", "train", str(config_path)]
    for item in overrides or ():
        words += ["--set", str(item)]
    if resume is not None:
        words += ["--resume", str(resume)]
    return shlex.join(words)


def card_text(trainer: Any, result: Any) -> str:
    """The card of ``trainer`` (a :class:`~terradiff.train.Trainer` after ``fit``) and its
    :class:`~terradiff.train.TrainResult`, as Markdown."""
    config, cfg, task = trainer.config, trainer.train_cfg, trainer.task
    processes = trainer.accelerator.num_processes
    per_step = cfg.batch_size * processes
    method = getattr(getattr(config, config.task, None), "method", None)
    bands = task.band_info
    names = ", ".join(bands.names) if bands.names else f"{bands.count} unnamed bands"
    scaling = bands.scaling if isinstance(bands.scaling, str) else "custom"
    total = float(getattr(trainer, "_seconds_before", 0.0)) + result.seconds
    rows = [
        ("Task", config.task + (f" (method `{method}`)" if method else "")),
        ("Data", f"`{config.data.root}`, {config.data.image_size} px images"),
        ("Bands", f"{names} (scaling `{scaling}`)"),
    ]
    target = getattr(bands, "target", None)
    if target is not None:
        rows.append(("Target", f"{', '.join(target.names)} ({target.unit})"))
    budget = (
        f"{result.step} steps x {per_step} images ({cfg.batch_size} per process x {processes}) "
        f"= {result.step * per_step} images seen; wall time {_duration(total)}"
    )
    if total - result.seconds > 0.05:
        budget += f" ({_duration(result.seconds)} in the last session)"
    rows.append(("Budget", budget))
    rows.append(("Stopped", result.stop_reason or result.stopped_by))
    if result.losses:
        step, loss = result.losses[-1]
        rows.append(("Final loss", f"{loss:.4g} (mean of the steps logged up to step {step})"))
    rows.append(("Seed", str(config.seed)))
    checkpoints = list_checkpoints(trainer.run_dir)
    lines = [
        f"# {config.name}: a terradiff {config.task} model",
        "",
        f"Trained with terradiff {__version__}; card written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} at the end of the last training session.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "## Command",
        "",
        "```",
        train_command(
            getattr(trainer, "config_path", None),
            getattr(trainer, "config_overrides", ()),
            trainer.resume,
        ),
        "```",
        "",
        "## Checkpoints",
        "",
    ]
    for path in checkpoints:
        latest = " (latest)" if path == checkpoints[-1] else ""
        lines.append(f"- `checkpoints/{path.name}`{latest}")
    if not checkpoints:
        lines.append("- none")
    lines += [
        "",
        "Use the run folder (its latest checkpoint, EMA weights) with `terradiff info`, "
        "`terradiff sample`, `terradiff evaluate` or the mapping verbs. `config.json` holds the "
        "whole configuration, `metrics.jsonl` the loss of every logged step.",
        "",
        *TASK_NOTES.get(config.task, ()),
    ]
    return "\n".join(lines)


#: What a card adds for a task, after its general use line.
TASK_NOTES: dict[str, tuple[str, ...]] = {
    "change": (
        "A change map calls a pixel change where its probability exceeds `change.threshold` "
        "(0.5 unless set). A model's probabilities may sit lower or higher than that: "
        "`terradiff evaluate RUN --split train` prints the threshold that maximises F1 on the "
        "labelled training tiles, to pass to `terradiff change --threshold`; never choose it "
        "on the test tiles.",
        "",
    ),
}


def write_model_card(trainer: Any, result: Any) -> Path | None:
    """Write ``README.md`` into the run folder atomically (main process only; None elsewhere)."""
    if not trainer.accelerator.is_main_process:
        return None
    path = Path(trainer.run_dir) / CARD_NAME
    atomic_write_text(path, card_text(trainer, result))
    return path


__all__ = ["CARD_NAME", "card_text", "train_command", "write_model_card"]
