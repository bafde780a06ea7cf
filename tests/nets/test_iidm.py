"""The IIDM conditional denoiser and its ablations: shapes, wiring errors, gradient flow."""

from __future__ import annotations

import pytest
import torch

from terradiff.nets.iidm import IIDMNet
from terradiff.nets.unet import UNet
from terradiff.nets.vgg import VGGFeatures


def _unet(cond: int, context: int = 0) -> UNet:
    return UNet(
        1,
        cond_channels=cond,
        base_channels=16,
        channel_mults=(1, 2),
        num_groups=4,
        attention_resolutions=(),
        image_size=16,
        context_channels=context,
    )


@pytest.mark.parametrize("variant", ["iidm", "no_attention", "no_decoder", "idm"])
def test_variants_predict_the_target_shape_and_every_part_learns(variant: str) -> None:
    torch.manual_seed(0)
    vgg = VGGFeatures(10, "vgg11", width=0.125, num_stages=3) if variant != "idm" else None
    context = vgg.feature_channels[-1] if variant == "iidm" else 0
    cond = 10 + (8 if vgg is not None else 0)
    net = IIDMNet(
        10,
        _unet(cond, context),
        extractor=vgg,
        feature_channels=8,
        implicit_decoder=variant not in ("no_decoder", "idm"),
        decoder_hidden=16,
    )
    torch.nn.init.normal_(net.denoiser.out[1].weight, std=0.01)  # zero at init: no gradient
    image, y_t = torch.randn(2, 10, 16, 16), torch.randn(2, 1, 16, 16)
    out = net(y_t, torch.tensor([5, 900]), image)
    assert out.shape == (2, 1, 16, 16)
    out.square().mean().backward()
    if vgg is not None:
        assert net.extractor.stages[0][0].weight.grad.abs().sum() > 0  # the condition path learns
    cond_map, tokens = net.condition(image)
    assert cond_map.shape == (2, cond, 16, 16)
    assert (tokens is not None) == (variant == "iidm")
    if tokens is not None:
        assert tokens.shape == (2, 16, vgg.feature_channels[-1])  # 4x4 deepest map


def test_wiring_errors_name_the_fix() -> None:
    vgg = VGGFeatures(4, "vgg11", width=0.125, num_stages=2)
    with pytest.raises(ValueError, match="needs 12"):
        IIDMNet(4, _unet(4), extractor=vgg, feature_channels=8)
    with pytest.raises(ValueError, match="extractor"):
        IIDMNet(4, _unet(4, context=16))
    with pytest.raises(ValueError, match="deepest width"):
        IIDMNet(4, _unet(12, context=7), extractor=vgg, feature_channels=8)
    net = IIDMNet(4, _unet(4))
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        net(torch.randn(1, 1, 16, 16), 1, torch.randn(1, 3, 16, 16))
