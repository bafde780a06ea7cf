"""ChangeHead and SupervisedChangeUNet: shapes, the difference property, input checks."""

from __future__ import annotations

import pytest
import torch

from terradiff.nets.change import ChangeHead, SupervisedChangeUNet, count_parameters


def _levels(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, s, s, generator=g) for c, s in ((24, 8), (12, 16), (6, 32))]


def test_head_shapes_and_size() -> None:
    head = ChangeHead((24, 12, 6), hidden=16)
    a, b = _levels(seed=0), _levels(seed=1)
    assert head(a, b).shape == (2, 1, 32, 32)
    assert head(a, b, size=(64, 48)).shape == (2, 1, 64, 48)
    assert ChangeHead((24, 12, 6), hidden=16, out_channels=2)(a, b).shape == (2, 2, 32, 32)


def test_head_sees_only_the_difference() -> None:
    head = ChangeHead((24, 12, 6), hidden=16).eval()
    a, b = _levels(seed=0), _levels(seed=1)
    with torch.no_grad():
        same = head(a, a), head(b, b)
        swapped = head(b, a), head(a, b)
    # identical dates: every level's difference is 0, whatever the images hold
    assert torch.equal(*same)
    assert torch.allclose(*swapped, atol=1e-6)  # |a - b| is symmetric in the dates


def test_head_and_baseline_errors() -> None:
    head = ChangeHead((24, 12, 6), hidden=16)
    with pytest.raises(ValueError, match=r"before features have channels \[24, 12\]"):
        head(_levels()[:2], _levels())
    with pytest.raises(ValueError, match="num_groups"):
        ChangeHead((8,), hidden=12, num_groups=8)
    baseline = SupervisedChangeUNet(
        3,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=32,
        num_groups=4,
    )
    x = torch.rand(2, 3, 32, 32)
    assert baseline(x, x).shape == (2, 1, 32, 32) and count_parameters(baseline) > 0
    with pytest.raises(ValueError, match="before and after"):
        baseline(x, x[:, :1])
