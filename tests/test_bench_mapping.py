"""benchmarks/bench_mapping.py: the repeated mosaic of real composites and the marginal rates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio

from benchmarks import bench_mapping

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "biomassters"


def test_the_mosaic_repeats_the_real_block_along_both_sides(tmp_path: Path) -> None:
    one = bench_mapping.mosaic(SAMPLES, tmp_path / "one.tif")
    two = bench_mapping.mosaic(SAMPLES, tmp_path / "two.tif", repeat=2)
    with rasterio.open(one) as a, rasterio.open(two) as b:
        block, tiled = a.read(), b.read()
    assert block.shape[1:] == (512, 512) and tiled.shape == (block.shape[0], 1024, 1024)
    np.testing.assert_array_equal(tiled[:, 512:, 512:], block)
    assert np.isfinite(block).mean() > 0.9  # real composites, not zeros


def test_marginal_rates_cancel_the_fixed_costs() -> None:
    def size(tiles: int, local_s: float, dask_s: float) -> dict:
        return {
            "local": {"tiles": tiles, "seconds_process": local_s},
            "dask": {"tiles": tiles, "seconds_process": dask_s},
        }

    # dask: 60 s of start-up, then 4 tiles/s; local: 3 s, then 3 tiles/s
    runs = [size(120, 3 + 40, 60 + 30), size(1080, 3 + 360, 60 + 270)]
    rates = bench_mapping.marginal_rates(runs)
    assert rates == {"local": 3.0, "dask": 4.0}
    assert math.isnan(bench_mapping.marginal_rates([runs[0], runs[0]])["local"])
