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
* :func:`evaluate_generation` — FID, KID and precision/recall (Kynkäänniemi et al., 2019,
  :mod:`terradiff.metrics.manifold`) of generated images against real ones in one call.

The feature network is terradiff's own offline AID encoder unless told otherwise; FID values from
different encoders, image counts or image sizes are not comparable, so every result names its
encoder and counts. FID is biased upward for small ``n`` (Binkowski et al., 2018, Sec. 3): compare
models only at equal ``n``; KID is unbiased.

This module's one job is the workflow on top of the parts: reference statistics cached on disk
(:func:`reference_statistics`) and :func:`evaluate_generation`. The parts live in
:mod:`terradiff.metrics.distances`, :mod:`terradiff.metrics.feature_stats` and
:mod:`terradiff.metrics.features`, and are importable from here as before.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from terradiff.metrics.distances import (
    ArrayLike,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
)
from terradiff.metrics.encoders import load_feature_extractor
from terradiff.metrics.extractor import FeatureExtractor
from terradiff.metrics.feature_stats import (
    STATS_FORMAT,
    FeatureStatistics,
    extractor_fingerprint,
    fingerprint_files,
)
from terradiff.metrics.features import (
    RANGE_TOLERANCE,
    ImageSource,
    compute_features,
    compute_statistics,
    select_bands,
)
from terradiff.metrics.manifold import DEFAULT_K, precision_recall


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
    """FID, KID, precision and recall of generated images against real images, with the same
    frozen encoder.

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
        ``{"fid", "kid_mean", "kid_std", "precision", "recall", "n_fake", "n_real", "encoder",
        "encoder_fingerprint", "kid_subset_size"}``; KID, precision and recall
        (:func:`~terradiff.metrics.manifold.precision_recall`, k = 3) are ``None`` when
        statistics without features are given (precision and recall also for sets of 3 or
        fewer images).

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
    precision: float | None = None
    recall: float | None = None
    if s_fake.features is not None and s_real.features is not None:
        kid_mean, kid_std = kernel_inception_distance(
            s_fake.features, s_real.features, kid_subsets, subset, seed=seed
        )
        if min(s_fake.n, s_real.n) > DEFAULT_K:
            precision, recall = precision_recall(s_real.features, s_fake.features)
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "n_fake": s_fake.n,
        "n_real": s_real.n,
        "encoder": name,
        "encoder_fingerprint": fp,
        "kid_subset_size": subset,
    }


__all__ = [
    "RANGE_TOLERANCE",
    "STATS_FORMAT",
    "ArrayLike",
    "FeatureStatistics",
    "ImageSource",
    "compute_features",
    "compute_statistics",
    "evaluate_generation",
    "extractor_fingerprint",
    "fingerprint_files",
    "frechet_distance",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "polynomial_kernel",
    "reference_cache_key",
    "reference_cache_path",
    "reference_statistics",
    "select_bands",
]
