"""Tests for terradiff.viz: grids, chain figures, loss curves (valid PNGs, sizes, errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from terradiff.viz import (
    ema_smooth,
    save_chain_figure,
    save_comparison_figure,
    save_image_grid,
    save_loss_curve,
    save_loss_curves,
    to_display,
)


def _png(path: Path) -> Image.Image:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    image.load()
    return image


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_grid_size_and_pixel_values(tmp_path: Path) -> None:
    x = torch.zeros(10, 3, 16, 12)
    x[0] = -1.0  # black
    x[1] = 1.0  # white
    x[2, 0] = 1.0  # red
    x[2, 1:] = -1.0
    path = save_image_grid(x, tmp_path / "grid.png", nrow=4, padding=2)
    img = _png(path)
    assert img.mode == "RGB"
    assert img.size == (4 * 12 + 5 * 2, 3 * 16 + 4 * 2)
    arr = np.asarray(img)
    assert tuple(arr[2 + 5, 2 + 5]) == (0, 0, 0)
    assert tuple(arr[2 + 5, 2 + 12 + 2 + 5]) == (255, 255, 255)
    assert tuple(arr[2 + 5, 2 + 2 * (12 + 2) + 5]) == (255, 0, 0)
    assert tuple(arr[2 + 5, 2 + 3 * (12 + 2) + 5]) == (128, 128, 128)  # 0 -> mid grey
    assert _no_temp_files(tmp_path)


def test_grid_single_band_multispectral_and_scale(tmp_path: Path) -> None:
    grey = save_image_grid(torch.zeros(3, 1, 8, 8), tmp_path / "grey.png", nrow=8, padding=0)
    assert _png(grey).mode == "L" and _png(grey).size == (24, 8)
    ms = torch.rand(5, 13, 8, 8) * 0.2 - 0.9  # dark reflectances: a stretch is needed
    p = save_image_grid(
        ms, tmp_path / "ms.png", nrow=5, rgb_bands=(3, 2, 1), stretch="percentile", scale=2
    )
    img = _png(p)
    assert img.size == (5 * 16 + 6 * 2, 16 + 2 * 2)
    inner = np.asarray(img)[2:18, 2:18]
    assert inner.max() > 200 and inner.min() < 50  # stretched to the full range
    linear = to_display(ms, rgb_bands=(3, 2, 1))
    assert linear.max() <= 0.151  # without the stretch it is almost black: (-0.7 + 1) / 2


def test_grid_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        save_image_grid(torch.zeros(3, 8, 8), tmp_path / "a.png")
    with pytest.raises(ValueError, match="2 bands"):
        save_image_grid(torch.zeros(2, 2, 8, 8), tmp_path / "a.png")
    with pytest.raises(ValueError, match="out of range"):
        save_image_grid(torch.zeros(2, 4, 8, 8), tmp_path / "a.png", rgb_bands=(0, 1, 4))
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3"):
        save_image_grid(torch.zeros(2, 4, 8, 8), tmp_path / "a.png", rgb_bands=(0, 1))
    with pytest.raises(ValueError, match="stretch"):
        save_image_grid(torch.zeros(2, 3, 8, 8), tmp_path / "a.png", stretch="log")
    with pytest.raises(TypeError):
        save_image_grid([[0.0]], tmp_path / "a.png")  # type: ignore[arg-type]
    assert not (tmp_path / "a.png").exists()


def _trajectory(n_steps: int = 25, b: int = 6, c: int = 3) -> list[tuple[int, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(b, c, 16, 16, generator=g) * 2 - 1
    out = []
    for i, t in enumerate(np.linspace(999, 0, n_steps).round().astype(int)):
        a = i / (n_steps - 1)
        out.append((int(t), a * x0 + (1 - a) * torch.randn(b, c, 16, 16, generator=g)))
    return out


def test_chain_figure_size(tmp_path: Path) -> None:
    p = save_chain_figure(_trajectory(), tmp_path / "chain.png", n_rows=4, n_cols=11, dpi=50)
    assert _png(p).size == (11 * 50, 4 * 50)
    titled = save_chain_figure(
        _trajectory(5, b=2, c=13),
        tmp_path / "chain_ms.png",
        rgb_bands=(3, 2, 1),
        stretch=True,
        title="terradiff sample --config x.yaml",
        dpi=40,
    )
    # 5 steps < 11 columns: all shown; 2 samples < 4 rows: all shown; 0.35 in title band
    assert _png(titled).size == (5 * 40, round((2 + 0.35) * 40))
    assert _no_temp_files(tmp_path)


def test_chain_figure_accepts_sampler_output_like_objects(tmp_path: Path) -> None:
    class Output:
        trajectory = _trajectory(3, b=1)

    p = save_chain_figure(Output(), tmp_path / "c.png", dpi=30)
    assert _png(p).size == (3 * 30, 30)


def test_chain_figure_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        save_chain_figure([], tmp_path / "c.png")
    traj = _trajectory(3)
    traj[1] = (traj[1][0], traj[1][1][:, :, :8])
    with pytest.raises(ValueError, match="differ in shape"):
        save_chain_figure(traj, tmp_path / "c.png")
    with pytest.raises(ValueError, match="pair"):
        save_chain_figure([torch.zeros(1, 3, 8, 8)], tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        save_chain_figure([(10, torch.zeros(3, 8, 8))], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_loss_curves(tmp_path: Path) -> None:
    steps = np.arange(200)
    rng = np.random.default_rng(0)
    curves = {
        "train": (steps, np.exp(-steps / 80) + 0.05 * rng.random(200) + 0.01),
        "val": (steps[::10], np.exp(-steps[::10] / 90) + 0.02),
    }
    p = save_loss_curves(curves, tmp_path / "loss.png", smoothing=0.9, figsize=(6, 4), dpi=50)
    assert _png(p).size == (300, 200)
    p1 = save_loss_curve(steps, -np.linspace(0, 1, 200), tmp_path / "one.png", dpi=50)
    assert _png(p1).size == (350, 225)  # default figsize 7 x 4.5 in; negative values: linear y
    with pytest.raises(ValueError, match="smoothing"):
        save_loss_curves(curves, tmp_path / "x.png", smoothing=1.0)
    with pytest.raises(ValueError, match="equal length"):
        save_loss_curves({"a": ([1, 2, 3], [1.0, 2.0])}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        save_loss_curves({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_ema_smooth() -> None:
    const = np.full(50, 3.0)
    np.testing.assert_allclose(ema_smooth(const, 0.95), const)  # debiased: no ramp-up from 0
    v = np.array([1.0, 0.0, np.nan, 0.0])
    s = ema_smooth(v, 0.5)
    assert s[0] == 1.0 and s[1] == pytest.approx(1 / 3) and s[2] == s[1]
    assert s[3] < s[2]


def test_comparison_figure_has_a_zoom_row_per_image(tmp_path: Path) -> None:
    panels = {"bicubic": torch.zeros(2, 3, 32, 32), "HR": torch.ones(2, 3, 32, 32)}
    path = save_comparison_figure(panels, tmp_path / "c.png", zoom=(4, 4, 8), panel_inches=1.0)
    with Image.open(path) as image:
        assert image.size == (200, 400)  # 2 columns x (2 images x 2 rows) at 1 inch, 100 dpi
    flat = save_comparison_figure(panels, tmp_path / "f.png", panel_inches=1.0)
    with Image.open(flat) as image:
        assert image.size == (200, 200)
    with pytest.raises(ValueError, match="'HR'"):
        save_comparison_figure(
            {"bicubic": torch.zeros(2, 3, 32, 32), "HR": torch.ones(2, 3, 16, 16)},
            tmp_path / "x.png",
        )
