"""Fréchet distance (FID) and kernel distance (KID) between image sets, with cached reference stats.

* :func:`frechet_distance` — Heusel et al., 2017 ("GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium"), Eq. 2: the Fréchet distance between two Gaussians fitted
  to the features, ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
* :func:`kernel_inception_distance` — Binkowski et al., 2018 ("Demystifying MMD GANs"), Sec. 3 /
  Appendix: the unbiased estimator of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets.
* :func:`compute_features` / :func:`compute_statistics` — run a frozen
  :class:`~terradiff.metrics.encoders.FeatureExtractor` over a tensor, a dataset or any iterable of
  batches (band selection for multispectral images with ``rgb_bands``).
* :func:`reference_statistics` — statistics of a real dataset cached on disk (safetensors + JSON),
  keyed by the dataset id, the encoder name and weights hash, the image size and the image count.
* :func:`evaluate_generation` — FID and KID of generated images against real ones in one call.

The feature network is terradiff's own offline AID encoder unless told otherwise; FID values from
different encoders, image counts or image sizes are not comparable, so every result names its
encoder and counts. FID is biased upward for small ``n`` (Binkowski et al., 2018, Sec. 3): compare
models only at equal ``n``; KID is unbiased.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from torch import Tensor, nn
from tqdm.auto import tqdm

from terradiff.io import atomic_path, atomic_write_text
from terradiff.metrics.encoders import FeatureExtractor, load_feature_extractor

ArrayLike = np.ndarray | Tensor
ImageSource = Tensor | Iterable[Any]
STATS_FORMAT = "terradiff-feature-statistics"
#: Images outside [-RANGE_TOLERANCE, RANGE_TOLERANCE] are rejected (wrong scaling, e.g. 0..255).
RANGE_TOLERANCE = 1.5


def _as_float64(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


# ------------------------------------------------------------------------------------------------
# Distances
# ------------------------------------------------------------------------------------------------


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., 2017, Eq. 2).

    ``d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, with the matrix
    square root from :func:`scipy.linalg.sqrtm` (as pytorch-fid). When the product is singular
    (fewer samples than feature dimensions) or the square root comes out complex beyond numerical
    noise, ``eps * I`` is added to both covariances and the root recomputed.

    Args:
        mu1: Mean ``[D]`` of the first feature set.
        sigma1: Covariance ``[D, D]`` of the first set.
        mu2: Mean ``[D]`` of the second set.
        sigma2: Covariance ``[D, D]`` of the second set.
        eps: Diagonal offset used only when the plain square root fails.

    Returns:
        The squared Fréchet distance (the number reported as "FID"), >= 0.

    Raises:
        ValueError: shapes disagree, inputs are not finite, or the square root stays complex.
    """
    m1, m2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"means must be vectors of equal length, got {m1.shape} and {m2.shape}")
    d = m1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}], got {s1.shape} and {s2.shape}")

    def _sqrt(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = scipy.linalg.sqrtm(a @ b)
        if not np.all(np.isfinite(root)):
            return None
        if np.iscomplexobj(root):
            scale = max(1.0, float(np.abs(root.real).max()))
            if float(np.abs(root.imag).max()) > 1e-3 * scale:
                return None
            root = root.real
        return root

    covmean = _sqrt(s1, s2)
    if covmean is None:
        offset = np.eye(d) * eps
        covmean = _sqrt(s1 + offset, s2 + offset)
        if covmean is None:
            raise ValueError(
                "sqrtm(sigma1 @ sigma2) is not real/finite even with an eps offset of "
                f"{eps}; the covariances are degenerate (too few samples or constant features?)"
            )
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    # Rounding can give tiny negative values for (near-)identical statistics.
    return max(value, 0.0)


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> np.ndarray:
    """``k(x, y) = (gamma x.y + coef)^degree`` with ``gamma = 1/d`` by default (Binkowski 2018)."""
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * g + coef) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased squared MMD from kernel matrices of two equal-size samples (Gretton et al., 2012).

    ``MMD^2_u = sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1))
    - 2 sum_{i,j} k(x_i,y_j)/m^2`` (Binkowski et al., 2018, Eq. 3 with equal sample sizes).
    """
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: ArrayLike,
    features2: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al., 2018): mean and std of MMD^2_u over subsets.

    Each of ``subsets`` rounds draws ``subset_size`` features without replacement from each set
    and computes the unbiased squared MMD with the polynomial kernel ``(x.y/d + 1)^3``. When
    ``subset_size`` covers both sets entirely, all subsets are the same and one round is computed
    (std 0).

    Args:
        features1: ``[N1, D]`` features.
        features2: ``[N2, D]`` features.
        subsets: Number of random subsets.
        subset_size: Samples per subset; reduced (with a warning) to ``min(N1, N2)``.
        degree: Polynomial degree (3 for KID).
        gamma: Kernel scale; ``1/D`` by default.
        coef: Kernel offset.
        seed: Seed of the subset sampling (numpy ``default_rng``), so results are reproducible.

    Returns:
        ``(mean, std)`` of the subset MMD^2 estimates (std with ``ddof=0``, as torch-fidelity).
        The mean is an unbiased estimate: it can be slightly negative for equal distributions.

    Raises:
        ValueError: fewer than 2 samples, or feature dimensions differ.
    """
    f1 = _as_float64(features1, "features1")
    f2 = _as_float64(features2, "features2")
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {f1.shape} and {f2.shape}")
    n1, n2 = len(f1), len(f2)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n1} and {n2}")
    if subset_size > m:
        warnings.warn(
            f"KID subset_size {subset_size} > available samples; using {m}",
            UserWarning,
            stacklevel=2,
        )
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    rounds = 1 if (m == n1 and m == n2) else subsets
    rng = np.random.default_rng(seed)
    scores = np.empty(rounds)
    for r in range(rounds):
        x = f1 if m == n1 else f1[rng.choice(n1, m, replace=False)]
        y = f2 if m == n2 else f2[rng.choice(n2, m, replace=False)]
        scores[r] = mmd2_unbiased(
            polynomial_kernel(x, x, degree, gamma, coef),
            polynomial_kernel(y, y, degree, gamma, coef),
            polynomial_kernel(x, y, degree, gamma, coef),
        )
    return float(scores.mean()), float(scores.std())


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


