"""Tests of terradiff.data.degrade: bicubic resampling and the Real-ESRGAN-style pipeline."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from terradiff.data.degrade import (
    SECOND_ORDER_DEFAULTS,
    DegradationStage,
    RealDegradationConfig,
    bicubic_downsample,
    blur_kernel,
    degrade_real,
    lr_size,
    make_lr,
    upsample_to,
)
from terradiff.errors import ConfigError, DataError

SCALES = (2, 3, 4, 8, 1.5)
BANDS = (1, 3, 4, 13)
H, W = 48, 40  # not square, not divisible by 3 or 8 in width: exercises the rounding


def _image(bands: int, batch: int | None = 2, seed: int = 0, h: int = H, w: int = W):
    g = torch.Generator().manual_seed(seed)
    shape = (bands, h, w) if batch is None else (batch, bands, h, w)
    return torch.rand(shape, generator=g) * 2 - 1


def _quiet_stage(**overrides) -> DegradationStage:
    """A stage that does nothing (no blur, keep size, zero noise, no JPEG) unless overridden."""
    base = {
        "blur_prob": 0.0,
        "resize_probs": (0.0, 0.0, 1.0),
        "gaussian_noise_prob": 1.0,
        "noise_sigma": (0.0, 0.0),
        "jpeg_prob": 0.0,
    }
    base.update(overrides)
    return DegradationStage(**base)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak 1 on the [0, 1] scale)."""
    mse = float((((a + 1) / 2 - (b + 1) / 2) ** 2).mean())
    return 10 * math.log10(1.0 / mse)


@pytest.fixture(scope="module")
def forest(sample_data: Path) -> torch.Tensor:
    """A real AID scene (Forest, 150x150 RGB) as a [3, H, W] tensor in [-1, 1]."""
    files = sorted((sample_data / "aid" / "Forest").glob("*.jpg"))
    if not files:
        pytest.skip("no AID Forest sample in data/samples/aid/Forest")
    with Image.open(files[0]) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous() * 2 - 1


# ---- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [
        ((64, 64), 2, (32, 32)),
        ((64, 64), 4, (16, 16)),
        ((48, 40), 3, (16, 13)),  # 13.33 -> 13
        ((48, 40), 8, (6, 5)),
        ((48, 40), 1.5, (32, 27)),  # 26.67 -> 27
        ((150, 150), 4, (38, 38)),  # 37.5 -> 38 (half up)
        ((10, 10), 4, (3, 3)),  # 2.5 -> 3 (half up, not banker's 2)
        ((5, 5), 2.5, (2, 2)),
    ],
)
def test_lr_size_rounds_half_up(hw, scale, expected):
    assert lr_size(*hw, scale) == expected


@pytest.mark.parametrize("bands", BANDS)
@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_shapes_any_bands_batched_or_not(bands, scale):
    expected = lr_size(H, W, scale)
    batched = bicubic_downsample(_image(bands), scale)
    assert batched.shape == (2, bands, *expected)
    single = bicubic_downsample(_image(bands, batch=None), scale)
    assert single.shape == (bands, *expected)
    assert batched.dtype == torch.float32
    up = upsample_to(batched, (H, W))
    assert up.shape == (2, bands, H, W)


@pytest.mark.parametrize("bands", BANDS)
@pytest.mark.parametrize("scale", SCALES)
def test_real_shapes_any_bands_batched_or_not(bands, scale):
    expected = lr_size(H, W, scale)
    batched = make_lr(_image(bands, batch=1), scale, kind="real", generator=1)
    assert batched.shape == (1, bands, *expected)
    single = degrade_real(_image(bands, batch=None), scale, generator=1)
    assert single.shape == (bands, *expected)
    torch.testing.assert_close(single, batched[0])  # same seed, same image: same result


# ---- bicubic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_of_constant_is_constant(scale):
    x = torch.full((1, 4, H, W), 0.3)
    y = bicubic_downsample(x, scale)
    torch.testing.assert_close(y, torch.full_like(y, 0.3), atol=1e-6, rtol=0)
    up = upsample_to(y, (H, W))
    torch.testing.assert_close(up, torch.full_like(up, 0.3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(75, 75), (38, 38), (100, 64)])
