"""PCA-based distillation of a VGG extractor (KD-VGG); `terradiff compress`: test_compress.py."""

from __future__ import annotations

import pytest
import torch

from terradiff.distill.kd_vgg import analyse_vgg, distill_vgg
from terradiff.nets.vgg import KDVGGFeatures, VGGFeatures


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
