"""Paired rasters for image-to-image tasks: an image, a target on the same grid, optional mask.

The carbon task (and any "estimate a quantity per pixel" task) trains on pairs such as
``image.tif`` (e.g. a Sentinel-2 composite) + ``target.tif`` (e.g. carbon density) +
``mask.tif`` (e.g. forest 0/255). :class:`PairedRasterDataset` checks that the three share one
grid (size, transform, CRS) and yields aligned random crops::

    {"image": [C, h, w] in [-1, 1], "target": [T, h, w] in [-1, 1],
     "mask": [1, h, w] (1 = inside the mask, e.g. forest), "valid": [1, h, w] (image and
     target both hold data), "path": str}

The image and the target each have their own :class:`~terradiff.data.transforms.Scaling` (e.g.
reflectance unchanged, carbon 0-200 Mg C/ha -> [0, 1]). Crops and flips are a pure function of
``(seed, epoch, index)``, as in :mod:`terradiff.data.datasets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.data.raster import inspect_raster, read_raster, resolve_bands
from terradiff.data.splits import hash_split
from terradiff.errors import DataError


@dataclass(frozen=True)
class RasterPair:
    """The files of one training pair (``mask`` optional)."""

    image: Path
    target: Path
    mask: Path | None = None

    @property
    def name(self) -> str:
        """The pair's folder name (the chip id of a prepared chip)."""
        return self.image.parent.name


