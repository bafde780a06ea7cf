"""The perceptual loss terms of the one-pass SR methods (tasks.super_resolution.perceptual)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from accelerate.state import AcceleratorState

from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.metrics.aid_encoder import AID_ENCODER_CONFIG
from terradiff.metrics.feature_distance import load_feature_distance
from terradiff.tasks.base import build_dataset
from terradiff.tasks.super_resolution import SuperResolutionTask
from terradiff.tasks.super_resolution.method import SRBatch
from terradiff.tasks.super_resolution.perceptual import PerceptualLoss
from terradiff.tasks.super_resolution.regression import RegressionSRConfig
from terradiff.train import Trainer
from tests.tasks.test_super_resolution import sr_config


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def _student(tmp_path: Path, sample_data: Path, name: str, **sr: Any) -> dict[str, Any]:
    raw = sr_config(tmp_path / name, sample_data, "student", max_steps=1)
    raw["sr"].update({"teacher": None, "distill": "none", "student_channels": 8, **sr})
    return raw


def _batch(task: SuperResolutionTask, n: int = 2) -> SRBatch:
    """Two real AID crops and their bicubic x4 LR."""
    from torch.utils.data import DataLoader

    hr = next(iter(DataLoader(task.build_dataset(), batch_size=n)))["image"]
    return SRBatch(hr, task.degrade(hr), None)


@pytest.mark.parametrize("method", ["regression", "student"])
def test_the_feature_distance_term_adds_its_weighted_distance_and_trains_the_net(
    tmp_path: Path, sample_data: Path, method: str
) -> None:
    """Loss = L1 + w * d_AID(estimate, HR) on real AID crops; its gradient reaches the net, and
    the frozen encoder stays out of the net's state (so out of checkpoints)."""
    raw = sr_config(tmp_path / "plain", sample_data, method, max_steps=1)
    if method == "student":
        raw["sr"].update({"teacher": None, "distill": "none", "student_channels": 8})
    plain = SuperResolutionTask(config_from_dict(raw))
    raw["sr"]["feature_distance_weight"] = 0.5
    task = SuperResolutionTask(config_from_dict(raw))
    task.net.load_state_dict(plain.net.state_dict())
    assert set(task.net.state_dict()) == set(plain.net.state_dict())
    batch = _batch(task)
    base = plain.method.training_loss(plain.net, batch, torch.Generator().manual_seed(0))
    loss = task.method.training_loss(task.net, batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        estimate = task.method.forward(task.net, batch.bicubic, None)
        distance = load_feature_distance()(estimate, batch.hr).mean()
    assert float(distance) > 0
    expected = float(base.detach()) + 0.5 * float(distance)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    grads = [p.grad for p in task.net.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_training_with_the_feature_distance_lowers_it_on_held_out_aid_scenes(
    tmp_path: Path, sample_data: Path
) -> None:
    """The same light student, seed and batches, 40 steps with and without the term: the held-out
    scenes' AID feature distance is lower with it (the direction reports/perceptual_loss
    measures at 1,000 steps, not its size)."""
    distances = {}
    for weight in (0.0, 1.0):
        raw = _student(tmp_path, sample_data, f"w{weight}", feature_distance_weight=weight)
        raw["train"]["max_steps"] = 40
        raw["data"]["split"] = "train"
        task = SuperResolutionTask(config_from_dict(raw))
        Trainer(task, tmp_path / f"w{weight}").fit()
        AcceleratorState._reset_state(reset_partial_state=True)
        held_out = build_dataset(task.config, train=False, split="test")
        hr = torch.stack([held_out[i]["image"] for i in range(len(held_out))])
        with torch.no_grad():
            estimate = task.super_resolve(task.net, task.degrade(hr)).sample
            distances[weight] = float(load_feature_distance()(estimate, hr).mean())
    assert distances[1.0] < distances[0.0]


def test_a_missing_or_corrupt_encoder_file_is_an_error_naming_the_key_and_the_file(
    tmp_path: Path, sample_data: Path
) -> None:
    raw = _student(
        tmp_path,
        sample_data,
        "missing",
        feature_distance_weight=1.0,
        feature_distance_encoder=str(tmp_path / "nowhere.safetensors"),
    )
    task = SuperResolutionTask(config_from_dict(raw))
    with pytest.raises(ConfigError, match=r"sr\.feature_distance_encoder.*nowhere"):
        task.method.training_loss(task.net, _batch(task), torch.Generator().manual_seed(0))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    corrupt.with_suffix(".json").write_text(AID_ENCODER_CONFIG.read_text())
    raw["sr"]["feature_distance_encoder"] = str(corrupt)
    task = SuperResolutionTask(config_from_dict(raw))
    with pytest.raises(ConfigError, match=r"sr\.feature_distance_encoder .*corrupt\.safetensors"):
        task.method.training_loss(task.net, _batch(task), torch.Generator().manual_seed(0))


def test_lpips_without_its_weights_file_is_refused_for_every_one_pass_method(
    tmp_path: Path, sample_data: Path
) -> None:
    for method in ("regression", "student", "single_step"):
        raw = sr_config(tmp_path / method, sample_data, method)
        raw["sr"].update({"distill": "none"} if method == "student" else {})
        raw["sr"]["lpips_weight"] = 0.1
        with pytest.raises(ConfigError, match=r"sr\.lpips_weights.*feature_distance_weight"):
            config_from_dict(raw)


def test_images_of_fewer_than_three_bands_need_the_terms_off() -> None:
    data = SimpleNamespace(rgb_bands=None)
    task = SimpleNamespace(num_bands=1, config=SimpleNamespace(data=data))
    grey = torch.zeros(1, 1, 16, 16)
    on = SimpleNamespace(config=RegressionSRConfig(feature_distance_weight=1.0), task=task)
    with pytest.raises(ConfigError, match=r"1 band\(s\): set both to 0"):
        PerceptualLoss(on)(grey, grey)
    off = SimpleNamespace(config=RegressionSRConfig(), task=task)
    assert float(PerceptualLoss(off)(grey, grey)) == 0.0


def test_nodata_pixels_of_the_estimate_do_not_count() -> None:
    """An estimate that differs from HR only where the mask says nodata is at distance 0."""
    data = SimpleNamespace(rgb_bands=None)
    task = SimpleNamespace(num_bands=3, config=SimpleNamespace(data=data))
    method = SimpleNamespace(config=RegressionSRConfig(feature_distance_weight=1.0), task=task)
    loss = PerceptualLoss(method)
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.ones(2, 1, 32, 32)
    mask[:, :, :, 20:] = 0
    estimate = hr.clone()
    estimate[:, :, :, 20:] = -1.0
    assert float(loss(estimate, hr)) > 0
    assert float(loss(estimate, hr, mask)) == 0.0


def test_train_refuses_a_missing_encoder_before_the_run_folder(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """``terradiff train``: exit 2 naming the key and the file, and nothing written."""
    import yaml

    from terradiff.cli import main

    raw = _student(
        tmp_path,
        sample_data,
        "run",
        feature_distance_weight=0.01,
        feature_distance_encoder=str(tmp_path / "nowhere.safetensors"),
    )
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "sr.feature_distance_encoder" in err and "nowhere.safetensors" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
