"""terradiff.metrics: generation metrics (FID, KID) with offline, frozen feature extractors.

See :mod:`terradiff.metrics.fid` (distances, statistics, cached reference statistics)
and :mod:`terradiff.metrics.encoders` (the shipped AID encoder; the FID Inception-v3
from local weights).
"""

from terradiff.metrics.encoders import (
    AidCnn,
    AidCnnConfig,
    AidCnnExtractor,
    EvalOnlyExtractor,
    FeatureExtractor,
    FIDInceptionV3,
    load_feature_extractor,
)
from terradiff.metrics.fid import (
    FeatureStatistics,
    compute_features,
    compute_statistics,
    evaluate_generation,
    fingerprint_files,
    frechet_distance,
    kernel_inception_distance,
    reference_statistics,
)

__all__ = [
    "AidCnn",
    "AidCnnConfig",
    "AidCnnExtractor",
    "EvalOnlyExtractor",
    "FIDInceptionV3",
    "FeatureExtractor",
    "FeatureStatistics",
    "compute_features",
    "compute_statistics",
    "evaluate_generation",
    "fingerprint_files",
    "frechet_distance",
    "kernel_inception_distance",
    "load_feature_extractor",
    "reference_statistics",
]
