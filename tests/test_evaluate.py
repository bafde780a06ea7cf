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
    kwargs = {"batch_size": 3, "spec": task.sampling_spec("ddim", 3), "progress": False}
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


def test_resolve_device_prefers_cuda_only_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    from terradiff.tasks import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")


def test_load_task_moves_the_network(tmp_path: Path, sample_data: Path) -> None:
    from terradiff.checkpoint import save_checkpoint
    from terradiff.tasks import load_task

    task = GenerationTask(config_from_dict(tiny_config(tmp_path, sample_data)))
    run = tmp_path / "ckpt"
    save_checkpoint(run, config=task.checkpoint_config(), model_state=task.net.state_dict())
    loaded, _ = load_task(run, device=torch.device("meta"))
    assert next(loaded.net.parameters()).device == torch.device("meta")
    loaded, _ = load_task(run)
    assert next(loaded.net.parameters()).device == torch.device("cpu")


@pytest.mark.parametrize(("asked", "expected"), [(None, "auto"), ("cpu", "cpu")])
def test_evaluation_loads_the_model_on_the_device(
    monkeypatch: pytest.MonkeyPatch, asked: str | None, expected: str
) -> None:
    """Both evaluations pass the device on (the schedule study once sampled on the CPU of a GPU
    machine because the network was never moved)."""
    import terradiff.tasks
    from terradiff.evaluate import evaluate_checkpoint
    from terradiff.sr_evaluate import evaluate_super_resolution

    seen = []

    def spy(path: str, **kwargs: object) -> None:
        seen.append(kwargs.get("device"))
        raise RuntimeError("stop after loading")

    monkeypatch.setattr(terradiff.tasks, "load_task", spy)
    for fn in (evaluate_checkpoint, evaluate_super_resolution):
        with pytest.raises(RuntimeError, match="stop after loading"):
            fn("run", device=asked)
    assert seen == [expected, expected]


def test_super_resolution_evaluation_refuses_a_generator(tmp_path: Path, sample_data: Path) -> None:
    from terradiff.checkpoint import save_checkpoint
    from terradiff.errors import CheckpointError, WrongCheckpointError
    from terradiff.sr_evaluate import evaluate_super_resolution

    task = GenerationTask(config_from_dict(tiny_config(tmp_path, sample_data)))
    run = tmp_path / "ckpt"
    save_checkpoint(run, config=task.checkpoint_config(), model_state=task.net.state_dict())
    with pytest.raises(WrongCheckpointError, match="is a 'generation' checkpoint") as error:
        evaluate_super_resolution(run, num_images=2, progress=False, device="cpu")
    assert isinstance(error.value, CheckpointError)
    assert "needs a 'super_resolution' one" in str(error.value)


@pytest.mark.parametrize(("trained_on", "scored_on"), [("train", "test"), ("fit", "val")])
def test_super_resolution_is_scored_on_the_split_its_training_left_out(
    tmp_path: Path, sample_data: Path, trained_on: str, scored_on: str
) -> None:
    """A model trained on 'train' is scored on 'test'; one trained on 'fit' (settings being
    chosen) on 'val', so a choice never looks at the test files."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.sr_evaluate import evaluate_super_resolution
    from terradiff.tasks.super_resolution import SuperResolutionTask

    raw = tiny_config(tmp_path, sample_data)
    raw.update(task="super_resolution", sr={"method": "regression", "scale": 4})
    raw["data"].update(split=trained_on, holdout_fraction=0.3)
    task = SuperResolutionTask(config_from_dict(raw))
    run = tmp_path / "ckpt"
    save_checkpoint(run, config=task.checkpoint_config(), model_state=task.net.state_dict())
    row = evaluate_super_resolution(run, num_images=100, progress=False, device="cpu")
    expected = real_dataset(task.config, split=scored_on)
    names = [Path(p).relative_to(sample_data / "aid").as_posix() for p in expected.files]
    assert row["per_image"]["image"] == names
    assert row["n"] == len(expected) > 0
