"""Device-side training batches (``terradiff.data.device_batches``) against the CPU path.

Everything runs on the CPU device: the module is device-agnostic, so these tests exercise the
code (and the random stream) a CUDA run uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS

from terradiff.batching import StepBatchSampler, collate_batch
from terradiff.config import config_from_dict
from terradiff.data import transforms as T
from terradiff.data.conditioned import ConditionedDataset
from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.data.device_batches import (
    Augmentation,
    DeviceBatches,
    DeviceBatchLoader,
    device_batch_problem,
    resolve_device_batches,
)
from terradiff.data.raster import write_raster
from terradiff.errors import ConfigError

AID_CLASSES = ["Forest", "Beach"]
_PROFILE = {"crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 0, 0, -10, 0)}


def cpu_path_augmentation(dataset: Any, indices: Sequence[int], epoch: int) -> Augmentation:
    """The crops and flips the CPU path (``dataset.get(i, epoch)``) draws for ``indices``."""
    tops, lefts, hflips, vflips = [], [], [], []
    th, tw = T.size2(dataset.image_size)
    for index in indices:
        generator = T.item_generator(dataset.seed, epoch, index)
        height, width = dataset.load(index // dataset.crops_per_image)[0].shape[-2:]
        if dataset.crop == "random":
            top, left = T.random_crop_params(height, width, (th, tw), generator)
        elif dataset.crop == "resize":  # the whole file, resized: no corner
            top, left = 0, 0
        else:
            top, left = (height - th) // 2, (width - tw) // 2
        flip = torch.zeros(2, dtype=torch.bool)
        if dataset.random_flip:
            flip = torch.rand(2, generator=generator) < 0.5
        tops.append(top)
        lefts.append(left)
        hflips.append(bool(flip[0]))
        vflips.append(bool(flip[1]) and dataset.vertical_flip)
    return Augmentation(
        top=torch.tensor(tops),
        left=torch.tensor(lefts),
        hflip=torch.tensor(hflips),
        vflip=torch.tensor(vflips),
    )


def cpu_path_batch(dataset: Any, indices: Sequence[int], epoch: int) -> dict[str, Any]:
    return collate_batch([dataset.get(i, epoch) for i in indices])


def _chips(
    folder: Path, arrays: list[np.ndarray], nodata: float | None = None, **options: Any
) -> GeoTiffChipDataset:
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        profile = dict(_PROFILE, nodata=nodata) if nodata is not None else dict(_PROFILE)
        write_raster(folder / f"chip_{i:02d}.tif", array, profile)
    options = {"image_size": 16, "cache": True, "seed": 5, **options}
    return GeoTiffChipDataset(folder, **options)


def _uint16_chips(folder: Path, **options: Any) -> GeoTiffChipDataset:
    """Sentinel-2-like uint16 chips: nodata 0 strips, values past 10,000 and past 32,767."""
    rng = np.random.default_rng(0)
    arrays = []
    for i in range(6):
        array = rng.integers(1, 65535, size=(4, 24, 20), dtype=np.uint16)
        array[:, : 2 + i, :] = 0  # nodata rows: masked
        array[1, 10, 3:7] = 0
        arrays.append(array)
    return _chips(folder, arrays, nodata=0, **options)


def _float_chips(folder: Path, **options: Any) -> GeoTiffChipDataset:
    """float32 chips with NaN holes and values outside [0, 1] (clamped by the CPU path)."""
    rng = np.random.default_rng(1)
    arrays = []
    for i in range(5):
        array = rng.normal(0.5, 0.8, size=(3, 20, 20)).astype(np.float32)
        array[0, i : i + 3, 4] = np.nan
        arrays.append(array)
    return _chips(folder, arrays, **options)


def _aid(sample_data: Path, **options: Any) -> ImageFolderDataset:
    options = {"image_size": 32, "cache": True, "seed": 3, **options}
    return ImageFolderDataset(sample_data / "aid", classes=AID_CLASSES, max_images=12, **options)


DATASETS = {
    "aid_random_hv_flips_2_crops": lambda tmp, samples: _aid(
        samples, vertical_flip=True, crops_per_image=2
    ),
    "aid_center_no_flip": lambda tmp, samples: _aid(samples, crop="center", random_flip=False),
    "uint16_nodata_sentinel2": lambda tmp, samples: _uint16_chips(tmp, vertical_flip=True),
    "uint16_minmax": lambda tmp, samples: _uint16_chips(
        tmp, scaling={"name": "minmax", "mins": [100, 2000, 0, 5], "maxs": [60000, 9000, 3, 9]}
    ),
    "float_nan_none_scaling": lambda tmp, samples: _float_chips(tmp, scaling="none"),
    "float_resize_of_same_size": lambda tmp, samples: _float_chips(
        tmp, scaling="none", crop="resize", image_size=20
    ),
    "aid_resize_150_to_32_hv_flips": lambda tmp, samples: _aid(
        samples, crop="resize", vertical_flip=True
    ),
    "uint16_nodata_resize_24x20_to_16": lambda tmp, samples: _uint16_chips(
        tmp, crop="resize", vertical_flip=True
    ),
    "float_nan_resize_uncached": lambda tmp, samples: _float_chips(
        tmp, scaling="none", crop="resize", image_size=12, cache=False
    ),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_fixed_augmentation_equals_the_cpu_path(name: str, tmp_path: Path, sample_data: Path):
    """Given the CPU path's own crop corners and flips, every key of the device batch equals
    the collated CPU items bit for bit (masks, nodata, NaN, clamping, uint16 past 32,767)."""
    dataset = DATASETS[name](tmp_path, sample_data)
    source = DeviceBatches(dataset, "cpu")
    indices = list(range(len(dataset)))[::-1]
    for epoch in (0, 3):
        expected = cpu_path_batch(dataset, indices, epoch)
        got = source.assemble(indices, cpu_path_augmentation(dataset, indices, epoch))
        assert set(got) == set(expected)
        for key in ("image", "mask", "label"):
            assert got[key].dtype == expected[key].dtype, key
            assert torch.equal(got[key], expected[key]), (name, key)
        assert got["path"] == expected["path"]
    if name.startswith("uint16_nodata"):
        assert source._valid is not None and float(expected["mask"].mean()) < 0.95
        assert float(expected["image"].max()) == 1.0  # values past 10,000 clip


def test_gamma_scaling_is_within_1e6_of_the_cpu_path(tmp_path: Path) -> None:
    """sen12ms's gamma: NumPy's and torch's pow may differ in the last bit only."""
    dataset = _uint16_chips(tmp_path, scaling="sen12ms")
    source = DeviceBatches(dataset, "cpu")
    indices = list(range(len(dataset)))
    expected = cpu_path_batch(dataset, indices, 1)
    got = source.assemble(indices, cpu_path_augmentation(dataset, indices, 1))
    torch.testing.assert_close(got["image"], expected["image"], atol=1e-6, rtol=0)
    assert torch.equal(got["mask"], expected["mask"])


