"""``terradiff.carbon.intervals``: block statistics of a carbon map and their bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from terradiff.carbon.intervals import (
    block_bootstrap,
    block_stats,
    metrics_from_stats,
    resample_counts,
)
from terradiff.carbon.metrics import carbon_metrics


def test_block_stats_and_metrics_by_hand() -> None:
    truth = np.array([[10.0, 20.0, 0.0, 0.0], [30.0, 40.0, 5.0, 0.0]])
    pred = np.array([[12.0, 18.0, 9.0, 9.0], [30.0, 44.0, 9.0, 9.0]])
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool)
    stats = block_stats(pred, truth, mask, block=2)
    # block 0: errors 2, -2, 0, 4 over truths 10, 20, 30, 40; block 1: error 4 over truth 5
    np.testing.assert_allclose(stats[0], [4, 4, 24, 8, 100, 3000])
    np.testing.assert_allclose(stats[1], [1, 4, 16, 4, 5, 25])
    m = metrics_from_stats(stats.sum(0))
    assert m["bias"] == pytest.approx(8 / 5)  # mean(prediction - truth)
    assert m["mae"] == pytest.approx(12 / 5)
    assert m["rmse"] == pytest.approx(np.sqrt(40 / 5))
    ss_tot = 3025 - 105**2 / 5
    assert m["r2"] == pytest.approx(1 - 40 / ss_tot)
    full = carbon_metrics(pred, truth, mask, 150.0)  # the library agrees on every metric
    for key in ("rmse", "mae", "bias", "r2"):
        assert m[key] == pytest.approx(full[key])


def test_block_bootstrap_counts_and_pairing() -> None:
    counts = resample_counts(5, 100, np.random.default_rng(0))
    assert counts.shape == (100, 5) and np.all(counts.sum(1) == 5)
    same = np.tile([[4.0, 4.0, 24.0, 8.0, 100.0, 3000.0]], (6, 1))[None]  # identical blocks
    reps = metrics_from_stats(block_bootstrap([same], resamples=200))
    assert np.ptp(reps["rmse"]) == pytest.approx(0.0)  # nothing to resample: no spread
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 100, (64, 64))
    mask = np.ones_like(truth, dtype=bool)
    a = block_stats(truth + rng.normal(0, 5, truth.shape), truth, mask, 16)[None]
    b = block_stats(truth + rng.normal(0, 20, truth.shape), truth, mask, 16)[None]
    # the same seed draws the same blocks for every model: a model minus itself is exactly 0
    first = metrics_from_stats(block_bootstrap([a], 300, seed=3))["rmse"]
    np.testing.assert_array_equal(
        first, metrics_from_stats(block_bootstrap([a], 300, seed=3))["rmse"]
    )
    assert np.all(metrics_from_stats(block_bootstrap([b], 300, seed=3))["rmse"] > first)
