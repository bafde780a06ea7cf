"""Tests of terradiff.data.raster: round trips, masks, band selection, errors, atomic writes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.windows import Window

from terradiff.data.raster import (
    EUROSAT_BANDS,
    inspect_raster,
    normalize_band_name,
    read_raster,
    resolve_bands,
    write_raster,
)
from terradiff.errors import DataError, RasterError, TerradiffError

CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_650_000.0)


def _profile(nodata: float | None = None) -> dict:
    return {"crs": CRS_UTM, "transform": TRANSFORM, "nodata": nodata}


@pytest.fixture
def uint16_tif(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 3-band 20x30 uint16 GeoTIFF (UTM 33N), nodata 0 at two pixels, named bands."""
    rng = np.random.default_rng(0)
    array = rng.integers(1, 10_000, size=(3, 20, 30), dtype=np.uint16)
    array[:, 0, 0] = 0  # nodata in every band
    array[1, 5, 7] = 0  # nodata in one band only -> still invalid
    path = tmp_path / "chip.tif"
    write_raster(path, array, _profile(nodata=0), band_names=["B02", "B03", "B04"])
    return path, array


def test_round_trip_keeps_values_crs_transform_and_nodata(
    uint16_tif: tuple[Path, np.ndarray],
) -> None:
    path, array = uint16_tif
    data = read_raster(path)
    np.testing.assert_array_equal(data.array, array)
    assert data.array.dtype == np.uint16
    assert data.profile["crs"] == CRS_UTM
    assert data.transform == TRANSFORM
    assert data.nodata == 0
    assert data.has_crs
    assert data.band_names == ["B02", "B03", "B04"]
    expected = np.ones((20, 30), dtype=bool)
    expected[0, 0] = expected[5, 7] = False
    np.testing.assert_array_equal(data.valid_mask, expected)


def test_nan_is_invalid_without_nodata(tmp_path: Path) -> None:
    array = np.arange(2 * 8 * 9, dtype=np.float32).reshape(2, 8, 9)
    array[0, 3, 4] = np.nan
    path = write_raster(tmp_path / "f.tif", array, _profile())
    data = read_raster(path)
    assert data.nodata is None
    assert data.valid_mask.sum() == 8 * 9 - 1
    assert not data.valid_mask[3, 4]
    np.testing.assert_array_equal(np.isnan(data.array), np.isnan(array))


def test_float_nodata_and_nan_nodata(tmp_path: Path) -> None:
    array = np.ones((1, 4, 4), dtype=np.float32)
    array[0, 1, 1] = -9999.0
    array[0, 2, 2] = np.nan
    data = read_raster(write_raster(tmp_path / "a.tif", array, _profile(nodata=-9999.0)))
    assert data.valid_mask.sum() == 14
    data = read_raster(write_raster(tmp_path / "b.tif", array, _profile(nodata=float("nan"))))
    assert data.valid_mask.sum() == 15 and not data.valid_mask[2, 2]


def test_nodata_override(uint16_tif: tuple[Path, np.ndarray]) -> None:
    path, array = uint16_tif
    value = int(array[2, 10, 10])
    data = read_raster(path, nodata=value)
    assert not data.valid_mask[10, 10]
    assert data.valid_mask[0, 0]  # 0 is no longer nodata


def test_valid_mask_written_as_mask_band_or_nodata(tmp_path: Path) -> None:
    array = np.full((2, 6, 6), 7, dtype=np.uint8)
    mask = np.ones((6, 6), dtype=bool)
    mask[:2] = False
    data = read_raster(write_raster(tmp_path / "m.tif", array, _profile(), valid_mask=mask))
    np.testing.assert_array_equal(data.valid_mask, mask)
    data = read_raster(
        write_raster(tmp_path / "n.tif", array, _profile(), valid_mask=mask, nodata=255)
    )
    np.testing.assert_array_equal(data.valid_mask, mask)
    assert (data.array[:, :2] == 255).all()


def test_band_selection_by_index_and_name(uint16_tif: tuple[Path, np.ndarray]) -> None:
    path, array = uint16_tif
    by_index = read_raster(path, bands=[3, 1])
    np.testing.assert_array_equal(by_index.array, array[[2, 0]])
    assert by_index.band_names == ["B04", "B02"]
    assert by_index.profile["count"] == 2
    by_name = read_raster(path, bands=["B04", "b3", 1])  # exact, zero-less, index mixed
    np.testing.assert_array_equal(by_name.array, array[[2, 1, 0]])
    assert by_name.band_names == ["B04", "B03", "B02"]


