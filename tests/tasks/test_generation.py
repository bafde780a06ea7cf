"""GenerationTask: any band count, reproducible initial weights, loss under a mask, sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import CheckpointError
from terradiff.tasks.generation import GenerationTask
from tests.helpers import tiny_config


def _task(tmp_path: Path, sample_data: Path, count: int, **overrides) -> GenerationTask:
    raw = tiny_config(tmp_path / "run", sample_data)
    raw.update(overrides)
    band_info = BandInfo(count, tuple(f"B{i}" for i in range(count)), "none")
    return GenerationTask(config_from_dict(raw), band_info=band_info)


@pytest.mark.parametrize("count", [1, 4, 13])
def test_any_band_count_trains_and_samples(tmp_path: Path, sample_data: Path, count: int) -> None:
    task = _task(tmp_path, sample_data, count)
    batch = {"image": torch.rand(2, count, 32, 32) * 2 - 1}
    loss = task.training_loss(task.net, batch, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    out = task.sample(task.net, 2, spec=task.sampling_spec("ddim", 3), generator=torch.Generator())
    assert out.sample.shape == (2, count, 32, 32)


def test_initial_weights_are_a_function_of_the_seed(tmp_path: Path, sample_data: Path) -> None:
    a = _task(tmp_path, sample_data, 3).net.state_dict()
    torch.manual_seed(123)  # the global RNG must not matter
    b = _task(tmp_path, sample_data, 3).net.state_dict()
    c = _task(tmp_path, sample_data, 3, seed=4).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_masked_pixels_do_not_change_the_loss(tmp_path: Path, sample_data: Path) -> None:
    # x0-prediction: the target is the image itself, so changed pixels change the loss unless masked
    task = _task(tmp_path, sample_data, 3, diffusion={"num_timesteps": 200, "prediction": "x0"})
    task.net = _Zero()  # a net that ignores its input: only the loss masking can matter
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    mask[..., :8] = False
    other = image.clone()
    other[..., :8] = 0.9  # only the masked-out (nodata) columns differ
    losses = [
        task.training_loss(task.net, {"image": x, "mask": mask}, torch.Generator().manual_seed(1))
        for x in (image, other)
    ]
    unmasked = task.training_loss(task.net, {"image": other}, torch.Generator().manual_seed(1))
    assert torch.allclose(losses[0], losses[1])
    assert not torch.allclose(losses[1], unmasked)


class _Zero(torch.nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_dataset_with_other_bands_is_refused(tmp_path: Path, sample_data: Path) -> None:
    task = _task(tmp_path, sample_data, 4)
    with pytest.raises(CheckpointError, match="4 bands"):
        task.check_bands(task.build_dataset())
