"""The Trainer on real AID crops: loss falls, kill + resume is exact, NaN stops, 2 processes run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

from terradiff.batching import StepBatchSampler
from terradiff.checkpoint import list_checkpoints, load_checkpoint
from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.tasks.generation import GenerationTask
from terradiff.train import SimulatedCrash, Trainer, TrainingError
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def test_batch_sampler_is_a_function_of_the_step() -> None:
    full = StepBatchSampler(20, 4, seed=1, start_step=0, max_steps=12)
    resumed = StepBatchSampler(20, 4, seed=1, start_step=7, max_steps=12)
    assert list(full)[7:] == list(resumed)
    epochs = {pair[0] for batch in full for pair in batch}
    assert epochs == {0, 1, 2}
    rank0 = StepBatchSampler(20, 2, seed=1, start_step=0, max_steps=3, num_processes=2)
    rank1 = StepBatchSampler(
        20, 2, seed=1, start_step=0, max_steps=3, num_processes=2, process_index=1
    )
    for a, b in zip(rank0, rank1, strict=True):
        assert not set(a) & set(b)


def test_loss_falls_on_real_aid_crops(tmp_path: Path, sample_data: Path) -> None:
    config = config_from_dict(tiny_config(tmp_path / "run", sample_data, max_steps=60))
    result = Trainer(GenerationTask(config), tmp_path / "run").fit()
    losses = [loss for _, loss in result.losses]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert result.checkpoint is not None and result.checkpoint.name == "step_00000060"
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 60
    assert (tmp_path / "run" / "tensorboard").is_dir()


def test_kill_and_resume_gives_the_same_weights(tmp_path: Path, sample_data: Path) -> None:
    settings = {"max_steps": 8, "save_every": 3}
    straight_cfg = config_from_dict(tiny_config(tmp_path / "a", sample_data, **settings))
    straight = Trainer(GenerationTask(straight_cfg), tmp_path / "a").fit()

    crash_cfg = config_from_dict(tiny_config(tmp_path / "b", sample_data, **settings))
    with pytest.raises(SimulatedCrash):
        Trainer(GenerationTask(crash_cfg), tmp_path / "b").fit(crash_after_step=5)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step_00000003"]
    first_part = load_checkpoint(list_checkpoints(tmp_path / "b")[0], with_trainer_state=True)
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = Trainer(GenerationTask(crash_cfg), tmp_path / "b", resume="latest").fit()
    assert resumed.step == straight.step == 8

    a = load_checkpoint(straight.checkpoint, with_trainer_state=True)
    b = load_checkpoint(resumed.checkpoint, with_trainer_state=True)
    for key in a.model_state:
        assert torch.equal(a.model_state[key], b.model_state[key]), key
        assert torch.equal(a.ema_state[key], b.ema_state[key]), key
    for key in a.trainer_tensors:
        if key.startswith("optimizer."):
            assert torch.equal(a.trainer_tensors[key], b.trainer_tensors[key]), key
    assert a.trainer_meta["losses"] == b.trainer_meta["losses"]
    # the training time adds up over the interrupted and the resumed part
    assert 0 < first_part.trainer_meta["train_seconds"] < b.trainer_meta["train_seconds"]


def _device_batches_config(run_dir: Path, sample_data: Path, setting: str, **train: Any):
    raw = tiny_config(run_dir, sample_data, **train)
    return config_from_dict({**raw, "data": {**raw["data"], "device_batches": setting}})


def test_kill_and_resume_with_device_batches_gives_the_same_weights(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.device_batches=on (CPU device, the same code as on CUDA): batches are cut by
    DeviceBatchLoader, and an interrupted, resumed run makes exactly the same updates."""
    import terradiff.train as train_module
    from terradiff.data.device_batches import DeviceBatchLoader

    used: list[int] = []

    class _Counted(DeviceBatchLoader):
        def __iter__(self):  # type: ignore[override]
            used.append(self.sampler.start_step)
            return super().__iter__()

    monkeypatch.setattr(train_module, "DeviceBatchLoader", _Counted)
    settings = {"max_steps": 6, "save_every": 3}
    straight_cfg = _device_batches_config(tmp_path / "a", sample_data, "on", **settings)
    straight = Trainer(GenerationTask(straight_cfg), tmp_path / "a").fit()
    AcceleratorState._reset_state(reset_partial_state=True)
    crash_cfg = _device_batches_config(tmp_path / "b", sample_data, "on", **settings)
    with pytest.raises(SimulatedCrash):
        Trainer(GenerationTask(crash_cfg), tmp_path / "b").fit(crash_after_step=4)
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = Trainer(GenerationTask(crash_cfg), tmp_path / "b", resume="latest").fit()
    assert used == [0, 0, 3] and resumed.step == straight.step == 6
    a = load_checkpoint(straight.checkpoint, with_trainer_state=True)
    b = load_checkpoint(resumed.checkpoint, with_trainer_state=True)
    for key in a.model_state:
        assert torch.equal(a.model_state[key], b.model_state[key]), key
        assert torch.equal(a.ema_state[key], b.ema_state[key]), key
    assert a.trainer_meta["losses"] == b.trainer_meta["losses"]