@dataclass
class FeatureStatistics:
    """Gaussian statistics (and optionally the raw features) of one image set.

    Attributes:
        mu: Mean feature ``[D]`` (float64).
        sigma: Covariance ``[D, D]`` (float64, ``ddof=1``).
        n: Number of images.
        features: The features ``[n, D]`` (float32), needed for KID; ``None`` if not kept.
        encoder: Name of the encoder that made them.
        fingerprint: Hash of the encoder's weights.
        meta: Free-form metadata (e.g. the cache key), stored in the JSON.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    encoder: str = ""
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(
        cls,
        features: ArrayLike,
        *,
        encoder: str = "",
        fingerprint: str = "",
        keep_features: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> FeatureStatistics:
        """Mean and covariance (``np.cov``, ``ddof=1``, as pytorch-fid) of ``[n, D]`` features."""
        f = _as_float64(features, "features")
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need features [n >= 2, D], got shape {f.shape}")
        return cls(
            mu=f.mean(axis=0),
            sigma=np.cov(f, rowvar=False),
            n=len(f),
            features=f.astype(np.float32) if keep_features else None,
            encoder=encoder,
            fingerprint=fingerprint,
            meta=dict(meta or {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors: mu, sigma[, features]) and a ``.json`` beside it.

        Both files are written atomically (temporary name + ``os.replace``).

        Returns:
            The safetensors path.
        """
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(path.suffix + ".safetensors")
        tensors = {"mu": np.ascontiguousarray(self.mu), "sigma": np.ascontiguousarray(self.sigma)}
        if self.features is not None:
            tensors["features"] = np.ascontiguousarray(self.features, dtype=np.float32)
        info = {
            "format": STATS_FORMAT,
            "format_version": 1,
            "n": self.n,
            "feature_dim": self.feature_dim,
            "has_features": self.features is not None,
            "encoder": self.encoder,
            "fingerprint": self.fingerprint,
            "meta": self.meta,
        }
        with atomic_path(path) as tmp:
            save_numpy(tensors, str(tmp), metadata={"format": STATS_FORMAT})
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=1, default=str) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureStatistics:
        """Read statistics written by :meth:`save`.

        Raises:
            FileNotFoundError: the safetensors or json file is missing.
            ValueError: the files are not terradiff feature statistics or are inconsistent.
        """
        path = Path(path)
        json_path = path.with_suffix(".json")
        for p in (path, json_path):
            if not p.is_file():
                raise FileNotFoundError(f"feature statistics file {p} not found")
        info = json.loads(json_path.read_text())
        if info.get("format") != STATS_FORMAT:
            raise ValueError(f"{json_path} is not a {STATS_FORMAT} file")
        tensors = load_numpy(str(path))
        stats = cls(
            mu=tensors["mu"].astype(np.float64),
            sigma=tensors["sigma"].astype(np.float64),
            n=int(info["n"]),
            features=tensors.get("features"),
            encoder=info.get("encoder", ""),
            fingerprint=info.get("fingerprint", ""),
            meta=info.get("meta", {}),
        )
        d = stats.feature_dim
        if stats.sigma.shape != (d, d) or (
            stats.features is not None and stats.features.shape != (stats.n, d)
        ):
            raise ValueError(f"{path}: inconsistent shapes in the stored statistics")
        return stats


