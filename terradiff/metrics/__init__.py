"""terradiff.metrics: generation metrics (FID, KID) with offline, frozen feature extractors.

See :mod:`terradiff.metrics.fid` (distances, statistics, cached reference statistics)
and :mod:`terradiff.metrics.encoders` (the shipped AID encoder; the FID Inception-v3
from local weights).
Full-reference image quality (PSNR, SSIM, Y-channel PSNR/SSIM, MAE/RMSE, LPIPS from local
weights) is in :mod:`terradiff.metrics.image_quality`.
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
from terradiff.metrics.image_quality import (
    LPIPS,
    load_lpips,
    mae,
    psnr,
    psnr_y,
    rgb_to_y,
    rmse,
    sr_metrics,
    ssim,
    ssim_y,
)

__all__ = [
    "LPIPS",
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
    "load_lpips",
    "mae",
    "psnr",
    "psnr_y",
    "reference_statistics",
    "rgb_to_y",
    "rmse",
    "sr_metrics",
    "ssim",
    "ssim_y",
]