def test_batches_are_a_function_of_seed_step_and_rank(sample_data: Path) -> None:
    source = DeviceBatches(_aid(sample_data, vertical_flip=True), "cpu")
    again = DeviceBatches(_aid(sample_data, vertical_flip=True), "cpu")
    indices = [0, 3, 5, 7, 11, 2]
    first = source.batch(indices, step=4, rank=0)
    assert torch.equal(first["image"], again.batch(indices, step=4, rank=0)["image"])
    assert not torch.equal(first["image"], source.batch(indices, step=5, rank=0)["image"])
    assert not torch.equal(first["image"], source.batch(indices, step=4, rank=1)["image"])
    other_seed = DeviceBatches(_aid(sample_data, vertical_flip=True, seed=4), "cpu")
    assert not torch.equal(first["image"], other_seed.batch(indices, step=4)["image"])


def test_crops_are_uniform_and_flips_half(sample_data: Path) -> None:
    """Over 400 steps x 64 draws, every corner of the 150 -> 32 crop (119 positions) occurs,
    no position is much more frequent than another, and each flip happens half the time."""
    source = DeviceBatches(_aid(sample_data, vertical_flip=True), "cpu")
    draws = [source.draw(64, step=s, rank=0) for s in range(400)]
    top = torch.cat([d.top for d in draws])
    left = torch.cat([d.left for d in draws])
    for corner in (top, left):
        counts = torch.bincount(corner, minlength=119).float()
        assert int(corner.min()) == 0 and int(corner.max()) == 118 and len(counts) == 119
        expected = len(corner) / 119
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 118 + 5 * (2 * 118) ** 0.5, chi2  # 5 sigma of chi-square(118)
    for flips in (torch.cat([d.hflip for d in draws]), torch.cat([d.vflip for d in draws])):
        assert abs(float(flips.float().mean()) - 0.5) < 0.01
    no_flip = DeviceBatches(_aid(sample_data, random_flip=False), "cpu").draw(64, step=0, rank=0)
    assert not bool(no_flip.hflip.any() or no_flip.vflip.any())


