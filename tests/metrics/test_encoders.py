"""Tests for terradiff.metrics.encoders: the shipped AID encoder and the FID Inception-v3."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor

from terradiff.metrics.encoders import (
    AID_ENCODER_CONFIG,
    AID_ENCODER_WEIGHTS,
    AidCnnExtractor,
    FeatureExtractor,
    FIDInceptionV3,
    file_fingerprint,
    load_feature_extractor,
)
from terradiff.metrics.fid import compute_features

CONFIG = json.loads(AID_ENCODER_CONFIG.read_text())


def _images(n: int, size: int = 64, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _load_aid(root: Path, names: list[str]) -> Tensor:
    arrays = [np.asarray(Image.open(root / n).convert("RGB")) for n in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def aid() -> AidCnnExtractor:
    ext = load_feature_extractor()
    assert isinstance(ext, AidCnnExtractor)
    return ext


# ------------------------------------------------------------------------------------------------
# shipped aid-cnn
# ------------------------------------------------------------------------------------------------


def test_shipped_encoder_files_and_metadata() -> None:
    assert AID_ENCODER_WEIGHTS.is_file() and AID_ENCODER_CONFIG.is_file()
    assert AID_ENCODER_WEIGHTS.stat().st_size < 8e6
    assert CONFIG["weights_sha256_16"] == file_fingerprint(AID_ENCODER_WEIGHTS)
    assert len(CONFIG["classes"]) == 30 and CONFIG["input_size"] == 64
    assert CONFIG["metrics"]["test_accuracy"] > 0.5
    assert "train_fid_encoder.py" in CONFIG["training"]["command"]
    assert "AID" in CONFIG["data"]["provenance"]
    assert len(CONFIG["data"]["test_files"]) == CONFIG["data"]["num_test"]
    log = AID_ENCODER_WEIGHTS.with_name("aid_encoder_train.log")
    assert log.is_file() and "final" in log.read_text()


def test_shipped_encoder_attributes_and_eval_mode(aid: AidCnnExtractor) -> None:
    assert isinstance(aid, FeatureExtractor)
    assert (aid.name, aid.feature_dim, aid.in_channels, aid.input_size) == ("aid-cnn", 256, 3, 64)
    assert aid.fingerprint == CONFIG["weights_sha256_16"]
    n_params = sum(p.numel() for p in aid.parameters())
    assert n_params < 2_000_000
    assert not any(p.requires_grad for p in aid.parameters())
    aid.train()
    assert not aid.training and not any(m.training for m in aid.modules())
    aid.train(True)
    assert not any(m.training for m in aid.modules())


def test_features_are_batch_size_independent(aid: AidCnnExtractor) -> None:
    x = _images(9)
    with torch.no_grad():
        full = aid(x)
        singles = torch.cat([aid(x[i : i + 1]) for i in range(9)])
    assert full.shape == (9, 256)
    torch.testing.assert_close(singles, full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compute_features(x, aid, batch_size=4), full, rtol=1e-4, atol=1e-5)
    # A sub-module switched to train mode by hand is put back to eval before the forward pass.
    aid.net.train()
    with torch.no_grad():
        torch.testing.assert_close(aid(x), full)
    assert not aid.net.training


def test_images_are_resized_inside(aid: AidCnnExtractor) -> None:
    x = _images(2, size=150, seed=1)
    small = torch.nn.functional.interpolate(
        x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True
    )
    with torch.no_grad():
        torch.testing.assert_close(aid(x), aid(small), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bands"):
        aid(torch.zeros(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        aid(torch.zeros(3, 64, 64))


def test_shipped_encoder_reproduces_its_stated_held_out_accuracy(
    aid: AidCnnExtractor, shared_data: Path
) -> None:
    """All 900 held-out files of ``aid_encoder.json``: the stated test accuracy, within 2 s.e.

    The files are the ones the stated figure was measured on, so the accuracy should be the same
    up to float round-off flipping a few borderline images; the margin is two binomial standard
    errors of the stated accuracy at this count (1.3 points at 900 images), on both sides, so a
    claim that is too low is caught as well as one that is too high.
    """
    names = CONFIG["data"]["test_files"]
    stated = CONFIG["metrics"]["test_accuracy"]
    labels = torch.tensor([aid.classes.index(n.split("/")[0]) for n in names])
    x = _load_aid(shared_data / "aid", names)
    with torch.no_grad():
        pred = torch.cat([aid.logits(chunk).argmax(1) for chunk in x.split(150)])
    accuracy = (pred == labels).float().mean().item()
    margin = 2 * math.sqrt(stated * (1 - stated) / len(names))
    print(f"aid-cnn on {len(names)} held-out AID images: {accuracy:.4f} (stated {stated:.4f})")
    assert len(names) == 900 and stated > 0.8
    assert abs(accuracy - stated) <= margin


def test_user_encoder_from_path(tmp_path: Path, aid: AidCnnExtractor) -> None:
    weights = tmp_path / "mine.safetensors"
    shutil.copy(AID_ENCODER_WEIGHTS, weights)
    with pytest.raises(FileNotFoundError, match=r"mine\.json"):
        load_feature_extractor(str(weights))
    shutil.copy(AID_ENCODER_CONFIG, tmp_path / "mine.json")
    mine = load_feature_extractor(weights)
    x = _images(3)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), aid(x))
    # same bytes -> same fingerprint; different weights -> different fingerprint
    assert mine.fingerprint == aid.fingerprint
    state = {k: v.clone() for k, v in aid.net.state_dict().items()}
    state["head.bias"] += 1.0
    save_file(state, str(weights))
    assert load_feature_extractor(weights).fingerprint != aid.fingerprint
    bad = dict(state)
    bad.pop("head.bias")
    save_file(bad, str(weights))
    with pytest.raises(ValueError, match="does not fit"):
        load_feature_extractor(weights)


def test_load_feature_extractor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown feature extractor"):
        load_feature_extractor("vgg-something")
    pickle = tmp_path / "enc.pt"
    pickle.write_bytes(b"not used")
    with pytest.raises(ValueError, match="safetensors"):
        load_feature_extractor(str(pickle))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_feature_extractor(str(tmp_path / "missing.safetensors"))


# ------------------------------------------------------------------------------------------------
# FID Inception-v3 (weights are not available offline: construction, shapes, loading, errors)
# ------------------------------------------------------------------------------------------------


def test_inception_without_weights_raises_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        load_feature_extractor("inception")
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_feature_extractor("inception", weights=missing)


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3()


def test_inception_structure_and_state_dict_names(inception: FIDInceptionV3) -> None:
    state = inception.state_dict()
    # Names and shapes of pytorch-fid's pt_inception-2015-12-05 state dict.
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_4a_3x3.bn.running_var"].shape == (192,)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7a.branch3x3_2.conv.weight"].shape == (320, 192, 3, 3)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    n_params = sum(p.numel() for p in inception.parameters())
    assert 21_000_000 < n_params < 22_500_000  # Inception-v3 without the fc/aux heads
    assert not inception.training
    inception.train()
    assert not any(m.training for m in inception.modules())


def test_inception_forward_shape_and_batch_independence(inception: FIDInceptionV3) -> None:
    x = _images(2, size=32)
    with torch.no_grad():
        both = inception(x)
        one = inception(x[:1])
    assert both.shape == (2, 2048)
    torch.testing.assert_close(one, both[:1], rtol=1e-4, atol=1e-5)


def test_inception_loads_local_state_dict(tmp_path: Path, inception: FIDInceptionV3) -> None:
    state = dict(inception.state_dict())
    state["fc.weight"] = torch.zeros(1008, 2048)  # pytorch-fid files carry the classifier too
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    loaded = load_feature_extractor("inception", weights=path)
    assert loaded.name == "inception-v3-fid" and loaded.fingerprint == file_fingerprint(path)
    x = _images(1, size=16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), inception(x))
    del state["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="missing"):
        load_feature_extractor("inception", weights=path)
