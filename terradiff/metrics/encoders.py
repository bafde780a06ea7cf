"""Feature extractors for generation metrics (FID, KID), usable offline.

FID and KID compare two image sets through the features of a fixed network (Heusel et al., 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"; Binkowski et
al., 2018, "Demystifying MMD GANs"). The numbers mean something only if that network is fixed:
always in eval mode, with features that do not depend on the batch they were computed in, and with
weights that are available where the metric is computed. terradiff therefore offers:

* ``"aid-cnn"`` (the default): a small CNN that terradiff trained itself on the 30 scene classes of
  the AID aerial dataset (Xia et al., 2017) at 64x64 pixels, shipped in the package
  (``terradiff/assets/aid_encoder.safetensors`` + ``aid_encoder.json``; the command that made it is
  ``scripts/train_fid_encoder.py``). Features are its 256-d penultimate layer (after global average
  pooling). GroupNorm, no BatchNorm and no dropout: features are independent of the batch.
* ``"inception"``: the FID Inception-v3 of pytorch-fid / torch-fidelity (the 2015-12-05 TensorFlow
  graph ported to PyTorch), 2048-d pool features, for numbers comparable with the literature. Its
  weights are not shipped and are never downloaded: pass a local file with ``weights=``.
* a path to a ``.safetensors`` file with a ``.json`` beside it: a user's own encoder of the aid-cnn
  architecture (e.g. trained with ``scripts/train_fid_encoder.py`` on other data).

Every extractor maps images ``[B, C, H, W]`` in ``[-1, 1]`` to features ``[B, D]``; it resizes the
images to its own input size inside. RGB encoders need 3 bands: for multispectral images select
the bands first (``rgb_bands=`` in :mod:`terradiff.metrics.fid`).

This module's one job is :func:`load_feature_extractor`, which picks one of them by name or path;
the extractors themselves live in :mod:`terradiff.metrics.extractor` (protocol, frozen base),
:mod:`terradiff.metrics.aid_encoder` and :mod:`terradiff.metrics.inception`, and are importable
from here as before.
"""

from __future__ import annotations

from pathlib import Path

from terradiff.metrics.aid_encoder import (
    AID_ENCODER_CONFIG,
    AID_ENCODER_WEIGHTS,
    ASSETS_DIR,
    ENCODER_FORMAT,
    AidCnn,
    AidCnnConfig,
    AidCnnExtractor,
    AidEncoderInfo,
    load_aid_encoder,
    read_encoder_config,
)
from terradiff.metrics.extractor import EvalOnlyExtractor, FeatureExtractor, file_fingerprint
from terradiff.metrics.inception import (
    INCEPTION_NAMES,
    INCEPTION_WEIGHTS_HELP,
    FIDInceptionV3,
    load_inception,
)


def load_feature_extractor(
    name_or_path: str | Path | None = None, *, weights: str | Path | None = None
) -> EvalOnlyExtractor:
    """Load a frozen feature extractor for FID/KID; never touches the network.

    Args:
        name_or_path: ``None`` or ``"aid-cnn"``: terradiff's shipped AID encoder (64x64 input,
            256-d features). ``"inception"``: the FID Inception-v3 (299x299, 2048-d), whose local
            weights file must be given as ``weights``. A path to a ``.safetensors`` file with a
            ``.json`` of the same name beside it: your own aid-cnn-architecture encoder.
        weights: For ``"inception"``: path to the weights (required). For ``"aid-cnn"``: an
            alternative safetensors file of that architecture (json beside it).

    Returns:
        An :class:`EvalOnlyExtractor` (implements :class:`FeatureExtractor`), in eval mode.

    Raises:
        FileNotFoundError: missing weights/config (with how to obtain them).
        ValueError: unknown name.
    """
    if name_or_path is None or str(name_or_path) == "aid-cnn":
        return load_aid_encoder(weights if weights is not None else AID_ENCODER_WEIGHTS)
    key = str(name_or_path)
    if key.lower() in INCEPTION_NAMES:
        return load_inception(weights)
    path = Path(key)
    if path.suffix == ".safetensors" or path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: encoder weights must be a .safetensors file (no pickles)")
        return load_aid_encoder(path)
    raise ValueError(
        f"unknown feature extractor {key!r}: use None/'aid-cnn' (shipped, offline), 'inception' "
        "(with weights=local .pth), or a path to an encoder .safetensors with its .json beside it"
    )


__all__ = [
    "AID_ENCODER_CONFIG",
    "AID_ENCODER_WEIGHTS",
    "ASSETS_DIR",
    "ENCODER_FORMAT",
    "INCEPTION_NAMES",
    "INCEPTION_WEIGHTS_HELP",
    "AidCnn",
    "AidCnnConfig",
    "AidCnnExtractor",
    "AidEncoderInfo",
    "EvalOnlyExtractor",
    "FIDInceptionV3",
    "FeatureExtractor",
    "file_fingerprint",
    "load_aid_encoder",
    "load_feature_extractor",
    "load_inception",
    "read_encoder_config",
]