def test_loader_replays_the_sampler_from_any_step(sample_data: Path) -> None:
    """The loader's batch at step k is the same in a run started at 0 and one resumed at k."""
    source = DeviceBatches(_aid(sample_data, crops_per_image=2), "cpu")
    full = StepBatchSampler(len(source.dataset), 4, seed=3, start_step=0, max_steps=9)
    resumed = StepBatchSampler(len(source.dataset), 4, seed=3, start_step=6, max_steps=9)
    straight = list(DeviceBatchLoader(source, full))
    later = list(DeviceBatchLoader(source, resumed))
    assert len(straight) == 9 and len(later) == 3
    for a, b in zip(straight[6:], later, strict=True):
        assert torch.equal(a["image"], b["image"]) and a["path"] == b["path"]


def test_resolve_settings(tmp_path: Path, sample_data: Path) -> None:
    cached, plain = _aid(sample_data), _aid(sample_data, cache=False)
    assert resolve_device_batches("auto", cached, "cuda")
    assert not resolve_device_batches("auto", cached, "cpu")
    assert not resolve_device_batches("auto", plain, "cuda")  # uncached: auto keeps the loader
    assert not resolve_device_batches("off", cached, "cuda")
    assert resolve_device_batches("on", cached, "cpu") and resolve_device_batches(
        "on", plain, "cpu"
    )
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        resolve_device_batches("yes", cached, "cpu")


def test_resized_files_are_kept_resized(tmp_path: Path, sample_data: Path) -> None:
    """``crop: resize`` of 150x150 JPEGs to 32x32: the stack holds each file resized once, as
    float32 (the dataset's values); files of several sizes are fine; auto serves it on CUDA."""
    dataset = _aid(sample_data, crop="resize")
    assert device_batch_problem(dataset) is None
    assert resolve_device_batches("auto", dataset, "cuda")
    source = DeviceBatches(dataset, "cpu")
    assert source.resizes() and source._images.shape == (len(dataset.files), 3, 32, 32)
    assert source._images.dtype == torch.float32 and source._valid is None
    assert not dataset._resized  # the host copies were dropped once stacked
    same = DeviceBatches(_float_chips(tmp_path / "same", crop="resize", image_size=20), "cpu")
    assert not same.resizes()  # files already of the output size keep the file's values
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_raster(mixed / "a.tif", np.full((2, 16, 16), 7, np.uint16), dict(_PROFILE))
    write_raster(mixed / "b.tif", np.full((2, 20, 16), 9, np.uint16), dict(_PROFILE))
    several = GeoTiffChipDataset(mixed, image_size=8, crop="resize", cache=True)
    assert device_batch_problem(several) is None
    batch = DeviceBatches(several, "cpu").batch([0, 1], step=0)
    assert batch["image"].shape == (2, 2, 8, 8) and torch.equal(
        batch["image"], cpu_path_batch(several, [0, 1], 0)["image"]
    )


