"""``benchmarks/bench_dataset_items.py`` runs and prints its four rows (no timing is checked)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_dataset_items import main


def test_prints_the_four_rows(sample_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(sample_data / "aid"), "--sizes", "8", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("resize, uncached", "resize, decoded cache", "resize, resize cache", "random"):
        assert f"  {row}" in out
    assert "items of 8x8" in out
