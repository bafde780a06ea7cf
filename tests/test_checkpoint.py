"""Checkpoint folders: round trip, optimizer state, corruption errors, atomic replacement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from terradiff.checkpoint import (
    capture_rng_state,
    flatten_optimizer_state,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unflatten_optimizer_state,
)
from terradiff.errors import CheckpointError
from terradiff.io import host_tag


def _trained_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    for _ in range(3):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_round_trip(tmp_path: Path) -> None:
    model, optimizer = _trained_optimizer()
    tensors, meta = flatten_optimizer_state(optimizer.state_dict())
    path = save_checkpoint(
        tmp_path / "run" / "checkpoints" / "step_00000003",
        config={"config": {"a": 1}, "bands": {"count": 3}},
        model_state=model.state_dict(),
        ema_state=model.state_dict(),
        trainer_tensors=tensors,
        trainer_meta={"step": 3, "optimizer": meta},
    )
    ckpt = load_checkpoint(tmp_path / "run", with_trainer_state=True)
    assert ckpt.path == path
    assert ckpt.step == 3
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ckpt.model_state[key], value)
    restored_sd = unflatten_optimizer_state(ckpt.trainer_tensors, ckpt.trainer_meta["optimizer"])
    fresh = torch.optim.AdamW(model.parameters(), lr=5.0)
    fresh.load_state_dict(restored_sd)
    original = optimizer.state_dict()
    again = fresh.state_dict()
    assert again["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert again["param_groups"][0]["betas"] == (0.8, 0.9)
    for index, state in original["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(again["state"][index][key], value)


def test_no_pickle_files_written(tmp_path: Path) -> None:
    model, _ = _trained_optimizer()
    path = save_checkpoint(tmp_path / "c", config={}, model_state=model.state_dict())
    suffixes = {p.suffix for p in path.iterdir()}
    assert suffixes <= {".json", ".safetensors"}


def test_corrupt_weights_are_named(tmp_path: Path) -> None:
    model, _ = _trained_optimizer()
    path = save_checkpoint(tmp_path / "c", config={}, model_state=model.state_dict())
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_checkpoint(path)


def test_missing_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path / "empty")


def test_a_runs_checkpoints_folder_stands_for_the_run(tmp_path: Path) -> None:
    """``terradiff info run/checkpoints`` looked for run/checkpoints/checkpoints/step_*."""
    model, _ = _trained_optimizer()
    for step in (2, 10):
        save_checkpoint(
            tmp_path / f"run/checkpoints/step_{step:08d}", config={}, model_state=model.state_dict()
        )
    latest = tmp_path / "run/checkpoints/step_00000010"
    assert resolve_checkpoint(tmp_path / "run") == latest
    assert resolve_checkpoint(tmp_path / "run/checkpoints") == latest
    (tmp_path / "bare/checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"no complete checkpoint in .*bare/checkpoints"):
        resolve_checkpoint(tmp_path / "bare/checkpoints")


def test_failed_save_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = _trained_optimizer()
    path = save_checkpoint(tmp_path / "c", config={"v": 1}, model_state=model.state_dict())

    def disk_full(tensors: dict, filename: str) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr("terradiff.checkpoint.save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, config={"v": 2}, model_state=model.state_dict())
    monkeypatch.undo()
    assert load_checkpoint(path).config == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_incomplete_folders_are_not_listed(tmp_path: Path) -> None:
    model, _ = _trained_optimizer()
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "step_00000002", config={}, model_state=model.state_dict()
    )
    (run / "checkpoints" / "step_00000005").mkdir()  # a save that never completed
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002"]


def test_rng_state_round_trip() -> None:
    tensors, meta = capture_rng_state()
    first = torch.rand(3)
    restore_rng_state(tensors, meta)
    torch.testing.assert_close(torch.rand(3), first)


def test_pruning_hides_a_checkpoint_before_deleting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = _trained_optimizer()
    run = tmp_path / "run"
    for step in (2, 4, 6):
        save_checkpoint(
            run / "checkpoints" / f"step_{step:08d}", config={}, model_state=model.state_dict()
        )
    monkeypatch.setattr("terradiff.checkpoint.shutil.rmtree", lambda *a, **k: None)  # killed
    prune_checkpoints(run, keep=2)
    monkeypatch.undo()
    # a deletion cut short leaves a hidden temporary of this process, never a half step_ folder
    assert [p.name for p in list_checkpoints(run)] == ["step_00000004", "step_00000006"]
    hidden = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1
    assert hidden[0].startswith(f".step_00000002.tmp-{os.getpid()}-{host_tag()}-")
    prune_checkpoints(run, keep=1)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        hidden[0],
        "step_00000006",
    ]
