"""Tests of terradiff.nets.implicit: LIIF local implicit decoder and the IDM-style pyramid decoder.

Covers the coordinate convention, LIIF's equations against an explicit (unfold + one linear
layer) reference, shapes at integer and fractional scales, chunked rendering, continuity of the
local ensemble, gradients, bf16 autocast, UNet integration, and a short overfit on a real AID
image crop rendered at two sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from terradiff.nets.implicit import (
    LocalImplicitDecoder,
    MultiScaleImplicitDecoder,
    make_cell,
    make_coord,
)
from terradiff.nets.unet import UNet

SCALES = (1.0, 1.5, 2.0, 3.7, 4.0, 8.0)


def _smooth_features(channels: int, h: int, w: int, batch: int = 1, seed: int = 0) -> Tensor:
    """A feature map sampled from smooth functions: ``sin(a y + b x + phase)`` per channel."""
    g = torch.Generator().manual_seed(seed)
    yx = make_coord((h, w), flatten=False)  # [h, w, 2]
    freq = torch.randn(batch, channels, 2, generator=g) * 2.0
    phase = torch.rand(batch, channels, generator=g) * 6.28
    arg = torch.einsum("bcd,hwd->bchw", freq, yx) + phase[:, :, None, None]
    return torch.sin(arg)


def _pyramid(
    channels: tuple[int, ...], finest: tuple[int, int], batch: int = 2, seed: int = 0
) -> list[Tensor]:
    """Random features coarse to fine, each level half the size of the next."""
    g = torch.Generator().manual_seed(seed)
    n = len(channels)
    return [
        torch.randn(
            batch, c, finest[0] // 2 ** (n - 1 - k), finest[1] // 2 ** (n - 1 - k), generator=g
        )
        for k, c in enumerate(channels)
    ]


def _out_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return round(h * scale), round(w * scale)


# ----------------------------------------------------------------------------- make_coord


def test_make_coord_values_and_shape() -> None:
    c = make_coord((2, 4))
    assert c.shape == (8, 2) and c.dtype == torch.float32
    grid = make_coord((2, 4), flatten=False)
    assert grid.shape == (2, 4, 2)
    assert torch.equal(grid.reshape(8, 2), c)
    # (y, x) order, pixel centres -1 + (2i + 1) / n: the outer pixel edges are -1 and 1.
    assert torch.allclose(grid[:, 0, 0], torch.tensor([-0.5, 0.5]))
    assert torch.allclose(grid[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(grid[1, 2], torch.tensor([0.5, 0.25]))
    assert make_coord(3).shape == (9, 2)


def test_make_coord_is_align_corners_false_grid() -> None:
    # The same points as affine_grid(identity, align_corners=False), with (x, y) flipped ...
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    ref = F.affine_grid(theta, [1, 1, 5, 7], align_corners=False)[0]  # [5, 7, (x, y)]
    assert torch.allclose(make_coord((5, 7), flatten=False), ref.flip(-1), atol=1e-6)
    # ... so bilinear grid_sample at the pixel centres of the same size is the identity.
    img = torch.randn(1, 3, 5, 7)
    grid = make_coord((5, 7), flatten=False).flip(-1)[None]
    out = F.grid_sample(img, grid, mode="bilinear", align_corners=False)
    assert torch.allclose(out, img, atol=1e-5)


def test_make_cell() -> None:
    cell = make_cell((4, 8), 3)
    assert cell.shape == (3, 2)
    assert torch.allclose(cell, torch.tensor([[0.5, 0.25]] * 3))
    with pytest.raises(ValueError, match="shape"):
        make_cell((0, 3))


# ----------------------------------------------------------------------------- LIIF equations


def _liif_reference(dec: LocalImplicitDecoder, feat: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """LIIF written out as in the paper: unfolded codes, explicit nearest index, one linear layer.

    Independent of the module's conv-first evaluation and of grid_sample: the first layer is
    rebuilt as one ``nn.Linear`` over ``[unfold3x3(z), rel_coord, rel_cell]``.
    """
    B, C, h, w = feat.shape
    k = 3 if dec.feat_unfold else 1
    codes = F.unfold(feat, k, padding=k // 2).view(B, C * k * k, h, w)
    w1 = torch.cat([dec.feature_proj.weight.reshape(dec.hidden[0], -1), dec.coord_proj.weight], 1)
    b1 = dec.feature_proj.bias
    size = torch.tensor([h, w], dtype=torch.float32)
    shifts = [(a, b) for a in (-1, 1) for b in (-1, 1)] if dec.local_ensemble else [(0, 0)]
    preds, areas = [], []
    for dy, dx in shifts:
        offset = torch.tensor([dy, dx], dtype=torch.float32) / size
        if dec.local_ensemble:
            offset = offset + 1e-6
        q = (coord + offset).clamp(-1 + 1e-6, 1 - 1e-6)
        idx = torch.floor((q.double() + 1) / 2 * size.double()).long()  # nearest pixel index
        iy, ix = idx[..., 0].clamp(0, h - 1), idx[..., 1].clamp(0, w - 1)
        z = torch.stack([codes[b, :, iy[b], ix[b]].T for b in range(B)])  # [B, Q, C*k*k]
        centre = torch.stack([-1 + (2 * iy + 1) / h, -1 + (2 * ix + 1) / w], -1).float()
        rel = (coord - centre) * size
        inp = torch.cat([z, rel] + ([cell * size] if dec.cell_decode else []), dim=-1)
        preds.append(dec.mlp(inp @ w1.T + b1))
        areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
    if not dec.local_ensemble:
        return preds[0]
    total = sum(areas)
    # Each code is weighted by the area of the diagonally opposite one (LIIF Eq. 4).
    return sum(p * (a / total)[..., None] for p, a in zip(preds, areas[::-1], strict=True))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"local_ensemble": False},
        {"feat_unfold": False},
        {"cell_decode": False},
        {"local_ensemble": False, "feat_unfold": False, "cell_decode": False},
    ],
)
def test_matches_explicit_liif_reference(options: dict[str, bool]) -> None:
    torch.manual_seed(1)
    dec = LocalImplicitDecoder(5, 3, (16, 16), **options)
    feat = torch.randn(2, 5, 6, 7)
    coord = torch.rand(2, 50, 2) * 2.2 - 1.1  # includes points outside [-1, 1] (extrapolation)
    # and the interior pixel centres (ties but for the eps shift; on the centre lines of the
    # border rows/columns LIIF's area weights degenerate, see the next test)
    centres = make_coord((6, 7), flatten=False)[:-1, :-1].reshape(-1, 2)
    coord[:, : len(centres)] = centres
    cell = torch.rand(2, 50, 2) * 0.3 + 0.01
    with torch.no_grad():
        out = dec(feat, coord, cell)
        ref = _liif_reference(dec, feat, coord, cell)
    assert out.shape == (2, 50, 3)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_ensemble_reduces_to_nearest_code_at_feature_pixel_centres() -> None:
    """At x1 the area weights are (1, 0, 0, 0): the code under the query alone, rel = 0.

    Including the last row and column, where LIIF's own area formula degenerates (all four
    areas 0) and would average the codes evenly.
    """
    torch.manual_seed(0)
    ens = LocalImplicitDecoder(4, 2, (16,))
    near = LocalImplicitDecoder(4, 2, (16,), local_ensemble=False)
    near.load_state_dict(ens.state_dict())
    feat = torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        assert torch.allclose(ens.render(feat, (5, 6)), near.render(feat, (5, 6)), atol=1e-5)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bands", [1, 3, 13])
def test_local_render_shapes(scale: float, bands: int) -> None:
    dec = LocalImplicitDecoder(8, bands, (32, 32))
    feat = torch.randn(2, 8, 8, 6)
    size = _out_size(8, 6, scale)
    with torch.no_grad():
        out = dec.render(feat, size)
    assert out.shape == (2, bands, *size)
    assert torch.isfinite(out).all()


def test_local_forward_query_shape_and_cell_broadcast() -> None:
    dec = LocalImplicitDecoder(8, 3)
    feat = torch.randn(2, 8, 5, 5)
    coords = torch.rand(2, 17, 2) * 2 - 1
    cell = make_cell(11)[None].expand(2, 1, 2)
    with torch.no_grad():
        a = dec(feat, coords, cell)
        b = dec(feat, coords, cell.expand(2, 17, 2))
    assert a.shape == (2, 17, 3)
    assert torch.allclose(a, b)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("bands", [1, 3, 13])
def test_multiscale_shapes(scale: float, bands: int) -> None:
    channels = (32, 16, 8)
    dec = MultiScaleImplicitDecoder(channels, bands, hidden=16, head_hidden=(16,))
    feats = _pyramid(channels, (8, 6))
    size = _out_size(8, 6, scale)
    with torch.no_grad():
        out = dec(feats, size)
    assert out.shape == (2, bands, *size)
    assert torch.isfinite(out).all()


def test_multiscale_on_unet_decoder_features_any_size() -> None:
    net = UNet(
        3,
        base_channels=16,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=32,
        num_groups=8,
    )
    dec = MultiScaleImplicitDecoder(net.feature_channels, 4, hidden=32)
    with torch.no_grad():
        _, feats = net.forward_features(torch.randn(1, 3, 32, 32), torch.tensor([3]))
        assert [f.shape[-1] for f in feats] == [8, 16, 32]
        for size in [(32, 32), (48, 48), (40, 56), (80, 80)]:
            assert dec(feats, size).shape == (1, 4, *size)


def test_multiscale_on_encoder_features_at_scale_one() -> None:
    """Dense prediction on VGG-style encoder stages (strides 8, 4, 2, 1), output at input size."""
    dec = MultiScaleImplicitDecoder((128, 64, 32, 16), 1, hidden=32)
    feats = _pyramid((128, 64, 32, 16), (24, 24), batch=3)
    with torch.no_grad():
        assert dec(feats, 24).shape == (3, 1, 24, 24)


def test_default_parameter_counts_are_modest() -> None:
    assert LocalImplicitDecoder(64, 3).num_parameters() == 107_779
    # SMALL_64 UNet's decoder features: 256/128/128/64 channels.
    assert MultiScaleImplicitDecoder((256, 128, 128, 64), 3).num_parameters() == 370_883
    assert (
        MultiScaleImplicitDecoder((256, 128, 128, 64), 3, feat_unfold=False).num_parameters()
        < 80_000
    )


# ----------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("max_queries", [1, 7, 100])
def test_chunked_render_equals_unchunked(max_queries: int) -> None:
    torch.manual_seed(0)
    dec = LocalImplicitDecoder(6, 3, (32, 32))
    feat = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        full = dec.render(feat, (11, 13), max_queries=None)
        chunked = dec.render(feat, (11, 13), max_queries=max_queries)
    assert torch.allclose(full, chunked, atol=1e-6)


def test_chunked_multiscale_equals_unchunked() -> None:
    torch.manual_seed(0)
    dec = MultiScaleImplicitDecoder((16, 8), 3, hidden=16)
    with torch.no_grad():
        for p in dec.modulation.parameters():  # non-trivial gates
            p.normal_(0, 0.3)
    feats = _pyramid((16, 8), (10, 12))
    with torch.no_grad():
        full = dec(feats, (17, 19), max_queries=None)
        chunked = dec(feats, (17, 19), max_queries=50)
    assert torch.allclose(full, chunked, atol=1e-6)


# ----------------------------------------------------------------------------- continuity


def _max_step_along_line(fn: Callable[[Tensor], Tensor], n: int) -> float:
    """Largest output change between neighbouring queries on ``n`` points of a slanted line."""
    t = torch.linspace(-0.95, 0.95, n)
    coords = torch.stack([0.3 * t + 0.05, t], dim=-1)[None]  # crosses many feature pixels
    with torch.no_grad():
        out = fn(coords)
    return (out[:, 1:] - out[:, :-1]).abs().max().item()


def test_local_ensemble_is_continuous_and_nearest_code_is_not() -> None:
    """LIIF Eq. 4 makes the decoded field continuous: refining the query grid shrinks the jumps.

    Features are sampled from smooth functions on an 8x8 map, the MLP is untrained (default
    initialisation). With the local ensemble the largest difference between neighbouring
    queries halves when the spacing halves (a Lipschitz field, no seams); with the nearest code
    alone it stays put, at the seams between feature pixels (block artefacts).
    """
    torch.manual_seed(0)
    feat = _smooth_features(16, 8, 8)
    cell = make_cell(64)[None]
    ens = LocalImplicitDecoder(16, 3, (64, 64))
    near = LocalImplicitDecoder(16, 3, (64, 64), local_ensemble=False)
    near.load_state_dict(ens.state_dict())

    e1, e2, e3 = (_max_step_along_line(lambda c: ens(feat, c, cell), n) for n in (400, 800, 1600))
    n1, _, n3 = (_max_step_along_line(lambda c: near(feat, c, cell), n) for n in (400, 800, 1600))
    assert e2 < 0.65 * e1 and e3 < 0.65 * e2  # ~1/2 per halving of the spacing
    assert n3 > 0.8 * n1  # the seams do not go away
    assert n3 > 10 * e3  # and dwarf the continuous field's steps


def test_multiscale_output_is_continuous() -> None:
    torch.manual_seed(0)
    dec = MultiScaleImplicitDecoder((16, 8), 2, hidden=32)
    feats = [_smooth_features(16, 4, 4, seed=1), _smooth_features(8, 8, 8, seed=2)]
    latents = dec.encode(feats)
    cell = make_cell(32)[None]
    s1, s2, s3 = (
        _max_step_along_line(lambda c: dec.query(latents, c, cell), n) for n in (400, 800, 1600)
    )
    assert s2 < 0.65 * s1 and s3 < 0.65 * s2


# ----------------------------------------------------------------------------- gradients, dtype


def test_gradients_reach_features_and_every_parameter() -> None:
    dec = LocalImplicitDecoder(6, 3, (16, 16))
    feat = torch.randn(2, 6, 5, 5, requires_grad=True)
    coords = (torch.rand(2, 30, 2) * 2 - 1).requires_grad_(True)
    out = dec(feat, coords, make_cell(12)[None].expand(2, 1, 2))
    out.square().mean().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert coords.grad is not None and coords.grad.abs().sum() > 0  # via relative coordinates
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_multiscale_gradients_reach_every_level_and_parameter() -> None:
    dec = MultiScaleImplicitDecoder((12, 6), 3, hidden=16)
    with torch.no_grad():  # the zero-initialised gate layer would block its input layer's grad
        dec.modulation[-1].weight.normal_(0, 0.1)
    feats = [f.requires_grad_(True) for f in _pyramid((12, 6), (8, 8))]
    dec(feats, 13).square().mean().backward()
    for k, f in enumerate(feats):
        assert f.grad is not None and f.grad.abs().sum() > 0, k
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_modulation_starts_as_plain_sum() -> None:
    torch.manual_seed(0)
    mod = MultiScaleImplicitDecoder((8, 4), 3, hidden=16)
    plain = MultiScaleImplicitDecoder((8, 4), 3, hidden=16, scale_modulation=False)
    plain.load_state_dict(mod.state_dict(), strict=False)
    feats = _pyramid((8, 4), (8, 8))
    with torch.no_grad():
        assert torch.allclose(mod(feats, 20), plain(feats, 20), atol=1e-6)


def test_bf16_autocast_close_to_float32() -> None:
    torch.manual_seed(0)
    dec = MultiScaleImplicitDecoder((16, 8), 3, hidden=32)
    feats = [_smooth_features(16, 4, 4, batch=2), _smooth_features(8, 8, 8, batch=2, seed=3)]
    with torch.no_grad():
        ref = dec(feats, 21)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = dec(feats, 21)
    assert low.shape == ref.shape
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


# ----------------------------------------------------------------------------- validation


def test_invalid_inputs_raise_clear_errors() -> None:
    dec = LocalImplicitDecoder(4, 3)
    feat = torch.randn(2, 4, 5, 5)
    coords = torch.rand(2, 9, 2)
    with pytest.raises(ValueError, match="feature_channels"):
        dec(torch.randn(2, 5, 5, 5), coords, make_cell(5)[None].expand(2, 1, 2))
    with pytest.raises(ValueError, match="coords"):
        dec(feat, torch.rand(2, 9, 3), None)
    with pytest.raises(ValueError, match="cell decoding"):
        dec(feat, coords, None)
    with pytest.raises(ValueError, match="cell must have shape"):
        dec(feat, coords, torch.ones(2, 4, 2))
    with pytest.raises(ValueError, match="out_size"):
        dec.render(feat, (0, 4))
    with pytest.raises(ValueError, match="max_queries"):
        dec.render(feat, 4, max_queries=0)
    with pytest.raises(ValueError, match="hidden"):
        LocalImplicitDecoder(4, 3, ())
    ms = MultiScaleImplicitDecoder((8, 4), 3)
    with pytest.raises(ValueError, match="2 feature levels"):
        ms([torch.randn(1, 8, 4, 4)], 8)
    with pytest.raises(ValueError, match=r"features\[1\]"):
        ms([torch.randn(1, 8, 4, 4), torch.randn(1, 8, 8, 8)], 8)  # fine level in coarse slot
    # Without cell decoding the cell may be omitted.
    no_cell = LocalImplicitDecoder(4, 3, cell_decode=False)
    assert no_cell(feat, coords).shape == (2, 9, 3)


# ----------------------------------------------------------------------------- real image


def _aid_crop(sample_data: Path) -> Tensor:
    """The most textured 32x32 crop (8-pixel grid) of the first AID Forest sample, in [-1, 1].

    Forest scenes are mostly uniform canopy; the textured crop (edge of a clearing) is a real
    reconstruction problem rather than a near-constant one.
    """
    folder = sample_data / "aid" / "Forest"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        pytest.skip(f"no AID Forest sample in {folder}")
    with Image.open(files[0]) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    image = torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()  # [1, 3, H, W]
    cols = (image.shape[-1] - 32) // 8 + 1
    std = F.unfold(image, 32, stride=8).std(dim=1)[0]  # one value per 32x32 window
    k = int(std.argmax())
    y0, x0 = (k // cols) * 8, (k % cols) * 8
    return image[:, :, y0 : y0 + 32, x0 : x0 + 32].contiguous()


def test_overfit_real_aid_crop_and_render_continuous_scales(sample_data: Path) -> None:
    """Fit encoder + LIIF to one real 32x32 AID crop from its 16x16 downsample (x2 SR).

    Runs on one thread: the problem is too small to gain from two, and with two OpenMP threads
    on cores shared with another job (e.g. a training run) every small op waits on the other
    thread -- measured here, 0.37 s per step with two threads against 0.01 s with one.
    """
    torch.set_num_threads(1)  # the autouse fixture sets 2 again for the next test
    torch.manual_seed(0)
    hr = _aid_crop(sample_data)
    assert hr.shape == (1, 3, 32, 32)
    lr = F.interpolate(hr, size=(16, 16), mode="area")
    encoder = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)
    )
    dec = LocalImplicitDecoder(32, 3, (64, 64))
    params = [*encoder.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    losses = []
    for _ in range(100):
        out = dec.render(encoder(lr), (32, 32))
        loss = F.l1_loss(out, hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])

    with torch.no_grad():
        feats = encoder(lr)
        out32 = dec.render(feats, (32, 32))
        out48 = dec.render(feats, (48, 48), max_queries=500)  # x3 the LR, a scale not trained on
    assert out32.shape == (1, 3, 32, 32) and out48.shape == (1, 3, 48, 48)
    assert torch.isfinite(out48).all()
    # The x1.5 rendering is the same image: downsampled (antialiased) to 32x32 it stays close
    # to the target (much closer than the constant mean image).
    back = F.interpolate(out48, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    err48 = F.l1_loss(back, hr).item()
    err_mean = F.l1_loss(hr.mean(dim=(2, 3), keepdim=True).expand_as(hr), hr).item()
    assert err48 < 0.5 * err_mean, (err48, err_mean)
