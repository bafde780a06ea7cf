"""The distilled SR student maps a raster batched over tiles (issue 16, item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.data.tiling import predict_raster
from terradiff.nets.light import LightSRNet
from terradiff.sr_mapping import _sr_predict_fn
from terradiff.tasks.super_resolution import SuperResolutionTask
from tests.helpers import tiny_config


def _student(tmp_path: Path, sample_data: Path) -> SuperResolutionTask:
    """A student as a checkpoint rebuilds it (no teacher read: ``distill: none``)."""
    raw = tiny_config(tmp_path / "run", sample_data)
    raw["task"] = "super_resolution"
    raw["sr"] = {"method": "student", "scale": 2, "teacher": "unused", "distill": "none"}
    task = SuperResolutionTask(
        config_from_dict(raw), band_info=BandInfo(3, ("r", "g", "b"), "none")
    )
    assert isinstance(task.net, LightSRNet)
    for p in task.net.parameters():  # the zero-initialised head would hide batch mixing
        torch.nn.init.normal_(p, std=0.1)
    return task


def test_student_predicts_a_batch_of_tiles_in_one_call(tmp_path: Path, sample_data: Path) -> None:
    """One forward for the whole batch, each tile as if it were alone."""
    task = _student(tmp_path, sample_data)
    calls: list[int] = []
    task.net.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    # fp32 (the default, pinned): under bf16 a batch rounds differently from a tile alone
    predict = _sr_predict_fn(task, factor=2, spec=None, seed=0, device="cpu", precision="fp32")
    tiles = torch.rand(4, 3, 16, 16) * 2 - 1
    batched = predict(tiles, torch.ones(4, 1, 16, 16, dtype=torch.bool), [(0, 0)] * 4)
    assert calls == [4] and batched.shape == (4, 3, 32, 32)
    alone = torch.cat([predict(t[None], None, [(0, 0)]) for t in tiles])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_student_raster_runs_the_tiling_batch(tmp_path: Path, sample_data: Path) -> None:
    """``batch_size`` tiles per net call on a whole raster (the probe's one tile aside)."""
    task = _student(tmp_path, sample_data)
    array = np.random.default_rng(0).integers(1, 255, size=(3, 40, 112), dtype=np.uint8)
    path = tmp_path / "lr.tif"
    profile = {
        "driver": "GTiff",
        "count": 3,
        "height": 40,
        "width": 112,
        "dtype": "uint8",
        "crs": CRS.from_epsg(32633),
        "transform": Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_650_000.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    calls: list[int] = []
    task.net.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    predict = _sr_predict_fn(task, factor=2, spec=None, seed=0, device="cpu")
    options = {"scaling": "uint8", "scale": 2, "tile": 16, "overlap": 4, "progress": False}
    summary = predict_raster(path, tmp_path / "sr.tif", predict, batch_size=4, **options)
    assert calls[0] == 1  # the memory probe: one small tile
    assert max(calls[1:]) == 4 and sum(calls[1:]) == summary.tiles
