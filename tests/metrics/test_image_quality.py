"""Tests for terradiff.metrics.image_quality: PSNR, SSIM, Y channel, MAE/RMSE, LPIPS, sr_metrics.

Agreement is checked against scikit-image and torchmetrics when they are importable (dev
extras), and always against an independent NumPy/SciPy reference of the same definitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy.ndimage import gaussian_filter
from torch import Tensor

from terradiff.errors import CheckpointError, DataError
from terradiff.metrics.image_quality import (
    LPIPS,
    load_lpips,
    mae,
    psnr,
    psnr_y,
    rgb_to_y,
    rmse,
    sr_metrics,
    sr_metrics_per_image,
    ssim,
    ssim_y,
)

TOL = 1e-4


def _rand(shape: tuple[int, ...], seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _noisy(x: Tensor, std: float, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def _hwc(x: Tensor) -> np.ndarray:
    """One image [C, H, W] -> float64 [H, W, C] for scikit-image."""
    return x.permute(1, 2, 0).double().numpy()


def _ref_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. (2004) SSIM of one [H, W, C] pair, written independently with SciPy.

    Gaussian sigma 1.5 truncated at 3.5 sigma (11 taps), population statistics, 'valid' region
    (5 pixels cropped per side), mean over bands: scikit-image's gaussian_weights=True recipe.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for b in range(x.shape[-1]):
        a, t = x[..., b], y[..., b]

        def f(v: np.ndarray) -> np.ndarray:
            return gaussian_filter(v, sigma=1.5, truncate=3.5, mode="reflect")

        ux, uy = f(a), f(t)
        vx, vy, vxy = f(a * a) - ux * ux, f(t * t) - uy * uy, f(a * t) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def _ref_psnr(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return float(10 * np.log10(data_range**2 / np.mean((x - y) ** 2)))


def _load_aid(path: Path) -> Tensor:
    arr = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).float().unsqueeze(0) / 127.5 - 1.0


def _bicubic_down_up(path: Path, scale: int = 4) -> Tensor:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    small = img.resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    up = small.resize((w, h), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(up)).permute(2, 0, 1).float().unsqueeze(0) / 127.5 - 1.0


@pytest.fixture(scope="module")
def real_pair(sample_data: Path) -> tuple[Tensor, Tensor, Tensor]:
    """(HR scene, its bicubic x4 down-up copy, another real scene), [1, 3, 150, 150] in [-1, 1]."""
    aid = sample_data / "aid"
    a, other = aid / "Beach" / "beach_1.jpg", aid / "Forest" / "forest_1.jpg"
    if not a.is_file() or not other.is_file():
        pytest.skip(f"AID samples not found under {aid}")
    return _load_aid(a), _bicubic_down_up(a), _load_aid(other)


@pytest.fixture(scope="module")
def skimage_metrics():
    return pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def tm_image():
    return pytest.importorskip("torchmetrics.functional.image")


# --------------------------------------------------------------------------- PSNR


def test_psnr_matches_numpy_reference_random_and_real(real_pair) -> None:
    pred = _rand((3, 4, 32, 24), 0)
    target = _noisy(pred, 0.1, 1)
    got = psnr(pred, target, reduction="none")
    want = [_ref_psnr(_hwc(pred[i]), _hwc(target[i]), 2.0) for i in range(3)]
    assert got.shape == (3,)
    assert np.allclose(got.numpy(), want, atol=TOL, rtol=0)
    assert psnr(pred, target).item() == pytest.approx(float(np.mean(want)), abs=TOL)
    hr, lr_up, _ = real_pair
    assert psnr(lr_up, hr).item() == pytest.approx(_ref_psnr(_hwc(lr_up[0]), _hwc(hr[0]), 2.0))


def test_psnr_matches_skimage(skimage_metrics, real_pair) -> None:
    hr, lr_up, other = real_pair
    pred = _rand((2, 3, 40, 40), 2)
    target = _noisy(pred, 0.2, 3)
    cases = [(pred[i : i + 1], target[i : i + 1]) for i in range(2)]
    cases += [(lr_up, hr), (other, hr)]
    for p, t in cases:
        want = skimage_metrics.peak_signal_noise_ratio(_hwc(t[0]), _hwc(p[0]), data_range=2.0)
        assert psnr(p, t).item() == pytest.approx(want, abs=TOL)
    # 8-bit scale: same numbers with data_range=255.
    p255, t255 = (lr_up + 1) * 127.5, (hr + 1) * 127.5
    want = skimage_metrics.peak_signal_noise_ratio(_hwc(t255[0]), _hwc(p255[0]), data_range=255)
    assert psnr(p255, t255, data_range=255.0).item() == pytest.approx(want, abs=TOL)


def test_psnr_matches_torchmetrics(tm_image, real_pair) -> None:
    hr, lr_up, other = real_pair
    pred = torch.cat([lr_up, other, _rand((1, 3, 150, 150), 4)])
    target = torch.cat([hr, hr, _noisy(pred[2:], 0.05, 5)])
    want = tm_image.peak_signal_noise_ratio(
        pred.double(), target.double(), data_range=2.0, reduction="none", dim=(1, 2, 3)
    )
    got = psnr(pred, target, reduction="none")
    assert torch.allclose(got.double(), want, atol=TOL, rtol=0)
    # torchmetrics' dim=None default is one MSE over the whole batch: our "pooled".
    pooled = tm_image.peak_signal_noise_ratio(pred.double(), target.double(), data_range=2.0)
    assert psnr(pred, target, reduction="pooled").item() == pytest.approx(pooled.item(), abs=TOL)


def test_psnr_identical_is_inf_and_physical_units_invariant() -> None:
    x = _rand((2, 3, 16, 16), 6)
    assert torch.isinf(psnr(x, x, reduction="none")).all()
    assert psnr(x, x).item() == float("inf")
    y = _noisy(x, 0.1, 7)
    base = psnr(y, x).item()
    # Reflectance 0..10000: the same image quality in physical units.
    assert psnr(y * 5000 + 5000, x * 5000 + 5000, data_range=10000.0).item() == pytest.approx(
        base, abs=TOL
    )
    assert psnr(y.double(), x.double()).dtype == torch.float64
    assert psnr(y, x).dtype == torch.float32


def test_psnr_per_band_and_13_bands() -> None:
    pred = _rand((2, 13, 20, 20), 8)
    target = _noisy(pred, 0.1, 9)
    per = psnr(pred, target, reduction="none", per_band=True)
    assert per.shape == (2, 13)
    for b in (0, 7, 12):
        want = _ref_psnr(pred[0, b].double().numpy(), target[0, b].double().numpy(), 2.0)
        assert per[0, b].item() == pytest.approx(want, abs=TOL)
    assert psnr(pred, target, per_band=True).shape == (13,)
    want_all = _ref_psnr(_hwc(pred[1]), _hwc(target[1]), 2.0)
    assert psnr(pred, target, reduction="none")[1].item() == pytest.approx(want_all, abs=TOL)


# --------------------------------------------------------------------------- SSIM


def test_ssim_matches_scipy_reference(real_pair) -> None:
    pred = _rand((2, 3, 30, 26), 10)
    target = _noisy(pred, 0.3, 11)
    got = ssim(pred, target, reduction="none")
    want = [_ref_ssim(_hwc(pred[i]), _hwc(target[i]), 2.0) for i in range(2)]
    assert np.allclose(got.numpy(), want, atol=TOL, rtol=0)
    hr, lr_up, _ = real_pair
    assert ssim(lr_up, hr).item() == pytest.approx(_ref_ssim(_hwc(lr_up[0]), _hwc(hr[0]), 2.0))


def test_ssim_matches_skimage(skimage_metrics, real_pair) -> None:
    hr, lr_up, other = real_pair
    pred = _rand((1, 3, 48, 40), 12)
    cases = [(pred, _noisy(pred, 0.2, 13)), (lr_up, hr), (other, hr)]
    for p, t in cases:
        want = skimage_metrics.structural_similarity(
            _hwc(p[0]),
            _hwc(t[0]),
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=2.0,
        )
        assert ssim(p, t).item() == pytest.approx(want, abs=TOL)
    # 13 bands, per band.
    p13 = _rand((1, 13, 24, 24), 14)
    t13 = _noisy(p13, 0.2, 15)
    want = skimage_metrics.structural_similarity(
        _hwc(p13[0]),
        _hwc(t13[0]),
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=2.0,
    )
    assert ssim(p13, t13).item() == pytest.approx(want, abs=TOL)
    band5 = skimage_metrics.structural_similarity(
        p13[0, 5].double().numpy(),
        t13[0, 5].double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=2.0,
    )
    assert ssim(p13, t13, per_band=True)[5].item() == pytest.approx(band5, abs=TOL)


def test_ssim_torchmetrics_uses_reflect_padding(tm_image, real_pair) -> None:
    """torchmetrics (since PR 2721) averages the reflect-padded same-size map: padding="reflect"."""
    hr, lr_up, other = real_pair
    pred = torch.cat([lr_up, other, _rand((1, 3, 150, 150), 16)])
    target = torch.cat([hr, hr, _noisy(pred[2:], 0.2, 17)])
    # float32 for torchmetrics: its float64 11x11 conv2d takes seconds on a CPU.
    want = tm_image.structural_similarity_index_measure(
        pred, target, data_range=2.0, reduction="none"
    )
    got = ssim(pred, target, reduction="none", padding="reflect")
    assert torch.allclose(got, want, atol=TOL, rtol=0)
    mean = tm_image.structural_similarity_index_measure(pred, target, 2.0)
    assert ssim(pred, target, padding="reflect").item() == pytest.approx(mean.item(), abs=TOL)


def test_ssim_long_rows_use_strips_and_still_match() -> None:
    """Rows longer than one banded-matmul strip (410 outputs > 384) are filtered in pieces."""
    pred = _rand((1, 2, 16, 420), 48)
    target = _noisy(pred, 0.3, 49)
    want = _ref_ssim(_hwc(pred[0]), _hwc(target[0]), 2.0)
    assert ssim(pred, target).item() == pytest.approx(want, abs=TOL)
    tall = ssim(pred.transpose(-1, -2), target.transpose(-1, -2)).item()
    assert tall == pytest.approx(want, abs=TOL)


def test_ssim_identical_scale_invariance_and_bounds() -> None:
    x = _rand((2, 13, 24, 24), 18)
    assert torch.allclose(ssim(x, x, reduction="none"), torch.ones(2))
    y = _noisy(x, 0.3, 19)
    base = ssim(y, x).item()
    assert -1 < base < 1
    # SSIM is invariant to a common scale (not to an offset: the luminance term sees the means).
    phys = ssim(y * 5000, x * 5000, data_range=10000.0).item()
    assert phys == pytest.approx(base, abs=TOL)
    per = ssim(y, x, reduction="none", per_band=True)
    assert per.shape == (2, 13)
    assert torch.allclose(per.mean(1), ssim(y, x, reduction="none"), atol=1e-6)


def test_ssim_too_small_image_raises() -> None:
    x = _rand((1, 3, 10, 20), 20)
    with pytest.raises(DataError, match="smaller than"):
        ssim(x, x)
    with pytest.raises(DataError, match="smaller than"):
        ssim(_rand((1, 3, 20, 20), 21), _rand((1, 3, 20, 20), 22), crop_border=5)


# --------------------------------------------------------------------------- masks


def _nodata_mask(b: int, h: int, w: int, seed: int) -> Tensor:
    """A [B, H, W] valid-pixel mask with random nodata holes and plenty of full 11x11 windows."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand((b, h, w), generator=g) > 0.15
    mask[:, :, : w // 3] = True
    mask[:, : h // 2] = True
    return mask


def _scrambled(x: Tensor, mask: Tensor, seed: int) -> Tensor:
    """A copy of ``x`` with garbage (large values, NaN) wherever ``mask`` [B, H, W] is False."""
    g = torch.Generator().manual_seed(seed)
    out = x.clone()
    bad = ~mask.unsqueeze(1).expand_as(x)
    out[bad] = torch.rand(int(bad.sum()), generator=g) * 100
    out[:, 0][~mask] = float("nan")
    return out


@pytest.mark.parametrize("bands", [3, 13])
def test_masked_pixels_do_not_change_any_metric(bands: int) -> None:
    target = _rand((2, bands, 32, 32), 23)
    pred = _noisy(target, 0.2, 24)
    mask = _nodata_mask(2, 32, 32, 25)
    scrambled, scrambled_target = _scrambled(pred, mask, 26), _scrambled(target, mask, 27)
    for fn in (psnr, mae, rmse):
        a = fn(pred, target, mask=mask, reduction="none")
        b = fn(scrambled, scrambled_target, mask=mask, reduction="none")
        assert torch.isfinite(b).all()
        assert torch.allclose(a, b, atol=1e-6)
    a = ssim(pred, target, mask=mask, reduction="none")
    b = ssim(scrambled, scrambled_target, mask=mask, reduction="none")
    assert torch.isfinite(b).all() and torch.allclose(a, b, atol=1e-6)
    # The same mask as [B, 1, H, W] and as per-band [B, C, H, W].
    m4 = mask.unsqueeze(1)
    mc = m4.expand(-1, bands, -1, -1)
    for m in (m4, mc):
        assert torch.allclose(psnr(pred, target, mask=m), psnr(pred, target, mask=mask))
        assert torch.allclose(ssim(pred, target, mask=m), ssim(pred, target, mask=mask))


def test_masked_values_equal_hand_computation() -> None:
    target = _rand((1, 4, 20, 20), 27)
    pred = _noisy(target, 0.2, 28)
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 3:17, 2:19] = True
    sel = mask.unsqueeze(1).expand_as(pred)
    d = (pred - target)[sel].double()
    assert mae(pred, target, mask).item() == pytest.approx(d.abs().mean().item(), abs=1e-6)
    assert rmse(pred, target, mask).item() == pytest.approx(d.square().mean().sqrt().item())
    want = 10 * np.log10(4.0 / d.square().mean().item())
    assert psnr(pred, target, mask=mask).item() == pytest.approx(want, abs=TOL)
    # SSIM over windows entirely inside a valid rectangle = SSIM of the rectangle itself.
    sub = ssim(pred[..., 3:17, 2:19], target[..., 3:17, 2:19]).item()
    assert ssim(pred, target, mask=mask).item() == pytest.approx(sub, abs=1e-6)
    # An all-valid mask changes nothing; an all-invalid one gives NaN.
    full = torch.ones(1, 1, 20, 20, dtype=torch.bool)
    assert ssim(pred, target, mask=full).item() == pytest.approx(ssim(pred, target).item())
    assert psnr(pred, target, mask=full).item() == pytest.approx(psnr(pred, target).item())
    assert torch.isnan(psnr(pred, target, mask=~full))
    assert torch.isnan(ssim(pred, target, mask=~full))


def test_mean_reduction_skips_images_without_valid_pixels() -> None:
    target = _rand((2, 3, 16, 16), 29)
    pred = _noisy(target, 0.1, 30)
    mask = torch.ones(2, 16, 16, dtype=torch.bool)
    mask[1] = False
    per = psnr(pred, target, mask=mask, reduction="none")
    assert torch.isnan(per[1]) and torch.isfinite(per[0])
    assert psnr(pred, target, mask=mask).item() == pytest.approx(per[0].item())


def test_bad_mask_shape_raises() -> None:
    x = _rand((2, 3, 16, 16), 31)
    with pytest.raises(DataError, match="mask has shape"):
        psnr(x, x, mask=torch.ones(2, 16, 15, dtype=torch.bool))
    with pytest.raises(DataError, match="mask has shape"):
        ssim(x, x, mask=torch.ones(2, 2, 16, 16, dtype=torch.bool))


# --------------------------------------------------------------------------- crop, errors


def test_crop_border_equals_manual_crop() -> None:
    target = _rand((2, 3, 40, 36), 32)
    pred = _noisy(target, 0.2, 33)
    c = 4
    manual = (pred[..., c:-c, c:-c], target[..., c:-c, c:-c])
    assert psnr(pred, target, crop_border=c).item() == pytest.approx(psnr(*manual).item())
    assert ssim(pred, target, crop_border=c).item() == pytest.approx(ssim(*manual).item())
    assert mae(pred, target, crop_border=c).item() == pytest.approx(mae(*manual).item())
    with pytest.raises(DataError, match="crop_border"):
        psnr(pred, target, crop_border=18)


def test_pooled_and_errors() -> None:
    target = _rand((3, 2, 12, 12), 34)
    pred = _noisy(target, 0.3, 35)
    d = (pred - target).double()
    assert rmse(pred, target, reduction="pooled").item() == pytest.approx(
        d.square().mean().sqrt().item()
    )
    assert rmse(pred, target, reduction="pooled", per_band=True).shape == (2,)
    assert mae(pred, target, reduction="none").shape == (3,)
    with pytest.raises(DataError, match="reduction"):
        psnr(pred, target, reduction="sum")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="same size"):
        psnr(pred, target[:, :, :10])
    with pytest.raises(DataError, match="unsqueeze"):
        ssim(pred[0], target[0])
    with pytest.raises(DataError, match="data_range"):
        psnr(pred, target, data_range=0.0)


