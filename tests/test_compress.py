"""`terradiff compress`: KD-VGG and KD-UNet of real IIDM models, and the teachers it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

from terradiff.checkpoint import save_checkpoint
from terradiff.cli import main
from terradiff.compress import compress_carbon_unet, compress_carbon_vgg
from terradiff.config import config_from_dict
from terradiff.errors import CheckpointError, DataError, WrongCheckpointError
from terradiff.nets.vgg import KDVGGFeatures, load_kd_vgg
from terradiff.tasks import load_task
from terradiff.tasks.carbon import CarbonTask
from terradiff.tasks.generation import GenerationTask
from terradiff.train import Trainer
from tests.helpers import tiny_config
from tests.tasks.test_carbon import carbon_config


def test_compress_a_real_iidm_model_and_use_it(sample_data: Path, tmp_path: Path) -> None:
    """Train a tiny IIDM on the bundled BioMassters chips, distil its VGG, estimate with it."""
    AcceleratorState._reset_state(reset_partial_state=True)
    root = sample_data / "biomassters"
    raw = carbon_config(tmp_path / "teacher", root, "iidm", max_steps=4)
    raw["data"]["crops_per_image"] = 8
    Trainer(CarbonTask(config_from_dict(raw)), tmp_path / "teacher").fit()

    out = tmp_path / "kd"
    summary = compress_carbon_vgg(
        tmp_path / "teacher", out, basis_epochs=2, block_steps=40, chain_steps=10, progress=False
    )
    assert summary["student_parameters"] < summary["teacher_parameters"]
    assert (out / "table_a2.md").read_text().startswith("| layer | channels |")
    student, ckpt = load_task(out / "run")
    teacher, _ = load_task(tmp_path / "teacher")
    assert student.config.carbon.vgg_channels == summary["vgg_channels"]
    assert isinstance(student.net.extractor, KDVGGFeatures)
    test = student.dataset("test").get(0)["image"][None, :, :32, :32]
    g = torch.Generator()
    a = student.estimate(
        student.net, test, spec=student.sampling_spec(steps=2), generator=g.manual_seed(0)
    ).mean
    b = teacher.estimate(
        teacher.net, test, spec=teacher.sampling_spec(steps=2), generator=g.manual_seed(0)
    ).mean
    assert a.shape == b.shape == (1, 1, 32, 32)
    # the rest of the net is the teacher's: with the same noise the maps stay close
    assert (a - b).abs().mean() < 0.5 * b.abs().mean() + 1e-3

    # the KD-VGG weights slot into a fresh IIDM by config
    raw2 = carbon_config(tmp_path / "fresh", root, "iidm", max_steps=1)
    raw2["carbon"]["vgg_channels"] = summary["vgg_channels"]
    raw2["carbon"]["kd_vgg"] = summary["kd_vgg"]
    fresh = CarbonTask(config_from_dict(raw2))
    torch.testing.assert_close(
        fresh.net.extractor.state_dict()["basis_0"], student.net.extractor.state_dict()["basis_0"]
    )

    # wrong kinds of teacher: already distilled, or not an IIDM
    with pytest.raises(WrongCheckpointError, match="already distilled"):
        compress_carbon_vgg(out / "run", tmp_path / "again", progress=False)
    wrong = KDVGGFeatures(10, "vgg11", [[1], [1]], [2, 4])
    with pytest.raises(CheckpointError, match="widths"):
        load_kd_vgg(wrong, summary["kd_vgg"])
    assert ckpt.step == 4


def test_cli_refuses_an_out_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed 'README.md: File exists' after loading the teacher."""
    (tmp_path / "notes.md").write_text("keep")
    assert main(["compress", str(tmp_path / "run"), "--out", str(tmp_path / "notes.md")]) == 2
    assert f"--out {tmp_path / 'notes.md'} is a file; give a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.md").read_text() == "keep"


def test_cli_refuses_a_threshold_outside_0_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "some/run", "--out", "x", "--threshold", "1.5"])
    assert exit_info.value.code != 0
    assert "(0, 1]" in capsys.readouterr().err


