"""Plot training-loss curves of one or more runs (their ``metrics.jsonl``) into one PNG.

Example: ``python scripts/plot_losses.py runs/linear runs/cosine --out loss.png``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from terradiff.viz import save_loss_curves


def read_losses(run_dir: Path) -> tuple[list[int], list[float]]:
    """Steps and losses logged by the Trainer in ``run_dir/metrics.jsonl``."""
    steps, losses = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        steps.append(int(record["step"]))
        losses.append(float(record["loss"]))
    return steps, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    curves = {label: read_losses(run) for label, run in zip(labels, args.runs, strict=True)}
    save_loss_curves(curves, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