# --------------------------------------------------------------------------- Y channel


def test_rgb_to_y_matches_bt601_and_skimage(real_pair) -> None:
    hr, _, _ = real_pair
    rgb01 = ((hr[0] + 1) / 2).permute(1, 2, 0).double().numpy()
    want = 16 + rgb01 @ np.array([65.481, 128.553, 24.966])
    y = rgb_to_y(hr)
    assert y.shape == (1, 1, 150, 150)
    assert np.allclose(y[0, 0].double().numpy(), want / 255, atol=1e-5, rtol=0)
    black, white = -torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert rgb_to_y(black).max().item() == pytest.approx(16 / 255)
    assert rgb_to_y(white).min().item() == pytest.approx(235 / 255, abs=1e-6)
    # Physical units: 0..255 input with value_range.
    y255 = rgb_to_y((hr + 1) * 127.5, value_range=(0.0, 255.0))
    assert torch.allclose(y255, y, atol=1e-5)
    color = pytest.importorskip("skimage.color")
    sk = color.rgb2ycbcr(rgb01)[..., 0] / 255
    assert np.abs(y[0, 0].double().numpy() - sk).max() < 1e-5
    with pytest.raises(DataError, match="RGB"):
        rgb_to_y(_rand((1, 4, 8, 8), 36))