def test_bicubic_matches_pil_float_resize(forest, size):
    """Anti-aliased bicubic is PIL's BICUBIC resize (the usual way LR benchmarks are made)."""
    band = forest[1].numpy()
    ref = np.asarray(Image.fromarray(band).resize(size[::-1], Image.Resampling.BICUBIC))
    scale = 150 / size[0]
    if size[0] == size[1]:
        ours = bicubic_downsample(forest[1:2], scale, clamp=False)[0].numpy()
    else:
        ours = upsample_to(forest[1:2], size, clamp=False)[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_bicubic_clamps_overshoot_and_keeps_dtype():
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    x = checker.expand(1, 3, 32, 32).double()
    y = upsample_to(bicubic_downsample(x, 1.5), (32, 32))
    assert y.dtype == torch.float64
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    unclamped = upsample_to(torch.tensor([[[-1.0, 1.0], [1.0, -1.0]]]), 8, clamp=False)
    assert float(unclamped.abs().max()) > 1.0  # bicubic overshoot exists and is clipped above


# ---- real-world pipeline ---------------------------------------------------------------------


def test_real_is_deterministic_per_seed_and_leaves_global_rng_alone():
    x = _image(3, batch=1, h=48, w=48)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = degrade_real(x, 4, generator=7)
    b = degrade_real(x, 4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    c = degrade_real(x, 4, generator=8)
    assert not torch.allclose(a, c)
    g = torch.Generator().manual_seed(7)
    first, second = degrade_real(x, 4, generator=g), degrade_real(x, 4, generator=g)
    assert torch.equal(first, a) and not torch.allclose(first, second)  # the stream advances


def test_real_params_are_recorded_and_json_serialisable():
    x = _image(3, batch=2, h=48, w=48)
    y, info = degrade_real(x, 4, generator=3, return_params=True)
    assert y.shape == (2, 3, 12, 12)
    assert info["seed"] == 3 and info["lr_size"] == [12, 12] and len(info["images"]) == 2
    for rec in info["images"]:
        assert set(rec) == {"first", "second", "final"}
        assert set(rec["first"]) == {"blur", "resize", "noise", "jpeg"}
        assert rec["final"]["size"] == [12, 12]
        assert rec["first"]["noise"]["kind"] in ("gaussian", "poisson")
    json.dumps(info)  # plain types only
    _, again = degrade_real(x, 4, generator=3, return_params=True)
    assert again == info
    y_fresh, fresh = degrade_real(x, 4, return_params=True)  # no generator: fresh seed, recorded
    assert isinstance(fresh["seed"], int)
    assert torch.equal(degrade_real(x, 4, generator=fresh["seed"]), y_fresh)


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_real_output_stays_in_range(bands):
    # Extreme input (+-1 checkerboard) makes bicubic/sinc overshoot and noise push past the ends.
    checker = (torch.arange(48)[:, None] + torch.arange(48)[None, :]) % 2 * 2.0 - 1.0
    y = degrade_real(checker.expand(3, bands, 48, 48).clone(), 2, generator=bands)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    assert torch.isfinite(y).all()


def test_jpeg_only_for_three_bands_unless_per_band():
    """With every other step disabled, the LR image is area resizing plus (maybe) JPEG."""
    jpeg_only = RealDegradationConfig(
        first=_quiet_stage(jpeg_prob=1.0, jpeg_quality=(30, 30)),
        second=_quiet_stage(),
        final_sinc_prob=0.0,
        final_resize_modes=("area",),
    )
    per_band = replace(jpeg_only, jpeg_per_band=True)
    for bands, cfg, mode in [
        (3, jpeg_only, "rgb"),
        (4, jpeg_only, "skipped"),
        (1, jpeg_only, "skipped"),
        (4, per_band, "per_band"),
    ]:
        x = _image(bands, batch=1, h=32, w=32)
        y, info = degrade_real(x, 2, cfg, generator=0, return_params=True)
        assert info["images"][0]["first"]["jpeg"]["mode"] == mode
        area = F.interpolate(x, size=(16, 16), mode="area")
        if mode == "skipped":
            torch.testing.assert_close(y, area, atol=1e-5, rtol=0)
        else:
            assert float((y - area).abs().mean()) > 0.01


def test_blur_kernels_are_normalised_and_shaped():
    iso = blur_kernel({"kind": "iso", "size": 21, "sigma_x": 2.0, "sigma_y": 2.0, "theta": 0.0})
    assert iso.shape == (21, 21)
    assert float(iso.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(iso, iso.T)  # isotropic
    aniso = blur_kernel({"kind": "aniso", "size": 21, "sigma_x": 3.0, "sigma_y": 0.5, "theta": 0})
    assert float(aniso[10].sum()) > float(aniso[:, 10].sum())  # wide along x (columns)
    rotated = blur_kernel(
        {"kind": "aniso", "size": 21, "sigma_x": 3.0, "sigma_y": 0.5, "theta": math.pi / 2}
    )
    torch.testing.assert_close(rotated, aniso.T)
    for kind, beta in [("generalized_aniso", 2.0), ("plateau_iso", 1.5)]:
        k = blur_kernel(
            {"kind": kind, "size": 11, "sigma_x": 1.0, "sigma_y": 2.0, "theta": 0.3, "beta": beta}
        )
        assert float(k.sum()) == pytest.approx(1.0) and float(k.min()) >= 0
    sinc = blur_kernel({"kind": "sinc", "size": 21, "omega_c": math.pi / 4})
    assert float(sinc.sum()) == pytest.approx(1.0) and float(sinc.min()) < 0  # ringing lobes
    assert int(sinc.argmax()) == 21 * 10 + 10


def test_real_image_degradations(forest: torch.Tensor, sample_data: Path) -> None:
    """On a real AID Forest scene: bicubic x4 is a sane LR image; the real pipeline differs."""
    hr = forest[None]
    lr = bicubic_downsample(hr, 4)
    assert lr.shape == (1, 3, 38, 38)
    back = upsample_to(lr, hr.shape[-2:])
    psnr = _psnr(back, hr)
    # PIL's antialiased bicubic resize down and up again, an independent implementation, gives
    # 33.17 dB on this scene (ours 33.27): they agree within 0.5 dB.
    with Image.open(sorted((sample_data / "aid" / "Forest").glob("*.jpg"))[0]) as im:
        rgb = im.convert("RGB")
        pil = rgb.resize((38, 38), Image.Resampling.BICUBIC).resize(
            rgb.size, Image.Resampling.BICUBIC
        )
    pil_back = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    assert abs(psnr - _psnr(pil_back[None], hr)) < 0.5, psnr
    real = degrade_real(hr, 4, generator=0)
    assert real.shape == lr.shape
    assert float((real - lr).abs().mean()) > 0.01
    real_psnr = _psnr(upsample_to(real, hr.shape[-2:]), hr)
    assert 10.0 < real_psnr < psnr  # blur, noise and JPEG lose more than bicubic alone


# ---- config and errors -----------------------------------------------------------------------


def test_config_defaults_from_real_esrgan_and_round_trip():
    cfg = RealDegradationConfig()
    assert cfg.first.blur_sigma == (0.2, 3.0) and cfg.second.blur_sigma == (0.2, 1.5)
    assert cfg.first.noise_sigma == (1.0, 30.0) and cfg.second.noise_sigma == (1.0, 25.0)
    assert cfg.first.poisson_scale == (0.05, 3.0) and cfg.second.poisson_scale == (0.05, 2.5)
    assert cfg.first.jpeg_quality == (30.0, 95.0) == cfg.second.jpeg_quality
    assert cfg.second == SECOND_ORDER_DEFAULTS
    assert RealDegradationConfig(**cfg.to_dict()) == cfg
    partial = RealDegradationConfig(second={"noise_sigma": [1, 10]})  # from YAML: lists, partial
    assert partial.second.noise_sigma == (1, 10) and partial.second.blur_prob == 0.8
    with pytest.raises(FrozenInstanceError):
        cfg.jpeg_per_band = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"blur_sigma": (3.0, 1.0)},
        {"blur_sigma": (0.0, 1.0)},
        {"kernel_probs": (0.5, 0.5, 0.5, 0.0, 0.0, 0.0)},
        {"kernel_sizes": (7, 8)},
        {"kernel_types": ("iso", "gabor"), "kernel_probs": (0.5, 0.5)},
        {"resize_probs": (0.2, 0.2, 0.2)},
        {"resize_range": (1.2, 1.5)},
        {"resize_modes": ("lanczos",)},
        {"jpeg_quality": (30, 120)},
        {"gray_noise_prob": 1.5},
    ],
)
def test_bad_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        DegradationStage(**kwargs)