def extractor_fingerprint(extractor: nn.Module) -> str:
    """The extractor's ``fingerprint`` attribute, or a hash of its state dict if it has none."""
    fp = getattr(extractor, "fingerprint", "")
    if fp:
        return str(fp)
    digest = hashlib.sha256()
    for key, value in sorted(extractor.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprint_files(paths: Iterable[str | Path], root: str | Path | None = None) -> str:
    """A cheap dataset fingerprint: SHA-256 over sorted (relative name, byte size) of its files."""
    digest = hashlib.sha256()
    entries = []
    for p in paths:
        p = Path(p)
        name = str(p.relative_to(root)) if root is not None else str(p)
        entries.append((name, p.stat().st_size))
    for name, size in sorted(entries):
        digest.update(f"{name}\0{size}\n".encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------


def _extract_images(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, Mapping):
        if "image" not in item:
            raise ValueError(f"batch dict has no 'image' key (keys: {sorted(item)})")
        return item["image"]
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise TypeError(
        f"cannot read images from a {type(item).__name__}; give tensors [B, C, H, W], dicts "
        "with an 'image' tensor, or (images, ...) tuples"
    )


def _iter_batches(images: ImageSource, batch_size: int) -> Iterator[Tensor]:
    """Yield 4-D batches of at most ``batch_size`` images from any supported source."""
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
        yield from images.split(batch_size)
        return
    if not hasattr(images, "__iter__") and hasattr(images, "__getitem__"):
        dataset = images
        images = (dataset[i] for i in range(len(dataset)))  # map-style dataset
    pending: list[Tensor] = []
    for item in images:
        x = _extract_images(item)
        if x.ndim == 3:
            pending.append(x)
            if len(pending) == batch_size:
                yield torch.stack(pending)
                pending = []
            continue
        if x.ndim != 4:
            raise ValueError(f"expected images [C, H, W] or [B, C, H, W], got {tuple(x.shape)}")
        if pending:
            yield torch.stack(pending)
            pending = []
        yield from x.split(batch_size)
    if pending:
        yield torch.stack(pending)


def select_bands(images: Tensor, rgb_bands: Sequence[int] | None, in_channels: int) -> Tensor:
    """Select the bands the encoder takes; error clearly when the band count does not fit.

    Args:
        images: ``[B, C, H, W]``.
        rgb_bands: Band indices (e.g. ``(3, 2, 1)`` for Sentinel-2 B4,B3,B2 in EuroSAT order;
            ``(0, 0, 0)`` for a single band as grey), or ``None`` to use the images as they are.
        in_channels: Bands the encoder takes (3).

    Raises:
        ValueError: wrong number or range of indices, or ``C != in_channels`` without indices.
    """
    c = images.shape[1]
    if rgb_bands is None:
        if c != in_channels:
            raise ValueError(
                f"images have {c} bands but the encoder takes {in_channels} (RGB); pass "
                f"rgb_bands=<{in_channels} band indices>, e.g. rgb_bands=(3, 2, 1) for Sentinel-2 "
                "B4,B3,B2 in EuroSAT band order, or rgb_bands=(0, 0, 0) for a single band"
            )
        return images
    idx = [int(i) for i in rgb_bands]
    if len(idx) != in_channels:
        raise ValueError(f"rgb_bands needs {in_channels} indices, got {list(rgb_bands)}")
    bad = [i for i in idx if not -c <= i < c]
    if bad:
        raise ValueError(f"rgb_bands {idx} out of range for images with {c} bands")
    return images[:, idx]


def _check_range(x: Tensor) -> Tensor:
    if not torch.is_floating_point(x):
        raise ValueError(
            f"expected float images in [-1, 1], got dtype {x.dtype}; for uint8 use x / 127.5 - 1"
        )
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("images contain NaN or infinite values")
    if lo < -RANGE_TOLERANCE or hi > RANGE_TOLERANCE:
        raise ValueError(
            f"images must be in [-1, 1] (terradiff convention), got values in [{lo:.3g}, "
            f"{hi:.3g}]; map [0, 1] data with 2 * x - 1"
        )
    return x.clamp(-1.0, 1.0)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def compute_features(
    images: ImageSource,
    extractor: FeatureExtractor | nn.Module,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = False,
    rgb_bands: Sequence[int] | None = None,
    max_images: int | None = None,
) -> Tensor:
    """Features of all images, computed batch by batch with the frozen extractor.

    Args:
        images: A tensor ``[N, C, H, W]`` in ``[-1, 1]``; or an iterable (DataLoader, generator,
            list) of tensors ``[B, C, H, W]`` / ``[C, H, W]``, of dicts with an ``"image"`` tensor
            (terradiff datasets), or of ``(images, ...)`` tuples; or a map-style dataset.
            Values slightly outside ``[-1, 1]`` (unclipped samples) are clamped; values beyond
            +-1.5 are rejected as a scaling error.
        extractor: A :class:`~terradiff.metrics.encoders.FeatureExtractor`.
        batch_size: Images per forward pass (features do not depend on it).
        device: Moves the extractor there; default: where its parameters are.
        progress: Show a tqdm bar.
        rgb_bands: Band indices to feed the (RGB) encoder; required when ``C != 3``.
        max_images: Stop after this many images.

    Returns:
        Float32 CPU tensor ``[N, D]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        extractor.to(device)
    dev = _device_of(extractor)
    extractor.eval()
    in_channels = int(getattr(extractor, "in_channels", 3))
    total = len(images) if isinstance(images, Tensor) else None
    if max_images is not None:
        total = min(total, max_images) if total is not None else max_images
    bar = tqdm(
        total=total,
        disable=not progress,
        desc=f"features ({getattr(extractor, 'name', 'extractor')})",
        unit="img",
    )
    feats: list[Tensor] = []
    count = 0
    for batch in _iter_batches(images, batch_size):
        if max_images is not None and count >= max_images:
            break
        if max_images is not None:
            batch = batch[: max_images - count]
        x = _check_range(select_bands(batch, rgb_bands, in_channels))
        f = extractor(x.to(dev, non_blocking=True))
        if f.ndim != 2 or f.shape[0] != x.shape[0]:
            raise ValueError(f"extractor returned shape {tuple(f.shape)} for {x.shape[0]} images")
        feats.append(f.float().cpu())
        count += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if not feats:
        raise ValueError("no images were given (empty tensor or iterable)")
    return torch.cat(feats)


def compute_statistics(
    images: ImageSource,
    extractor: FeatureExtractor | nn.Module,
    batch_size: int = 64,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    rgb_bands: Sequence[int] | None = None,
    max_images: int | None = None,
    keep_features: bool = True,
) -> FeatureStatistics:
    """:func:`compute_features` followed by :meth:`FeatureStatistics.from_features`."""
    feats = compute_features(
        images,
        extractor,
        batch_size=batch_size,
        device=device,
        progress=progress,
        rgb_bands=rgb_bands,
        max_images=max_images,
    )
    return FeatureStatistics.from_features(
        feats,
        encoder=str(getattr(extractor, "name", type(extractor).__name__)),
        fingerprint=extractor_fingerprint(extractor),  # type: ignore[arg-type]
        keep_features=keep_features,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def reference_cache_key(
    key: str,
    extractor: FeatureExtractor | nn.Module,
    *,
    image_size: int | tuple[int, int] | None = None,
    max_images: int | None = None,
    rgb_bands: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Everything the reference statistics depend on (the cache is keyed by its hash)."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return {
        "dataset": key,
        "encoder": str(getattr(extractor, "name", type(extractor).__name__)),
        "fingerprint": extractor_fingerprint(extractor),  # type: ignore[arg-type]
        "encoder_input_size": getattr(extractor, "input_size", None),
        "image_size": list(image_size) if image_size is not None else None,
        "max_images": max_images,
        "rgb_bands": [int(b) for b in rgb_bands] if rgb_bands is not None else None,
    }


def reference_cache_path(cache_dir: str | Path, cache_key: dict[str, Any]) -> Path:
    """File of the cached statistics: readable prefix + hash of the full key."""
    blob = json.dumps(cache_key, sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:16]
    name = (
        f"{_slug(cache_key['dataset'])}__{_slug(cache_key['encoder'])}-"
        f"{str(cache_key['fingerprint'])[:8]}__{digest}.safetensors"
    )
    return Path(cache_dir) / name


def reference_statistics(
    images: ImageSource | Callable[[], ImageSource],
    extractor: FeatureExtractor | nn.Module,
    cache_dir: str | Path,
    key: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    max_images: int | None = None,
    rgb_bands: Sequence[int] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = False,
    keep_features: bool = True,
    recompute: bool = False,
) -> FeatureStatistics:
    """Statistics of a real dataset, computed once and cached on disk.

    The cache file is keyed by ``key`` (your dataset id, e.g. ``"aid-test-64"`` or a
    :func:`fingerprint_files` hash), the encoder name and weights hash, the encoder input size,
    ``image_size``, ``max_images`` and ``rgb_bands``; changing any of them computes new
    statistics in a new file. For a tensor input the image size and count are taken from it.

    Args:
        images: As :func:`compute_features`, or a zero-argument callable returning it (called
            only on a cache miss, so the dataset need not be built when cached).
        extractor: The feature extractor.
        cache_dir: Folder for the cache files (created if missing).
        key: Dataset identifier.
        image_size: Image size the dataset yields (part of the key).
        max_images: Use at most this many images (part of the key).
        rgb_bands: Band selection (part of the key).
        batch_size: Forward batch size (not part of the key: features do not depend on it).
        device: Device for the extractor.
        progress: Show a progress bar.
        keep_features: Store the features too (needed for KID).
        recompute: Ignore and overwrite an existing cache file.

    Returns:
        The statistics; ``meta["cache_key"]`` and ``meta["cache_file"]`` say where they came from.
    """
    n_key = max_images
    if isinstance(images, Tensor) and images.ndim == 4:
        image_size = image_size or (int(images.shape[-2]), int(images.shape[-1]))
        n_key = min(len(images), max_images) if max_images is not None else len(images)
    cache_key = reference_cache_key(
        key, extractor, image_size=image_size, max_images=n_key, rgb_bands=rgb_bands
    )
    path = reference_cache_path(cache_dir, cache_key)
    if path.is_file() and not recompute:
        stats = FeatureStatistics.load(path)
        if stats.meta.get("cache_key") == cache_key and (
            stats.features is not None or not keep_features
        ):
            return stats
    source = images() if callable(images) and not isinstance(images, Tensor) else images
    stats = compute_statistics(
        source,  # type: ignore[arg-type]
        extractor,
        batch_size,
        device=device,
        progress=progress,
        rgb_bands=rgb_bands,
        max_images=max_images,
        keep_features=keep_features,
    )
    stats.meta["cache_key"] = cache_key
    stats.meta["cache_file"] = path.name
    stats.save(path)
    return stats


# ------------------------------------------------------------------------------------------------
# One-call evaluation
# ------------------------------------------------------------------------------------------------


def evaluate_generation(
    fake: ImageSource | FeatureStatistics,
    real: ImageSource | FeatureStatistics,
    extractor: FeatureExtractor | nn.Module | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    rgb_bands: Sequence[int] | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """FID and KID of generated images against real images, with the same frozen encoder.

    Args:
        fake: Generated images (anything :func:`compute_features` takes) or their statistics.
        real: Real images or (e.g. cached, see :func:`reference_statistics`) statistics.
        extractor: Feature extractor; default :func:`load_feature_extractor` () (aid-cnn).
        batch_size: Forward batch size.
        device: Device for the extractor.
        rgb_bands: Band indices for images with ``C != 3`` (applied to both sets).
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size (capped at the smaller set).
        seed: KID subset sampling seed.
        progress: Progress bars.

    Returns:
        ``{"fid", "kid_mean", "kid_std", "n_fake", "n_real", "encoder", "encoder_fingerprint",
        "kid_subset_size"}``; KID entries are ``None`` when statistics without features are given.

    Raises:
        ValueError: statistics made by a different encoder (weights hash) than ``extractor``.
    """
    if extractor is None:
        extractor = load_feature_extractor()
    name = str(getattr(extractor, "name", type(extractor).__name__))
    fp = extractor_fingerprint(extractor)  # type: ignore[arg-type]

    def _stats(x: ImageSource | FeatureStatistics, which: str) -> FeatureStatistics:
        if isinstance(x, FeatureStatistics):
            if x.fingerprint and x.fingerprint != fp:
                raise ValueError(
                    f"{which} statistics were computed with encoder {x.encoder!r} "
                    f"({x.fingerprint}), not with {name!r} ({fp}); FID across encoders is "
                    "meaningless — recompute them with this encoder"
                )
            return x
        return compute_statistics(
            x, extractor, batch_size, device=device, progress=progress, rgb_bands=rgb_bands
        )

    s_fake, s_real = _stats(fake, "fake"), _stats(real, "real")
    if s_fake.feature_dim != s_real.feature_dim:
        raise ValueError(f"feature dims differ: {s_fake.feature_dim} vs {s_real.feature_dim}")
    if min(s_fake.n, s_real.n) < s_fake.feature_dim:
        warnings.warn(
            f"FID from n_fake={s_fake.n}, n_real={s_real.n} < feature_dim={s_fake.feature_dim}: "
            "the covariances are singular and FID is biased upward; compare runs only at equal "
            "n (KID is unbiased)",
            UserWarning,
            stacklevel=2,
        )
    fid = frechet_distance(s_fake.mu, s_fake.sigma, s_real.mu, s_real.sigma)
    kid_mean: float | None = None
    kid_std: float | None = None
    subset = min(kid_subset_size, s_fake.n, s_real.n)
    if s_fake.features is not None and s_real.features is not None:
        kid_mean, kid_std = kernel_inception_distance(
            s_fake.features, s_real.features, kid_subsets, subset, seed=seed
        )
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n_fake": s_fake.n,
        "n_real": s_real.n,
        "encoder": name,
        "encoder_fingerprint": fp,
        "kid_subset_size": subset,
    }
