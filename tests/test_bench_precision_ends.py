"""``benchmarks/bench_precision_ends.py``: the three ways of running the UNet's ends, timed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_precision_ends

import terradiff.nets.unet as unet_module
from terradiff.nets.precision import full_precision


def test_quick_run_times_the_three_variants_and_restores_the_unet() -> None:
    result = bench_precision_ends.main(["--quick"])
    assert list(result) == list(bench_precision_ends.VARIANTS)
    assert result["bf16 whole"]["ratio"] == 1.0
    assert all(len(r["times_s"]) == 2 and r["median_s"] > 0 for r in result.values())
    assert unet_module.full_precision is full_precision