def test_bad_config_key_raises():
    with pytest.raises(ConfigError, match="blur_sgima"):
        RealDegradationConfig(first={"blur_sgima": (1, 2)})


@pytest.mark.parametrize("scale", [1, 1.0, 0.5, 0, -2, float("nan"), float("inf"), True, "4"])
def test_bad_scale_raises(scale):
    x = _image(3)
    for fn in (bicubic_downsample, degrade_real, make_lr):
        with pytest.raises(DataError, match="scale"):
            fn(x, scale)


def test_image_smaller_than_scale_names_sizes():
    with pytest.raises(DataError, match=r"3x5.*scale factor 4"):
        bicubic_downsample(torch.zeros(1, 3, 5), 4)
    with pytest.raises(DataError, match="7x7"):
        degrade_real(torch.zeros(2, 7, 7), 8, generator=0)


def test_bad_inputs_raise_data_error():
    x = _image(3)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(DataError, match="non-finite"):
        bicubic_downsample(x, 2)
    with pytest.raises(DataError, match="non-finite"):
        degrade_real(x, 2, generator=0)
    with pytest.raises(DataError, match="dtype"):
        make_lr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(DataError, match="shape"):
        bicubic_downsample(torch.zeros(8, 8), 2)
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        degrade_real(_image(3) * 300, 2, generator=0)
    assert bicubic_downsample(_image(3) * 300, 2, clamp=False).abs().max() > 1  # opt-out
    with pytest.raises(ConfigError, match="kind"):
        make_lr(_image(3), 2, kind="gan")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        degrade_real(_image(3), 2, generator=np.random.default_rng(0))  # type: ignore[arg-type]
