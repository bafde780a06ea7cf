"""Time series of one place: BioMassters cloud screening, dates from file names, grid check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from terradiff.data.raster import read_raster, write_raster
from terradiff.data.temporal.series import (
    BIOMASSTERS_MONTHS,
    biomassters_series,
    read_series_image,
    scene_series,
)
from terradiff.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def test_biomassters_months_and_cloud_screening(shared_data: Path) -> None:
    chip = shared_data / "biomassters" / "000aa810"
    series = biomassters_series(chip)
    # 09 (June) is empty (0.2 % data) and 11 (August) is 49 % clear: both under 80 %
    assert series.labels == ["06 (Mar)", "07 (Apr)", "08 (May)", "10 (Jul)"]
    assert [i.label for i in series.skipped] == ["09 (Jun)", "11 (Aug)"]
    assert [i.date for i in series.images] == [{"month": m} for m in (3, 4, 5, 7)]
    assert series.images[0].time == pytest.approx(0.5)
    assert series.bands == tuple(range(1, 11)) and series.band_names[-1] == "B12"
    assert (series.height, series.width, series.crs) == (256, 256, None)
    # the thresholds are parameters: a lower clear fraction keeps August, never the empty June
    relaxed = biomassters_series(chip, min_clear_fraction=0.4)
    assert "11 (Aug)" in relaxed.labels and "09 (Jun)" not in relaxed.labels
    assert BIOMASSTERS_MONTHS[0] == 9 and BIOMASSTERS_MONTHS[11] == 8


def test_biomassters_pixels_are_masked_by_the_cloud_band(shared_data: Path) -> None:
    series = biomassters_series(shared_data / "biomassters" / "000aa810")
    image = series.images[0]  # March: 88 % clear
    array, valid = read_series_image(series, image)
    raw = read_raster(image.path).array
    assert array.shape == (10, 256, 256) and np.array_equal(array, raw[:10])
    cloud = raw[10]
    assert not valid[cloud > 50].any() and valid.mean() == pytest.approx(image.clear_fraction)


def test_biomassters_with_too_few_clear_months_is_an_error(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"000aa810: fewer than two months.*Lower"):
        biomassters_series(shared_data / "biomassters" / "000aa810", cloud_threshold=0)
    with pytest.raises(DataError, match="no Sentinel-2 files"):
        biomassters_series(shared_data / "levir-cd")


def test_dates_from_file_names(shared_data: Path) -> None:
    landsat = scene_series(shared_data / "scenes" / "opengeos-landsat")
    assert landsat.labels == [str(y) for y in range(1985, 2021, 5)]
    assert landsat.images[0].date == {"year": 1985}
    assert landsat.images[-1].time - landsat.images[0].time == 35
    assert str(landsat.crs) == "EPSG:4326" and (landsat.height, landsat.width) == (377, 697)
    naip = scene_series(shared_data / "scenes" / "opengeos-naip", align="reference")
    assert naip.labels[0] == "2009-08-18" and naip.images[0].date == {
        "year": 2009,
        "month": 8,
        "day_of_year": 230,
    }


def test_misaligned_naip_dates_are_refused_naming_both_files(shared_data: Path) -> None:
    folder = shared_data / "scenes" / "opengeos-naip"
    with pytest.raises(DataError) as err:
        scene_series(folder)
    message = str(err.value)
    assert "m_4709963_se_14_1_20090818.tif" in message
    assert "m_4709963_se_14_1_20120731.tif" in message
    assert "size 934x724 vs 934x723" in message and "align='reference'" in message


def test_reference_alignment_resamples_onto_the_first_grid(shared_data: Path) -> None:
    series = scene_series(shared_data / "scenes" / "opengeos-naip", align="reference")
    first, first_valid = read_series_image(series, series.images[0])
    assert np.array_equal(first, read_raster(series.images[0].path).array)
    other, valid = read_series_image(series, series.images[1])  # 2012: one row shorter
    assert other.shape == first.shape and valid.shape == first_valid.shape
    assert not valid[-1].any()  # the reference's last row lies outside the 2012 footprint
    assert valid[:-1].mean() > 0.99


def _write(path: Path, crs: str, origin: float = 0.0) -> None:
    profile = {"crs": CRS.from_string(crs), "transform": Affine(10, 0, origin, 0, -10, 100)}
    write_raster(path, np.ones((2, 16, 16), np.uint8), profile, overwrite=True)


def test_other_crs_is_refused_naming_both_files(tmp_path: Path) -> None:
    _write(tmp_path / "20200101.tif", "EPSG:32633")
    _write(tmp_path / "20210101.tif", "EPSG:32634")
    with pytest.raises(DataError, match=r"20200101\.tif and .*20210101\.tif .*CRS"):
        scene_series(tmp_path)
    _write(tmp_path / "20210101.tif", "EPSG:32633", origin=5.0)
    with pytest.raises(DataError, match="transform"):
        scene_series(tmp_path)


def test_file_names_without_dates_and_duplicate_dates(tmp_path: Path) -> None:
    _write(tmp_path / "2020.tif", "EPSG:32633")
    _write(tmp_path / "scene.tif", "EPSG:32633")
    with pytest.raises(DataError, match=r"scene\.tif: no date in the file name"):
        scene_series(tmp_path)
    (tmp_path / "scene.tif").unlink()
    _write(tmp_path / "a_2020.tif", "EPSG:32633")
    with pytest.raises(DataError, match="same date 2020"):
        scene_series(tmp_path)
