"""Evaluation helpers: reproducible generation, clear errors for unusable encoders or bands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from terradiff.config import config_from_dict
from terradiff.evaluate import default_cache_dir, generate_images, real_dataset
from terradiff.tasks.generation import GenerationTask
from tests.helpers import tiny_config


def test_generate_images_depends_on_seed_only(tmp_path: Path, sample_data: Path) -> None:
    task = GenerationTask(config_from_dict(tiny_config(tmp_path, sample_data)))
    kwargs = {"batch_size": 3, "sampler": "ddim", "steps": 3, "progress": False}
    a = generate_images(task, 5, seed=7, **kwargs)
    b = generate_images(task, 5, seed=7, **kwargs)
    c = generate_images(task, 5, seed=8, **kwargs)
    assert a.shape == (5, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_real_dataset_is_unaugmented_and_can_be_redirected(
    tmp_path: Path, sample_data: Path
) -> None:
    config = config_from_dict(tiny_config(tmp_path, sample_data))
    dataset = real_dataset(config)
    first = dataset[0]["image"]
    dataset.set_epoch(5)
    assert torch.equal(first, dataset[0]["image"])  # no random crop or flip
    other = real_dataset(config, sample_data / "aid")
    assert len(other) == len(dataset)


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TERRADIFF_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("TERRADIFF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "terradiff"