def test_psnr_y_ssim_y_match_skimage_on_y(skimage_metrics, real_pair) -> None:
    hr, lr_up, _ = real_pair
    color = pytest.importorskip("skimage.color")

    def y_sk(x: Tensor) -> np.ndarray:
        return color.rgb2ycbcr(((x[0] + 1) / 2).permute(1, 2, 0).double().numpy())[..., 0] / 255

    yp, yt = y_sk(lr_up), y_sk(hr)
    c = 4
    want_p = skimage_metrics.peak_signal_noise_ratio(yt[c:-c, c:-c], yp[c:-c, c:-c], data_range=1.0)
    want_s = skimage_metrics.structural_similarity(
        yt[c:-c, c:-c],
        yp[c:-c, c:-c],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert psnr_y(lr_up, hr, crop_border=c).item() == pytest.approx(want_p, abs=TOL)
    assert ssim_y(lr_up, hr, crop_border=c).item() == pytest.approx(want_s, abs=TOL)


def test_psnr_y_band_selection_and_reference(real_pair) -> None:
    hr, lr_up, _ = real_pair
    y_p, y_t = rgb_to_y(lr_up.double()), rgb_to_y(hr.double())
    assert psnr_y(lr_up, hr).item() == pytest.approx(psnr(y_p, y_t, 1.0).item(), abs=TOL)
    want = _ref_ssim(_hwc(y_p[0]), _hwc(y_t[0]), 1.0)
    assert ssim_y(lr_up, hr).item() == pytest.approx(want, abs=TOL)
    # RGB inside a 13-band stack (Sentinel-2 order: B4, B3, B2 at 3, 2, 1).
    g = torch.Generator().manual_seed(37)
    stack_p, stack_t = torch.rand(1, 13, 150, 150, generator=g), torch.rand(1, 13, 150, 150)
    stack_p[:, [3, 2, 1]], stack_t[:, [3, 2, 1]] = lr_up, hr
    got = psnr_y(stack_p, stack_t, rgb_bands=(3, 2, 1))
    assert got.item() == pytest.approx(psnr_y(lr_up, hr).item(), abs=1e-5)
    with pytest.raises(DataError, match="rgb_bands"):
        psnr_y(stack_p, stack_t)
    with pytest.raises(DataError, match="rgb_bands"):
        ssim_y(stack_p, stack_t, rgb_bands=(3, 2))
    # Quantising to 8-bit levels changes nothing for images that are 8-bit already.
    q = psnr_y(lr_up, hr, quantize=True).item()
    assert q == pytest.approx(psnr_y(lr_up, hr).item(), abs=1e-3)


def test_y_metrics_with_per_band_mask() -> None:
    target = _rand((1, 5, 24, 24), 38)
    pred = _noisy(target, 0.1, 39)
    mask = torch.ones(1, 5, 24, 24, dtype=torch.bool)
    mask[0, 0, :, 20:] = False  # band 0 is not among the RGB bands: ignored
    assert psnr_y(pred, target, (3, 2, 1), mask).item() == pytest.approx(
        psnr_y(pred, target, (3, 2, 1)).item()
    )
    mask[0, 2, :, 20:] = False  # green invalid there -> those pixels leave Y
    sub = psnr_y(pred[..., :20], target[..., :20], (3, 2, 1)).item()
    assert psnr_y(pred, target, (3, 2, 1), mask).item() == pytest.approx(sub, abs=TOL)


# --------------------------------------------------------------------------- LPIPS


def test_load_lpips_missing_file_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_lpips(None)
    missing = tmp_path / "lpips_vgg.safetensors"
    with pytest.raises(FileNotFoundError, match=r"lpips_vgg\.safetensors") as info:
        load_lpips(missing)
    assert "torchvision" in str(info.value) and "save_file" in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"heads\.pth"):
        state = {k: v.contiguous() for k, v in LPIPS("alex").state_dict().items()}
        save_file(state, tmp_path / "alex.safetensors")
        load_lpips(tmp_path / "alex.safetensors", lin_path=tmp_path / "heads.pth")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_random_lpips_zero_for_identical_positive_otherwise(net: str) -> None:
    model = LPIPS(net).eval()  # type: ignore[arg-type]
    x = _rand((2, 3, 32, 32), 40)
    y = _noisy(x, 0.3, 41)
    with torch.no_grad():
        same = model(x, x)
        diff = model(x, y)
    assert same.shape == (2,) and diff.shape == (2,)
    assert torch.allclose(same, torch.zeros(2))
    assert (diff > 0).all()
    with pytest.raises(DataError, match="RGB"):
        model(_rand((1, 4, 32, 32), 42), _rand((1, 4, 32, 32), 43))


