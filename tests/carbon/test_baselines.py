"""Per-pixel OLS/RF/SVR baselines: features by hand, fitting on real chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terradiff.carbon.baselines import fit_pixel_model, pixel_features, predict_map
from terradiff.carbon.biomassters import S2_BANDS, composite_chip, read_carbon_target
from terradiff.errors import DataError


def test_indices_by_hand() -> None:
    # one pixel: blue 0.05, red 0.04, NIR 0.30, red edge 0.10
    values = {"B2": 0.05, "B4": 0.04, "B8": 0.30, "B5": 0.10}
    reflectance = np.array([[[values[n]]] for n in ("B2", "B4", "B8", "B5")])
    features, names = pixel_features(reflectance, ["B2", "B4", "B8", "B5"])
    assert names == ["B2", "B4", "B8", "B5", "NDVI", "EVI", "NDVI_re"]
    ndvi = (0.30 - 0.04) / (0.30 + 0.04)
    evi = 2.5 * (0.30 - 0.04) / (0.30 + 6 * 0.04 - 7.5 * 0.05 + 1)
    np.testing.assert_allclose(features[0, 4:], [ndvi, evi, (0.30 - 0.10) / 0.40])
    zeros, _ = pixel_features(np.zeros((4, 2, 2)), ["B2", "B4", "B8", "B5"])
    assert np.isfinite(zeros).all()  # 0/0 -> 0
    with pytest.raises(DataError, match="one name per band"):
        pixel_features(np.zeros((3, 2, 2)), ["B2", "B4"])


@pytest.mark.parametrize("kind", ["ols", "rf", "svr"])
def test_baselines_fit_real_forest_pixels(kind: str, shared_data: Path) -> None:
    chip = shared_data / "biomassters" / "0060c0a5"
    image = composite_chip(chip)
    target = read_carbon_target(chip)
    features, _ = pixel_features(image.reflectance, S2_BANDS)
    train = (target.forest & image.valid).reshape(-1)
    model = fit_pixel_model(
        kind, features[train], target.carbon.reshape(-1)[train], max_samples=3000
    )
    prediction = predict_map(model, features, (256, 256))
    assert prediction.shape == (256, 256) and prediction.min() >= 0
    forest = target.forest & image.valid
    # better than predicting the mean on the pixels it was fitted to (in-sample sanity)
    residual = np.mean((prediction[forest] - target.carbon[forest]) ** 2)
    assert residual < np.var(target.carbon[forest])
