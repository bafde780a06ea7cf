"""Tests for terradiff.metrics.fid: FID/KID maths, statistics, caching, and FID on real AID."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from terradiff.metrics.encoders import AID_ENCODER_CONFIG, EvalOnlyExtractor, load_feature_extractor
from terradiff.metrics.fid import (
    FeatureStatistics,
    compute_features,
    compute_statistics,
    evaluate_generation,
    frechet_distance,
    kernel_inception_distance,
    reference_statistics,
)

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


class ToyExtractor(EvalOnlyExtractor):
    """A fixed random conv + pooling: fast, deterministic, batch independent."""

    def __init__(self, seed: int = 0, dim: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()
        self.name = f"toy{seed}"
        self.feature_dim = dim
        self.in_channels = 3
        self.input_size = 16
        self.fingerprint = f"toy-{seed}"
        self._freeze()

    def forward(self, images: Tensor) -> Tensor:
        return torch.tanh(self.conv(self.resize(images))).mean(dim=(2, 3))


def _sqrtm_trace_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) through the symmetric form sqrt(S1) S2 sqrt(S1) (independent method)."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


# ------------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------------


def test_frechet_of_identical_statistics_is_zero() -> None:
    f = np.random.default_rng(0).normal(size=(400, 16))
    s = FeatureStatistics.from_features(f)
    assert frechet_distance(s.mu, s.sigma, s.mu, s.sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2.0 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)
    # torch inputs give the same number
    got_t = frechet_distance(*(torch.as_tensor(a) for a in (mu1, np.diag(v1), mu2, np.diag(v2))))
    assert got_t == pytest.approx(expected, rel=1e-9)


def test_frechet_full_covariances_match_independent_implementations() -> None:
    rng = np.random.default_rng(2)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.5
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    expected = (
        np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * _sqrtm_trace_eigh(s1, s2)
    )
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-7)
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    tm = fid_mod._compute_fid(*(torch.as_tensor(a) for a in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(float(tm), rel=1e-6)


def test_frechet_handles_singular_covariances() -> None:
    # 10 samples in 32 dimensions: both covariances have rank 9.
    rng = np.random.default_rng(3)
    a = FeatureStatistics.from_features(rng.normal(size=(10, 32)))
    b = FeatureStatistics.from_features(rng.normal(size=(10, 32)) + 1.0)
    value = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert np.isfinite(value)
    assert value > np.sum((a.mu - b.mu) ** 2) * 0.5


def test_frechet_rejects_bad_shapes_and_nans() -> None:
    with pytest.raises(ValueError, match="equal length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------------


def _mmd2_loops(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1.0) ** 3)

    m = len(x)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (m * m)


def test_kid_full_set_equals_explicit_unbiased_mmd() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(15, 5)), rng.normal(size=(15, 5)) + 0.3
    mean, std = kernel_inception_distance(x, y, subsets=10, subset_size=15)
    assert mean == pytest.approx(_mmd2_loops(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_matches_torchmetrics_poly_mmd() -> None:
    kid_mod = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(200, 64)), rng.normal(size=(200, 64)) * 1.2 + 0.1
    mean, _ = kernel_inception_distance(x, y, subsets=5, subset_size=200)
    tm = kid_mod.poly_mmd(torch.as_tensor(x), torch.as_tensor(y), degree=3, coef=1.0)
    assert mean == pytest.approx(float(tm), rel=1e-9)


def test_kid_near_zero_for_same_distribution_and_positive_for_shifted() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    shifted = rng.normal(size=(600, 32)) + 0.5
    same_mean, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shift_mean, _ = kernel_inception_distance(a, shifted, subsets=20, subset_size=200)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shift_mean > 0.1
    assert shift_mean > 20 * max(abs(same_mean), same_std)


def test_kid_is_reproducible_with_a_seed_and_validates_input() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(250, 8))
    r1 = kernel_inception_distance(a, b, subsets=5, subset_size=100, seed=3)
    r2 = kernel_inception_distance(a, b, subsets=5, subset_size=100, seed=3)
    assert r1 == r2
    with pytest.warns(UserWarning, match="subset_size"):
        kernel_inception_distance(a, b, subsets=2, subset_size=1000)
    with pytest.raises(ValueError, match="equal D"):
        kernel_inception_distance(a, b[:, :4])
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(a[:1], b)


# ------------------------------------------------------------------------------------------------
# Statistics, features, caching
# ------------------------------------------------------------------------------------------------


def test_feature_statistics_round_trip(tmp_path: Path) -> None:
    f = np.random.default_rng(8).normal(size=(50, 6)).astype(np.float32)
    s = FeatureStatistics.from_features(f, encoder="toy", fingerprint="abc", meta={"k": 1})
    np.testing.assert_allclose(s.sigma, np.cov(f.astype(np.float64), rowvar=False))
    path = s.save(tmp_path / "stats.safetensors")
    assert path.with_suffix(".json").is_file()
    r = FeatureStatistics.load(path)
    np.testing.assert_array_equal(r.mu, s.mu)
    np.testing.assert_array_equal(r.sigma, s.sigma)
    np.testing.assert_array_equal(r.features, s.features)
    assert (r.n, r.encoder, r.fingerprint, r.meta) == (50, "toy", "abc", {"k": 1})
    with pytest.raises(FileNotFoundError):
        FeatureStatistics.load(tmp_path / "missing.safetensors")


def test_compute_features_accepts_tensors_iterables_dicts_and_datasets() -> None:
    ext = ToyExtractor()
    x = torch.rand(10, 3, 20, 20) * 2 - 1
    ref = compute_features(x, ext, batch_size=3)
    assert ref.shape == (10, 8) and ref.dtype == torch.float32
    from_batches = compute_features([x[:4], x[4:]], ext, batch_size=64)
    from_dicts = compute_features(({"image": x[i], "label": 0} for i in range(10)), ext)
    from_tuples = compute_features([(x[:5], None), (x[5:], None)], ext)

    class MapDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> dict:
            return {"image": x[i]}

    from_dataset = compute_features(MapDataset(), ext, batch_size=4)
    for other in (from_batches, from_dicts, from_tuples, from_dataset):
        torch.testing.assert_close(other, ref, rtol=1e-5, atol=1e-6)
    assert compute_features(x, ext, max_images=7).shape == (7, 8)


def test_compute_features_band_selection_and_range_checks() -> None:
    ext = ToyExtractor()
    ms = torch.rand(6, 13, 16, 16) * 2 - 1
    picked = compute_features(ms, ext, rgb_bands=(3, 2, 1))
    torch.testing.assert_close(picked, compute_features(ms[:, [3, 2, 1]], ext))
    with pytest.raises(ValueError, match="rgb_bands"):
        compute_features(ms, ext)
    with pytest.raises(ValueError, match="out of range"):
        compute_features(ms, ext, rgb_bands=(0, 1, 13))
    grey = compute_features(ms[:, :1], ext, rgb_bands=(0, 0, 0))
    assert grey.shape == (6, 8)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        compute_features(torch.rand(4, 3, 16, 16) * 255, ext)
    with pytest.raises(ValueError, match="uint8"):
        compute_features(torch.zeros(4, 3, 16, 16, dtype=torch.uint8), ext)
    with pytest.raises(ValueError, match="no images"):
        compute_features([], ext)


def test_reference_statistics_are_cached_and_keyed(tmp_path: Path) -> None:
    x = torch.rand(40, 3, 16, 16) * 2 - 1
    calls = []

    def source() -> Tensor:
        calls.append(1)
        return x

    ext = ToyExtractor(seed=0)
    first = reference_statistics(source, ext, tmp_path, "toy-set", image_size=16)
    second = reference_statistics(source, ext, tmp_path, "toy-set", image_size=16)
    assert len(calls) == 1, "second call must come from the cache"
    np.testing.assert_array_equal(first.mu, second.mu)
    np.testing.assert_array_equal(first.sigma, second.sigma)
    np.testing.assert_array_equal(first.features, second.features)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    other = reference_statistics(source, ToyExtractor(seed=1), tmp_path, "toy-set", image_size=16)
    assert len(calls) == 2
    assert other.meta["cache_file"] != first.meta["cache_file"]
    assert not np.allclose(other.mu, first.mu)
    reference_statistics(source, ext, tmp_path, "toy-set", image_size=16, max_images=20)
    reference_statistics(source, ext, tmp_path, "other-set", image_size=16)
    assert len(calls) == 4
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    reference_statistics(source, ext, tmp_path, "toy-set", image_size=16, recompute=True)
    assert len(calls) == 5
    info = json.loads((tmp_path / first.meta["cache_file"]).with_suffix(".json").read_text())
    assert info["meta"]["cache_key"]["fingerprint"] == "toy-0"


def test_evaluate_generation_reports_and_guards_encoder_mismatch() -> None:
    ext = ToyExtractor()
    g = torch.Generator().manual_seed(0)
    real = torch.rand(60, 3, 16, 16, generator=g) * 2 - 1
    fake = torch.rand(60, 3, 16, 16, generator=g) * 2 - 1
    out = evaluate_generation(fake, real, ext, kid_subsets=5, kid_subset_size=50)
    assert set(out) >= {"fid", "kid_mean", "kid_std", "n_fake", "n_real", "encoder"}
    assert (out["n_fake"], out["n_real"], out["encoder"]) == (60, 60, "toy0")
    assert out["fid"] >= 0.0
    assert 0.0 <= out["precision"] <= 1.0 and 0.0 <= out["recall"] <= 1.0
    same = evaluate_generation(real, real, ext, kid_subsets=5, kid_subset_size=50)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)
    real_stats = compute_statistics(real, ext)
    without_features = compute_statistics(real, ext, keep_features=False)
    summary_only = evaluate_generation(fake, without_features, ext, kid_subsets=5)
    assert summary_only["precision"] is None and summary_only["kid_mean"] is None
    again = evaluate_generation(fake, real_stats, ext, kid_subsets=5, kid_subset_size=50)
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-9)
    with pytest.raises(ValueError, match="encoder"):
        evaluate_generation(fake, real_stats, ToyExtractor(seed=1))
    with pytest.warns(UserWarning, match="biased"):
        small = evaluate_generation(fake[:5], real[:5], ext, kid_subsets=2)
    assert small["n_fake"] == 5 and np.isfinite(small["fid"])


# ------------------------------------------------------------------------------------------------
# FID with the shipped encoder on real AID images: does it mean something?
# ------------------------------------------------------------------------------------------------


def _load_aid(root: Path, names: list[str]) -> Tensor:
    arrays = [np.asarray(Image.open(root / n).convert("RGB")) for n in names]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def test_fid_separates_real_from_degraded_aid_images(shared_data: Path) -> None:
    """Two disjoint sets of held-out AID images are far closer than AID vs blurred/noise."""
    test_files = json.loads(AID_ENCODER_CONFIG.read_text())["data"]["test_files"]
    by_class: dict[str, list[str]] = {}
    for name in test_files:
        by_class.setdefault(name.split("/")[0], []).append(name)
    set_a = [n for names in by_class.values() for n in names[0:8]]
    set_b = [n for names in by_class.values() for n in names[8:16]]
    assert not set(set_a) & set(set_b)
    root = shared_data / "aid"
    real_a, real_b = _load_aid(root, set_a), _load_aid(root, set_b)
    ext = load_feature_extractor()
    blurred = F.interpolate(
        F.interpolate(real_b, scale_factor=0.125, mode="bilinear", antialias=True),
        size=real_b.shape[-2:],
        mode="bilinear",
    )
    noise = (torch.randn(real_b.shape, generator=torch.Generator().manual_seed(0)) * 0.5).clamp(
        -1, 1
    )
    stats_a = compute_statistics(real_a, ext)
    fid = {}
    kid = {}
    for label, images in (("real", real_b), ("blurred", blurred), ("noise", noise)):
        s = compute_statistics(images, ext)
        fid[label] = frechet_distance(stats_a.mu, stats_a.sigma, s.mu, s.sigma)
        kid[label] = kernel_inception_distance(
            stats_a.features, s.features, subsets=20, subset_size=200
        )[0]
    print(f"AID 240 vs 240: FID {fid}; KID {kid}")
    assert fid["real"] * 3 < fid["blurred"]
    assert fid["real"] * 10 < fid["noise"]
    assert kid["real"] * 5 < kid["blurred"]
    assert kid["real"] < kid["noise"] / 10