def find_pairs(
    root: str | Path,
    image: str = "image.tif",
    target: str = "target.tif",
    mask: str | None = "mask.tif",
) -> list[RasterPair]:
    """One pair per sub-folder of ``root`` holding ``image`` and ``target`` (and ``mask``).

    Raises:
        DataError: no sub-folder has both files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"paired-raster folder not found: {root}")
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / image).is_file() and (folder / target).is_file():
            mask_path = folder / mask if mask and (folder / mask).is_file() else None
            pairs.append(RasterPair(folder / image, folder / target, mask_path))
    if not pairs:
        raise DataError(
            f"no sub-folder of {root} holds both {image} and {target}; prepare chips with "
            "`terradiff carbon-prepare` or lay out your rasters as <root>/<name>/{image,target}.tif"
        )
    return pairs


def split_of(name: str, val_fraction: float, test_fraction: float) -> str:
    """``"train"``, ``"val"`` or ``"test"`` from a stable hash of a pair's name.

    The lowest ``test_fraction`` of the hash range is ``"test"``, the next ``val_fraction``
    ``"val"`` (:func:`terradiff.data.splits.hash_split`).
    """
    return hash_split(name, (("test", test_fraction), ("val", val_fraction)), rest="train")


def check_same_grid(a: Path, b: Path) -> None:
    """Raise a DataError naming both files when their grids differ."""
    ia, ib = inspect_raster(a), inspect_raster(b)
    problems = []
    if (ia.height, ia.width) != (ib.height, ib.width):
        problems.append(f"size {ia.width}x{ia.height} vs {ib.width}x{ib.height}")
    if ia.crs != ib.crs:
        problems.append(f"CRS {ia.crs} vs {ib.crs}")
    if not ia.transform.almost_equals(ib.transform, precision=1e-6):
        problems.append(f"transform {tuple(ia.transform)[:6]} vs {tuple(ib.transform)[:6]}")
    if problems:
        raise DataError(
            f"{a} and {b} are not on the same grid ({'; '.join(problems)}); resample one onto "
            "the other first (e.g. gdalwarp -te/-tr/-t_srs, or rasterio.warp.reproject)"
        )


class PairedRasterDataset(Dataset):
    """Aligned crops of image/target(/mask) rasters (see the module docstring).

    Args:
        pairs: the files (see :func:`find_pairs`).
        image_size: crop size (None: whole rasters, which must then share one size).
        image_bands: bands of the image to use (1-based indices or names); default all.
        image_scaling, target_scaling: physical -> [0, 1] (a preset name or a mapping).
        crop: ``"random"`` or ``"center"``.
        crops_per_image: items per pair (random crops of larger rasters).
        random_flip: random horizontal and vertical flips (training).
        seed: seeds the crops and flips.
    """

    def __init__(
        self,
        pairs: Sequence[RasterPair],
        *,
        image_size: int | None = 64,
        image_bands: Sequence[int | str] | None = None,
        image_scaling: str | dict[str, Any] = "none",
        target_scaling: str | dict[str, Any] = "none",
        crop: str = "random",
        crops_per_image: int = 1,
        random_flip: bool = True,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise DataError("PairedRasterDataset needs at least one pair")
        if crop not in ("random", "center"):
            raise DataError(f"crop must be 'random' or 'center', got {crop!r}")
        if crops_per_image < 1:
            raise DataError(f"crops_per_image must be >= 1, got {crops_per_image}")
        self.pairs = list(pairs)
        self.image_size = image_size
        self.crop = crop
        self.crops_per_image = int(crops_per_image)
        self.random_flip = bool(random_flip)
        self.seed = int(seed)
        self.epoch = 0
        self.image_scaling = T.get_scaling(image_scaling)
        self.target_scaling = T.get_scaling(target_scaling)
        first = inspect_raster(self.pairs[0].image)
        self.file_band_names = list(first.band_names)
        self._indices = resolve_bands(image_bands, self.file_band_names, self.pairs[0].image)
        self.band_names = [self.file_band_names[i - 1] for i in self._indices]
        for pair in self.pairs:
            info = inspect_raster(pair.image)
            if info.count != first.count:
                raise DataError(
                    f"{pair.image} has {info.count} bands, {self.pairs[0].image} has "
                    f"{first.count}; every image must be the same product"
                )
            check_same_grid(pair.image, pair.target)
            if pair.mask is not None:
                check_same_grid(pair.image, pair.mask)
            if image_size is not None and min(info.height, info.width) < image_size:
                raise DataError(
                    f"{pair.image} is {info.width}x{info.height}, smaller than the crop size "
                    f"{image_size}; lower data.image_size"
                )
        self._cache: dict[int, tuple[np.ndarray, ...]] = {}

    @property
    def num_bands(self) -> int:
        """Image bands (after selection)."""
        return len(self._indices)

    def __len__(self) -> int:
        return len(self.pairs) * self.crops_per_image

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation of ``epoch`` for the following items."""
        self.epoch = int(epoch)

    def load(self, pair_index: int) -> tuple[np.ndarray, ...]:
        """``(image, image_valid, target, target_valid, mask)`` of a pair, physical units."""
        if pair_index not in self._cache:
            pair = self.pairs[pair_index]
            image = read_raster(pair.image, bands=self._indices)
            target = read_raster(pair.target)
            if pair.mask is not None:
                mask = read_raster(pair.mask).array[0] > 0
            else:
                mask = np.ones(target.array.shape[1:], bool)
            self._cache[pair_index] = (
                image.array,
                image.valid_mask,
                target.array,
                target.valid_mask,
                mask,
            )
        return self._cache[pair_index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` as augmented at ``epoch`` (a crop of pair ``index // crops``)."""
        epoch = self.epoch if epoch is None else int(epoch)
        pair_index = index // self.crops_per_image
        image, image_valid, target, target_valid, mask = self.load(pair_index)
        generator = T.item_generator(self.seed, epoch, index)
        height, width = image.shape[-2:]
        if self.image_size is not None:
            size = self.image_size
            if self.crop == "random":
                top, left = T.random_crop_params(height, width, size, generator)
            else:
                top, left = (height - size) // 2, (width - size) // 2
            window = (slice(top, top + size), slice(left, left + size))
        else:
            window = (slice(None), slice(None))
        x = self.image_scaling.to_model(image[(slice(None), *window)].astype(np.float32))
        y = self.target_scaling.to_model(target[(slice(None), *window)].astype(np.float32))
        valid = image_valid[window] & target_valid[window]
        valid &= np.isfinite(x).all(0) & np.isfinite(y).all(0)
        stacked = torch.from_numpy(
            np.concatenate(
                [
                    np.nan_to_num(x),
                    np.nan_to_num(y),
                    mask[window][None].astype(np.float32),
                    valid[None].astype(np.float32),
                ]
            )
        )
        if self.random_flip:
            stacked = T.random_flip(stacked, generator, horizontal=True, vertical=True)
        c, t = x.shape[0], y.shape[0]
        valid_t = stacked[c + t + 1 :]
        return {
            "image": (stacked[:c] * valid_t).clamp(-1, 1).contiguous(),
            "target": (stacked[c : c + t] * valid_t).clamp(-1, 1).contiguous(),
            "mask": stacked[c + t : c + t + 1].contiguous(),
            "valid": valid_t.contiguous(),
            "path": self.pairs[pair_index].name,
        }
