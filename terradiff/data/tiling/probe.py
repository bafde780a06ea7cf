"""How much memory a model needs per tile, measured once: the peak of its live tensors.

A tiled run's own arrays are small next to a network's activations on large tiles (a UNet keeps
every encoder level for its skip connections: for a 32-channel UNet at 512 x 512 output pixels,
about 320 MiB per tile). :class:`TileMemoryProbe` gives a ``predict_fn`` the attribute
``tile_bytes`` that :mod:`~terradiff.data.tiling.memory` reads: it runs a one-tile function once,
on a small tile, under :class:`LiveTensorBytes`, a :class:`~torch.utils._python_dispatch.
TorchDispatchMode` that counts the bytes of the tensor storages every operator creates and
releases them when their last tensor is freed, and scales the highest total seen to the tile's
pixels. The count
covers the tensors PyTorch allocates, not the scratch space inside a kernel (oneDNN's, a flash
attention's blocks), nor what the allocator keeps after a free (see :mod:`terradiff.runtime`), so
it is a lower bound of the resident memory the tile adds.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

#: Side in pixels of the tile a :class:`TileMemoryProbe` measures.
PROBE_SIDE = 32


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the storages created by operators while it is active.

    Attributes:
        current: bytes of the storages alive now (created under the mode).
        peak: the highest ``current`` seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.sizes: dict[int, int] = {}  # storage address -> bytes
        self.refs: dict[int, int] = {}  # storage address -> tensors alive that use it

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf)
        return out

    def track(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage (once, however many views share it) until it is freed."""
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if key == 0 or size == 0:
            return
        if key not in self.sizes:
            self.sizes[key] = size
            self.current += size
            self.peak = max(self.peak, self.current)
        self.refs[key] = self.refs.get(key, 0) + 1
        weakref.finalize(tensor, self.release, key)

    def release(self, key: int) -> None:
        """One tensor of the storage at ``key`` was freed; forget the storage with its last."""
        left = self.refs.get(key, 0) - 1
        if left > 0:
            self.refs[key] = left
            return
        self.refs.pop(key, None)
        self.current -= self.sizes.pop(key, 0)


def peak_tensor_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes of tensors ``fn()`` held alive at once (its result is dropped)."""
    counter = LiveTensorBytes()
    with torch.inference_mode(), counter:
        result = fn()
        del result
    return counter.peak


class TileMemoryProbe:
    """``tile_bytes(height, width)`` of a ``predict_fn``: measured once, on a small tile.

    The probe tile is square, ``side`` pixels rounded up to ``multiple`` (or the tile itself when
    smaller), and the measure is scaled by the tile's pixel count: the activations of a
    convolutional network grow linearly with its pixels (measured for the SR UNet of
    ``configs/sr/sample_regression_x4.yaml``: 20.7 kB per input pixel at 16, 32, 64 and 128 px,
    within 0.1%). Measuring a large tile would itself leave its peak in the process (freed
    memory stays with the tuned allocator of :mod:`terradiff.runtime`), which is what the probe
    is there to avoid. Attention whose memory grows with the square of the pixels (not the
    flash/memory-efficient kernels terradiff's nets call) would be underestimated.

    Args:
        one_tile: predicts one tile ``[1, channels, height, width]`` (what a batch of one costs;
            a sampler may run a single step, activations do not grow with the steps).
        channels: the input bands.
        device: where the input tile goes.
        side: the probe tile's side in pixels.
        multiple: the probe side is a multiple of it (a UNet's down-sampling factor).
    """

    def __init__(
        self,
        one_tile: Callable[[torch.Tensor], Any],
        channels: int,
        device: str | torch.device | None = None,
        side: int = PROBE_SIDE,
        multiple: int = 1,
    ) -> None:
        self.one_tile = one_tile
        self.channels = channels
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.side = multiple * max(1, -(-side // multiple))
        self.measured: dict[tuple[int, int], int] = {}

    def __call__(self, height: int, width: int) -> int:
        """Bytes one ``height x width`` tile needs while predicted (measured the first time)."""
        if height * width <= self.side**2:
            key = (int(height), int(width))
        else:
            key = (self.side, self.side)
        if key not in self.measured:
            x = torch.zeros(1, self.channels, *key, device=self.device)
            self.measured[key] = peak_tensor_bytes(lambda: self.one_tile(x))
        return round(self.measured[key] * (height * width) / (key[0] * key[1]))


def with_tile_bytes(
    predict_fn: Callable[..., Any],
    one_tile: Callable[[torch.Tensor], Any],
    channels: int,
    device: str | torch.device | None = None,
    multiple: int = 1,
) -> Callable[..., Any]:
    """``predict_fn`` with the attribute ``tile_bytes``: a :class:`TileMemoryProbe` of
    ``one_tile`` (see its arguments); returns ``predict_fn`` itself."""
    probe = TileMemoryProbe(one_tile, channels, device, multiple=multiple)
    predict_fn.__dict__["tile_bytes"] = probe
    return predict_fn


__all__ = [
    "PROBE_SIDE",
    "LiveTensorBytes",
    "TileMemoryProbe",
    "peak_tensor_bytes",
    "with_tile_bytes",
]
