"""The tile batch on CUDA, from the GPU's free memory (the free-memory function injected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

import terradiff.data.tiling.memory as memory_mod
import terradiff.data.tiling.run as run_mod
from terradiff.data.tiling import TileGrid, predict_raster
from terradiff.data.tiling.memory import (
    CUDA_FREE_SHARE,
    RunMemory,
    device_batch_budget,
    on_cuda,
)
from terradiff.data.tiling.run import TiledRun

MiB = 2**20


def _memory(tile: int = 64, scale: int = 4, in_bands: int = 3) -> RunMemory:
    grid = TileGrid(1000, 1000, tile, 16)
    return RunMemory(grid, scale, in_bands, 1, 1, None, cpu=False)


def test_budget_is_a_share_of_the_free_memory_on_cuda_only() -> None:
    asked: list[torch.device] = []

    def free(device: torch.device) -> int:
        asked.append(device)
        return 10_000 * MiB

    assert device_batch_budget("cuda:1", free) == pytest.approx(CUDA_FREE_SHARE * 10_000 * MiB)
    assert asked == [torch.device("cuda:1")]
    assert device_batch_budget("cuda", free, share=0.5) == 5_000 * MiB
    for device in (None, "cpu", torch.device("cpu")):
        assert device_batch_budget(device, free) is None  # the CPU rule applies instead
    assert len(asked) == 2  # the CPU never asks
    with pytest.raises(ValueError, match="share"):
        device_batch_budget("cuda", free, share=0.0)
    assert on_cuda("cuda:0") and not on_cuda("cpu") and not on_cuda(None)


def test_device_batch_is_what_fits_up_to_the_batch_asked() -> None:
    memory = _memory()
    per_tile = memory.device_tile_bytes(3, 100 * MiB)
    # input (3 float32 bands + mask) of 64 x 64 and prediction (3 float32 bands) of 256 x 256
    assert per_tile == (3 * 4 + 1) * 64**2 + 3 * 4 * 256**2 + 100 * MiB
    assert memory.fit_device_batch(3, 64, 100 * MiB, 10 * per_tile + 1) == 10
    assert memory.fit_device_batch(3, 8, 100 * MiB, 10 * per_tile) == 8  # the batch asked caps it
    assert memory.fit_device_batch(3, 8, 100 * MiB, per_tile / 2) == 1  # never below one
    assert memory.fit_device_batch(3, 8, 100 * MiB, None) == 8  # no budget: the CPU


def _raster(path: Path) -> Path:
    array = np.random.default_rng(2).integers(1, 255, size=(1, 40, 200), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "count": 1,
        "height": 40,
        "width": 200,
        "dtype": "uint8",
        "crs": CRS.from_epsg(32633),
        "transform": Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_650_000.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def test_a_run_on_cuda_picks_the_batch_from_free_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiling engine on a (pretended) CUDA device measures the activations the predict_fn
    reports and runs the batches that fit 60% of the free memory, whatever the CPU's
    ``batch_memory_mb``; the output is the same as the CPU run's."""
    path = _raster(tmp_path / "in.tif")
    calls: list[int] = []

    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    fn.tile_bytes = lambda h, w: 100 * MiB  # type: ignore[attr-defined]
    options = {"scaling": "uint8", "tile": 32, "overlap": 8, "batch_size": 16, "device": "cpu"}
    predict_raster(path, tmp_path / "cpu.tif", fn, batch_memory_mb=None, progress=False, **options)
    assert max(calls) == 8  # every tile of the raster's one block row in one batch

    for module in (run_mod, memory_mod):  # the CPU pretends to be a CUDA device
        monkeypatch.setattr(module, "on_cuda", lambda device: True)
    free = {"bytes": 0}
    monkeypatch.setattr(TiledRun, "free_memory", staticmethod(lambda device: free["bytes"]))
    for free_mib, expected in ((1_000, 5), (400, 2), (10, 1), (100_000, 8)):
        free["bytes"] = free_mib * MiB  # 60% of it over ~100 MiB per tile
        calls.clear()
        out = tmp_path / f"cuda{free_mib}.tif"
        predict_raster(path, out, fn, batch_memory_mb=None, progress=False, **options)
        assert max(calls) == expected, free_mib
        with rasterio.open(out) as a, rasterio.open(tmp_path / "cpu.tif") as b:
            assert np.array_equal(a.read(), b.read())
