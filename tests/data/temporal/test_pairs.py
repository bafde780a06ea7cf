"""TemporalPairDataset on real BioMassters chips and Landsat/NAIP scenes: splits, crops, items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from terradiff.data.temporal import (
    PairSchema,
    TemporalPairDataset,
    biomassters_series,
    read_series_image,
    scene_series,
)
from terradiff.errors import DataError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.unet import UNet

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
CHIPS = ("000aa810", "0060c0a5", "288afc34")


@pytest.fixture(scope="module")
def chips(shared_data: Path) -> list:
    return [biomassters_series(shared_data / "biomassters" / c) for c in CHIPS]


def test_date_holdout_never_shows_a_test_target_in_training(chips: list) -> None:
    train = TemporalPairDataset(chips, split="train", test_dates=2, crop_size=32)
    test = TemporalPairDataset(chips, split="test", test_dates=2, crop_size=64)
    used = {(p.series, i) for p in train.pairs for i in (p.source, p.target)}
    targets = {(p.series, p.target) for p in test.pairs}
    sources = {(p.series, p.source) for p in test.pairs}
    assert targets and not targets & used
    assert sources <= used  # before images of the test pairs are training dates
    for p in [*train.pairs, *test.pairs]:  # forward in time
        s = chips[p.series]
        assert s.images[p.source].time < s.images[p.target].time
    assert test.describe()[0] == "000aa810: 06 (Mar) -> 08 (May) (+0.17 y)"
    # test items: the fixed grid of 4 x 4 non-overlapping 64-pixel crops per pair
    assert len(test) == 16 * len(test.pairs) and len(train) == 4 * len(train.pairs)


def test_dates_held_out_per_place_stay_training_targets_elsewhere(chips: list) -> None:
    held = {"0060c0a5": ["06 (Mar)"], "288afc34": ["08 (May)"]}
    train = TemporalPairDataset(chips, split="train", test_dates=held, crop_size=32)
    test = TemporalPairDataset(chips, split="test", test_dates=held, crop_size=64)
    label = {(k, i): s.labels[i] for k, s in enumerate(chips) for i in range(len(s))}
    place = {k: s.place for k, s in enumerate(chips)}
    test_targets = {(place[p.series], label[p.series, p.target]) for p in test.pairs}
    assert test_targets == {("0060c0a5", "06 (Mar)"), ("288afc34", "08 (May)")}
    used = {
        (place[p.series], label[p.series, i]) for p in train.pairs for i in (p.source, p.target)
    }
    assert not test_targets & used  # never seen at its place, as source or target
    trained_targets = {(place[p.series], label[p.series, p.target]) for p in train.pairs}
    assert ("288afc34", "06 (Mar)") in trained_targets  # the month is learned elsewhere
    assert ("0060c0a5", "08 (May)") in trained_targets
    assert not any(place[p.series] == "000aa810" for p in test.pairs)  # unlisted: none held out
    with pytest.raises(DataError, match=r"places \['nowhere'\]"):
        TemporalPairDataset(chips, test_dates={"nowhere": ["06 (Mar)"]})
    with pytest.raises(DataError, match=r"\['13 \(Sep\)'\] are no date of place 0060c0a5"):
        TemporalPairDataset(chips, test_dates={"0060c0a5": ["13 (Sep)"]})


def test_items_are_aligned_crops_with_metadata(chips: list) -> None:
    test = TemporalPairDataset(chips[:1], split="test", test_dates=["10 (Jul)"], crop_size=64)
    item = test[5]  # pair 0, second row, second column
    assert item["source_date"] == "06 (Mar)" and item["target_date"] == "10 (Jul)"
    top, left, h, w = item["window"].tolist()
    assert (top, left, h, w) == (64, 64, 64, 64)
    series = chips[0]
    before, valid_a = read_series_image(series, series.images[0])
    after, valid_b = read_series_image(series, series.images[3])
    rows, cols = slice(top, top + h), slice(left, left + w)
    valid = valid_a[rows, cols] & valid_b[rows, cols]
    expected = np.clip(before[:, rows, cols] / 10_000.0, 0, 1) * 2 - 1
    assert torch.allclose(item["before"], torch.from_numpy(expected * valid).float(), atol=1e-6)
    expected = np.clip(after[:, rows, cols] / 10_000.0, 0, 1) * 2 - 1
    assert torch.allclose(item["after"], torch.from_numpy(expected * valid).float(), atol=1e-6)
    assert torch.equal(item["valid"][0], torch.from_numpy(valid).float())
    assert item["metadata"].shape == (9,) and item["metadata"][-1] == pytest.approx(4 / 12 / 50)


def test_training_crops_are_reproducible_per_epoch(chips: list) -> None:
    train = TemporalPairDataset(chips, split="train", crop_size=48, seed=3)
    a, b = train.get(7, epoch=0), train.get(7, epoch=0)
    assert torch.equal(a["after"], b["after"]) and torch.equal(a["window"], b["window"])
    windows = {tuple(train.get(7, epoch=e)["window"].tolist()) for e in range(4)}
    assert len(windows) > 1


def test_place_and_region_holdouts(chips: list, shared_data: Path) -> None:
    train = TemporalPairDataset(chips, split="train", holdout="place", test_places=["288afc34"])
    test = TemporalPairDataset(chips, split="test", holdout="place", test_places=["288afc34"])
    assert {p.series for p in train.pairs} == {0, 1} and {p.series for p in test.pairs} == {2}
    landsat = scene_series(shared_data / "scenes" / "opengeos-landsat")
    kwargs = {"holdout": "region", "test_fraction": 0.25, "crop_size": 64}
    train = TemporalPairDataset([landsat], split="train", crops_per_pair=8, **kwargs)
    test = TemporalPairDataset([landsat], split="test", **kwargs)
    cut = round(697 * 0.75)
    train_right = max(train.get(i)["window"][1] + 64 for i in range(len(train)))
    test_left = min(test[i]["window"][1] for i in range(len(test)))
    assert train_right <= cut <= test_left
    assert len(train.pairs) == len(test.pairs) == 28  # all 8 * 7 / 2 forward pairs


def test_batches_feed_a_metadata_conditioned_unet(shared_data: Path) -> None:
    naip = scene_series(shared_data / "scenes" / "opengeos-naip", align="reference")
    data = TemporalPairDataset([naip], split="train", test_dates=1, crop_size=32, order="both")
    assert len(data.pairs) == 12  # 4 training dates, both directions
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["before"].shape == (4, 4, 32, 32) and batch["metadata"].shape == (4, 9)
    schema = PairSchema()
    spec = ConditionSpec(metadata_fields=schema.fields)
    net = UNet(
        4,
        cond_channels=4,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=32,
        num_groups=8,
        condition_spec=spec,
    )
    condition = Condition(metadata=batch["metadata"], present=batch["present"])
    with torch.no_grad():
        out = net(batch["after"], torch.full((4,), 10), batch["before"], condition=condition)
    assert out.shape == batch["after"].shape


def test_bad_settings_are_clear_errors(chips: list, shared_data: Path) -> None:
    with pytest.raises(DataError, match="holdout must be one of"):
        TemporalPairDataset(chips, holdout="time")
    with pytest.raises(DataError, match=r"held-out dates \['13 \(Sep\)'\]"):
        TemporalPairDataset(chips, test_dates=["13 (Sep)"])
    with pytest.raises(DataError, match="needs test_places"):
        TemporalPairDataset(chips, holdout="place", test_places=["nowhere"])
    with pytest.raises(DataError, match="does not fit"):
        TemporalPairDataset(chips, crop_size=512)
    landsat = scene_series(shared_data / "scenes" / "opengeos-landsat")
    with pytest.raises(DataError, match="holds no pair"):  # the earliest date held out, forward
        TemporalPairDataset([landsat], split="test", test_dates=["1985"])
    with pytest.raises(DataError, match="1 bands"):
        TemporalPairDataset([chips[0], scene_series(landsat.images[0].path.parent, bands=[1])])
