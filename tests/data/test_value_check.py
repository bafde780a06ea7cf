"""The input check of a tiled run: values the model was not trained on are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from terradiff.data.tiling import predict_raster
from terradiff.data.tiling.options import TilingOptions
from terradiff.data.tiling.source import InputSpec
from terradiff.errors import DataError

NAIP = "naip/m_4709963_se_14_1_20190904.tif"


def forest_chip(shared_data: Path) -> Path:
    """A real 13-band uint16 EuroSAT chip (Sentinel-2 digital numbers)."""
    return next(iter(sorted((shared_data / "eurosat-ms").rglob("Forest_*.tif"))))


def check(path: Path, scaling: str | dict, bands: list[int] | None = None, **kw: object) -> None:
    options = TilingOptions(scaling=scaling, bands=bands, **kw)
    with rasterio.open(path) as src:
        InputSpec.from_dataset(src, path, options)


def test_uint16_digital_numbers_for_an_8_bit_model_are_refused(shared_data: Path) -> None:
    chip = forest_chip(shared_data)
    with pytest.raises(DataError, match=r"band 1 .* above 255 .*--input-scaling") as caught:
        check(chip, "uint8", bands=[4, 3, 2])
    assert str(chip) in str(caught.value) and "uint16" in str(caught.value)
    check(chip, "sentinel2", bands=[4, 3, 2])  # the scaling that fits them passes


def test_reflectance_in_0_1_for_an_8_bit_model_is_refused(
    sample_data: Path, tmp_path: Path
) -> None:
    with rasterio.open(sample_data / NAIP) as src:
        profile = src.profile | {"dtype": "float32", "nodata": None}
        data = src.read([1, 2, 3]).astype(np.float32) / 255.0
    scaled = tmp_path / "reflectance.tif"
    with rasterio.open(scaled, "w", **(profile | {"count": 3})) as dst:
        dst.write(data)
    with pytest.raises(DataError, match=r"every valid value lies in \[0, 1\]"):
        check(scaled, "uint8")
    check(scaled, "none")  # a [0, 1] scaling takes them


def test_all_nodata_input_is_refused(sample_data: Path, tmp_path: Path) -> None:
    with rasterio.open(sample_data / NAIP) as src:
        profile = src.profile
    empty = tmp_path / "empty.tif"
    with rasterio.open(empty, "w", **profile) as dst:
        dst.write(np.zeros((profile["count"], profile["height"], profile["width"]), np.uint8))
    with pytest.raises(DataError, match=r"no valid pixel .* nothing to map"):
        check(empty, "uint8", bands=[1, 2, 3])
    out = tmp_path / "out.tif"
    with pytest.raises(DataError, match="no valid pixel"):
        predict_raster(empty, out, lambda x: x, scaling="uint8", bands=[1, 2, 3], tile=64)
    assert not out.exists()


def test_nan_pixels_count_as_nodata(sample_data: Path, tmp_path: Path) -> None:
    """NaN is nodata: a float raster that is NaN but for a few real pixels passes the check."""
    with rasterio.open(sample_data / NAIP) as src:
        profile = src.profile | {"dtype": "float32", "nodata": None, "count": 1}
        band = src.read(1).astype(np.float32)
    band[:, 10:] = np.nan
    mostly_nan = tmp_path / "nan.tif"
    with rasterio.open(mostly_nan, "w", **profile) as dst:
        dst.write(band[None])
    check(mostly_nan, "uint8")
    band[:] = np.nan
    with rasterio.open(mostly_nan, "w", **profile) as dst:
        dst.write(band[None])
    with pytest.raises(DataError, match="no valid pixel"):
        check(mostly_nan, "uint8")


def test_values_below_the_scalings_bottom_are_refused(sample_data: Path, tmp_path: Path) -> None:
    """NAIP digital numbers shifted below 0 (an int16 difference product) for an 8-bit model
    were clipped to black without a word; only values above the top were checked."""
    with rasterio.open(sample_data / NAIP) as src:
        profile = src.profile | {"dtype": "int16", "nodata": None, "count": 1}
        band = src.read(1).astype(np.int16) - 300
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write(band[None])
    with pytest.raises(DataError, match=r"band 1 .* are below 0 \(smallest -\d+, int16 data\)"):
        check(shifted, "uint8")


def test_infinite_pixels_are_nodata_like_nan(sample_data: Path, tmp_path: Path) -> None:
    """+-inf pixels went through the model as the scaling's extremes; they are no measurement."""
    from terradiff.data.raster import read_raster

    with rasterio.open(sample_data / NAIP) as src:
        profile = src.profile | {"dtype": "float32", "nodata": None, "count": 1}
        band = src.read(1).astype(np.float32)
    band[:3, :4] = np.inf
    band[5, 5] = -np.inf
    path = tmp_path / "inf.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(band[None])
    valid = read_raster(path).valid_mask
    assert (~valid).sum() == 13 and not valid[5, 5]
    band[:] = np.inf
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(band[None])
    with pytest.raises(DataError, match="no valid pixel"):
        check(path, "uint8")
