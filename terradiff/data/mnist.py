"""MNIST from its original IDX files: a native reader and a labelled torch dataset.

Only the 10,000-digit MNIST *test* set is available offline (``../shared/data/mnist``:
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``), so issue 15 fixes a split of it by
index: the first 8,000 digits are ``"train"``, the last 2,000 ``"test"`` (:data:`SPLITS`).

IDX format (LeCun et al.): a 4-byte magic ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the values in C order, big-endian. Files ending in ``.gz`` (or starting with the
gzip magic) are decompressed.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.errors import DataError

#: IDX type byte -> numpy dtype (big-endian).
IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
#: The MNIST test-set files, as LeCun's site names them.
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
#: Issue 15's fixed split of the 10,000 test digits, by index: ``(start, stop)``.
SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 8_000),
    "test": (8_000, 10_000),
    "all": (0, 10_000),
}
#: The class names: the digits.
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: How a 28x28 digit is brought to ``image_size``.
FITS: tuple[str, ...] = ("pad", "resize")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not).

    Raises:
        DataError: a missing file, a bad magic number or type, or a size that does not match
            the header (a truncated download).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path} (resolved from {Path.cwd()}); check the path")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read IDX file {path}: {err}; re-download it") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file (magic bytes {raw[:4].hex()}; expected 0000<type><ndim> "
            f"with a type of {[hex(t) for t in IDX_DTYPES]})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; re-download it")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its header {shape} "
            f"({dtype}) needs {expected}; the file is truncated or corrupt, re-download it"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def load_mnist(
    root: str | os.PathLike[str],
    *,
    images: str = MNIST_IMAGES,
    labels: str = MNIST_LABELS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` from the IDX files in ``root``.

    Raises:
        DataError: missing/corrupt files, shapes that are not digits and labels of one count,
            labels outside 0-9.
    """
    root = Path(root)
    pixels = read_idx(root / images)
    targets = read_idx(root / labels)
    if pixels.ndim != 3 or targets.ndim != 1 or pixels.shape[0] != targets.shape[0]:
        raise DataError(
            f"MNIST files in {root} do not fit: images {pixels.shape} ({images}), labels "
            f"{targets.shape} ({labels}); expected [N, H, W] images and N labels"
        )
    if targets.size and (targets.min() < 0 or targets.max() > 9):
        raise DataError(f"{root / labels} holds labels outside 0..9; it is no MNIST label file")
    return pixels.astype(np.uint8), targets.astype(np.int64)


class MNISTDataset(Dataset):
    """MNIST digits as terradiff items: ``{"image", "mask", "label", "path"}``.

    Items: ``image`` float32 ``[1, S, S]`` in [-1, 1] (``uint8 / 255 * 2 - 1``, the ``"uint8"``
    scaling), ``mask`` ones ``[1, S, S]``, ``label`` the digit (int), ``path``
    ``"<images file>#<index>"`` (the index in the 10,000). No augmentation (a flipped digit is
    another glyph).

    Args:
        root: The folder of the IDX files (``../shared/data/mnist``).
        split: ``"train"`` (digits 0..7,999), ``"test"`` (8,000..9,999) or ``"all"``.
        image_size: ``S``: 28 (native) or larger; the default 32 fits UNets that halve the size
            three times.
        fit: ``"pad"`` (default): the 28x28 digit centred on a black (-1) canvas, zero padding in
            pixel values, no resampling; ``"resize"``: bilinear resampling to ``S``.
        images, labels: The IDX file names in ``root``.

    Raises:
        DataError: an unknown split or fit, a size below 28, missing or corrupt files, a file
            too short for the split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str = "train",
        image_size: int = 32,
        fit: str = "pad",
        images: str = MNIST_IMAGES,
        labels: str = MNIST_LABELS,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown MNIST split {split!r}; choose one of {list(SPLITS)}")
        if fit not in FITS:
            raise DataError(f"unknown MNIST fit {fit!r}; choose one of {list(FITS)}")
        self.root = Path(root)
        pixels, targets = load_mnist(self.root, images=images, labels=labels)
        height, width = pixels.shape[1:]
        if int(image_size) < max(height, width):
            raise DataError(
                f"MNIST image_size {image_size} is smaller than the digits ({height}x{width}); "
                f"use {max(height, width)} or more"
            )
        start, stop = SPLITS[split]
        if pixels.shape[0] < stop:
            raise DataError(
                f"{self.root / images} has {pixels.shape[0]} digits; the {split!r} split needs "
                f"indices {start}..{stop - 1} (the 10,000-digit MNIST test set)"
            )
        self.split = split
        self.image_size = int(image_size)
        self.fit = fit
        self.indices = np.arange(start, stop)
        self.pixels = pixels[start:stop]
        self.labels = [int(t) for t in targets[start:stop]]
        self.images_file = str(self.root / images)
        self.scaling = T.get_scaling("uint8")
        self.classes = list(CLASS_NAMES)
        self.class_names = list(CLASS_NAMES)
        self.band_names = ["gray"]

    @property
    def num_bands(self) -> int:
        """One grey band."""
        return 1

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> torch.Tensor:
        """Digit ``index`` of the split as ``[1, S, S]`` in [-1, 1]."""
        x = torch.from_numpy(self.scaling.to_model(self.pixels[index].astype(np.float32)))[None]
        size = self.image_size
        if x.shape[-2:] == (size, size):
            return x.contiguous()
        if self.fit == "resize":
            return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[
                0
            ]
        top, left = (size - x.shape[-2]) // 2, (size - x.shape[-1]) // 2
        pad = (left, size - x.shape[-1] - left, top, size - x.shape[-2] - top)
        return F.pad(x, pad, value=-1.0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"MNIST index {index} out of range for {len(self)} digits")
        image = self.image(index)
        return {
            "image": image,
            "mask": torch.ones_like(image),
            "label": self.labels[index],
            "path": f"{self.images_file}#{int(self.indices[index])}",
        }

    def __repr__(self) -> str:
        return (
            f"MNISTDataset(root={str(self.root)!r}, split={self.split!r}, digits={len(self)}, "
            f"image_size={self.image_size}, fit={self.fit!r})"
        )


__all__ = [
    "CLASS_NAMES",
    "FITS",
    "IDX_DTYPES",
    "MNIST_IMAGES",
    "MNIST_LABELS",
    "SPLITS",
    "MNISTDataset",
    "load_mnist",
    "read_idx",
]
