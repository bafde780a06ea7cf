"""``benchmarks/profile_table.py`` (the student and train-step profiles): the table's shares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from profile_table import profile_rows


def test_profile_rows_are_ordered_and_shares_sum_to_at_most_one() -> None:
    x = torch.randn(64, 64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            x = torch.relu(x @ x) + 1.0
    rows = profile_rows(prof, 50)
    assert rows, "the profile holds the matmuls"
    times = [r["self_ms"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-6)
    assert any(r["op"] == "aten::mm" and r["calls"] == 3 for r in rows)
    assert len(profile_rows(prof, 1)) == 1
