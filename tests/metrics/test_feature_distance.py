"""The offline perceptual distance (AID encoder, LPIPS's form) on real AID crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from terradiff.metrics.feature_distance import FEATURE_DISTANCE_NAME, load_feature_distance
from terradiff.metrics.image_quality import sr_metrics, sr_metrics_per_image


@pytest.fixture(scope="module")
def distance():
    return load_feature_distance()


@pytest.fixture(scope="module")
def crops(sample_data: Path) -> torch.Tensor:
    """16 real AID scenes (two of each of 8 classes), their top-left 96 px, in [-1, 1]."""
    classes = sorted(p for p in (sample_data / "aid").iterdir() if p.is_dir())[:8]
    images = []
    for folder in classes:
        for path in sorted(folder.glob("*.jpg"))[:2]:
            array = np.array(Image.open(path).convert("RGB"))[:96, :96]
            images.append(torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0)
    return torch.stack(images)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1).float() ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, -1, -1)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), kernel, groups=x.shape[1])


def test_zero_for_equal_images_symmetric_and_per_image(distance, crops: torch.Tensor) -> None:
    blurred = gaussian_blur(crops, 1.0)
    assert torch.equal(distance(crops, crops), torch.zeros(len(crops)))
    forward, backward = distance(crops, blurred), distance(blurred, crops)
    assert (forward > 0).all()
    torch.testing.assert_close(forward, backward)
    # GroupNorm only: an image's distance does not depend on the rest of its batch
    torch.testing.assert_close(distance(crops[:3], blurred[:3]), forward[:3])


def test_grows_with_blur_and_penalises_blur_more_than_noise_of_equal_mse(
    distance, crops: torch.Tensor
) -> None:
    """The ordering of a perceptual metric on real scenes: more blur is farther, and a blur is
    farther than white noise of the same mean squared error (PSNR cannot tell them apart)."""
    by_sigma = [distance(gaussian_blur(crops, s), crops).mean() for s in (0.5, 1.0, 2.0)]
    assert by_sigma[0] < by_sigma[1] < by_sigma[2]
    blurred = gaussian_blur(crops, 1.0)
    rms = (blurred - crops).pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(0))
    noisy = crops + rms * noise / noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    assert distance(blurred, crops).mean() > 1.2 * distance(noisy, crops).mean()


def test_sr_metrics_adds_it_for_rgb_and_leaves_it_out_otherwise(
    distance, crops: torch.Tensor
) -> None:
    pred = gaussian_blur(crops[:4], 1.0)
    row = sr_metrics(pred, crops[:4], crop_border=4, feature_distance=distance)
    per_image = sr_metrics_per_image(pred, crops[:4], crop_border=4, feature_distance=distance)
    direct = distance(pred[..., 4:-4, 4:-4], crops[:4, :, 4:-4, 4:-4])
    assert row[FEATURE_DISTANCE_NAME] == pytest.approx(float(direct.mean()), rel=1e-5)
    assert per_image[FEATURE_DISTANCE_NAME] == pytest.approx(direct.tolist(), rel=1e-5)
    four_bands = torch.cat([pred, pred[:, :1]], dim=1), torch.cat([crops[:4], crops[:4, :1]], 1)
    assert FEATURE_DISTANCE_NAME not in sr_metrics(*four_bands, feature_distance=distance)
    bgr_first = sr_metrics(*four_bands, rgb_bands=(0, 1, 2), feature_distance=distance)
    assert bgr_first[FEATURE_DISTANCE_NAME] == pytest.approx(
        float(distance(pred, crops[:4]).mean())
    )


def test_wrong_shapes_are_refused_and_it_never_trains(distance, crops: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="one shape"):
        distance(crops[:2], crops[:2, :, :64])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        distance(crops[:2, :1], crops[:2, :1])
    distance.train()
    assert not distance.training
    assert not any(p.requires_grad for p in distance.parameters())


def test_a_missing_encoder_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.safetensors"):
        load_feature_distance(tmp_path / "nothing.safetensors")
