"""Cloud-aware compositing and carbon targets on the real BioMassters chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terradiff.carbon.biomassters import (
    S2_BANDS,
    assess_months,
    composite_chip,
    month_files,
    read_carbon_target,
)
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import DataError


@pytest.fixture(scope="module")
def chips(shared_data: Path) -> Path:
    return shared_data / "biomassters"


def test_empty_month_is_detected(chips: Path) -> None:
    quality = {q.month: q for q in assess_months(chips / "000aa810")}
    assert sorted(quality) == [6, 7, 8, 9, 10, 11]  # this chip has March-August only
    assert quality[9].empty and quality[9].clear_fraction < 0.01  # S2_09 is empty (README)
    assert not quality[8].empty and quality[8].clear_fraction > 0.9
    assert quality[9].name == "09 (Jun)"


def test_best_month_is_the_clearest_and_median_uses_clear_pixels_only(chips: Path) -> None:
    chip = chips / "000aa810"
    quality = [q for q in assess_months(chip) if not q.empty]
    best = composite_chip(chip, "best_month")
    clearest = max(quality, key=lambda q: q.clear_fraction)
    assert best.months == (clearest.month,)
    raw = read_raster(clearest.path).array
    valid = best.valid
    np.testing.assert_allclose(best.reflectance[:, valid], raw[:10][:, valid] / 10_000.0, rtol=1e-6)

    median = composite_chip(chip, "median", min_clear_fraction=0.5)
    assert 9 not in median.months and median.reflectance.shape == (len(S2_BANDS), 256, 256)
    # one pixel by hand: the median of that pixel's clear observations
    r, c = 100, 100
    values = []
    for month in median.months:
        stack = read_raster(month_files(chip)[month]).array
        if stack[10, r, c] <= 50 and stack[10, r, c] != 255:
            values.append(stack[:10, r, c] / 10_000.0)
    np.testing.assert_allclose(median.reflectance[:, r, c], np.median(values, axis=0), rtol=1e-6)


def test_all_cloudy_chip_is_a_clear_error(tmp_path: Path) -> None:
    chip = tmp_path / "cloudy"
    chip.mkdir()
    stack = np.full((11, 8, 8), 500, np.uint16)
    stack[10] = 90  # cloud probability 90 % everywhere
    for month in (0, 1):
        write_raster(chip / f"cloudy_S2_{month:02d}.tif", stack)
    with pytest.raises(DataError, match=r"cloudy: no month .*00 \(Sep\): 0% clear"):
        composite_chip(chip)
    assert composite_chip(chip, cloud_threshold=95).valid.all()


def test_carbon_target_is_half_the_biomass_with_forest_mask(chips: Path) -> None:
    target = read_carbon_target(chips / "0060c0a5")
    agb = read_raster(next((chips / "0060c0a5").glob("*_agbm.tif"))).array[0]
    np.testing.assert_allclose(target.carbon, agb * 0.5, rtol=1e-6)
    assert (target.forest == (agb > 0)).all()
    assert 0 < target.forest.mean() <= 1
    assert read_carbon_target(chips / "0060c0a5", 0.47).carbon.max() == pytest.approx(
        agb.max() * 0.47, rel=1e-6
    )
    with pytest.raises(DataError, match="agbm"):
        read_carbon_target(chips)
