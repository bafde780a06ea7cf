"""The pieces of the temporal evaluation: visible bands and the (cluster) bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from terradiff.temporal_evaluate import bootstrap_interval, visible_bands


def test_visible_bands_from_config_names_or_first_three() -> None:
    names = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert visible_bands(names, None) == [2, 1, 0]
    assert visible_bands(names, [6, 2, 1]) == [6, 2, 1]
    assert visible_bands(["nir", "red", "green", "blue"], None) == [1, 2, 3]
    assert visible_bands(["b1", "b2", "b3", "b4"], None) == [0, 1, 2]


def test_bootstrap_interval_covers_the_mean_and_clusters_widen_it() -> None:
    rng = np.random.default_rng(0)
    places = [f"p{i}" for i in range(6) for _ in range(20)]
    offsets = {f"p{i}": rng.normal(0.0, 2.0) for i in range(6)}
    values = np.array([offsets[p] + rng.normal(0.0, 0.1) for p in places])
    values[3] = np.nan  # a window without valid pixels is left out
    low, high = bootstrap_interval(values, None, resamples=500, seed=1)
    assert low <= np.nanmean(values) <= high
    c_low, c_high = bootstrap_interval(values, places, resamples=500, seed=1)
    assert c_low <= np.nanmean(values) <= c_high
    assert c_high - c_low > 3 * (high - low)  # windows of one place are not independent
    same = bootstrap_interval(values, None, resamples=500, seed=1)
    assert same == (low, high)
    assert np.isnan(bootstrap_interval(np.array([np.nan]), None, resamples=10, seed=0)[0])


def test_constant_values_give_a_point_interval() -> None:
    low, high = bootstrap_interval(np.full(8, 1.5), None, resamples=50, seed=0)
    assert low == pytest.approx(1.5) and high == pytest.approx(1.5)
