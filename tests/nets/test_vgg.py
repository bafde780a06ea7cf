"""VGG-style feature extractor: layouts, shapes, band adaptation, local weights only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terradiff.errors import CheckpointError
from terradiff.nets.vgg import VGG_LAYOUTS, VGGFeatures, load_vgg_weights


@pytest.mark.parametrize("layout", list(VGG_LAYOUTS))
def test_full_width_layout_matches_the_paper_parameter_count(layout: str) -> None:
    net = VGGFeatures(3, layout, num_stages=5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    # Simonyan & Zisserman 2015, Table 1: 8, 13 and 16 convolution layers
    assert len(convs) == {"vgg11": 8, "vgg16": 13, "vgg19": 16}[layout]
    # conv parameters of torchvision's vgg16.features (14,714,688) for configuration D
    if layout == "vgg16":
        assert net.num_parameters() == 14_714_688


def test_features_are_multi_scale_for_any_band_count() -> None:
    net = VGGFeatures(10, "vgg11", width=0.25, num_stages=4)
    features = net(torch.randn(2, 10, 32, 32))
    assert [f.shape[1] for f in features] == list(net.feature_channels) == [16, 32, 64, 128]
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    with pytest.raises(ValueError, match=r"\[B, 10, H, W\]"):
        net(torch.randn(1, 3, 32, 32))


def test_explicit_channels_must_follow_the_layout() -> None:
    net = VGGFeatures(4, "vgg16", channels=[(8, 8), (16, 12)], num_stages=2)
    assert net.feature_channels == (8, 12)
    with pytest.raises(ValueError, match="layout"):
        VGGFeatures(4, "vgg16", channels=[(8,), (16, 12)])


def test_local_weights_torchvision_keys_and_rgb_to_multispectral(tmp_path: Path) -> None:
    rgb = VGGFeatures(3, "vgg11", width=0.125, num_stages=2)
    # torchvision numbering: features.0 conv, .1 relu, .2 pool, .3 conv ...
    state = {
        "features.0.weight": rgb.stages[0][0].weight.detach().clone(),
        "features.0.bias": rgb.stages[0][0].bias.detach().clone(),
        "features.3.weight": rgb.stages[1][0].weight.detach().clone(),
        "features.3.bias": rgb.stages[1][0].bias.detach().clone(),
        "classifier.0.weight": torch.zeros(2, 2),
    }
    path = tmp_path / "vgg.safetensors"
    save_file(state, str(path))
    six = load_vgg_weights(VGGFeatures(6, "vgg11", width=0.125, num_stages=2), path)
    w = six.stages[0][0].weight
    expected = state["features.0.weight"].mean(1, keepdim=True) * 0.5
    torch.testing.assert_close(w, expected.repeat(1, 6, 1, 1))
    torch.testing.assert_close(six.stages[1][0].weight, state["features.3.weight"])
    # a grey image spread over 6 bands gives the RGB net's features on the same grey image
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(
        load_vgg_weights(VGGFeatures(3, "vgg11", width=0.125, num_stages=2), path)(
            x.repeat(1, 3, 1, 1)
        )[1],
        six(x.repeat(1, 6, 1, 1))[1],
    )
    with pytest.raises(CheckpointError, match="never downloads"):
        load_vgg_weights(six, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="vgg_width"):
        load_vgg_weights(VGGFeatures(3, "vgg11", width=0.25, num_stages=2), path)
