"""Merge per-schedule outputs of ``schedule_study.py`` (one ``--out`` folder per schedule, as
``schedule_study_gpu.sh`` makes them) into one report folder: ``results.json``, the figures and
each run's ``metrics.jsonl`` (kept under ``training_logs/<schedule>/`` for the loss curves).

Text that a person wrote into the report's ``results.json`` (``command``, ``budget_note``,
``timing_note``, ``discussion``) is kept.

    python scripts/merge_schedule_runs.py outputs/schedules_gpu reports/schedules
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from terradiff.io import atomic_write_text

KEPT_TEXT = ("command", "budget_note", "timing_note", "discussion")


def merge(work: Path, out: Path) -> list[str]:
    """Merge ``work/<schedule>/`` and ``work/runs/<schedule>/metrics.jsonl`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    old_path = out / "results.json"
    old = json.loads(old_path.read_text()) if old_path.is_file() else {}
    merged: dict = {k: old[k] for k in KEPT_TEXT if k in old}
    merged["runs"] = {}
    names = []
    for part in sorted(p for p in work.iterdir() if (p / "results.json").is_file()):
        results = json.loads((part / "results.json").read_text())
        for key in ("machine", "n_real", "data_root", "n_fast", "n_ddpm"):
            merged.setdefault(key, results.get(key))
        for name, run in results["runs"].items():
            merged["runs"][name] = run
            names.append(name)
            for figure in part.glob(f"*{name}*.png"):
                shutil.copy2(figure, out / figure.name)
            log = work / "runs" / name / "metrics.jsonl"
            if log.is_file():
                (out / "training_logs" / name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, out / "training_logs" / name / "metrics.jsonl")
    if not names:
        raise SystemExit(f"no <schedule>/results.json under {work}")
    order = {"linear": 0, "cosine": 1, "sigmoid": 2}
    merged["runs"] = dict(sorted(merged["runs"].items(), key=lambda kv: order.get(kv[0], 9)))
    atomic_write_text(old_path, json.dumps(merged, indent=2) + "\n")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print("merged", ", ".join(merge(args.work, args.out)), "into", args.out)


if __name__ == "__main__":
    main()
