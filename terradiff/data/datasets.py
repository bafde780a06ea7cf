"""Torch datasets over folders of images or GeoTIFF chips, with reproducible augmentation.

Every item is a dict (the contract of ``../shared/GUIDE.md``)::

    {"image": FloatTensor [C, H, W] in [-1, 1], "mask": FloatTensor [1, H, W] (1 = valid),
     "label": int (index of the class sub-folder in ``.classes``, -1 without one), "path": str}

Pixels that are nodata/NaN in any band are 0 (the middle of [-1, 1]) in ``image`` and 0 in
``mask``, so a masked loss ignores them.

Reproducibility: the crop and flips of item ``i`` at epoch ``e`` come from a generator seeded by
``(seed, e, i)`` (:func:`terradiff.data.transforms.item_generator`), so the batches of a training
run that is interrupted and resumed are exactly those of an uninterrupted one, in any worker.
Call :meth:`set_epoch` at each epoch (the trainer does), or use :meth:`get`.

The folder is scanned once at construction, in sorted path order. Unreadable, corrupt or empty
files are skipped with one warning (count and the first few paths); a folder with nothing
readable, or with files of different band counts, is a :class:`~terradiff.errors.DataError`.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from terradiff.data import transforms as T
from terradiff.data.folders import (
    GEOTIFF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    PIL_EXTENSIONS,
    normalise_extensions,
    scan_class_folders,
)
from terradiff.data.raster import (
    EUROSAT_BANDS,
    BandNames,
    BandSelection,
    inspect_raster,
    known_band_names,
    read_raster,
    resolve_bands,
)
from terradiff.data.splits import hash_split
from terradiff.errors import DataError, DataWarning, RasterError

_PIL_BAND_NAMES: dict[str, list[str]] = {
    "L": ["gray"],
    "I": ["gray"],
    "F": ["gray"],
    "RGB": ["red", "green", "blue"],
}
_MAX_LISTED = 5

__all__ = [
    "EUROSAT_BANDS",
    "GEOTIFF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "DataWarning",
    "GeoTiffChipDataset",
    "ImageFolderDataset",
]


def _pil_mode(im: Image.Image) -> tuple[str, bool]:
    """The mode to decode ``im`` into (RGB, L, I, F) and whether it carries an alpha mask."""
    mode = im.mode
    alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
    if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return "RGB", alpha
    if mode in ("L", "LA", "1"):
        return "L", alpha
    if mode.startswith("I"):
        return "I", False
    if mode == "F":
        return "F", False
    return "RGB", alpha


def _pil_info(path: Path) -> tuple[int, list[str]]:
    """Band count and names of a JPEG/PNG from its header (no decoding)."""
    try:
        with Image.open(path) as im:
            mode, _ = _pil_mode(im)
            im.size  # noqa: B018 - the header is parsed on open; size proves it is sane
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise RasterError(f"cannot open image {path}: {err}; the file is corrupt or empty") from err
    names = _PIL_BAND_NAMES[mode]
    return len(names), list(names)


def _read_pil(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a JPEG/PNG to ``([C, H, W], valid [H, W])``; an alpha channel becomes the mask."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, alpha = _pil_mode(im)
            valid = None
            if alpha:
                valid = np.asarray(im.convert("RGBA" if mode == "RGB" else "LA"))[..., -1] > 0
            array = np.asarray(im if im.mode == mode else im.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise RasterError(
            f"cannot decode image {path}: {err}; the file is corrupt or truncated"
        ) from err
    array = array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))
    if valid is None:
        valid = np.ones(array.shape[1:], dtype=bool)
    return array, valid


#: Dataset splits: every file, or a part of a stable hash partition (``holdout_fraction``):
#: ``test`` is the lowest ``holdout_fraction`` of the hash range, ``train`` the rest; ``val`` is the
#: next ``holdout_fraction`` of the range (a part of ``train``) and ``fit`` is ``train`` without it,
#: for choosing settings on files that neither the test nor the fitted model sees.
SPLITS = ("all", "train", "test", "fit", "val")


class _FolderDataset(Dataset):
    """Shared machinery of :class:`ImageFolderDataset` and :class:`GeoTiffChipDataset`."""

    _default_band_names: BandNames | None = None

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        image_size: int | None = 64,
        bands: BandSelection | None = None,
        band_names: BandNames | str | None = "auto",
        scaling: str | T.Scaling | dict[str, Any] = "uint8",
        random_flip: bool = True,
        vertical_flip: bool = False,
        crop: str = "random",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_images: int | None = None,
        classes: Sequence[str] | None = None,
        seed: int = 0,
        cache: bool = False,
        verify: bool | None = None,
        split: str = "all",
        holdout_fraction: float = 0.1,
        include: Sequence[str] | None = None,
        crops_per_image: int = 1,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"dataset folder not found: {self.root} (resolved from {Path.cwd()}); "
                "check the path"
            )
        if crop not in T.CROP_MODES:
            raise DataError(f"unknown crop {crop!r}; choose one of {list(T.CROP_MODES)}")
        if max_images is not None and max_images < 1:
            raise DataError(f"max_images must be >= 1 or None, got {max_images}")
        if crops_per_image < 1:
            raise DataError(f"crops_per_image must be >= 1, got {crops_per_image}")
        self.crops_per_image = int(crops_per_image)
        self.include = tuple(include) if include else None
        self.image_size = image_size
        self.scaling = T.get_scaling(scaling)
        self.random_flip = bool(random_flip)
        self.vertical_flip = bool(vertical_flip)
        self.crop = crop
        self.extensions = normalise_extensions(extensions)
        self.seed = int(seed)
        self.epoch = 0
        self.cache = bool(cache)
        self._band_names_arg = band_names
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._resized: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # image, bool mask

        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        if not 0.0 < holdout_fraction < 1.0:
            raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        self.split = split
        by_class, self.classes = self._find_files(classes)
        if self.include is not None:
            by_class = {k: [p for p in files if self._included(p)] for k, files in by_class.items()}
        if split != "all":
            by_class = {
                k: [p for p in files if self._in_split(p, split, holdout_fraction)]
                for k, files in by_class.items()
            }
        candidates = self._candidate_order(by_class, max_images)
        self.skipped: list[tuple[str, str]] = []
        verify = self.cache if verify is None else verify
        kept: list[tuple[Path, int]] = []
        decoded: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        first: tuple[Path, int] | None = None
        self._file_names: list[str] | None = None
        for path, label in candidates:
            if max_images is not None and len(kept) >= max_images:
                break
            try:
                count, names = self._inspect(path)
                if verify:
                    decoded[path] = self._decode(path)
                    if decoded[path][0].shape[0] != count:
                        raise RasterError(f"{path} decodes to a different band count")
            except RasterError as err:
                self.skipped.append((str(path), str(err)))
                continue
            if first is None:
                first, self._file_names = (path, count), names
            elif count != first[1]:
                raise DataError(
                    f"files under {self.root} have different band counts: {first[0]} has "
                    f"{first[1]} bands, {path} has {count}; keep one product per folder or "
                    "split them"
                )
            kept.append((path, label))
        if self.skipped:
            listed = "; ".join(f"{p} ({why.split(';')[0]})" for p, why in self.skipped[:3])
            warnings.warn(
                f"skipped {len(self.skipped)} unreadable/corrupt/empty file(s) under {self.root}: "
                f"{listed}{' ...' if len(self.skipped) > 3 else ''}",
                DataWarning,
                stacklevel=3,
            )
        if not kept or first is None or self._file_names is None:
            reason = f"; {len(self.skipped)} unreadable file(s) skipped" if self.skipped else ""
            matching = f" matching {list(self.include)}" if self.include else ""
            raise DataError(
                f"no readable images under {self.root} with extensions {list(self.extensions)}"
                f"{matching}"
                f"{' in classes ' + str(list(self.classes)) if self.classes else ''}{reason}"
            )
        kept.sort(key=lambda item: item[0].relative_to(self.root).as_posix())
        self.files = [p for p, _ in kept]
        self.labels = [label for _, label in kept]
        self.file_band_names = list(self._file_names)
        self._indices = resolve_bands(bands, self.file_band_names, first[0])
        self.band_names = [self.file_band_names[i - 1] for i in self._indices]
        if self.scaling.num_bands not in (None, len(self._indices)):
            raise DataError(
                f"scaling {self.scaling.name!r} has min/max for {self.scaling.num_bands} bands but "
                f"{len(self._indices)} bands are selected ({self.band_names})"
            )
        if self.cache:
            for i, path in enumerate(self.files):
                if path in decoded:
                    array, valid = decoded.pop(path)
                    self._cache[i] = (self._select(path, array), valid)
                else:
                    self._cache[i] = self._load_uncached(i)
        decoded.clear()

    # ---- scanning -------------------------------------------------------------------------

    def _find_files(
        self, classes: Sequence[str] | None
    ) -> tuple[dict[str | None, list[Path]], list[str]]:
        """Files grouped by class sub-folder (None: files directly under ``root``), sorted
        (:func:`terradiff.data.folders.scan_class_folders`)."""
        return scan_class_folders(self.root, self.extensions, classes)

    def _included(self, path: Path) -> bool:
        """Whether ``path`` (its name or its path under ``root``) matches an ``include`` glob."""
        rel = path.relative_to(self.root).as_posix()
        return any(fnmatch.fnmatch(path.name, g) or fnmatch.fnmatch(rel, g) for g in self.include)

    def _in_split(self, path: Path, split: str, fraction: float) -> bool:
        """Whether ``path`` belongs to ``split``: a stable hash of its path under ``root``.

        The test split is the files whose SHA-256 of the relative path falls in the lowest
        ``fraction`` of the hash range: independent of the file count, the order and the machine,
        so adding files never moves an existing file between splits. ``val`` is the next
        ``fraction`` of the range, ``fit`` the remainder; ``train`` is ``fit`` and ``val`` together
        (so adding the validation parts moved no file out of ``train`` or ``test``).
        """
        rel = path.relative_to(self.root).as_posix()
        part = hash_split(rel, (("test", fraction), ("val", fraction)), rest="fit")
        return part != "test" if split == "train" else part == split

    def _candidate_order(
        self, by_class: dict[str | None, list[Path]], max_images: int | None
    ) -> list[tuple[Path, int]]:
        """All files with labels; with ``max_images``, round-robin over classes (balanced)."""
        label_of = {c: i for i, c in enumerate(self.classes)}
        groups = [
            [(p, label_of[k] if k is not None else -1) for p in by_class[k]]
            for k in sorted(by_class, key=lambda k: (k is not None, k or ""))
        ]
        if max_images is None:
            return [item for group in groups for item in group]
        order: list[tuple[Path, int]] = []
        longest = max((len(g) for g in groups), default=0)
        for j in range(longest):
            order.extend(g[j] for g in groups if j < len(g))
        return order

    def _uses_pil(self, path: Path) -> bool:
        return path.suffix.lower() in PIL_EXTENSIONS

    def _names_for(self, path: Path, count: int, names: list[str]) -> list[str]:
        arg = self._band_names_arg
        if arg == "auto":
            arg = self._auto_band_names(count, names)
        if arg is None:
            return names
        return known_band_names(arg, count, path)

    def _auto_band_names(self, count: int, names: list[str]) -> BandNames | None:
        return None

    def _inspect(self, path: Path) -> tuple[int, list[str]]:
        if self._uses_pil(path):
            count, names = _pil_info(path)
        else:
            info = inspect_raster(path)
            count, names = info.count, info.band_names
            if info.height == 0 or info.width == 0:
                raise RasterError(f"raster {path} has no pixels")
        return count, self._names_for(path, count, names)

    def _decode(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """All bands of a file with its validity mask."""
        if self._uses_pil(path):
            return _read_pil(path)
        data = read_raster(path)
        return data.array, data.valid_mask

    # ---- reading --------------------------------------------------------------------------

    def _load_uncached(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.files[index]
        try:
            array, valid = self._decode(path)
        except RasterError as err:
            raise DataError(
                f"{err} (it was readable when the dataset was built, so it changed since: replace "
                "or remove it; data.cache: true reads and checks every file once up front)"
            ) from err
        return self._select(path, array), valid

    def _select(self, path: Path, array: np.ndarray) -> np.ndarray:
        """The selected bands of a decoded file."""
        if array.shape[0] != len(self.file_band_names):
            raise DataError(
                f"{path} has {array.shape[0]} bands, the dataset's files have "
                f"{len(self.file_band_names)}"
            )
        if self._indices == list(range(1, array.shape[0] + 1)):
            return array
        return array[[i - 1 for i in self._indices]]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The selected bands of file ``index`` in physical units and its valid mask, unaugmented.

        Returns:
            ``(array [C, H, W] in the file's dtype, valid [H, W] bool)``.
        """
        if index < 0:
            index += len(self.files)
        if not 0 <= index < len(self.files):
            raise IndexError(f"file index {index} out of range for {len(self.files)} files")
        if index in self._cache:
            return self._cache[index]
        return self._load_uncached(index)

    def iter_raw(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(array, valid)`` of every item in physical units, for
        :func:`terradiff.data.transforms.compute_band_stats`."""
        for i in range(len(self.files)):
            yield self.load(i)

    # ---- torch Dataset --------------------------------------------------------------------

    @property
    def num_bands(self) -> int:
        """Bands of each image (after selection)."""
        return len(self.band_names)

    def __len__(self) -> int:
        return len(self.files) * self.crops_per_image

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation of ``epoch`` for the following items."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``index`` as augmented at ``epoch`` (default: the current epoch).

        A pure function of ``(seed, epoch, index)`` and the file's content. Item ``index`` is a
        crop of file ``index // crops_per_image``. A crop is cut from the raw array before any
        conversion, so large scenes cost only their crop.
        """
        if index < 0:
            index += len(self)
        epoch = self.epoch if epoch is None else int(epoch)
        file_index = index // self.crops_per_image
        generator = T.item_generator(self.seed, epoch, index)
        if self.crop == "resize" and self.image_size is not None:
            image, mask = self.resized(file_index)
            if self.random_flip:  # spatial_augment's flips; the values commute with them
                flipped = T.random_flip(
                    torch.cat([image, mask]), generator, vertical=self.vertical_flip
                )
                image, mask = flipped[:-1], flipped[-1:]
            else:  # the cached image stays the dataset's (the mask is made per call)
                image = image.clone()
            return self._item(image, mask, file_index)
        array, valid = self.load(file_index)
        crop_mode = self.crop
        if crop_mode in ("random", "center") and self.image_size is not None:
            th, tw = T.size2(self.image_size)
            height, width = array.shape[-2:]
            if height >= th and width >= tw:
                if crop_mode == "random":
                    top, left = T.random_crop_params(height, width, (th, tw), generator)
                else:
                    top, left = (height - th) // 2, (width - tw) // 2
                array = array[:, top : top + th, left : left + tw]
                valid = valid[top : top + th, left : left + tw]
                crop_mode = "none"
        stacked = T.spatial_augment(
            self._model_stack(array, valid),
            self.image_size,
            generator,
            crop_mode=crop_mode,
            horizontal_flip=self.random_flip,
            vertical_flip=self.random_flip and self.vertical_flip,
        )
        return self._item(*self._split_stack(stacked), file_index)

    def resized(self, file_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """File ``file_index`` as a ``crop="resize"`` item before its flips.

        ``(image [C, h, w] float32 in [-1, 1], 0 where invalid; mask [1, h, w] float32)``. The
        resize is most of an item's cost and draws no random number, so a caching dataset
        keeps the result: its items are then its flips alone (the same values bit for bit:
        the element-wise steps after the resize commute with flips).
        """
        if file_index in self._resized:
            image, valid = self._resized[file_index]
            return image, valid.to(torch.float32)
        stacked = T.resize(self._model_stack(*self.load(file_index)), self.image_size)
        image, mask = self._split_stack(stacked)
        if self.cache:  # the mask (0 or 1) kept as bool: a quarter of the memory
            self._resized[file_index] = (image, mask > 0.5)
        return image, mask

    def forget_resized(self) -> None:
        """Drop the resized items kept so far (a device stack holds them instead); they are
        made again when asked for."""
        self._resized.clear()

    def _model_stack(self, array: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        """``[C + 1, H, W]``: the bands in model units (0 where invalid or not finite) over the
        validity mask, so that crops, resizes and flips treat both alike."""
        image = torch.from_numpy(self.scaling.to_model(array))
        mask = torch.from_numpy(valid)
        image = torch.where(mask[None] & torch.isfinite(image), image, 0.0)
        return torch.cat([image, mask[None].to(image.dtype)])

    @staticmethod
    def _split_stack(stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, mask)`` of a transformed :meth:`_model_stack`: a pixel stays valid where its
        mask is still (almost) 1 after resampling; the image clamped to [-1, 1], 0 elsewhere."""
        mask = (stacked[-1:] > 1.0 - 1e-4).to(torch.float32)
        return stacked[:-1].clamp(-1.0, 1.0).to(torch.float32) * mask, mask

    def _item(self, image: torch.Tensor, mask: torch.Tensor, file_index: int) -> dict[str, Any]:
        """The item dict of file ``file_index`` (see the module docstring)."""
        return {
            "image": image.contiguous(),
            "mask": mask.contiguous(),
            "label": int(self.labels[file_index]),
            "path": str(self.files[file_index]),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, "
            f"classes={len(self.classes)}, bands={self.band_names}, "
            f"scaling={self.scaling.name!r}, image_size={self.image_size}, crop={self.crop!r})"
        )


class ImageFolderDataset(_FolderDataset):
    """Images (JPEG/PNG/TIF) in a folder, optionally in class sub-folders (``root/<class>/*``).

    JPEG/PNG are decoded with Pillow (an alpha channel becomes the mask); other files with
    rasterio. Items are dicts (see the module docstring).

    Args:
        root: the folder; files directly in it get label -1, files in ``root/<class>/...`` the
            index of ``<class>`` in :attr:`classes` (sorted).
        image_size: output side in pixels (None keeps the file's size; needs ``crop="none"`` or
            equal-size files for batching).
        bands: 1-based indices or names of the bands to keep (``["red", "green", "blue"]`` for
            RGB JPEGs); None keeps all.
        band_names: names of the files' bands in file order (a list or a product key such as
            ``"eurosat"``); ``"auto"``/None: the file's descriptions/colour names.
        scaling: a preset name (``"uint8"``, ``"sentinel2"``, ``"sen12ms"``, ``"none"``), a
            :class:`~terradiff.data.transforms.Scaling` or its dict.
        random_flip: random left-right flips (and top-bottom with ``vertical_flip``).
        vertical_flip: also flip top-bottom (overhead imagery has no "up").
        crop: ``"random"``, ``"center"``, ``"resize"`` (whole image to ``image_size``) or
            ``"none"``.
        extensions: file suffixes to include (case-insensitive).
        max_images: keep at most this many readable files, taken round-robin over the classes
            (balanced, deterministic), then sorted.
        classes: keep only these class sub-folders.
        seed: augmentation seed (item ``i`` at epoch ``e`` depends only on seed, e, i).
        cache: decode every image once at construction and keep it in memory (native dtype:
            the 4,500 AID JPEGs take about 300 MB); with ``crop="resize"`` also each file's
            resized item once drawn (float32 at ``image_size``: 240 MB more for AID at 64x64,
            per DataLoader worker).
        verify: decode every file at construction so corrupt ones are skipped up front
            (default: same as ``cache``; otherwise only headers are checked).
        split: ``"all"`` files, or the ``"train"`` / ``"test"`` part of a stable partition by
            a hash of each file's relative path (the same on every machine); ``"val"`` and
            ``"fit"`` cut ``"train"`` in two (:data:`SPLITS`).
        holdout_fraction: share of the files in the ``"test"`` part (and in ``"val"``).

    Raises:
        DataError: missing folder, unknown classes, no readable file, mixed band counts.
        RasterError: a band selection that does not fit the files.
    """


class GeoTiffChipDataset(_FolderDataset):
    """Multispectral GeoTIFF chips (e.g. EuroSAT: ``root/<class>/*.tif``, 13 bands, 64x64).

    Same items and options as :class:`ImageFolderDataset`, with GeoTIFF defaults: ``scaling=
    "sentinel2"`` (DN / 10,000, clipped) and ``extensions=(".tif", ".tiff")``.

    Band names (``band_names="auto"``): the files' band descriptions when they have them;
    otherwise, for 13-band files, :data:`EUROSAT_BANDS` (EuroSAT's order, B8A last, as torchgeo
    documents it), so ``bands=["B04", "B03", "B02"]`` selects true colour. Pass ``band_names``
    explicitly (e.g. ``"sentinel2_l1c"`` for ESA order) for other 13-band products.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        scaling: str | T.Scaling | dict[str, Any] = "sentinel2",
        extensions: Sequence[str] = GEOTIFF_EXTENSIONS,
        **options: Any,
    ) -> None:
        super().__init__(root, scaling=scaling, extensions=extensions, **options)

    def _auto_band_names(self, count: int, names: list[str]) -> BandNames | None:
        described = not all(n == f"band_{i}" for i, n in enumerate(names, 1))
        if not described and count == len(EUROSAT_BANDS):
            return list(EUROSAT_BANDS)
        return None
