"""Precision and recall (Kynkäänniemi et al. 2019): the definition on small synthetic sets, and
what they say about real AID scenes in the shipped encoder's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from terradiff.metrics.manifold import kth_neighbour_radii, precision_recall


def _clusters(n_per: int, centres: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [c + 0.1 * rng.standard_normal((n_per, centres.shape[1])) for c in centres]
    )


CENTRES = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])


def test_radii_are_the_kth_nearest_other_point() -> None:
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    torch.testing.assert_close(
        kth_neighbour_radii(points, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        kth_neighbour_radii(points, k=2, chunk=3),
        torch.tensor([3.0, 2.0, 3.0, 6.0], dtype=torch.float64),
    )


def test_same_sets_far_sets_and_a_collapsed_generator() -> None:
    real = _clusters(50, CENTRES, seed=0)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # draws of the same distribution: both high
    precision, recall = precision_recall(real, _clusters(50, CENTRES, seed=1))
    assert precision > 0.9 and recall > 0.9
    # a generator that draws one of the four modes: faithful but not diverse
    precision, recall = precision_recall(real, _clusters(200, CENTRES[:1], seed=2))
    assert precision > 0.9 and 0.2 < recall < 0.3
    # one that draws between the modes: diverse in spread, not faithful
    between = _clusters(50, CENTRES + 2.5, seed=3)
    precision, _ = precision_recall(real, between)
    assert precision < 0.1


def test_bad_inputs_are_refused() -> None:
    real = _clusters(5, CENTRES[:1], seed=0)
    with pytest.raises(ValueError, match="feature dims differ"):
        precision_recall(real, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"k must be in \[1, N - 1\]"):
        precision_recall(real, real[:3])
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(real, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        precision_recall(real, real[0])


@pytest.fixture(scope="module")
def aid_features(sample_data: Path) -> dict[str, torch.Tensor]:
    """The shipped encoder's features of the bundled AID scenes (10 classes x 30), plain and
    blurred, with their class names."""
    from terradiff.metrics.encoders import load_feature_extractor

    extractor = load_feature_extractor()
    images, classes = [], []
    for folder in sorted(p for p in (sample_data / "aid").iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg")):
            array = np.array(Image.open(path).convert("RGB"))
            images.append(torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0)
            classes.append(folder.name)
    batch = torch.stack(
        [
            F.interpolate(x[None], size=(128, 128), antialias=True, mode="bilinear")[0]
            for x in images
        ]
    )
    kernel = torch.ones(3, 1, 9, 9) / 81.0
    blurred = F.conv2d(F.pad(batch, (4, 4, 4, 4), mode="reflect"), kernel, groups=3)
    with torch.no_grad():
        return {
            "plain": extractor(batch),
            "blurred": extractor(blurred),
            "classes": np.array(classes),
        }


def test_real_aid_scenes(aid_features: dict[str, torch.Tensor]) -> None:
    """Half of the real scenes against the other half (every class in both) score high on both;
    blurred scenes lose precision; the scenes of two classes only lose recall."""
    plain, classes = aid_features["plain"], aid_features["classes"]
    even, odd = plain[0::2], plain[1::2]
    precision, recall = precision_recall(even, odd)
    assert precision > 0.6 and recall > 0.6
    blurred_precision, _ = precision_recall(even, aid_features["blurred"][1::2])
    assert blurred_precision < precision - 0.3
    two = np.isin(classes, sorted(set(classes))[:2])[1::2]
    few_precision, few_recall = precision_recall(even, odd[torch.from_numpy(two)])
    assert few_recall < recall - 0.3 and few_precision > 0.5
