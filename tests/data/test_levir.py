"""LEVIR-CD pairs on the real tiles of ../shared/data/levir-cd: count, splits, crops, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from terradiff.data.levir import LevirCDDataset, find_levir_pairs, split_pairs
from terradiff.errors import DataError


def test_count_and_fixed_splits(shared_data: Path) -> None:
    root = shared_data / "levir-cd"
    pairs = find_levir_pairs(root)
    assert len(pairs) == 11 and len({p.source_image for p in pairs}) == 10
    train = split_pairs(pairs, "train")
    test = split_pairs(pairs, "test")
    assert [p.name for p in train] == [
        "train_36_0512_0512",
        "train_386_0512_0768",
        "train_412_0512_0768",
        "val_27_0000_0256",
    ]
    assert len(test) == 7 and all(p.name.startswith("test_") for p in test)
    by_order = split_pairs(pairs, "test", rule="order", test_fraction=0.3)
    assert [p.source_image for p in by_order] == ["train_386", "train_412", "val_27"]
    held = {p.source_image for p in split_pairs(pairs, "test", rule="order", test_fraction=0.8)}
    kept = {p.source_image for p in split_pairs(pairs, "train", rule="order", test_fraction=0.8)}
    assert not held & kept and "test_2" in held | kept  # both tiles of test_2 on one side


def test_items_are_aligned_crops(shared_data: Path) -> None:
    root = shared_data / "levir-cd"
    test = LevirCDDataset(root, split="test", crop_size=128)
    assert len(test) == 7 * 4 and 0.1 < test.change_fraction < 0.3
    item = test[1]  # first test tile, top-right crop
    assert item["name"] == "test_102_0512_0000"
    assert item["window"].tolist() == [0, 128, 128, 128]
    a = np.asarray(Image.open(root / "A" / "test_102_0512_0000.png"))[:128, 128:]
    label = np.asarray(Image.open(root / "label" / "test_102_0512_0000.png"))[:128, 128:]
    expected = torch.from_numpy(a.transpose(2, 0, 1) / 255.0 * 2 - 1).float()
    assert torch.allclose(item["before"], expected, atol=1e-6)
    assert torch.equal(item["label"][0], torch.from_numpy(label > 0).float())
    train = LevirCDDataset(root, split="train", crop_size=64, crops_per_pair=5, seed=1)
    assert len(train) == 20
    first, again = train.get(3, epoch=2), train.get(3, epoch=2)
    assert torch.equal(first["after"], again["after"]) and first["label"].shape == (1, 64, 64)
    assert set(first["label"].unique().tolist()) <= {0.0, 1.0}


def test_training_tiles_cut_into_the_fixed_grid_with_grid_true(shared_data: Path) -> None:
    """``grid=True`` gives the training tiles' fixed windows, unflipped, whatever the epoch."""
    root = shared_data / "levir-cd"
    grid = LevirCDDataset(root, split="train", crop_size=128, crops_per_pair=5, grid=True)
    assert len(grid) == 4 * 4 and not grid.random_flip
    item = grid.get(2, epoch=7)  # first training tile, bottom-left window
    assert item["name"] == "train_36_0512_0512" and item["window"].tolist() == [128, 0, 128, 128]
    b = np.asarray(Image.open(root / "B" / "train_36_0512_0512.png"))[128:, :128]
    expected = torch.from_numpy(b.transpose(2, 0, 1) / 255.0 * 2 - 1).float()
    assert torch.allclose(item["after"], expected, atol=1e-6)
    assert torch.equal(item["after"], grid.get(2, epoch=0)["after"])
    crops = LevirCDDataset(root, split="test", crop_size=64, crops_per_pair=3, grid=False)
    assert len(crops) == 7 * 3  # and the test split can give random crops


def _copy(shared_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "levir"
    shutil.copytree(shared_data / "levir-cd", root, ignore=shutil.ignore_patterns("list", "LIC*"))
    return root


def test_missing_and_bad_files_are_clear_errors(shared_data: Path, tmp_path: Path) -> None:
    root = _copy(shared_data, tmp_path)
    (root / "B" / "test_7_0256_0512.png").unlink()
    with pytest.raises(DataError, match=r"A/test_7_0256_0512\.png has no counterpart .*B/"):
        find_levir_pairs(root)
    shutil.rmtree(root / "B")
    with pytest.raises(DataError, match="lacks"):
        find_levir_pairs(root)
    root = _copy(shared_data, tmp_path / "second")
    grey = np.full((256, 256), 7, np.uint8)
    Image.fromarray(grey).save(root / "label" / "val_27_0000_0256.png")
    with pytest.raises(DataError, match=r"val_27_0000_0256\.png is not a binary change mask"):
        LevirCDDataset(root, split="train")
    with pytest.raises(DataError, match="does not fit"):
        LevirCDDataset(shared_data / "levir-cd", split="test", crop_size=512)
    with pytest.raises(DataError, match="split must be one of"):
        LevirCDDataset(shared_data / "levir-cd", split="val")
