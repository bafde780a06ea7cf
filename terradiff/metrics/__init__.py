"""terradiff.metrics: image-quality and generation metrics, offline, with frozen feature networks.

One concern per module; the lower ones never import the higher ones:

* full-reference image quality: :mod:`~terradiff.metrics.full_reference` (shared conventions),
  :mod:`~terradiff.metrics.pixel` (PSNR, MAE, RMSE), :mod:`~terradiff.metrics.structural_similarity`
  (SSIM), :mod:`~terradiff.metrics.y_channel` (Y-channel PSNR/SSIM), :mod:`~terradiff.metrics.lpips`
  (LPIPS from local weights), :mod:`~terradiff.metrics.feature_distance` (LPIPS's form in the
  shipped AID encoder: the perceptual distance that needs no download),
  :mod:`~terradiff.metrics.spectrum` (detail above the LR Nyquist
  frequency), and :mod:`~terradiff.metrics.image_quality` (``sr_metrics``, and all of these under
  one name);
* feature extractors for FID/KID: :mod:`~terradiff.metrics.extractor` (protocol, frozen base),
  :mod:`~terradiff.metrics.aid_encoder` (the shipped AID encoder),
  :mod:`~terradiff.metrics.inception` (the FID Inception-v3 from local weights) and
  :mod:`~terradiff.metrics.encoders` (``load_feature_extractor``);
* generation metrics: :mod:`~terradiff.metrics.distances` (FID, KID maths),
  :mod:`~terradiff.metrics.manifold` (precision and recall, Kynkäänniemi et al. 2019),
  :mod:`~terradiff.metrics.feature_stats` (statistics on disk), :mod:`~terradiff.metrics.features`
  (features of image sources) and :mod:`~terradiff.metrics.fid` (cached reference statistics,
  ``evaluate_generation``).
"""

from terradiff.metrics.aid_encoder import AidCnn, AidCnnConfig, AidCnnExtractor
from terradiff.metrics.distances import frechet_distance, kernel_inception_distance
from terradiff.metrics.encoders import load_feature_extractor
from terradiff.metrics.extractor import EvalOnlyExtractor, FeatureExtractor
from terradiff.metrics.feature_distance import FeatureDistance, load_feature_distance
from terradiff.metrics.feature_stats import FeatureStatistics, fingerprint_files
from terradiff.metrics.features import compute_features, compute_statistics
from terradiff.metrics.fid import evaluate_generation, reference_statistics
from terradiff.metrics.image_quality import sr_metrics
from terradiff.metrics.inception import FIDInceptionV3
from terradiff.metrics.lpips import LPIPS, load_lpips
from terradiff.metrics.manifold import precision_recall
from terradiff.metrics.pixel import mae, psnr, rmse
from terradiff.metrics.spectrum import high_frequency_power, log_spectral_distance
from terradiff.metrics.structural_similarity import ssim
from terradiff.metrics.y_channel import psnr_y, rgb_to_y, ssim_y

__all__ = [
    "LPIPS",
    "AidCnn",
    "AidCnnConfig",
    "AidCnnExtractor",
    "EvalOnlyExtractor",
    "FIDInceptionV3",
    "FeatureDistance",
    "FeatureExtractor",
    "FeatureStatistics",
    "compute_features",
    "compute_statistics",
    "evaluate_generation",
    "fingerprint_files",
    "frechet_distance",
    "high_frequency_power",
    "kernel_inception_distance",
    "load_feature_distance",
    "load_feature_extractor",
    "load_lpips",
    "log_spectral_distance",
    "mae",
    "precision_recall",
    "psnr",
    "psnr_y",
    "reference_statistics",
    "rgb_to_y",
    "rmse",
    "sr_metrics",
    "ssim",
    "ssim_y",
]
