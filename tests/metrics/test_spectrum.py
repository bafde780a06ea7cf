"""Tests for terradiff.metrics.spectrum: radial power spectra, high-frequency power, LSD."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from terradiff.data.degrade import make_lr, upsample_to
from terradiff.errors import DataError
from terradiff.metrics.image_quality import sr_metrics, sr_metrics_per_image
from terradiff.metrics.spectrum import (
    high_frequency_power,
    log_spectral_distance,
    power_spectrum,
    radial_power_spectrum,
)

SIX_DB = 10 * math.log10(4.0)  # power of an image scaled by 2


@pytest.fixture(scope="module")
def aid_scenes(sample_data: Path) -> Tensor:
    """Two real AID scenes, 144 px centre crops, ``[2, 3, 144, 144]`` in [-1, 1]."""
    paths = [sample_data / "aid" / "Beach" / "beach_1.jpg", sample_data / "aid" / "Forest"]
    files = [paths[0], sorted(paths[1].glob("*.jpg"))[0]] if paths[1].is_dir() else []
    if len(files) < 2 or not files[0].is_file():
        pytest.skip("AID samples not found")
    scenes = []
    for path in files:
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
        top, left = (arr.shape[0] - 144) // 2, (arr.shape[1] - 144) // 2
        scenes.append(torch.from_numpy(arr[top : top + 144, left : left + 144]).permute(2, 0, 1))
    return torch.stack(scenes)


def _numpy_high_frequency_power(x: np.ndarray, cutoff: float) -> float:
    """Independent reference: the windowed power above ``cutoff`` of one ``[C, H, W]`` image."""
    h, w = x.shape[-2:]
    window = np.outer(np.hanning(h), np.hanning(w))
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    band = (radius > cutoff) & (radius <= 0.5)
    total = 0.0
    for plane in x.astype(np.float64):
        spectrum = np.abs(np.fft.fft2((plane - plane.mean()) * window)) ** 2
        total += spectrum[band].sum() / (window**2).sum()
    return total


def test_white_noise_has_a_flat_spectrum_at_its_variance_per_band() -> None:
    noise = torch.randn(64, 2, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5
    frequencies, power = radial_power_spectrum(noise)
    assert frequencies.shape == (32,) and power.shape == (64, 32)
    assert frequencies[0] == pytest.approx(0.5 / 64) and frequencies[-1] == pytest.approx(
        0.5 - 0.5 / 64
    )
    # two bands of variance 0.25 each; the first rings lose power to the mean's removal
    assert power.mean(0)[4:].numpy() == pytest.approx(np.full(28, 0.5), rel=0.06)


def test_a_sinusoid_puts_its_power_in_its_ring() -> None:
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    wave = torch.cos(2 * math.pi * (0.25 * cols + 0.125 * rows))[None, None]
    frequencies, power = radial_power_spectrum(wave)
    peak = int(power[0].argmax())
    assert abs(float(frequencies[peak]) - math.hypot(0.25, 0.125)) <= 0.5 / 32
    # above the x4 LR Nyquist (0.125): almost all of its power; a x2 cutoff (0.25) keeps it too
    low = torch.cos(2 * math.pi * 0.05 * cols)[None, None]
    assert float(high_frequency_power(wave + low, low + 0.0 * wave, 4)) > 30.0


def test_the_power_matches_an_independent_numpy_computation(aid_scenes: Tensor) -> None:
    hr = aid_scenes
    blurred = upsample_to(make_lr(hr, 4, "bicubic"), hr.shape[-2:])
    got = high_frequency_power(blurred, hr, 4, reduction="none")
    want = [
        10
        * math.log10(_numpy_high_frequency_power(b, 0.125) / _numpy_high_frequency_power(t, 0.125))
        for b, t in zip(blurred.numpy(), hr.numpy(), strict=True)
    ]
    assert got.numpy() == pytest.approx(np.array(want), abs=1e-4)
    assert power_spectrum(hr).shape == (2, 144, 144)


def test_real_scenes_bicubic_lacks_detail_noise_adds_it_scaling_is_exact(
    aid_scenes: Tensor,
) -> None:
    hr = aid_scenes
    bicubic = upsample_to(make_lr(hr, 4, "bicubic"), hr.shape[-2:])
    noisy = hr + 0.1 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
    assert (high_frequency_power(bicubic, hr, 4, reduction="none", crop_border=4) < -10).all()
    assert (high_frequency_power(noisy, hr, 4, reduction="none", crop_border=4) > 0).all()
    assert float(high_frequency_power(hr, hr, 4)) == 0.0
    assert float(log_spectral_distance(hr, hr, 4)) == 0.0
    # an image at twice the contrast has 4x the power in every ring: +6.02 dB, LSD 6.02 dB
    doubled = high_frequency_power(2 * hr, hr, 4, reduction="none")
    assert doubled.numpy() == pytest.approx([SIX_DB, SIX_DB], abs=1e-4)
    assert log_spectral_distance(2 * hr, hr, 4, reduction="none").numpy() == pytest.approx(
        [SIX_DB, SIX_DB], abs=1e-4
    )
    # bicubic's spectrum is further from the reference's than the noisy copy's
    assert float(log_spectral_distance(bicubic, hr, 4)) > float(log_spectral_distance(noisy, hr, 4))


def test_reductions_masks_and_dtypes(aid_scenes: Tensor) -> None:
    hr = aid_scenes
    pred = hr * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1)
    per_image = high_frequency_power(pred, hr, 2, reduction="none")
    assert float(high_frequency_power(pred, hr, 2)) == pytest.approx(float(per_image.mean()))
    pooled = high_frequency_power(pred, hr, 2, reduction="pooled")
    assert pooled.ndim == 0 and float(pooled) != pytest.approx(float(per_image.mean()))
    assert log_spectral_distance(pred, hr, 2, reduction="pooled").ndim == 0
    mask = torch.ones(2, 1, 144, 144, dtype=torch.bool)
    mask[1, 0, 10, 10] = False  # one invalid pixel: no spectrum for image 1, left out of the mean
    masked = high_frequency_power(pred, hr, 2, mask=mask, reduction="none")
    assert masked[0] == pytest.approx(float(per_image[0])) and torch.isnan(masked[1])
    assert float(high_frequency_power(pred, hr, 2, mask=mask)) == pytest.approx(float(per_image[0]))
    assert torch.isnan(log_spectral_distance(pred, hr, 2, mask=mask, reduction="none")[1])
    assert high_frequency_power(pred, hr, 2).dtype == torch.float32
    assert high_frequency_power(pred.double(), hr.double(), 2).dtype == torch.float64
    flat = torch.zeros(1, 3, 16, 16)  # a constant reference has no power: NaN, not inf
    assert torch.isnan(high_frequency_power(flat + 0.1, flat, 4))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: high_frequency_power(x, x, 1.0), "scale"),
        (lambda x: log_spectral_distance(x, x, float("nan")), "scale"),
        (lambda x: high_frequency_power(x, x[:, :2], 4), "shape"),
        (lambda x: power_spectrum(x[..., :3, :3]), "4x4"),
        (lambda x: power_spectrum(x.masked_fill(x > 0.5, float("nan"))), "NaN"),
        (lambda x: radial_power_spectrum(x, rings=0), "rings"),
        (lambda x: high_frequency_power(x, x, 4, reduction="sum"), "reduction"),
    ],
)
def test_bad_input_is_refused(call, match: str) -> None:
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with pytest.raises(DataError, match=match):
        call(x)


def test_sr_metrics_adds_the_spectral_measures_only_with_a_scale(aid_scenes: Tensor) -> None:
    hr = aid_scenes
    bicubic = upsample_to(make_lr(hr, 4, "bicubic"), hr.shape[-2:])
    assert "hf_power_db" not in sr_metrics(bicubic, hr, crop_border=4)
    row = sr_metrics(bicubic, hr, crop_border=4, scale=4)
    per = sr_metrics_per_image(bicubic, hr, crop_border=4, scale=4)
    assert row["hf_power_db"] == pytest.approx(
        float(high_frequency_power(bicubic, hr, 4, crop_border=4)), abs=1e-5
    )
    assert row["lsd_hf_db"] == pytest.approx(float(np.mean(per["lsd_hf_db"])), abs=1e-4)
    assert len(per["hf_power_db"]) == 2
