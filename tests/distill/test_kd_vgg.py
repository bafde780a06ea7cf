"""PCA-based distillation of a VGG extractor (KD-VGG): the procedure, and on a real IIDM model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.distill.compress import compress_carbon_vgg
from terradiff.distill.kd_vgg import analyse_vgg, distill_vgg
from terradiff.errors import CheckpointError, DataError
from terradiff.nets.vgg import KDVGGFeatures, VGGFeatures, load_kd_vgg
from terradiff.tasks import load_task
from terradiff.tasks.carbon import CarbonTask
from terradiff.train import Trainer
from tests.tasks.test_carbon import carbon_config


def _smooth_images(n: int, seed: int) -> torch.Tensor:
    """Images with few degrees of freedom (smooth fields): low-rank features to find."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 4, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


def test_distill_vgg_keeps_the_teachers_interface_with_fewer_parameters() -> None:
    torch.manual_seed(0)
    teacher = VGGFeatures(4, "vgg11", width=0.25, num_stages=2).eval()
    data = [_smooth_images(8, seed) for seed in range(4)]
    rows = analyse_vgg(teacher, data, 0.85)
    assert [r.layer for r in rows] == ["stage1.conv1", "stage2.conv1"]
    assert all(1 <= r.selected <= r.channels for r in rows)
    assert all(r.mcev_at_selected >= 0.85 for r in rows)

    kd, report = distill_vgg(
        teacher, lambda: data, block_steps=500, chain_steps=100, lr=3e-3, progress=False
    )
    assert isinstance(kd, KDVGGFeatures)
    assert kd.feature_channels == teacher.feature_channels
    assert report.student_parameters < report.teacher_parameters and report.kd_ratio > 1
    images = data[0]
    for a, b in zip(kd(images), teacher(images), strict=True):
        assert a.shape == b.shape
    first, last = report.block_losses[0], report.block_losses[-1]
    assert all(b < 0.5 * a for a, b in zip(first, last, strict=True)), (first, last)
    # the student gets close to the best its bases allow (the kept variance sets that floor)
    for error, floor in zip(report.relative_feature_error, report.basis_floor_error, strict=True):
        assert floor < error < floor + 0.12, (
            report.relative_feature_error,
            report.basis_floor_error,
        )
    assert all(v > 0.6 for v in report.basis_kept_variance)
    for n in range(2):
        w, _ = kd.basis(n)
        torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)


def test_too_few_images_is_a_clear_error() -> None:
    teacher = VGGFeatures(3, "vgg11", width=0.125, num_stages=1)
    with pytest.raises(Exception, match="at least 8 images"):
        analyse_vgg(teacher, [torch.rand(2, 3, 8, 8)])


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
    with pytest.raises(CheckpointError, match="already distilled"):
        compress_carbon_vgg(out / "run", tmp_path / "again", progress=False)
    wrong = KDVGGFeatures(10, "vgg11", [[1], [1]], [2, 4])
    with pytest.raises(CheckpointError, match="widths"):
        load_kd_vgg(wrong, summary["kd_vgg"])
    assert ckpt.step == 4


def test_cli_refuses_a_threshold_outside_0_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "some/run", "--out", "x", "--threshold", "1.5"])
    assert exit_info.value.code != 0
    assert "(0, 1]" in capsys.readouterr().err


def test_compress_the_unet_of_a_real_iidm_model(sample_data: Path, tmp_path: Path) -> None:
    """KD-UNet: a narrower UNet by mCEV, distilled encoder then decoder; estimates run."""
    from terradiff.distill.compress import compress_carbon_unet

    AcceleratorState._reset_state(reset_partial_state=True)
    root = sample_data / "biomassters"
    raw = carbon_config(tmp_path / "teacher", root, "iidm", max_steps=4)
    raw["model"]["base_channels"] = 32
    raw["data"]["crops_per_image"] = 8
    Trainer(CarbonTask(config_from_dict(raw)), tmp_path / "teacher").fit()
    summary = compress_carbon_unet(
        tmp_path / "teacher",
        tmp_path / "kd",
        threshold=0.6,
        basis_epochs=1,
        encoder_steps=8,
        decoder_steps=8,
        progress=False,
    )
    assert summary["base_channels"] < 32 and summary["base_channels"] % 8 == 0
    assert summary["student_parameters"] < summary["teacher_parameters"]
    assert (tmp_path / "kd" / "table_a2_unet.md").read_text().startswith("| level |")
    student, _ = load_task(tmp_path / "kd" / "run")
    assert student.config.model.base_channels == summary["base_channels"]
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