def test_device_batches_on_for_a_conditioned_dataset_is_refused_before_writing(
    tmp_path: Path, sample_data: Path
) -> None:
    raw = tiny_config(tmp_path / "r", sample_data, max_steps=2)
    data = {**raw["data"], "device_batches": "on"}
    config = config_from_dict({**raw, "data": data, "condition": {"classes": "folders"}})
    with pytest.raises(ConfigError, match=r"data\.device_batches=on .*condition.*or off"):
        Trainer(GenerationTask(config), tmp_path / "r").fit()
    assert not (tmp_path / "r").exists()


def test_resize_runs_with_device_batches(tmp_path: Path, sample_data: Path) -> None:
    """The schedule study's ``crop: resize`` (150x150 AID scenes to 32x32) trains with
    data.device_batches=on: the files are resized once, the batches flipped on the device."""
    raw = tiny_config(tmp_path / "r", sample_data, max_steps=3)
    data = {**raw["data"], "crop": "resize", "device_batches": "on"}  # on: served or refused
    config = config_from_dict({**raw, "data": data})
    result = Trainer(GenerationTask(config), tmp_path / "r").fit()
    assert result.step == 3 and all(math.isfinite(loss) for _, loss in result.losses)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, sample_data: Path) -> None:
    from terradiff.errors import CheckpointError

    config = config_from_dict(tiny_config(tmp_path / "r", sample_data, max_steps=2))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        Trainer(GenerationTask(config), tmp_path / "r", resume="latest").fit()


class _NaNAfter(GenerationTask):
    """A task whose loss becomes NaN at a given step (as an exploding run would)."""

    calls = 0

    def training_loss(self, net, batch, generator):  # type: ignore[override]
        loss = super().training_loss(net, batch, generator)
        type(self).calls += 1
        return loss * float("nan") if type(self).calls >= 5 else loss


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, sample_data: Path) -> None:
    _NaNAfter.calls = 0
    config = config_from_dict(tiny_config(tmp_path / "n", sample_data, max_steps=10, save_every=2))
    with pytest.raises(TrainingError, match=r"at step 5.*step_00000004"):
        Trainer(_NaNAfter(config), tmp_path / "n").fit()
    assert [p.name for p in list_checkpoints(tmp_path / "n")][-1] == "step_00000004"


