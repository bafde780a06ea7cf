"""Paired image/target/mask rasters: alignment, scaling, grid checks (real BioMassters chips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from terradiff.carbon.prepare import prepare_biomassters
from terradiff.data.paired import PairedRasterDataset, RasterPair, find_pairs, split_of
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import DataError

CARBON = {"name": "carbon", "mins": [0.0], "maxs": [200.0], "clip": True}


@pytest.fixture(scope="module")
def prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare_biomassters(shared_data / "biomassters", out, chips=["0060c0a5", "288afc34"])
    return out


def test_crops_are_aligned_and_scaled(prepared: Path) -> None:
    pairs = find_pairs(prepared)
    assert [p.name for p in pairs] == ["0060c0a5", "288afc34"] and pairs[0].mask is not None
    data = PairedRasterDataset(
        pairs, image_size=32, target_scaling=CARBON, crops_per_image=3, random_flip=False
    )
    assert len(data) == 6 and data.num_bands == 10 and data.band_names[0] == "B2"
    item = data.get(4, epoch=0)  # pair 1, crop 1
    assert item["image"].shape == (10, 32, 32) and item["target"].shape == (1, 32, 32)
    assert item["path"] == "288afc34"
    # find the crop in the full rasters: the target crop must be the carbon values, rescaled
    carbon = read_raster(pairs[1].target).array[0]
    forest = read_raster(pairs[1].mask).array[0] > 0
    expected_target = np.clip(carbon / 200.0, 0, 1) * 2 - 1
    t = item["target"][0].numpy()
    hits = [
        (r, c)
        for r in range(256 - 31)
        for c in range(256 - 31)
        if np.allclose(expected_target[r : r + 32, c : c + 32], t, atol=1e-5)
    ]
    assert len(hits) >= 1
    r, c = hits[0]
    np.testing.assert_array_equal(item["mask"][0].numpy() > 0, forest[r : r + 32, c : c + 32])
    image = read_raster(pairs[1].image).array[:, r : r + 32, c : c + 32]
    valid = item["valid"][0].numpy() > 0
    np.testing.assert_allclose(item["image"].numpy()[:, valid], image[:, valid] * 2 - 1, atol=1e-5)


def test_band_selection_and_flips_keep_alignment(prepared: Path) -> None:
    data = PairedRasterDataset(find_pairs(prepared), image_size=16, image_bands=["B4", "B8"])
    assert data.band_names == ["B4", "B8"]
    item = data.get(0, epoch=3)
    assert item["image"].shape == (2, 16, 16)
    assert ((item["mask"] == 0) | (item["mask"] == 1)).all()


def test_grid_mismatch_and_small_rasters_are_clear_errors(tmp_path: Path) -> None:
    crs = CRS.from_epsg(32633)
    profile = {"crs": crs, "transform": Affine(10, 0, 500000, 0, -10, 6000000)}
    write_raster(tmp_path / "a" / "image.tif", np.ones((3, 20, 20), np.float32), profile)
    shifted = profile | {"transform": Affine(10, 0, 500010, 0, -10, 6000000)}
    write_raster(tmp_path / "a" / "target.tif", np.ones((1, 20, 20), np.float32), shifted)
    with pytest.raises(DataError, match=r"target.tif are not on the same grid \(transform"):
        PairedRasterDataset(find_pairs(tmp_path), image_size=8)
    write_raster(tmp_path / "b" / "image.tif", np.ones((3, 20, 20), np.float32), profile)
    write_raster(
        tmp_path / "b" / "target.tif",
        np.ones((1, 20, 20), np.float32),
        profile | {"crs": CRS.from_epsg(4326)},
    )
    with pytest.raises(DataError, match="CRS EPSG:32633 vs EPSG:4326"):
        PairedRasterDataset(
            [RasterPair(tmp_path / "b" / "image.tif", tmp_path / "b" / "target.tif")]
        )
    write_raster(tmp_path / "c" / "image.tif", np.ones((3, 20, 20), np.float32), profile)
    write_raster(tmp_path / "c" / "target.tif", np.ones((1, 20, 20), np.float32), profile)
    with pytest.raises(DataError, match="smaller than the crop size 32"):
        pair = RasterPair(tmp_path / "c" / "image.tif", tmp_path / "c" / "target.tif")
        PairedRasterDataset([pair], image_size=32)
    with pytest.raises(DataError, match="holds both"):
        find_pairs(tmp_path / "a")  # files, but no pair sub-folders


def test_split_is_stable_and_covers_all() -> None:
    names = [f"chip{i}" for i in range(400)]
    splits = [split_of(n, 0.1, 0.2) for n in names]
    assert splits == [split_of(n, 0.1, 0.2) for n in names]
    assert 0.1 < splits.count("test") / 400 < 0.3 and 0.04 < splits.count("val") / 400 < 0.17
