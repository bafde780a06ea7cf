"""DDPM-CD building blocks on real LEVIR-CD crops: frozen multi-timestep decoder features and a
change head that learns (falling loss), beside the supervised U-Net baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from terradiff.change import DDPMChangeDetector, DiffusionFeatures
from terradiff.data.levir import LevirCDDataset
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.nets.change import SupervisedChangeUNet, count_parameters
from terradiff.nets.unet import UNet

SMALL = {
    "base_channels": 16,
    "channel_mults": (1, 2, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (),
    "image_size": 64,
    "num_groups": 8,
}


def _features(timesteps: tuple[int, ...] = (50, 100, 400)) -> DiffusionFeatures:
    torch.manual_seed(0)
    unet = UNet(3, **SMALL)  # stands in for a generator trained on the unlabelled images
    return DiffusionFeatures(unet, NoiseSchedule.create("linear", 1000), timesteps)


@pytest.fixture(scope="module")
def batch(shared_data: Path) -> dict[str, torch.Tensor]:
    data = LevirCDDataset(shared_data / "levir-cd", split="train", crop_size=32, crops_per_pair=4)
    items = [data.get(i, epoch=0) for i in range(len(data)) if i // 4 != 1]  # train_386: no change
    return {k: torch.stack([it[k] for it in items]) for k in ("before", "after", "label")}


def test_features_are_multi_scale_multi_timestep_and_frozen() -> None:
    features = _features()
    assert features.feature_channels == (96, 96, 48)  # 3 timesteps x (32, 32, 16), coarse first
    assert not any(p.requires_grad for p in features.unet.parameters())
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    a, b = features.pair(image, image, torch.Generator().manual_seed(0))
    assert [tuple(f.shape) for f in a] == [(2, 96, 16, 16), (2, 96, 32, 32), (2, 48, 64, 64)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # same noise for both dates
    again, _ = features.pair(image, image, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, again, strict=True))
    fine = DiffusionFeatures(features.unet, features.schedule, (10,), levels=[2])
    assert fine.feature_channels == (16,) and len(fine(image)) == 1
    with pytest.raises(ValueError, match="timesteps"):
        DiffusionFeatures(features.unet, features.schedule, (1000,))
    with pytest.raises(ValueError, match="levels"):
        DiffusionFeatures(features.unet, features.schedule, levels=[3])


def _train(
    model_step: Callable[[], torch.Tensor], params: Iterable[torch.nn.Parameter], steps: int = 30
) -> list[float]:
    optimizer = torch.optim.Adam(params, lr=5e-3)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model_step()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_change_head_trains_on_real_levir_crops(batch: dict[str, torch.Tensor]) -> None:
    detector = DDPMChangeDetector(_features(), hidden=32)
    before, after, label = batch["before"], batch["after"], batch["label"]
    assert before.shape == (12, 3, 32, 32) and 0 < label.mean() < 0.5
    p = label.mean()
    prior = float(-(p * p.log() + (1 - p) * (1 - p).log()))  # BCE of predicting the change rate
    a, b = detector.features.pair(before, after, torch.Generator().manual_seed(0))
    frozen = [p.clone() for p in detector.features.unet.parameters()]
    torch.manual_seed(0)

    def step() -> torch.Tensor:  # features are frozen: computed once, as a training loop caches
        return F.binary_cross_entropy_with_logits(detector.head(a, b, (32, 32)), label)

    losses = _train(step, detector.head.parameters(), steps=20)
    assert sum(losses[-3:]) < sum(losses[:3]) and losses[-1] < 0.9 * prior, (prior, losses)
    unet = detector.features.unet
    assert all(torch.equal(p, q) for p, q in zip(frozen, unet.parameters(), strict=True))
    logits = detector(before[:2], after[:2], torch.Generator().manual_seed(1))
    assert logits.shape == (2, 1, 32, 32)


def test_supervised_unet_baseline_trains_and_has_a_similar_size(
    batch: dict[str, torch.Tensor],
) -> None:
    torch.manual_seed(0)
    head = DDPMChangeDetector(_features(), hidden=32).head
    baseline = SupervisedChangeUNet(3, **{**SMALL, "base_channels": 8})
    ratio = count_parameters(baseline) / count_parameters(head)
    assert 0.5 < ratio < 2.0, (count_parameters(baseline), count_parameters(head))
    before, after, label = batch["before"][:6], batch["after"][:6], batch["label"][:6]

    def step() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(baseline(before, after), label)

    losses = _train(step, baseline.parameters(), steps=10)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    with pytest.raises(ValueError, match="before and after"):
        baseline(before, after[:, :2])
