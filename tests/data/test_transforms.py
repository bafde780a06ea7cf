"""Tests of terradiff.data.transforms: scaling presets, band statistics, augmentations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from terradiff.data.transforms import (
    SCALING_PRESETS,
    BandStats,
    Scaling,
    center_crop,
    compute_band_stats,
    from_model,
    get_scaling,
    hflip,
    item_generator,
    random_crop,
    random_flip,
    resize,
    spatial_augment,
    to_model,
    vflip,
)
from terradiff.errors import DataError

# ---- scaling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "physical", "unit"),
    [
        ("uint8", [0, 51, 255], [0.0, 0.2, 1.0]),
        ("sentinel2", [0, 2500, 10_000, 12_000], [0.0, 0.25, 1.0, 1.0]),
        ("sen12ms", [0, 2500, 5000, 9000], [0.0, 0.5 ** (1 / 2.2), 1.0, 1.0]),
        ("none", [0.0, 0.3, 1.0], [0.0, 0.3, 1.0]),
    ],
)
def test_presets_hand_checked(name: str, physical: list[float], unit: list[float]) -> None:
    scaling = get_scaling(name)
    got = scaling.to_unit(np.asarray(physical, dtype=np.float64).reshape(-1, 1, 1))
    np.testing.assert_allclose(got.ravel(), unit, rtol=1e-12)


def test_sen12ms_value() -> None:
    assert float(get_scaling("sen12ms").to_unit(np.array(2500.0))) == pytest.approx(0.72974, 1e-4)


def test_integer_input_becomes_float32_and_torch_works() -> None:
    x = np.array([[[0, 5000, 10_000]]], dtype=np.uint16)
    y = get_scaling("sentinel2").to_unit(x)
    assert y.dtype == np.float32
    t = get_scaling("sentinel2").to_unit(torch.from_numpy(x.astype(np.int32)))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), y)


@pytest.mark.parametrize("name", ["uint8", "sentinel2", "sen12ms", "none"])
def test_presets_round_trip(name: str) -> None:
    scaling = get_scaling(name)
    unit = np.random.default_rng(0).uniform(0, 1, size=(4, 6, 6))
    physical = scaling.from_unit(unit)
    np.testing.assert_allclose(scaling.to_unit(physical), unit, atol=1e-10)
    tensor = torch.from_numpy(unit)
    np.testing.assert_allclose(scaling.to_unit(scaling.from_unit(tensor)).numpy(), unit, atol=1e-10)
    model = scaling.to_model(physical)
    assert model.min() >= -1 and model.max() <= 1
    np.testing.assert_allclose(scaling.from_model(model), physical, rtol=1e-9, atol=1e-9)


def test_from_unit_values() -> None:
    assert float(get_scaling("sen12ms").from_unit(np.array(0.5 ** (1 / 2.2)))) == pytest.approx(
        2500.0
    )
    assert float(get_scaling("uint8").from_unit(np.array(1.0))) == pytest.approx(255.0)


def test_clip_is_not_invertible_beyond_range() -> None:
    scaling = get_scaling("sentinel2")
    assert float(scaling.from_unit(scaling.to_unit(np.array(15_000.0)))) == pytest.approx(10_000.0)


def test_nan_passes_through() -> None:
    y = get_scaling("sen12ms").to_unit(np.array([np.nan, 2500.0]))
    assert np.isnan(y[0]) and np.isfinite(y[1])


def test_minmax_per_band() -> None:
    scaling = get_scaling("minmax", mins=[0, 100], maxs=[10, 300])
    x = np.array([[[5.0, 20.0]], [[200.0, 100.0]]])
    np.testing.assert_allclose(scaling.to_unit(x), [[[0.5, 1.0]], [[0.5, 0.0]]])
    np.testing.assert_allclose(scaling.from_unit(scaling.to_unit(x))[1], x[1])
    batch = torch.from_numpy(np.stack([x, x]))
    assert scaling.to_unit(batch).shape == (2, 2, 1, 2)
    with pytest.raises(DataError, match="min/max for 2 bands, the image has shape"):
        scaling.to_unit(np.zeros((3, 2, 2)))


def test_minmax_errors() -> None:
    with pytest.raises(DataError, match="needs per-band mins and maxs"):
        get_scaling("minmax")
    with pytest.raises(DataError, match=r"bands \(0-based\) \[1\]"):
        get_scaling("minmax", mins=[0, 5], maxs=[1, 5])
    with pytest.raises(DataError, match="2 mins but 1 maxs"):
        get_scaling("minmax", mins=[0, 5], maxs=[1])


def test_scaling_errors() -> None:
    with pytest.raises(DataError, match=r"unknown scaling 'sentinel'; choose one of \['uint8'"):
        get_scaling("sentinel")
    with pytest.raises(DataError, match="unknown scaling parameters"):
        get_scaling("uint8", scale=3)
    with pytest.raises(DataError, match="divisor must be > 0"):
        get_scaling("uint8", divisor=0)
    with pytest.raises(DataError, match="gamma needs clip=True"):
        Scaling("custom", divisor=2.0, gamma=0.5)


@pytest.mark.parametrize("name", SCALING_PRESETS)
def test_scaling_serialisation_round_trip(name: str) -> None:
    params = {"mins": [0.0, 1.0], "maxs": [2.0, 3.0]} if name == "minmax" else {}
    scaling = get_scaling(name, **params)
    restored = Scaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert restored == scaling
    assert get_scaling(scaling.to_dict()) == scaling
    assert get_scaling(scaling) is scaling
    x = np.random.default_rng(3).uniform(0, 400, size=(2, 3, 3))
    np.testing.assert_allclose(restored.to_unit(x), scaling.to_unit(x))


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(DataError, match="not a scaling description"):
        Scaling.from_dict({"name": "uint8", "scale": 2})


def test_to_model_from_model() -> None:
    x = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(to_model(x), torch.tensor([-1.0, -0.5, 1.0]))
    torch.testing.assert_close(from_model(to_model(x)), x)


# ---- band statistics -----------------------------------------------------------------------


def test_band_stats_match_numpy_under_masks() -> None:
    rng = np.random.default_rng(0)
    images = [rng.normal(loc=[[[10.0]], [[-3.0]]], scale=2.0, size=(2, 8, 8)) for _ in range(5)]
    masks = [rng.random((8, 8)) > 0.3 for _ in range(5)]
    stats = compute_band_stats(list(zip(images, masks, strict=True)), percentiles=(5, 50, 95))
    pooled = np.concatenate([im[:, m] for im, m in zip(images, masks, strict=True)], axis=1)
    np.testing.assert_allclose(stats.mean, pooled.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats.std, pooled.std(axis=1), rtol=1e-8)
    np.testing.assert_allclose(stats.min, pooled.min(axis=1))
    np.testing.assert_allclose(stats.max, pooled.max(axis=1))
    assert stats.count == [pooled.shape[1]] * 2
    # every image is smaller than the sample size: percentiles are exact
    np.testing.assert_allclose(stats.percentiles[50.0], np.percentile(pooled, 50, axis=1))
    assert BandStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_band_stats_sampling_and_inputs() -> None:
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.uniform(0, 100, size=(1, 64, 64))) for _ in range(4)]
    a = compute_band_stats(images, sample_per_image=500, seed=3)
    b = compute_band_stats(images, sample_per_image=500, seed=3)
    assert a == b
    assert a.percentiles[2.0][0] == pytest.approx(2.0, abs=1.5)
    items = [{"image": im, "mask": torch.ones(1, 64, 64)} for im in images]
    assert compute_band_stats(items).mean == pytest.approx(a.mean)
    scaling = get_scaling("minmax", mins=a.percentiles[2.0], maxs=a.percentiles[98.0])
    assert scaling.num_bands == 1


def test_band_stats_errors() -> None:
    with pytest.raises(DataError, match="no images"):
        compute_band_stats([])
    with pytest.raises(DataError, match="an image has 3 bands, earlier ones 2"):
        compute_band_stats([np.zeros((2, 2, 2)), np.zeros((3, 2, 2))])
    with pytest.raises(DataError, match="no valid pixel"):
        compute_band_stats([(np.zeros((1, 2, 2)), np.zeros((2, 2), dtype=bool))])


# ---- augmentation --------------------------------------------------------------------------


def test_item_generator_is_pure_function_of_triple() -> None:
    def draw(seed: int, epoch: int, index: int) -> torch.Tensor:
        return torch.rand(4, generator=item_generator(seed, epoch, index))

    torch.testing.assert_close(draw(0, 3, 7), draw(0, 3, 7))
    assert not torch.equal(draw(0, 3, 7), draw(0, 4, 7))
    assert not torch.equal(draw(0, 3, 7), draw(0, 3, 8))
    assert not torch.equal(draw(0, 3, 7), draw(1, 3, 7))
    assert not torch.equal(draw(0, 1, 2), draw(0, 2, 1))


def test_random_crop_in_bounds_and_reproducible() -> None:
    x = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 20, 30)
    a = random_crop(x, 8, torch.Generator().manual_seed(5))
    b = random_crop(x, 8, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert a.shape == (3, 8, 8)
    top, left = divmod(int(a[0, 0, 0]), 30)
    torch.testing.assert_close(a, x[:, top : top + 8, left : left + 8])
    corners = {int(random_crop(x, 8, torch.Generator().manual_seed(s))[0, 0, 0]) for s in range(20)}
    assert len(corners) > 5
    with pytest.raises(DataError, match="larger than the image"):
        random_crop(x, 25, torch.Generator())


def test_center_crop_and_flips() -> None:
    x = torch.arange(36.0).reshape(1, 6, 6)
    torch.testing.assert_close(center_crop(x, 2), x[:, 2:4, 2:4])
    torch.testing.assert_close(center_crop(x, (2, 4)), x[:, 2:4, 1:5])
    torch.testing.assert_close(hflip(x)[0, 0], torch.arange(5.0, -1.0, -1.0))
    torch.testing.assert_close(vflip(x)[0, :, 0], torch.arange(30.0, -1.0, -6.0))
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_flip(x, g, p=1.0), hflip(x))
    torch.testing.assert_close(random_flip(x, g, p=1.0, vertical=True), vflip(hflip(x)))
    torch.testing.assert_close(random_flip(x, g, p=0.0, vertical=True), x)


def test_resize_antialias_when_downsampling() -> None:
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2
    x = checker.float()[None].repeat(2, 1, 1)
    small = resize(x, 16)
    assert small.shape == (2, 16, 16)
    assert small.std() < 0.05 and small.mean() == pytest.approx(0.5, abs=0.02)
    # 150 -> 64 (the AID case): without the low-pass, white noise keeps far more energy
    noise = torch.rand(1, 150, 150, generator=torch.Generator().manual_seed(0))
    assert resize(noise, 64).std() < 0.6 * resize(noise, 64, antialias=False).std()
    batch = resize(x[None], (8, 12), mode="bicubic")
    assert batch.shape == (1, 2, 8, 12)
    up = resize(torch.full((1, 4, 4), 0.3), 9)
    torch.testing.assert_close(up, torch.full((1, 9, 9), 0.3))
    assert resize(x, 64) is x


def test_spatial_augment_modes() -> None:
    x = torch.rand(4, 40, 50, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert spatial_augment(x, 32, g, crop_mode="random").shape == (4, 32, 32)
    assert spatial_augment(x, 32, g, crop_mode="center").shape == (4, 32, 32)
    assert spatial_augment(x, 32, g, crop_mode="resize").shape == (4, 32, 32)
    assert spatial_augment(x, 32, g, crop_mode="none").shape == (4, 40, 50)
    assert spatial_augment(x, 64, g, crop_mode="random").shape == (4, 64, 64)  # upsampled first
    centred = spatial_augment(x, 32, g, crop_mode="center", horizontal_flip=False)
    torch.testing.assert_close(centred, center_crop(x, 32))
    with pytest.raises(DataError, match="unknown crop 'tile'"):
        spatial_augment(x, 32, g, crop_mode="tile")
