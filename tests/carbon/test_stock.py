"""The IIDM paper's carbon formulas on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from terradiff.carbon import (
    CarbonFactors,
    binarize_mask,
    carbon_from_biomass,
    carbon_from_volume,
    distribute_carbon,
    height_weights,
    volume_from_per_hectare,
)
from terradiff.errors import DataError


def test_carbon_from_volume_by_hand() -> None:
    # 200 m3/ha x 1.90 x 0.5 t/m3 x 0.5 = 95 Mg C/ha
    assert carbon_from_volume(200.0) == pytest.approx(95.0)
    custom = CarbonFactors(volume_expansion=1.5, basic_density=0.4, carbon_fraction=0.47)
    assert carbon_from_volume(np.array([100.0, 0.0]), custom) == pytest.approx([28.2, 0.0])
    # V = V_ha x area: 150 m3/ha on 2.5 ha = 375 m3 -> 178.125 Mg C
    volume = volume_from_per_hectare(150.0, 25_000.0)
    assert volume == pytest.approx(375.0)
    assert carbon_from_volume(volume) == pytest.approx(178.125)


def test_factors_are_checked() -> None:
    with pytest.raises(DataError, match="basic_density"):
        CarbonFactors(basic_density=0.0)
    with pytest.raises(DataError, match="carbon_fraction"):
        CarbonFactors(carbon_fraction=1.5)
    with pytest.raises(DataError, match="carbon_fraction"):
        carbon_from_biomass(np.ones(2), carbon_fraction=0.0)


def test_biomass_to_carbon() -> None:
    assert carbon_from_biomass(np.array([0.0, 120.0])) == pytest.approx([0.0, 60.0])
    assert carbon_from_biomass(np.array([100.0]), 0.47) == pytest.approx([47.0])


def test_height_weighting_sums_to_the_polygon_total() -> None:
    heights = np.array([[10.0, 20.0, 0.0], [30.0, np.nan, -5.0], [40.0, 50.0, 60.0]])
    inside = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], bool)
    weights = height_weights(heights, inside)
    # inside heights 10, 20, 0, 30, nan->0, -5->0: total 60
    np.testing.assert_allclose(weights[0], [1 / 6, 2 / 6, 0.0])
    np.testing.assert_allclose(weights[1], [3 / 6, 0.0, 0.0])
    assert weights[2].sum() == 0.0
    carbon = distribute_carbon(178.125, heights, inside)
    assert carbon.sum() == pytest.approx(178.125)
    assert carbon[1, 0] == pytest.approx(178.125 / 2)


def test_flat_polygon_spreads_evenly_and_empty_polygon_is_an_error() -> None:
    inside = np.array([[True, True], [False, False]])
    np.testing.assert_allclose(distribute_carbon(10.0, np.zeros((2, 2)), inside), [[5, 5], [0, 0]])
    with pytest.raises(DataError, match="no pixel"):
        height_weights(np.ones((2, 2)), np.zeros((2, 2), bool))
    with pytest.raises(DataError, match="shape"):
        height_weights(np.ones((2, 2)), np.ones((3, 2), bool))


def test_mask_binarised_to_0_255() -> None:
    out = binarize_mask(np.array([0.0, 0.2, 3.0, np.nan]))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 255, 255, 0]
    assert binarize_mask(np.array([1.0, 2.0]), threshold=1.5).tolist() == [0, 255]
