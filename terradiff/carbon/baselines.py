"""Per-pixel regression baselines of the IIDM paper's Table 2: OLS, random forest, SVR.

Each pixel is one sample: its band values plus vegetation indices (NDVI, EVI, and the red-edge
NDVI where the bands exist) predict its carbon density. Models are scikit-learn estimators
(``LinearRegression``, ``RandomForestRegressor``, ``SVR`` with an RBF kernel on standardised
features), trained on forest pixels of the training chips -- the same split and mask as the
diffusion models. SVR scales quadratically with the sample count, so training pixels are
subsampled (``max_samples``, seeded).

Indices: NDVI = (NIR - Red) / (NIR + Red) (Rouse et al. 1974); EVI = 2.5 (NIR - Red) /
(NIR + 6 Red - 7.5 Blue + 1) (Huete et al. 2002), on reflectance in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from terradiff.errors import DataError

PixelModel = Literal["ols", "rf", "svr"]
PIXEL_MODELS: tuple[str, ...] = ("ols", "rf", "svr")


def _band(reflectance: np.ndarray, names: Sequence[str], *candidates: str) -> np.ndarray | None:
    for name in candidates:
        if name in names:
            return reflectance[list(names).index(name)].astype(np.float64)
    return None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(np.isfinite(out), out, 0.0)


def pixel_features(
    reflectance: np.ndarray, band_names: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Per-pixel features ``[H*W, F]``: the bands, then NDVI, EVI, red-edge NDVI when available.

    Args:
        reflectance: ``[C, H, W]`` surface reflectance in [0, 1].
        band_names: Sentinel-2 style names (``B2``/``B02`` blue, ``B4``/``B04`` red,
            ``B8``/``B08`` NIR, ``B5``/``B05`` red edge).

    Returns:
        ``(features, feature names)``.
    """
    if reflectance.ndim != 3 or reflectance.shape[0] != len(band_names):
        raise DataError(
            f"reflectance must be [C, H, W] with one name per band; got {reflectance.shape} and "
            f"{len(band_names)} names"
        )
    columns = [reflectance[i].astype(np.float64) for i in range(reflectance.shape[0])]
    names = list(band_names)
    blue = _band(reflectance, band_names, "B2", "B02")
    red = _band(reflectance, band_names, "B4", "B04")
    nir = _band(reflectance, band_names, "B8", "B08")
    edge = _band(reflectance, band_names, "B5", "B05")
    if red is not None and nir is not None:
        columns.append(_ratio(nir - red, nir + red))
        names.append("NDVI")
        if blue is not None:
            columns.append(_ratio(2.5 * (nir - red), nir + 6 * red - 7.5 * blue + 1))
            names.append("EVI")
    if edge is not None and nir is not None:
        columns.append(_ratio(nir - edge, nir + edge))
        names.append("NDVI_re")
    return np.stack([c.reshape(-1) for c in columns], axis=1), names


def make_pixel_model(kind: str, seed: int = 0) -> Any:
    """An unfitted scikit-learn regressor: ``ols``, ``rf`` (100 trees) or ``svr`` (RBF)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if kind == "ols":
        return LinearRegression()
    if kind == "rf":
        return RandomForestRegressor(
            n_estimators=100, min_samples_leaf=5, n_jobs=-1, random_state=seed
        )
    if kind == "svr":
        return make_pipeline(StandardScaler(), SVR(kernel="rbf", C=10.0, epsilon=1.0))
    raise DataError(f"unknown pixel model {kind!r}; choose one of {list(PIXEL_MODELS)}")


def fit_pixel_model(
    kind: str,
    features: np.ndarray,
    target: np.ndarray,
    *,
    max_samples: int | None = 20_000,
    seed: int = 0,
) -> Any:
    """Fit a baseline on ``features [N, F]`` -> ``target [N]`` (subsampled to ``max_samples``)."""
    if features.ndim != 2 or features.shape[0] != target.shape[0]:
        raise DataError(f"features {features.shape} and target {target.shape} do not pair up")
    if features.shape[0] < 2:
        raise DataError(f"{features.shape[0]} training pixels; a baseline needs at least 2")
    if max_samples is not None and features.shape[0] > max_samples:
        keep = np.random.default_rng(seed).choice(features.shape[0], max_samples, replace=False)
        features, target = features[keep], target[keep]
    model = make_pixel_model(kind, seed)
    model.fit(features, target)
    return model


def predict_map(model: Any, features: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A fitted baseline's map ``[H, W]`` (negative densities clipped to 0)."""
    return np.clip(model.predict(features), 0.0, None).reshape(shape)