def test_compress_the_unet_of_a_real_iidm_model(
    sample_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KD-UNet: a narrower UNet by mCEV, distilled encoder then decoder; estimates run."""
    AcceleratorState._reset_state(reset_partial_state=True)
    root = sample_data / "biomassters"
    raw = carbon_config(tmp_path / "teacher", root, "iidm", max_steps=4)
    raw["model"]["base_channels"] = 32
    raw["data"]["crops_per_image"] = 8
    Trainer(CarbonTask(config_from_dict(raw)), tmp_path / "teacher").fit()
    small = {"threshold": 0.6, "basis_epochs": 1, "progress": False}
    summary = compress_carbon_unet(
        tmp_path / "teacher", tmp_path / "kd", encoder_steps=8, decoder_steps=8, **small
    )
    assert summary["base_channels"] < 32 and summary["base_channels"] % 8 == 0
    # the student's features, read back through the eigenbases: never below the eigenbasis'
    # own error (W is orthonormal, so W^T S - (F - mu) splits into the part inside the subspace
    # and the floor), and distillation brings the encoder levels closer to it
    errors = summary["feature_errors"]
    levels = len(errors["floor"]) // 2
    assert all(0.0 <= f < 1.0 for f in errors["floor"])
    assert all(e >= f - 1e-4 for e, f in zip(errors["final"], errors["floor"], strict=True))
    encoder = slice(0, levels)
    assert sum(errors["final"][encoder]) < sum(errors["initial"][encoder]), errors
    assert summary["student_parameters"] < summary["teacher_parameters"]
    assert (tmp_path / "kd" / "table_a2_unet.md").read_text().startswith("| level |")
    student, _ = load_task(tmp_path / "kd" / "run")
    assert student.config.model.base_channels == summary["base_channels"]
    # a second compression into the folder replaced the first one's model without a word
    with pytest.raises(DataError, match=r"already holds kd_unet.json, table_a2_unet.md, run"):
        compress_carbon_unet(tmp_path / "teacher", tmp_path / "kd", progress=False)
    # --overwrite replaces OUT/run whole: a later step left by another teacher would be "latest"
    checkpoints = tmp_path / "kd" / "run" / "checkpoints"
    shutil.copytree(checkpoints / "step_00000004", checkpoints / "step_00000099")
    again = compress_carbon_unet(
        tmp_path / "teacher",
        tmp_path / "kd",
        encoder_steps=1,
        decoder_steps=1,
        overwrite=True,
        **small,
    )
    assert [p.name for p in checkpoints.iterdir()] == ["step_00000004"]
    assert Path(again["checkpoint"]) == checkpoints / "step_00000004"
    # the command says how to check the student against its teacher, on validation chips
    argv = ["compress", str(tmp_path / "teacher"), "--part", "unet", "--out", str(tmp_path / "c")]
    argv += ["--encoder-steps", "1", "--decoder-steps", "1", "--threshold", "0.6", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"terradiff evaluate {tmp_path / 'teacher'} --split val" in printed
    assert f"terradiff evaluate {tmp_path / 'c' / 'run'}" in printed
    image = student.dataset("test").get(0)["image"][None, :, :32, :32]
    out = student.estimate(
        student.net,
        image,
        spec=student.sampling_spec(steps=2),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.mean.shape == (1, 1, 32, 32) and torch.isfinite(out.mean).all()
    with pytest.raises(DataError, match="nothing to compress"):
        compress_carbon_unet(tmp_path / "teacher", tmp_path / "kd2", threshold=1.0, progress=False)


def test_a_teacher_of_the_wrong_kind_is_a_checkpoint_error(
    sample_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Untrained checkpoints (a carbon regression model, a generator) name what they are."""
    root = sample_data / "biomassters"
    wrong = {
        "reg": CarbonTask(config_from_dict(carbon_config(tmp_path / "reg", root, "regression"))),
        "gen": GenerationTask(config_from_dict(tiny_config(tmp_path / "gen", sample_data))),
    }
    for name, task in wrong.items():
        state = task.net.state_dict()
        save_checkpoint(tmp_path / name, config=task.checkpoint_config(), model_state=state)
    for compress in (compress_carbon_vgg, compress_carbon_unet):
        with pytest.raises(WrongCheckpointError, match="is a carbon/regression model; 'terradiff"):
            compress(tmp_path / "reg", tmp_path / "out", progress=False)
        with pytest.raises(CheckpointError, match="is a generation model"):
            compress(tmp_path / "gen", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert main(["compress", str(tmp_path / "reg"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "carbon IIDM model" in capsys.readouterr().err