def test_band_names_for_files_without_descriptions(tmp_path: Path) -> None:
    array = np.arange(13 * 4 * 4, dtype=np.uint16).reshape(13, 4, 4)
    path = write_raster(tmp_path / "e.tif", array, _profile())
    assert inspect_raster(path).band_names[:2] == ["band_1", "band_2"]
    data = read_raster(path, bands=["B8A", "B04"], band_names="eurosat")
    np.testing.assert_array_equal(data.array, array[[12, 3]])
    data = read_raster(path, bands=["B8A"], band_names="sentinel2_l1c")
    np.testing.assert_array_equal(data.array, array[[8]])
    with pytest.raises(RasterError, match=r"band_names has 3 names but file .* has 13 bands"):
        read_raster(path, band_names=["a", "b", "c"])
    with pytest.raises(RasterError, match="unknown band-name product 'landsat9'"):
        read_raster(path, band_names="landsat9")


def test_normalize_band_name() -> None:
    assert normalize_band_name("B04") == normalize_band_name("b4") == "B4"
    assert normalize_band_name("B8A") == "B8A" != normalize_band_name("B08")
    assert normalize_band_name(" red ") == "RED"
    assert resolve_bands(["B8A", "B08"], list(EUROSAT_BANDS), "x") == [13, 8]


def test_window_read_updates_transform(uint16_tif: tuple[Path, np.ndarray]) -> None:
    path, array = uint16_tif
    data = read_raster(path, window=Window(col_off=4, row_off=2, width=10, height=5))
    np.testing.assert_array_equal(data.array, array[:, 2:7, 4:14])
    assert (data.profile["width"], data.profile["height"]) == (10, 5)
    assert data.transform.c == pytest.approx(500_000.0 + 4 * 10.0)
    assert data.transform.f == pytest.approx(4_650_000.0 - 2 * 10.0)
    same = read_raster(path, window=((2, 7), (4, 14)))
    np.testing.assert_array_equal(same.array, data.array)


def test_window_outside_is_error_unless_boundless(uint16_tif: tuple[Path, np.ndarray]) -> None:
    path, array = uint16_tif
    with pytest.raises(RasterError, match=r"reaches outside file .*chip\.tif.*boundless=True"):
        read_raster(path, window=((15, 25), (0, 10)))
    data = read_raster(path, window=((15, 25), (-2, 8)), boundless=True)
    assert data.array.shape == (3, 10, 10)
    np.testing.assert_array_equal(data.array[:, :5, 2:], array[:, 15:20, :8])
    assert not data.valid_mask[5:].any() and not data.valid_mask[:, :2].any()
    assert data.valid_mask[:5, 2:].all()
    assert data.transform.c == pytest.approx(500_000.0 - 20.0)


def test_no_crs_reads_without_warning(tmp_path: Path) -> None:
    array = np.zeros((1, 5, 5), dtype=np.uint8)
    path = write_raster(tmp_path / "plain.tif", array)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_raster(path)
    assert not data.has_crs
    assert not inspect_raster(path).has_crs


def test_png_and_jpeg_read_with_color_names(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    data = read_raster(tmp_path / "x.png", bands=["blue", "red"])
    np.testing.assert_array_equal(data.array, rgb.transpose(2, 0, 1)[[2, 0]])
    assert not data.has_crs
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    assert read_raster(tmp_path / "x.jpg").array.shape == (3, 12, 10)


def test_missing_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(RasterError, match=r"raster file not found: .*nope\.tif"):
        read_raster(missing)


def test_corrupt_and_empty_file_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + os.urandom(200))
    with pytest.raises(RasterError, match=r"corrupt\.tif.*corrupt, truncated"):
        read_raster(corrupt)
    empty = tmp_path / "empty.tif"
    empty.touch()
    with pytest.raises(RasterError, match=r"empty\.tif is empty \(0 bytes\)"):
        read_raster(empty)
    with pytest.raises(RasterError, match="is a folder"):
        read_raster(tmp_path)