def test_nan_inside_a_log_window_is_caught_before_the_next_checkpoint(
    tmp_path: Path, sample_data: Path
) -> None:
    """The loss is read on the host only at log/checkpoint points (no sync per step): a NaN at
    step 5 of a 4-step log window is found at the step-6 checkpoint, which is not written."""
    _NaNAfter.calls = 0
    raw = tiny_config(tmp_path / "w", sample_data, max_steps=12, save_every=3, log_every=4)
    with pytest.raises(TrainingError, match=r"at step 5 \(found at step 6\).*step_00000003"):
        Trainer(_NaNAfter(config_from_dict(raw)), tmp_path / "w").fit()
    assert [p.name for p in list_checkpoints(tmp_path / "w")] == ["step_00000003"]
    logged = (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [4]


def test_resume_with_other_band_count_is_refused(tmp_path: Path, sample_data: Path) -> None:
    from terradiff.errors import CheckpointError

    config = config_from_dict(tiny_config(tmp_path / "c", sample_data, max_steps=2))
    Trainer(GenerationTask(config), tmp_path / "c").fit()
    AcceleratorState._reset_state(reset_partial_state=True)
    one_band = config_from_dict(
        {
            **tiny_config(tmp_path / "c", sample_data, max_steps=4),
            "data": {**tiny_config(tmp_path / "c", sample_data)["data"], "bands": [1]},
        }
    )
    with pytest.raises(CheckpointError, match="bands"):
        Trainer(GenerationTask(one_band), tmp_path / "c", resume="latest").fit()


def test_resume_names_the_settings_that_changed(
    tmp_path: Path, sample_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another model width failed with torch's dump of every mismatched tensor; another noise
    schedule or learning rate was taken without a word (a longer max_steps still is)."""
    from terradiff.errors import CheckpointError

    raw = tiny_config(tmp_path / "c", sample_data, max_steps=2)
    Trainer(GenerationTask(config_from_dict(raw)), tmp_path / "c").fit()
    AcceleratorState._reset_state(reset_partial_state=True)
    narrow = {**raw, "model": {**raw["model"], "base_channels": 8}}
    narrow["train"] = {**raw["train"], "max_steps": 3}
    with pytest.raises(CheckpointError) as caught:
        Trainer(GenerationTask(config_from_dict(narrow)), tmp_path / "c", resume="latest").fit()
    message = str(caught.value)
    assert "does not fit this model config (model.base_channels 16 -> 8)" in message
    assert "size mismatch" not in message
    AcceleratorState._reset_state(reset_partial_state=True)
    cosine = {**raw, "diffusion": {**raw["diffusion"], "schedule": "cosine"}}
    cosine["train"] = {**raw["train"], "max_steps": 3, "lr": 1e-4}
    with caplog.at_level("WARNING", logger="terradiff.train"):
        Trainer(GenerationTask(config_from_dict(cosine)), tmp_path / "c", resume="latest").fit()
    assert "other settings than trained so far: diffusion.schedule linear -> cosine" in caplog.text
    lr = raw["train"].get("lr", 2e-4)
    assert f"other training settings than the checkpoint's (train.lr {lr} -> 0.0001)" in caplog.text


@pytest.mark.slow
def test_two_cpu_processes_with_gloo(tmp_path: Path, sample_data: Path) -> None:
    config = tiny_config(tmp_path / "ddp", sample_data, max_steps=4, batch_size=4)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "terradiff.cli",
        "train",
        str(config_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads(
        (tmp_path / "ddp" / "checkpoints" / "step_00000004" / "trainer_state.json").read_text()
    )
    assert meta["num_processes"] == 2
    assert meta["step"] == 4


def test_auto_mixed_precision_needs_native_bf16_on_cpu() -> None:
    from terradiff.train import resolve_mixed_precision

    if torch.cuda.is_available():
        pytest.skip("CUDA decides by itself")
    assert resolve_mixed_precision("auto", "flags : fpu avx2 fma") == "no"
    assert resolve_mixed_precision("auto", "flags : avx2 avx512f avx512_bf16") == "bf16"
    assert resolve_mixed_precision("auto", "flags : avx2 amx_bf16 amx_tile") == "bf16"
    assert resolve_mixed_precision("bf16", "flags : avx2") == "bf16"  # an explicit choice stands


def test_time_limit_says_it_stopped_early(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    from terradiff.cli import main

    config = tiny_config(tmp_path / "t", sample_data, max_steps=50, max_minutes=0.0001)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0  # 6 ms: the limit ends the run after its first step
    out = capsys.readouterr().out
    assert " min, stopped early by train.max_minutes=0.0001 at step 1 of 50)" in out
    assert [p.name for p in list_checkpoints(tmp_path / "t")] == ["step_00000001"]
    last = json.loads((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 1 and last["stopped_by"] == "max_minutes"

    AcceleratorState._reset_state(reset_partial_state=True)
    config = config_from_dict(tiny_config(tmp_path / "t", sample_data, max_steps=2))
    result = Trainer(GenerationTask(config), tmp_path / "t", resume="latest").fit()
    assert (result.step, result.stopped_by) == (2, "max_steps")
    assert result.stop_reason == "reached train.max_steps=2"