def test_unsupported_datasets_name_the_key_and_the_fix(tmp_path: Path, sample_data: Path) -> None:
    wrapped = ConditionedDataset(_aid(sample_data))
    for dataset in (wrapped,):
        assert device_batch_problem(dataset) is not None
        assert not resolve_device_batches("auto", dataset, "cuda")
        with pytest.raises(ConfigError, match=r"data\.device_batches=on .*auto .* or off"):
            resolve_device_batches("on", dataset, "cpu")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_raster(mixed / "a.tif", np.ones((2, 16, 16), np.uint16), dict(_PROFILE))
    write_raster(mixed / "b.tif", np.ones((2, 20, 16), np.uint16), dict(_PROFILE))
    uncached = GeoTiffChipDataset(mixed, image_size=16)
    assert device_batch_problem(uncached) is None  # sizes unknown until the files are read
    with pytest.raises(ConfigError, match=r"b\.tif is 20x16 .*device_batches=off"):
        DeviceBatches(uncached, "cpu")
    cached = GeoTiffChipDataset(mixed, image_size=16, cache=True)
    assert "2 different sizes" in str(device_batch_problem(cached))
    small = GeoTiffChipDataset(mixed, image_size=24, include=["a.tif"])
    with pytest.raises(ConfigError, match=r"16x16 files are smaller than data\.image_size 24x24"):
        DeviceBatches(small, "cpu")


def test_config_key_is_checked() -> None:
    base = {"data": {"root": "x"}}
    assert config_from_dict(base).data.device_batches == "auto"
    assert config_from_dict({"data": {"root": "x", "device_batches": "on"}}).data.device_batches
    with pytest.raises(ConfigError, match=r"data\.device_batches"):
        config_from_dict({"data": {"root": "x", "device_batches": "yes"}})
    with pytest.raises(ConfigError, match=r"data\.device_cache_share"):
        config_from_dict({"data": {"root": "x", "device_cache_share": 1.5}})


def test_stack_keeps_the_native_dtype(tmp_path: Path, sample_data: Path) -> None:
    """uint8 JPEGs stay uint8 (no mask stack: every pixel is valid); uint16 chips keep 2 bytes
    per value (their int16 bits) with one mask stack for the nodata pixels."""
    aid = DeviceBatches(_aid(sample_data), "cpu")
    assert aid._images.dtype == torch.uint8 and aid._valid is None
    chips = DeviceBatches(_uint16_chips(tmp_path), "cpu")
    assert chips._images.element_size() == 2 and chips._valid is not None
    assert chips.storage_device == torch.device("cpu") and not chips.pinned


def test_host_stack_path_gives_the_same_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack kept in host memory (what a GPU too small for it gets: crops cut on the host,
    then copied) gives the batches of a stack on the output device. Emulated on the CPU with
    ``cpu:0`` as the output device, which is not the storage device ``cpu``."""
    dataset = _uint16_chips(tmp_path, vertical_flip=True)
    on_device = DeviceBatches(dataset, "cpu")
    monkeypatch.setattr(
        DeviceBatches, "_placement", lambda self, n, s: (torch.device("cpu"), False)
    )
    on_host = DeviceBatches(dataset, "cpu:0")
    assert on_host.storage_device != on_host.device
    indices = [5, 0, 3, 3, 1]
    a, b = on_device.batch(indices, step=7), on_host.batch(indices, step=7)
    for key in ("image", "mask", "label"):
        assert torch.equal(a[key], b[key]), key
    assert a["path"] == b["path"]
