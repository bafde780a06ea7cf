"""`terradiff super-resolve --ensemble`: the mean and std of N diffusion draws per tile, on a real
georeferenced NAIP window."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from terradiff.cli import main
from terradiff.data.transforms.scaling import get_scaling
from terradiff.errors import DataError
from terradiff.sr_mapping import ensemble_mean_and_std
from tests.helpers import tiny_config, train_tiny_sr

NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # bundled copy of a real NAIP tile


@pytest.fixture(scope="module")
def sr3_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x4 SR3 model trained 2 steps through the CLI on the bundled AID sample (2-step DDIM)."""
    sample = {"sampler": "ddim", "steps": 2}
    return train_tiny_sr(tmp_path_factory.mktemp("sr3"), "sr3", sample=sample)


@pytest.fixture()
def naip_window(sample_data: Path, tmp_path: Path) -> Path:
    """A 24x20 window of a real 4-band NAIP scene (EPSG:26914): one 32 px tile."""
    out = tmp_path / "naip.tif"
    with rasterio.open(sample_data / NAIP) as src:
        window = Window(400, 300, 20, 24)
        profile = src.profile | {"height": 24, "width": 20, "tiled": False}
        profile["transform"] = src.window_transform(window)
        for key in ("blockxsize", "blockysize"):
            profile.pop(key, None)
        data = src.read(window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def test_mean_and_std_bands_of_draws() -> None:
    draws = torch.stack([torch.full((1, 2, 3, 3), v) for v in (0.0, 0.2, 0.4)])
    out = ensemble_mean_and_std(draws)
    assert out.shape == (1, 4, 3, 3)
    assert torch.allclose(out[:, :2], torch.full((1, 2, 3, 3), 0.2))
    assert torch.allclose(out[:, 2:] + 1.0, torch.full((1, 2, 3, 3), 0.2))  # unbiased std


@pytest.mark.parametrize(
    ("scaling", "span"),
    [
        (get_scaling("uint8"), 255.0),
        (get_scaling("minmax", mins=[100.0, -50.0], maxs=[300.0, 50.0]), None),
    ],
)
def test_spread_bands_map_a_model_std_to_physical_units(scaling, span) -> None:
    """A std ``s`` in model units is ``s (hi - lo) / 2`` physical units: the means' ``lo`` is
    not added (it was, for a min/max scaling, before ``with_spread_bands``)."""
    spread = scaling.with_spread_bands(2)
    model = torch.tensor([0.0, 0.5, 0.0 - 1.0, 0.3 - 1.0]).reshape(1, 4, 1, 1)
    physical = spread.from_model(model).flatten()
    spans = torch.tensor([span, span]) if span else torch.tensor([200.0, 100.0])
    lows = torch.zeros(2) if span else torch.tensor([100.0, -50.0])
    assert torch.allclose(physical[:2], lows + spans * (model.flatten()[:2] + 1) / 2)
    assert torch.allclose(physical[2:], torch.tensor([0.0, 0.3]) * spans / 2)


def test_spread_bands_refuse_a_gamma() -> None:
    with pytest.raises(DataError, match="gamma"):
        get_scaling("sen12ms").with_spread_bands(13)


def test_an_ensemble_raster_holds_the_mean_then_the_std(
    sr3_run: Path, naip_window: Path, tmp_path: Path
) -> None:
    """One tile, 2 draws: the first draw is the one-draw raster (same tile seed), so the
    std band is sqrt(2) |draw 1 - mean| pixel by pixel, to the one-draw raster's uint8 (its
    rounding, and 0 written as 1 to keep it off nodata: sqrt(2) at most); georeferencing and
    band names are kept."""
    args = ["super-resolve", str(naip_window)]
    common = ["--model", str(sr3_run), "--bands", "1,2,3", "--tile", "32", "--overlap", "0"]
    single, pair = tmp_path / "one.tif", tmp_path / "two.tif"
    assert main([*args, str(single), *common]) == 0
    assert main([*args, str(pair), *common, "--ensemble", "2"]) == 0
    with rasterio.open(single) as one, rasterio.open(pair) as two:
        assert one.count == 3 and two.count == 6 and two.dtypes[0] == "float32"
        assert two.crs == one.crs and two.transform == one.transform
        assert list(two.descriptions[3:]) == [f"{n}_std" for n in two.descriptions[:3]]
        first = one.read().astype(np.float64)
        values = two.read().astype(np.float64)
    mean, std = values[:3], values[3:]
    assert std.min() >= 0 and std.max() > 0
    assert np.allclose(std, math.sqrt(2) * np.abs(first - mean), atol=1.5)


def test_an_ensemble_of_a_one_pass_model_is_refused(
    naip_window: Path, sample_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A regression model's draws would all be equal: exit 2 naming the fix, nothing written."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.tasks.super_resolution import SuperResolutionTask

    raw = tiny_config(tmp_path, sample_data)
    raw.update(task="super_resolution", sr={"method": "regression", "scale": 4})
    task = SuperResolutionTask(config_from_dict(raw))
    run = tmp_path / "ckpt"
    save_checkpoint(run, config=task.checkpoint_config(), model_state=task.net.state_dict())
    out = tmp_path / "o.tif"
    args = ["super-resolve", str(naip_window), str(out), "--model", str(run), "--bands", "1,2,3"]
    assert main([*args, "--ensemble", "3"]) == 2
    err = capsys.readouterr().err
    assert "one-pass 'regression' model" in err and "drop --ensemble" in err
    assert not out.exists()
