"""Gaussian statistics of a feature set, stored as safetensors + JSON, and the hashes that key them.

This module's one job is :class:`FeatureStatistics` (the mean and covariance that FID compares,
Heusel et al., 2017, Eq. 2, optionally with the raw features that KID needs) and its on-disk
format, plus the fingerprints of an encoder (:func:`extractor_fingerprint`) and of a dataset's
files (:func:`fingerprint_files`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from torch import nn

from terradiff.io import atomic_path, atomic_write_text
from terradiff.metrics.distances import ArrayLike, as_float64

STATS_FORMAT = "terradiff-feature-statistics"


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
        f = as_float64(features, "features")
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


__all__ = ["STATS_FORMAT", "FeatureStatistics", "extractor_fingerprint", "fingerprint_files"]
