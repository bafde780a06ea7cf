"""LEVIR-CD change-detection pairs: before/after RGB images and binary building-change labels.

LEVIR-CD (Chen & Shi 2020, "A Spatial-Temporal Attention-Based Method and a New Dataset for
Remote Sensing Image Change Detection", Remote Sensing 12(10)) is 637 pairs of 1024x1024 Google
Earth images (0.5 m) of US cities 5-14 years apart, with building changes labelled; the usual
release cuts them into 256x256 tiles named ``<split>_<image>_<row>_<col>.png`` in three folders::

    root/A/<name>.png      the before image (RGB, 8-bit)
    root/B/<name>.png      the after image
    root/label/<name>.png  the change mask (0 = no change, 255 = change)

The copy in ``../shared/data/levir-cd`` holds 11 such tiles of 10 source images (``test_2`` gives
two); the DDPM-CD change head (Bandara et al. 2022) is evaluated on the same data.

**Splits** (fixed; tiles of one source image always stay together, so no test tile borders a
training tile of the same scene):

* ``rule="upstream"`` (default): LEVIR-CD's own split, read from the name's prefix --
  ``train_*`` and ``val_*`` tiles are the training set, ``test_*`` the test set (4 and 7 tiles
  here);
* ``rule="order"``: source images sorted by name (``test_102``, ``test_121``, ...); the last
  ``ceil(test_fraction * images)`` are the test set.

**Items**::

    {"before": [3, h, w] in [-1, 1], "after": [3, h, w] in [-1, 1],
     "label": [1, h, w] float (1 = change), "name": str, "window": long [4] (top, left, h, w)}

Training items are ``crops_per_pair`` random ``crop_size`` crops per pair (the same window and
flips for the two images and the label), a pure function of ``(seed, epoch, index)``; test
items are the fixed grid of non-overlapping crops of every pair
(:func:`terradiff.data.crops.grid_windows`). ``grid=True`` cuts the training tiles into that grid
too (to score a model on the tiles it was trained on, e.g. to choose its threshold there).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.data.crops import check_fits, grid_windows, random_window
from terradiff.errors import DataError

__all__ = ["LEVIR_FOLDERS", "ChangePair", "LevirCDDataset", "find_levir_pairs", "split_pairs"]

#: The three sub-folders of a LEVIR-CD root.
LEVIR_FOLDERS: tuple[str, str, str] = ("A", "B", "label")
_RULES = ("upstream", "order")
_SPLITS = ("train", "test", "all")
_NAME = re.compile(r"^(?P<split>[a-z]+)_(?P<image>\d+)(?:_.*)?$")
_SUFFIXES = (".png", ".jpg", ".tif", ".tiff")


@dataclass(frozen=True)
class ChangePair:
    """The three files of one LEVIR-CD tile.

    Attributes:
        name: The tile's name (file stem), e.g. ``"test_2_0000_0512"``.
        before, after, label: The files in ``A``, ``B`` and ``label``.
    """

    name: str
    before: Path
    after: Path
    label: Path

    @property
    def source_image(self) -> str:
        """The source image it was cut from (``"test_2"``), or the name when it does not
        follow ``<split>_<image>_...``."""
        match = _NAME.match(self.name)
        return f"{match['split']}_{match['image']}" if match else self.name

    @property
    def upstream_split(self) -> str:
        """LEVIR-CD's split from the name's prefix (``"train"``, ``"val"``, ``"test"``)."""
        match = _NAME.match(self.name)
        return match["split"] if match else ""


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _SUFFIXES}


def find_levir_pairs(root: str | os.PathLike[str]) -> list[ChangePair]:
    """Every tile of a LEVIR-CD folder, sorted by name.

    Raises:
        DataError: A missing ``A``/``B``/``label`` folder, no image, or a file without its
            counterpart in another folder (naming the file and the missing one).
    """
    root = Path(root)
    folders = [root / name for name in LEVIR_FOLDERS]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DataError(
            f"LEVIR-CD folder {root} lacks {missing}; a LEVIR-CD root holds A/ (before), B/ "
            "(after) and label/ (change masks) with the same file names"
        )
    found = [_files(f) for f in folders]
    names = sorted(set().union(*found))
    if not names:
        raise DataError(f"no images ({', '.join(_SUFFIXES)}) in {folders[0]}")
    for name in names:
        for folder, files in zip(folders, found, strict=True):
            if name not in files:
                have = next(files_[name] for files_ in found if name in files_)
                raise DataError(
                    f"{have} has no counterpart {folder / have.name}; every tile needs the same "
                    f"name in {', '.join(LEVIR_FOLDERS)}: add the file or remove the tile"
                )
    return [ChangePair(n, found[0][n], found[1][n], found[2][n]) for n in names]


def split_pairs(
    pairs: list[ChangePair], split: str, rule: str = "upstream", test_fraction: float = 0.3
) -> list[ChangePair]:
    """The tiles of ``split`` (``"train"``, ``"test"``, ``"all"``) under ``rule`` (see the module
    docstring).

    Raises:
        DataError: An unknown split or rule, a name without the ``<split>_`` prefix under
            ``"upstream"``, or an empty split.
    """
    if split not in _SPLITS:
        raise DataError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if rule not in _RULES:
        raise DataError(f"rule must be one of {list(_RULES)}, got {rule!r}")
    if split == "all":
        return list(pairs)
    if rule == "upstream":
        unknown = [p for p in pairs if p.upstream_split not in ("train", "val", "test")]
        if unknown:
            raise DataError(
                f"{unknown[0].before}: the name does not start with train_, val_ or test_ (the "
                "LEVIR-CD split); rename it or use rule='order'"
            )
        chosen = [p for p in pairs if (p.upstream_split == "test") == (split == "test")]
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        images = sorted({p.source_image for p in pairs})
        held = set(images[len(images) - math.ceil(test_fraction * len(images)) :])
        chosen = [p for p in pairs if (p.source_image in held) == (split == "test")]
    if not chosen:
        raise DataError(
            f"the {split} split of rule={rule!r} holds no tile of {len(pairs)}; use the other "
            "rule or another test_fraction"
        )
    return chosen


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DataError(
            f"{path} is not an 8-bit RGB image (shape {array.shape}, {array.dtype}); LEVIR-CD "
            "images are 3-band 8-bit"
        )
    return array.transpose(2, 0, 1)


def _read_label(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim == 3:
        array = array.max(axis=2)
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise DataError(
            f"{path} is not a binary change mask: values {values[:6].tolist()}; labels must be "
            "0 (no change) and 255 (or 1) for change"
        )
    return array > 0


class LevirCDDataset(Dataset):
    """Crops of LEVIR-CD tiles (see the module docstring).

    Args:
        root: The LEVIR-CD folder (``A``, ``B``, ``label``).
        split: ``"train"``, ``"test"`` or ``"all"`` (train items: random crops; others: grid).
        grid: Items are the fixed grid of ``crop_size`` windows (default: every split but
            ``"train"``); False gives random crops.
        rule: ``"upstream"`` or ``"order"``.
        test_fraction: The held-out share of source images under ``"order"``.
        crop_size: Crop side in pixels.
        crops_per_pair: Training items per tile.
        random_flip: Random flips of training items.
        seed: Seeds the training crops and flips.

    Raises:
        DataError: See :func:`find_levir_pairs` and :func:`split_pairs`; images and label of a
            tile of different sizes; a crop larger than a tile.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str = "train",
        rule: str = "upstream",
        test_fraction: float = 0.3,
        crop_size: int = 64,
        crops_per_pair: int = 8,
        random_flip: bool = True,
        seed: int = 0,
        grid: bool | None = None,
    ) -> None:
        if crops_per_pair < 1:
            raise DataError(f"crops_per_pair must be >= 1, got {crops_per_pair}")
        self.root = Path(root)
        self.split = split
        self.pairs = split_pairs(find_levir_pairs(root), split, rule, test_fraction)
        self.crop_size = int(crop_size)
        self.crops_per_pair = int(crops_per_pair)
        self.grid = split != "train" if grid is None else bool(grid)
        self.random_flip = bool(random_flip) and not self.grid
        self.seed = int(seed)
        self.epoch = 0
        self._arrays = [self._read(p) for p in self.pairs]
        self._windows: list[tuple[int, int, int]] = []
        for k, (before, _, _) in enumerate(self._arrays):
            height, width = before.shape[1:]
            check_fits(height, width, 0, self.crop_size, f"{self.pairs[k].before}")
            if self.grid:
                self._windows += [(k, t, c) for t, c in grid_windows(height, 0, width, crop_size)]

    def _read(self, pair: ChangePair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        before, after, label = (
            _read_rgb(pair.before),
            _read_rgb(pair.after),
            _read_label(pair.label),
        )
        if before.shape != after.shape or before.shape[1:] != label.shape:
            raise DataError(
                f"tile {pair.name}: {pair.before} is {before.shape[1:]}, {pair.after} "
                f"{after.shape[1:]} and {pair.label} {label.shape}; the three must be one size"
            )
        return before, after, label

    @property
    def change_fraction(self) -> float:
        """The share of changed pixels over the split's tiles."""
        return float(np.mean([label.mean() for _, _, label in self._arrays]))

    def __len__(self) -> int:
        if not self.grid:
            return len(self.pairs) * self.crops_per_pair
        return len(self._windows)

    def set_epoch(self, epoch: int) -> None:
        """Use the crops and flips of ``epoch`` for the following items."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` (as cropped and flipped at ``epoch`` for random crops)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        epoch = self.epoch if epoch is None else int(epoch)
        size = self.crop_size
        generator = T.item_generator(self.seed, epoch, index)
        if not self.grid:
            k = index // self.crops_per_pair
            height, width = self._arrays[k][0].shape[1:]
            top, left = random_window(height, 0, width, size, generator)
        else:
            k, top, left = self._windows[index]
        before, after, label = self._arrays[k]
        rows, cols = slice(top, top + size), slice(left, left + size)
        stacked = np.concatenate(
            [
                T.to_model(before[:, rows, cols].astype(np.float32) / 255.0),
                T.to_model(after[:, rows, cols].astype(np.float32) / 255.0),
                label[None, rows, cols].astype(np.float32),
            ]
        )
        tensor = torch.from_numpy(stacked)
        if self.random_flip:
            tensor = T.random_flip(tensor, generator, horizontal=True, vertical=True)
        return {
            "before": tensor[:3].contiguous(),
            "after": tensor[3:6].contiguous(),
            "label": tensor[6:].contiguous(),
            "name": self.pairs[k].name,
            "window": torch.tensor([top, left, size, size]),
        }

    def __repr__(self) -> str:
        return (
            f"LevirCDDataset({str(self.root)!r}, split={self.split!r}, tiles={len(self.pairs)}, "
            f"items={len(self)}, crop={self.crop_size})"
        )
