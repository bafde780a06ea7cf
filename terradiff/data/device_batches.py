"""Training batches cut on the device from decoded images held there (issue 16, item 4).

Why: the CPU path (:meth:`~terradiff.data.datasets.ImageFolderDataset.get` per item, stacked by
a DataLoader) crops, scales and flips every sample in Python, so a GPU finishes its step long
before the next batch is ready. :class:`DeviceBatches` keeps every decoded file of an
:class:`~terradiff.data.datasets.ImageFolderDataset` or
:class:`~terradiff.data.datasets.GeoTiffChipDataset` as one tensor stack in its native dtype
(uint8 for JPEG/PNG, (u)int16 for rasters): in GPU memory when it takes at most
``memory_share`` of the free memory (:func:`torch.cuda.mem_get_info`), in pinned host memory
otherwise (batches then travel by non-blocking copies). A batch is a handful of batched ops: one
advanced-indexing gather cuts every crop with its flips, then the dataset's scaling to [-1, 1]
and the validity mask, as the CPU path computes them.

Randomness: the crop corners and flips of step ``s`` on process ``r`` are drawn from a CPU
generator seeded by ``(seed, s, r)`` (:func:`augment_generator`), so a resumed run cuts the same
batches as an uninterrupted one, and every device sees the same draws (CPU tests exercise the
stream a GPU run uses). They are not the CPU path's per-item numbers, but follow its
distribution: corners uniform over the valid positions, each flip with probability 1/2.

Values: for a given crop and flip a batch equals the CPU path's items bit for bit (the same float
operations in the same order; element-wise operations commute with crops and flips), except a
gamma (``sen12ms``), where NumPy's and torch's ``pow`` may differ in the last bit.

``crop: resize`` of files of another size than ``image_size``: the resize draws no random
number, so each file is resized once on the CPU by the dataset's own code
(:meth:`~terradiff.data.datasets.ImageFolderDataset.resized`) and the stack holds the float32
results (4 bytes per value instead of the file's 1 or 2, at the output size); a batch only
gathers and flips them.

No host synchronisation per step: indices and draws are made on the CPU, copied to the device
without blocking, and everything else is queued on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from terradiff.batching import StepBatchSampler
from terradiff.data import transforms as T
from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DEVICE_BATCH_SETTINGS",
    "Augmentation",
    "DeviceBatchLoader",
    "DeviceBatches",
    "augment_generator",
    "device_batch_problem",
    "resolve_device_batches",
]

#: The values of ``data.device_batches``.
DEVICE_BATCH_SETTINGS: tuple[str, ...] = ("auto", "on", "off")
#: The dataset classes served (their ``get`` is the CPU path reproduced here).
SUPPORTED_DATASETS: tuple[type, ...] = (ImageFolderDataset, GeoTiffChipDataset)
_AUGMENT_TAG = 0x6175_676D  # "augm": keeps these draws apart from the step's noise stream
_CHUNK_FILES = 256  # files copied to the device per transfer while the stack is built


def augment_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """A CPU generator whose state is a pure function of ``(seed, step, rank)``.

    Mixed with NumPy's ``SeedSequence`` and a tag, so the stream is unrelated to the step's
    noise and dropout seeds (:func:`terradiff.batching.step_seed`) and to nearby steps.
    """
    entropy = [int(seed) % 2**63, int(step) % 2**63, int(rank) % 2**63, _AUGMENT_TAG]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


@dataclass(frozen=True)
class Augmentation:
    """The crop corners and flips of one batch: CPU tensors of ``B`` values each.

    Attributes:
        top: first row of each crop (int64).
        left: first column of each crop (int64).
        hflip: mirror left-right (bool).
        vflip: mirror top-bottom (bool).
    """

    top: torch.Tensor
    left: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor


def _file_shapes(dataset: Any) -> set[tuple[int, int]] | None:
    """The ``(H, W)`` of the dataset's cached files; None without a full cache."""
    cache = getattr(dataset, "_cache", {})
    if len(cache) != len(dataset.files):
        return None
    return {tuple(array.shape[-2:]) for array, _ in cache.values()}


