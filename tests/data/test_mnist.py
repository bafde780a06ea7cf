"""Tests of terradiff.data.mnist on the real MNIST test set (10,000 digits, IDX gzip)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from terradiff.batching import collate_batch
from terradiff.data.mnist import (
    CLASS_NAMES,
    MNIST_IMAGES,
    MNIST_LABELS,
    MNISTDataset,
    load_mnist,
    read_idx,
)
from terradiff.errors import DataError


@pytest.fixture(scope="module")
def mnist(shared_data: Path) -> Path:
    return shared_data / "mnist"


@pytest.fixture(scope="module")
def digits(mnist: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_mnist(mnist)


@pytest.fixture(scope="module")
def train(mnist: Path) -> MNISTDataset:
    return MNISTDataset(mnist)


def test_idx_files_hold_10000_labelled_digits(mnist: Path) -> None:
    images = read_idx(mnist / MNIST_IMAGES)
    labels = read_idx(mnist / MNIST_LABELS)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    # the well-known start of the MNIST test labels, and its class counts (LeCun's site)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = np.bincount(labels, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_the_split_is_8000_2000_by_index_and_disjoint(
    mnist: Path, digits: tuple[np.ndarray, np.ndarray], train: MNISTDataset
) -> None:
    test = MNISTDataset(mnist, split="test")
    assert len(train) == 8_000 and len(test) == 2_000
    assert train.indices.tolist() == list(range(8_000))
    assert test.indices.tolist() == list(range(8_000, 10_000))
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert len(MNISTDataset(mnist, split="all")) == 10_000
    images, labels = digits
    assert train.labels == labels[:8_000].tolist() and test.labels == labels[8_000:].tolist()
    assert np.array_equal(test.pixels[0], images[8_000])
    assert test[0]["path"].endswith(f"{MNIST_IMAGES}#8000")
    assert set(train.labels) == set(test.labels) == set(range(10))


def test_items_are_padded_to_32_in_minus_one_one(
    digits: tuple[np.ndarray, np.ndarray], train: MNISTDataset
) -> None:
    images, labels = digits
    item = train[5]
    assert set(item) == {"image", "mask", "label", "path"}
    image = item["image"]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert float(image.min()) == -1.0 and float(image.max()) <= 1.0
    assert torch.all(image[:, :2] == -1) and torch.all(image[:, :, -2:] == -1)  # the padding
    expected = torch.from_numpy(images[5].astype(np.float32)) / 255.0 * 2.0 - 1.0
    assert torch.allclose(image[0, 2:30, 2:30], expected)
    assert torch.equal(item["mask"], torch.ones(1, 32, 32))
    assert item["label"] == int(labels[5])
    assert train.classes == train.class_names == list(CLASS_NAMES) == [str(d) for d in range(10)]
    assert train.num_bands == 1 and train.band_names == ["gray"]
    assert train[-1]["label"] == int(labels[7_999])
    with pytest.raises(IndexError):
        train[8_000]


def test_native_size_and_resize(mnist: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    native = MNISTDataset(mnist, split="test", image_size=28)[0]["image"]
    assert native.shape == (1, 28, 28)
    assert torch.allclose((native[0] + 1) / 2 * 255, torch.from_numpy(images[8_000]).float())
    resized = MNISTDataset(mnist, split="test", fit="resize")[0]["image"]
    assert resized.shape == (1, 32, 32)
    assert float(resized.min()) >= -1.0 and float(resized.max()) <= 1.0
    assert float(resized.mean()) == pytest.approx(float(native.mean()), abs=0.02)


def test_batches_carry_long_labels(train: MNISTDataset) -> None:
    batch = next(iter(DataLoader(train, batch_size=16, collate_fn=collate_batch)))
    assert batch["image"].shape == (16, 1, 32, 32)
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == train.labels[:16]


def test_option_errors(mnist: Path) -> None:
    with pytest.raises(DataError, match=r"unknown MNIST split 'val'; choose one of \['train'"):
        MNISTDataset(mnist, split="val")
    with pytest.raises(DataError, match="unknown MNIST fit 'crop'"):
        MNISTDataset(mnist, fit="crop")
    with pytest.raises(DataError, match="image_size 24 is smaller than the digits"):
        MNISTDataset(mnist, image_size=24)
    with pytest.raises(DataError, match="IDX file not found"):
        MNISTDataset(mnist.parent)


def _idx(shape: tuple[int, ...], data: bytes, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, len(shape)])
    return header + b"".join(int(s).to_bytes(4, "big") for s in shape) + data


def test_read_idx_types_and_corrupt_files(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(_idx((2, 3), np.arange(6, dtype=">i2").tobytes(), 0x0B))
    assert read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]
    packed = tmp_path / "x.idx.gz"
    packed.write_bytes(gzip.compress(_idx((2,), np.array([1.5, -2], ">f4").tobytes(), 0x0D)))
    assert read_idx(packed).tolist() == [1.5, -2.0]
    path.write_bytes(_idx((2, 3), bytes(5)))
    with pytest.raises(DataError, match=r"holds 5 data bytes but its header \(2, 3\).*truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match="is not an IDX file"):
        read_idx(path)
    packed.write_bytes(gzip.compress(_idx((4,), bytes(4)))[:-6])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(packed)
    path.write_bytes(bytes([0, 0, 8, 3, 0]))
    with pytest.raises(DataError, match="truncated inside its header"):
        read_idx(path)
