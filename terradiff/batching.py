"""Which samples each training step sees: a pure function of ``(seed, step, process)``.

:class:`StepBatchSampler` makes the batch order resumable (resuming at step ``k`` replays the
same stream as an uninterrupted run), :class:`EpochIndexed` tells an augmenting dataset the
epoch, :func:`step_seed` seeds a step's noise and dropout (:func:`seed_global_generators` the
dropout's global generators), and :func:`collate_batch` stacks the items.
:class:`terradiff.train.Trainer` composes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from terradiff.errors import ConfigError


def step_seed(seed: int, step: int, rank: int) -> int:
    """A distinct, reproducible seed per (seed, step, process)."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


def seed_global_generators(seed: int, device: torch.device) -> None:
    """Seed the global generators a step on ``device`` draws from (dropout): the CPU's and, on
    CUDA or MPS, that device's -- what ``torch.manual_seed`` sets for them.

    ``torch.manual_seed`` seeds every backend; where CUDA is not initialised (any CPU run) it
    queues the CUDA seeding with a recorded Python stack, 0.8 ms per call in a cProfile of
    ``benchmarks/bench_train_loop.py`` on a 2-core CPU (cProfile time; the tiny net's step took
    ~20 ms there).
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches as a pure function of the step: resuming at step ``k`` replays the same stream.

    Epoch ``e`` uses the permutation seeded by ``seed + e``; the global batch of step ``s`` is the
    ``s``-th slice of ``global_batch`` indices (last incomplete slice dropped); process ``r``
    takes its ``batch_size`` part. Items are ``(epoch, index)`` so augmentation can depend on the
    epoch.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        seed: int,
        start_step: int,
        max_steps: int,
        num_processes: int = 1,
        process_index: int = 0,
    ) -> None:
        self.global_batch = batch_size * num_processes
        if dataset_size < self.global_batch:
            raise ConfigError(
                f"the dataset has {dataset_size} images, fewer than one global batch "
                f"({batch_size} x {num_processes} processes); lower train.batch_size"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.max_steps = max_steps
        self.process_index = process_index
        self.steps_per_epoch = dataset_size // self.global_batch

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """The ``(epoch, index)`` pairs this process trains on at ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = torch.randperm(
            self.dataset_size, generator=torch.Generator().manual_seed(self.seed + epoch)
        )
        start = position * self.global_batch + self.process_index * self.batch_size
        return [(epoch, int(i)) for i in order[start : start + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.max_steps):
            yield self.batch_for_step(step)


class EpochIndexed(Dataset):
    """Adapter: ``dataset[(epoch, i)]`` sets the epoch (for augmentation) and returns item ``i``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def collate_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors of dataset items into a batch (numbers become a tensor, the rest lists)."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], int | float):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