def test_band_errors_name_file_band_and_fix(uint16_tif: tuple[Path, np.ndarray]) -> None:
    path, _ = uint16_tif
    with pytest.raises(RasterError, match=r"file .*chip\.tif has 3 bands; band 5 requested") as e:
        read_raster(path, bands=[1, 5])
    assert "1-based" in str(e.value)
    with pytest.raises(RasterError, match="band 0 requested"):
        read_raster(path, bands=[0])
    with pytest.raises(RasterError, match=r"no band named 'B08'; known bands: \['B02'") as e:
        read_raster(path, bands=["B08"])
    assert "(e.g. --bands 1,2,3), or, from Python, name the file's bands with band_names=" in str(
        e.value
    )  # the CLI has no band_names: the message used to offer it as the fix to every user


def test_error_hierarchy() -> None:
    assert issubclass(RasterError, DataError)
    assert issubclass(RasterError, ValueError)
    assert issubclass(RasterError, TerradiffError)


def test_write_refuses_existing_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_raster(path, np.zeros((1, 4, 4), dtype=np.uint8), _profile())
    assert os.listdir(tmp_path) == ["out.tif"]
    with pytest.raises(RasterError, match=r"already exists; pass --overwrite \(overwrite=True"):
        write_raster(path, np.ones((1, 4, 4), dtype=np.uint8), _profile())
    assert read_raster(path).array.max() == 0  # untouched
    write_raster(path, np.ones((1, 4, 4), dtype=np.uint8), _profile(), overwrite=True)
    assert read_raster(path).array.min() == 1
    assert os.listdir(tmp_path) == ["out.tif"]


def test_failed_write_leaves_nothing_under_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = rasterio.open

    class DiskFullError(OSError):
        pass

    def failing_open(fp, mode="r", **kwargs):
        dst = real_open(fp, mode, **kwargs)
        if mode == "w":
            dst.write(np.zeros((kwargs["count"], kwargs["height"], kwargs["width"]), "uint8"))
            dst.close()
            raise DiskFullError("disk full")
        return dst

    monkeypatch.setattr(rasterio, "open", failing_open)
    path = tmp_path / "new.tif"
    with pytest.raises(RasterError, match=r"failed to write raster .*new\.tif: disk full"):
        write_raster(path, np.ones((2, 8, 8), dtype=np.uint8), _profile())
    assert os.listdir(tmp_path) == []
    # an existing file survives a failed overwrite
    monkeypatch.setattr(rasterio, "open", real_open)
    write_raster(path, np.full((2, 8, 8), 3, dtype=np.uint8), _profile())
    monkeypatch.setattr(rasterio, "open", failing_open)
    with pytest.raises(RasterError):
        write_raster(path, np.ones((2, 8, 8), dtype=np.uint8), _profile(), overwrite=True)
    monkeypatch.setattr(rasterio, "open", real_open)
    assert os.listdir(tmp_path) == ["new.tif"]
    assert (read_raster(path).array == 3).all()


def test_write_rejects_bad_shapes_and_takes_2d(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="expected \\[C, H, W\\]"):
        write_raster(tmp_path / "x.tif", np.zeros((1, 2, 3, 4)), _profile())
    data = read_raster(write_raster(tmp_path / "y.tif", np.eye(3, dtype=bool), _profile()))
    assert data.array.shape == (1, 3, 3) and data.array.dtype == np.uint8


def test_write_from_jpeg_profile(tmp_path: Path) -> None:
    """A JPEG's profile (photometric YCbCr, JPEG compression) must not leak into the GeoTIFF."""
    rgb = np.random.default_rng(2).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.jpg")
    src = read_raster(tmp_path / "in.jpg", bands=[1, 2])
    out = read_raster(write_raster(tmp_path / "out.tif", src.array, src.profile))
    np.testing.assert_array_equal(out.array, src.array)


def test_real_eurosat_chip(shared_data: Path) -> None:
    chip = sorted((shared_data / "eurosat-ms" / "train" / "Forest").glob("*.tif"))[0]
    data = read_raster(chip, bands=["B04", "B03", "B02"], band_names="eurosat")
    full = read_raster(chip)
    assert full.array.shape == (13, 64, 64) and full.array.dtype == np.uint16
    np.testing.assert_array_equal(data.array, full.array[[3, 2, 1]])
    assert data.has_crs and data.crs.to_epsg() // 100 == 326  # UTM north
    assert data.valid_mask.all()
