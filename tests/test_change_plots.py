"""The change study's precision-recall figure (``scripts/change_plots.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.change_plots import operating_point, plot_precision_recall, pooled_histogram
from tests.test_change_study import _scored

TILES = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]


def test_pooled_histogram_adds_every_window_of_every_run() -> None:
    runs = [_scored(TILES, 0), _scored(TILES, 1)]
    pooled = pooled_histogram(runs)
    assert sum(pooled.changed) == 2 * sum(t[0] + t[2] for t in TILES)
    assert sum(pooled.changed) + sum(pooled.unchanged) == 2 * sum(sum(t) for t in TILES)


def test_operating_point_of_pooled_counts() -> None:
    assert operating_point(np.array([[[3, 1, 1]], [[1, 3, 3]]])) == pytest.approx((0.5, 0.5))
    assert operating_point(np.array([0, 0, 4])) == (0.0, 1.0)  # nothing called change


def test_the_figure_is_written_for_scored_methods_only(tmp_path: Path) -> None:
    names = {"supervised_unet": "U-Net", "ddpm_cd": "DDPM-CD"}
    assert not plot_precision_recall({}, names, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    scored = {"supervised_unet": [_scored(TILES, 0)], "ddpm_cd": [_scored(TILES, 1)]}
    counts = {"ddpm_cd": np.array([[30, 10, 5], [2, 20, 10], [15, 5, 5]], dtype=float)}
    path = tmp_path / "pr.png"
    assert plot_precision_recall(scored, names, path, counts)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