def _shape_problem(dataset: Any, shapes: set[tuple[int, int]]) -> str | None:
    """Why files of these shapes cannot be cut on the device (None when they can)."""
    if dataset.crop == "resize":  # resized once per file (DeviceBatches.resizes): any sizes
        return None
    if len(shapes) != 1:
        return f"its files have {len(shapes)} different sizes, e.g. {sorted(shapes)[:2]}"
    (height, width), (th, tw) = next(iter(shapes)), T.size2(dataset.image_size)
    if height < th or width < tw:
        return f"its {height}x{width} files are smaller than data.image_size {th}x{tw}"
    return None


def device_batch_problem(dataset: Dataset) -> str | None:
    """Why :class:`DeviceBatches` cannot serve ``dataset``; None when it can.

    Served: an :class:`ImageFolderDataset` or :class:`GeoTiffChipDataset` (not wrapped, e.g. by
    a condition) with ``crop`` ``random`` or ``center``, whose files share one size at least
    ``image_size``, or with ``crop`` ``resize`` (files of any size). The sizes are checked here
    when the dataset caches its files, else when :class:`DeviceBatches` reads them.
    """
    if type(dataset) not in SUPPORTED_DATASETS:
        return (
            f"it serves data.kind folder or geotiff_chips without a condition section, and "
            f"this task's training dataset is a {type(dataset).__name__}"
        )
    if dataset.image_size is None or dataset.crop not in ("random", "center", "resize"):
        return f"data.crop {dataset.crop!r} without an image size is not a crop"
    shapes = _file_shapes(dataset)
    return None if shapes is None else _shape_problem(dataset, shapes)


def resolve_device_batches(setting: str, dataset: Dataset, device: torch.device | str) -> bool:
    """``data.device_batches`` as a decision for ``dataset`` on ``device``.

    ``off``: never (the DataLoader path, unchanged). ``auto``: with CUDA, for a dataset that
    caches its decoded files and that :func:`device_batch_problem` accepts. ``on``: always (on
    any device; an uncached dataset's files are decoded once into the stack).

    Raises:
        ConfigError: ``on`` for a dataset that cannot be served (the message says why and what
            to set instead).
        ValueError: a setting other than ``auto``, ``on``, ``off``.
    """
    if setting not in DEVICE_BATCH_SETTINGS:
        raise ValueError(f"device_batches must be 'auto', 'on' or 'off', got {setting!r}")
    if setting == "off":
        return False
    problem = device_batch_problem(dataset)
    if setting == "auto":
        cached = bool(getattr(dataset, "cache", False))
        return torch.device(device).type == "cuda" and cached and problem is None
    if problem is not None:
        raise ConfigError(
            f"data.device_batches=on cannot cut this dataset's batches on the device: {problem}; "
            "set data.device_batches=auto (used where it can be) or off (the per-item "
            "DataLoader path)"
        )
    return True


def device_batches_for(
    data: Any, dataset: Dataset, device: torch.device | str
) -> DeviceBatches | None:
    """The :class:`DeviceBatches` of ``data.device_batches`` (a ``DataConfig``) for ``dataset``
    on ``device``, or None for the per-item DataLoader path.

    Raises:
        ConfigError: ``on`` for a dataset it cannot serve (see :func:`resolve_device_batches`).
    """
    if not resolve_device_batches(data.device_batches, dataset, device):
        return None
    return DeviceBatches(dataset, torch.device(device), memory_share=data.device_cache_share)


