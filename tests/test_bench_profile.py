"""``benchmarks/bench_profile.py`` (issue 16 item 6): the train-step profile runs and its table
lists operators by self time, largest first."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_profile import main


def test_cpu_smoke_run_writes_an_ordered_table(tmp_path: Path) -> None:
    out = tmp_path / "profile.txt"
    args = ["--device", "cpu", "--batch", "2", "--image-size", "16", "--steps", "2"]
    main([*args, "--warmup", "1", "--rows", "8", "--no-compile", "--out", str(out)])
    text = out.read_text()
    assert "## before: eager + for-each AdamW" in text and "## after" not in text
    rows = re.findall(r"^\| `(.+?)` \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+) \|$", text, re.M)
    assert len(rows) == 8
    per_step = [float(r[1]) for r in rows]
    assert per_step == sorted(per_step, reverse=True)
    assert sum(float(r[2]) for r in rows) <= 100.5
    ops = {r[0]: float(r[3]) for r in rows}
    assert any(op.startswith("aten::convolution") for op in ops), ops