def test_load_lpips_roundtrip_safetensors_pth_and_lpips_keys(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = LPIPS("alex").eval()
    for k in range(5):  # learned heads are non-negative
        torch.nn.init.uniform_(getattr(src, f"lin{k}").model[1].weight, 0.0, 1.0)
    state = src.state_dict()
    x, y = _rand((2, 3, 40, 40), 44), _rand((2, 3, 40, 40), 45)
    with torch.no_grad():
        want = src(x, y)

    # One safetensors file with torchvision backbone keys + lpips head keys (+ classifier noise).
    one = {k: v.contiguous() for k, v in state.items()}
    one["classifier.1.weight"] = torch.zeros(4, 4)
    save_file(one, tmp_path / "lpips_alex.safetensors")
    loaded = load_lpips(tmp_path / "lpips_alex.safetensors")
    assert loaded.net == "alex" and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.allclose(loaded(x, y), want, atol=1e-6)

    # Two .pth files: torchvision's alexnet state dict and the lpips heads (weights_only load).
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    heads = {k: v for k, v in state.items() if k.startswith("lin")}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex.pth")
    loaded = load_lpips(tmp_path / "alexnet.pth", lin_path=tmp_path / "alex.pth")
    with torch.no_grad():
        assert torch.allclose(loaded(x, y), want, atol=1e-6)

    # A saved lpips.LPIPS state dict: net.slice<k>.<torchvision index>.* keys.
    slices = {1: (0, 1), 2: (2, 3, 4), 3: (5, 6, 7), 4: (8, 9), 5: (10, 11)}
    which = {i: s for s, idx in slices.items() for i in idx}
    lp = {
        f"net.slice{which[int(k.split('.')[1])]}.{k.removeprefix('features.')}": v
        for k, v in backbone.items()
    }
    lp.update(heads)
    torch.save(lp, tmp_path / "lpips_state.pth")
    loaded = load_lpips(tmp_path / "lpips_state.pth", net="alex")
    with torch.no_grad():
        assert torch.allclose(loaded(x, y), want, atol=1e-6)

    # Backbone without heads: a clear error pointing at lin_path.
    with pytest.raises(CheckpointError, match="lin_path"):
        load_lpips(tmp_path / "alexnet.pth")


def test_lpips_vgg_keys_are_torchvision_and_lpips_names() -> None:
    keys = set(LPIPS("vgg").state_dict())
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    want = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    want |= {f"lin{k}.model.1.weight" for k in range(5)}
    assert keys == want


# --------------------------------------------------------------------------- sr_metrics


def test_sr_metrics_rgb_multispectral_and_physical(real_pair) -> None:
    hr, lr_up, _ = real_pair
    out = sr_metrics(lr_up, hr, crop_border=4)
    assert set(out) == {"psnr", "ssim", "mae", "rmse", "psnr_y", "ssim_y"}
    assert out["psnr"] == pytest.approx(psnr(lr_up, hr, crop_border=4).item())
    assert out["ssim_y"] == pytest.approx(ssim_y(lr_up, hr, crop_border=4).item())
    assert all(isinstance(v, float) for v in out.values())

    ms_p = _rand((2, 13, 24, 24), 46)
    ms_t = _noisy(ms_p, 0.1, 47)
    assert set(sr_metrics(ms_p, ms_t)) == {"psnr", "ssim", "mae", "rmse"}
    with_rgb = sr_metrics(ms_p, ms_t, rgb_bands=(3, 2, 1))
    assert with_rgb["psnr_y"] == pytest.approx(psnr_y(ms_p, ms_t, (3, 2, 1)).item())

    # Physical units: Y metrics only when the absolute range is known.
    phys_p, phys_t = (ms_p + 1) * 5000, (ms_t + 1) * 5000
    phys = sr_metrics(phys_p, phys_t, rgb_bands=(3, 2, 1), data_range=10000.0)
    assert "psnr_y" not in phys
    assert phys["psnr"] == pytest.approx(with_rgb["psnr"], abs=TOL)
    assert phys["mae"] == pytest.approx(with_rgb["mae"] * 5000, rel=1e-5)
    phys = sr_metrics(
        phys_p, phys_t, rgb_bands=(3, 2, 1), data_range=10000.0, value_range=(0.0, 10000.0)
    )
    assert phys["psnr_y"] == pytest.approx(with_rgb["psnr_y"], abs=TOL)

    model = LPIPS("alex").eval()
    out = sr_metrics(lr_up, hr, lpips=model)
    assert out["lpips"] > 0


def test_sr_metrics_per_image_are_the_values_sr_metrics_averages() -> None:
    pred = _rand((4, 3, 68, 68), 50)
    target = _noisy(pred, 0.05, 51)
    target[2] = _noisy(pred[2:3], 0.3, 52)[0]  # one image much worse: order must be kept
    model = LPIPS("alex").eval()
    means = sr_metrics(pred, target, crop_border=2, lpips=model)
    each = sr_metrics_per_image(pred, target, crop_border=2, lpips=model)
    assert set(each) == set(means) == {"psnr", "ssim", "mae", "rmse", "psnr_y", "ssim_y", "lpips"}
    for key, values in each.items():
        assert len(values) == 4 and all(isinstance(v, float) for v in values)
        assert sum(values) / 4 == pytest.approx(means[key], rel=1e-5), key
    assert each["psnr"] == pytest.approx(
        psnr(pred, target, crop_border=2, reduction="none").tolist()
    )
    assert min(each["psnr"]) == each["psnr"][2] and max(each["mae"]) == each["mae"][2]
