"""Masked carbon-map metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terradiff.carbon.metrics import carbon_metrics
from terradiff.errors import DataError


def test_masked_metrics_by_hand() -> None:
    truth = np.array([[10.0, 20.0], [30.0, 99.0]])
    pred = np.array([[12.0, 18.0], [33.0, 0.0]])
    mask = np.array([[1, 1], [1, 0]])  # the 99/0 pixel is outside the forest: ignored
    m = carbon_metrics(pred, truth, mask, max_density=100.0)
    # errors 2, -2, 3 (Mg C/ha)
    assert m["mae"] == pytest.approx(7 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(17 / 3))
    assert m["bias"] == pytest.approx(1.0)
    # SS_res = 17, SS_tot = 100 + 0 + 100 (mean 20) -> R^2 = 1 - 17/200
    assert m["r2"] == pytest.approx(1 - 17 / 200)
    assert m["mae_norm"] == pytest.approx(7 / 300)
    assert m["rmse_norm"] == pytest.approx(math.sqrt(17 / 3) / 100)
    assert m["psnr_norm"] == pytest.approx(10 * math.log10(1 / (17 / 3 / 100**2)))
    assert m["pixels"] == 3 and math.isnan(m["ssim_norm"])  # 2x2 < SSIM's 11x11 window


def test_perfect_map_and_errors() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 150, (2, 16, 16))
    m = carbon_metrics(truth, truth, np.ones_like(truth), 150.0)
    assert m["mae"] == 0 and m["r2"] == 1 and m["ssim_norm"] == pytest.approx(1.0)
    with pytest.raises(DataError, match="no pixel"):
        carbon_metrics(truth, truth, np.zeros_like(truth), 150.0)
    with pytest.raises(DataError, match="one shape"):
        carbon_metrics(truth, truth[0], np.ones_like(truth), 150.0)