def _storage_view(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor every device can index: uint16 as its int16 bits, uint32 as int64."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16))
    if array.dtype == np.uint32:
        return torch.from_numpy(array.astype(np.int64))
    if array.dtype == np.bool_:
        return torch.from_numpy(array.astype(np.uint8))
    return torch.from_numpy(array)


def _mask_of(image: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The float32 ``[B, 1, h, w]`` mask of a batch: ``valid``, or all ones without one."""
    if valid is None:
        return torch.ones((image.shape[0], 1, *image.shape[-2:]), device=image.device)
    return valid[:, None].to(torch.float32)


class DeviceBatches:
    """The decoded files of a dataset on a device, and the training batches cut from them.

    Args:
        dataset: an :class:`ImageFolderDataset` or :class:`GeoTiffChipDataset` that
            :func:`device_batch_problem` accepts (its crop size, crop mode, flips, scaling,
            seed and ``crops_per_image`` are used).
        device: where batches are returned (and computed).
        memory_share: on CUDA, the stack goes to GPU memory when it takes at most this share of
            the free memory, else to pinned host memory.

    Raises:
        ConfigError: the dataset cannot be served (:func:`device_batch_problem`), also found
            while reading an uncached dataset's files.
    """

    def __init__(
        self, dataset: Dataset, device: torch.device | str, *, memory_share: float = 0.5
    ) -> None:
        problem = device_batch_problem(dataset)
        if problem is not None:
            raise ConfigError(f"data.device_batches cannot serve this dataset: {problem}")
        self.dataset: Any = dataset
        self.device = torch.device(device)
        self.seed = int(dataset.seed)
        self.crop = dataset.crop
        self.size = T.size2(dataset.image_size)
        self.crops_per_image = int(dataset.crops_per_image)
        self.horizontal_flip = bool(dataset.random_flip)
        self.vertical_flip = bool(dataset.random_flip and dataset.vertical_flip)
        self.scaling: T.Scaling = dataset.scaling
        self._build(memory_share)
        self._channels = torch.arange(self._images.shape[1], device=self._images.device)
        self._rows = torch.arange(self.size[0], device=self._images.device)
        self._cols = torch.arange(self.size[1], device=self._images.device)
        self._labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
        self._paths = [str(p) for p in dataset.files]
        self._low = self._span = None
        if self.scaling.mins is not None and self.scaling.maxs is not None:
            low, high = (
                torch.tensor(v, dtype=self.compute_dtype, device=self.device).reshape(-1, 1, 1)
                for v in (self.scaling.mins, self.scaling.maxs)
            )
            self._low, self._span = low, high - low

    # ---- the stack ---------------------------------------------------------------------------

    def resizes(self) -> bool:
        """Whether the stack holds each file resized to ``image_size`` (``crop: resize`` of
        files of another size; the sizes of an uncached dataset's first file decide)."""
        if self.crop != "resize":
            return False
        shapes = _file_shapes(self.dataset)
        if shapes is None:
            shapes = {tuple(self.dataset.load(0)[0].shape[-2:])}
        return shapes != {self.size}

    def _read(self, index: int) -> tuple[Any, np.ndarray]:
        """File ``index`` as the stack keeps it: ``(array or tensor, valid [h, w] bool)``."""
        if self._resized:
            image, mask = self.dataset.resized(index)
            return image, mask[0].numpy() > 0.5
        return self.dataset.load(index)

    def _build(self, memory_share: float) -> None:
        """Read every file once and copy it into one stack (and a mask stack if needed)."""
        files = len(self.dataset.files)
        self._resized = self.resizes()
        first, _ = self._read(0)
        if self._resized:  # float32 values in [-1, 1], 0 where invalid: only gathered
            self.native_dtype: Any = first.dtype
            self._unsigned16 = self._float_input = False
            self.compute_dtype = torch.float32
        else:
            self.native_dtype = first.dtype
            self._unsigned16 = first.dtype == np.uint16
            self._float_input = np.issubdtype(first.dtype, np.floating)
            self.compute_dtype = torch.float64 if first.dtype == np.float64 else torch.float32
        self.file_size: tuple[int, int] = tuple(first.shape[-2:])  # type: ignore[assignment]
        problem = None if self._resized else _shape_problem(self.dataset, {self.file_size})
        if problem is not None:  # an uncached dataset's sizes are known only now
            raise ConfigError(f"data.device_batches cannot serve this dataset: {problem}")
        sample = first if self._resized else _storage_view(first)
        shape = (files, *sample.shape)
        cached = _file_shapes(self.dataset) is not None
        needs_mask = cached and any(not v.all() for _, v in self.dataset._cache.values())
        nbytes = sample.numel() * sample.element_size() * files
        nbytes += files * shape[-2] * shape[-1] if needs_mask else 0
        storage, pinned = self._placement(nbytes, memory_share)
        self.storage_device, self.pinned = storage, pinned
        self._images = self._empty(shape, sample.dtype)
        self._valid: torch.Tensor | None = None
        for start in range(0, files, _CHUNK_FILES):
            stop = min(files, start + _CHUNK_FILES)
            arrays, valids = [], []
            for i in range(start, stop):
                array, valid = self._read(i)
                if tuple(array.shape[-2:]) != self.file_size or array.dtype != first.dtype:
                    raise ConfigError(
                        "data.device_batches cannot serve this dataset: "
                        f"{self.dataset.files[i]} is {array.shape[-2]}x{array.shape[-1]} "
                        f"{array.dtype}, {self.dataset.files[0]} {shape[-2]}x{shape[-1]} "
                        f"{first.dtype}; set data.device_batches=off, or give the files one size"
                    )
                arrays.append(array if self._resized else _storage_view(array))
                valids.append(valid)
            self._images[start:stop].copy_(torch.stack(arrays), non_blocking=False)
            if self._valid is None and not all(v.all() for v in valids):
                self._valid = self._empty((files, *shape[-2:]), torch.bool)
                self._valid.fill_(True)
            if self._valid is not None:
                chunk = torch.from_numpy(np.stack([np.asarray(v, dtype=bool) for v in valids]))
                self._valid[start:stop].copy_(chunk)
        if self._resized:  # the stack holds them: no second copy in host memory
            self.dataset.forget_resized()
        where = "pinned host memory" if pinned else str(storage)
        log.info(
            "device batches: %d files of %s %s in %s (%.1f MB)",
            files,
            tuple(shape[1:]),
            self.native_dtype,
            where,
            nbytes / 1e6,
        )

    def _placement(self, nbytes: int, memory_share: float) -> tuple[torch.device, bool]:
        """Where the stack lives: ``(device, pinned host memory)``."""
        if self.device.type != "cuda":
            return self.device, False
        free, _ = torch.cuda.mem_get_info(self.device)
        if nbytes <= memory_share * free:
            return self.device, False
        log.info(
            "device batches: %.1f GB of images exceed %.0f%% of the %.1f GB free on %s; they stay "
            "in pinned host memory",
            nbytes / 1e9,
            100 * memory_share,
            free / 1e9,
            self.device,
        )
        return torch.device("cpu"), True

    def _empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised stack on the storage device (pinned when asked and possible)."""
        if not self.pinned:
            return torch.empty(tuple(shape), dtype=dtype, device=self.storage_device)
        try:
            return torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
        except RuntimeError as error:  # page-locking that much memory can be refused
            log.warning("device batches: cannot pin host memory (%s); using pageable", error)
            self.pinned = False
            return torch.empty(tuple(shape), dtype=dtype)

    # ---- randomness --------------------------------------------------------------------------

    def draw(self, batch_size: int, *, step: int, rank: int) -> Augmentation:
        """The crops and flips of the batch of ``step`` on process ``rank`` (a pure function).

        Corners are uniform over the valid positions (``random`` crop) or central; each enabled
        flip happens with probability 1/2. The same numbers are drawn whatever the options.
        """
        generator = augment_generator(self.seed, step, rank)
        (height, width), (th, tw) = self.file_size, self.size
        top = torch.randint(0, height - th + 1, (batch_size,), generator=generator)
        left = torch.randint(0, width - tw + 1, (batch_size,), generator=generator)
        flips = torch.rand(batch_size, 2, generator=generator) < 0.5
        if self.crop != "random":
            top = torch.full((batch_size,), (height - th) // 2, dtype=torch.int64)
            left = torch.full((batch_size,), (width - tw) // 2, dtype=torch.int64)
        return Augmentation(
            top=top,
            left=left,
            hflip=flips[:, 0] & self.horizontal_flip,
            vflip=flips[:, 1] & self.vertical_flip,
        )

    # ---- batches -----------------------------------------------------------------------------

    def batch(self, indices: Sequence[int], *, step: int, rank: int = 0) -> dict[str, Any]:
        """The training batch of dataset items ``indices`` at ``step`` on process ``rank``."""
        return self.assemble(indices, self.draw(len(indices), step=step, rank=rank))

    def assemble(self, indices: Sequence[int], augmentation: Augmentation) -> dict[str, Any]:
        """The batch of items ``indices`` cut with ``augmentation``: the CPU path's keys.

        Returns:
            ``{"image": [B, C, h, w] float32 in [-1, 1], "mask": [B, 1, h, w] float32,
            "label": [B] int64, "path": list of B str}``, tensors on :attr:`device`.
        """
        file_list = [int(i) // self.crops_per_image for i in indices]
        files = torch.as_tensor(file_list, dtype=torch.int64)
        aug = augmentation
        params = torch.stack(
            [files, aug.top, aug.left, aug.hflip.long(), aug.vflip.long(), self._labels[files]], 1
        )
        if self.storage_device != self.device:  # pinned host stack: cut here, then copy
            image, valid = self._gather(params)
            image, valid, params = (self._to_device(t) for t in (image, valid, params))
        else:
            params = self._to_device(params)
            image, valid = self._gather(params)
        image, mask = self._values(image, valid)
        return {
            "image": image,
            "mask": mask,
            "label": params[:, 5],
            "path": [self._paths[f] for f in file_list],
        }

    def _to_device(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """A non-blocking copy to :attr:`device` (from pinned memory when that is CUDA)."""
        if tensor is None or tensor.device == self.device:
            return tensor
        if self.device.type == "cuda" and not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _gather(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crops (flips folded into the index order) in the native dtype, and their masks."""
        files, top, left, hflip, vflip = (params[:, k] for k in range(5))
        (th, tw), rows, cols = self.size, self._rows, self._cols
        rows = top[:, None] + torch.where(vflip[:, None].bool(), th - 1 - rows, rows)
        cols = left[:, None] + torch.where(hflip[:, None].bool(), tw - 1 - cols, cols)
        image = self._images[
            files[:, None, None, None],
            self._channels[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        valid = None
        if self._valid is not None:
            valid = self._valid[files[:, None, None], rows[:, :, None], cols[:, None, :]]
        return image, valid

    def _values(
        self, image: torch.Tensor, valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaling to [-1, 1], invalid and non-finite pixels 0, as the CPU path computes them."""
        if self._resized:  # the dataset's own values, already final (0 where invalid)
            return image, _mask_of(image, valid)
        if self._unsigned16:
            image = image.to(torch.int32).bitwise_and_(0xFFFF)
        x = self._to_model(image.to(self.compute_dtype))
        keep = None if valid is None else valid[:, None]
        if self._float_input:
            finite = torch.isfinite(x)
            keep = finite if keep is None else keep & finite
        if keep is not None:
            x = torch.where(keep, x, 0.0)
        x = x.clamp(-1.0, 1.0).to(torch.float32)
        mask = _mask_of(x, valid)
        return (x, mask) if valid is None else (x * mask, mask)

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`Scaling.to_model` with its per-band limits already on the device (building them
        per batch would be a blocking host-to-device copy); the same operations in its order."""
        scaling = self.scaling
        if self._low is not None and self._span is not None:
            x = (x - self._low) / self._span
        elif scaling.divisor != 1.0:
            x = x / scaling.divisor
        if scaling.clip:
            x = x.clamp(0.0, 1.0)
        if scaling.gamma != 1.0:
            x = x**scaling.gamma
        return T.to_model(x)

    def __repr__(self) -> str:
        where = "pinned host memory" if self.pinned else str(self.storage_device)
        return (
            f"DeviceBatches(files={self._images.shape[0]}, shape={tuple(self._images.shape[1:])}, "
            f"dtype={self.native_dtype}, in={where!r}, out={str(self.device)!r})"
        )


class DeviceBatchLoader:
    """What :class:`terradiff.train.Trainer` iterates instead of its DataLoader: the batch of
    every step of ``sampler`` (the same items the DataLoader would load), cut by ``source``."""

    def __init__(self, source: DeviceBatches, sampler: StepBatchSampler) -> None:
        self.source = source
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank = self.sampler.process_index
        for step in range(self.sampler.start_step, self.sampler.max_steps):
            pairs = self.sampler.batch_for_step(step)
            yield self.source.batch([index for _, index in pairs], step=step, rank=rank)
