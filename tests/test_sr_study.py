"""The SR study's report: the spatially held-out Landsat check (``scripts/sr_landsat_heldout.py``:
the column split, its georeferencing, the block bootstrap, how the report reads its intervals) and
the paired intervals over images of PSNR - bicubic (``scripts/sr_intervals.py``)."""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import sr_intervals
import sr_landsat_heldout as held
import sr_study
from sr_landsat import LANDSAT


@pytest.mark.parametrize("width", [2006, 2007, 400, 333])
def test_column_split_keeps_every_test_column_beyond_the_gap(width: int) -> None:
    split = held.column_split(width, train_fraction=0.75, gap=64)
    train = np.arange(*split.train)
    test = np.arange(*split.test)
    assert train[0] == 0 and test[-1] < width
    # no test pixel within the gap of a training pixel (distance in columns > gap)
    assert np.abs(test[:, None] - train[None, :]).min() > 64
    # the test part starts on a 60 m pixel and has whole 60 m pixels
    assert split.test[0] % 2 == 0 and (split.test[1] - split.test[0]) % 2 == 0
    assert width - split.test[1] <= 1  # at most the last odd column is dropped
    assert split.test[0] == int(width * 0.75) // 2 * 2


def test_column_split_refuses_a_gap_wider_than_the_training_part() -> None:
    with pytest.raises(ValueError, match="gap"):
        held.column_split(100, train_fraction=0.5, gap=60)


def _fake_scene(root: Path, width: int = 400, height: int = 37) -> rasterio.Affine:
    """Small uint16 B2/B3/B4 GeoTIFFs (UTM, 30 m) at the shared folder's paths; value = column."""
    transform = from_origin(694005.0, -2766615.0, 30.0, 30.0)
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32621",
        "transform": transform,
    }
    columns = np.broadcast_to(np.arange(width, dtype=np.uint16), (height, width))
    for offset, band in enumerate(("B2", "B3", "B4")):
        path = root / LANDSAT.format(band=band)
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write((columns + 1000 * offset)[None])
    return transform


def test_prepared_crops_keep_their_georeferencing(tmp_path: Path) -> None:
    shared, work = tmp_path / "shared", tmp_path / "work"
    transform = _fake_scene(shared)
    split = held.prepare_heldout_data(shared, work)
    assert split.train == (0, 236) and split.test == (300, 400)
    name = Path(LANDSAT.format(band="B3")).name
    with rasterio.open(work / "train" / name) as src:
        train = src.read(1)
        assert src.transform == transform and src.crs.to_epsg() == 32621
    with rasterio.open(work / "test" / name) as src:
        test = src.read(1)
        assert src.transform.c == transform.c + 30.0 * 300 and src.transform.f == transform.f
        assert src.height == 36  # whole 60 m rows
    # the values are the columns they claim to be (value = column + 1000 for B3)
    assert np.array_equal(train[0], np.arange(236) + 1000)
    assert np.array_equal(test[0], np.arange(300, 400) + 1000)
    assert not (work / "train" / Path(LANDSAT.format(band="B2")).name).exists()


def test_block_sums_match_numpy_and_skip_empty_blocks() -> None:
    rng = np.random.default_rng(0)
    pred, target = rng.random((70, 130)), rng.random((70, 130))
    valid = rng.random((70, 130)) > 0.3
    valid[:32, :32] = False  # an empty block
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731
    sse, counts = held.block_sums(as_tensor(pred), as_tensor(target), valid, block=32)
    assert counts.shape == (3 * 5,) and counts[0] == 0 and sse[0] == 0
    expected = [
        (((pred - target) ** 2)[r : r + 32, c : c + 32][valid[r : r + 32, c : c + 32]]).sum()
        for r in range(0, 70, 32)
        for c in range(0, 130, 32)
    ]
    assert counts.sum() == valid.sum()
    np.testing.assert_allclose(sse, expected, rtol=1e-4)


def test_block_bootstrap_of_a_constant_ratio_is_exact() -> None:
    counts = np.array([100, 50, 0, 4096, 7])
    bicubic = np.array([2.0, 1.0, 0.0, 30.0, 0.5])
    out = held.block_bootstrap(bicubic / 2, bicubic, counts, resamples=200)
    gain = 10 * math.log10(2)
    for key in ("mean", "low", "high"):
        assert out["difference"][key] == pytest.approx(gain, abs=1e-3)
    assert out["blocks"] == {"n": 4, "seeds": 1, "resamples": 200}  # the empty block dropped


def test_block_bootstrap_interval_covers_its_estimate_and_pools_seeds() -> None:
    rng = np.random.default_rng(1)
    counts = np.full(60, 4096)
    bicubic = rng.gamma(2.0, 10.0, 60)
    model = np.stack([bicubic * rng.uniform(0.5, 1.2, 60) for _ in range(3)])
    out = held.block_bootstrap(model, bicubic, counts, resamples=500, seed=3)
    assert out["blocks"]["seeds"] == 3
    for key in ("model", "bicubic", "difference"):
        assert out[key]["low"] < out[key]["mean"] < out[key]["high"]
    per_seed = [10 * np.log10(counts.sum() / m.sum()) for m in model]
    assert out["model"]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-3)
    assert held.block_bootstrap(model, bicubic, counts, resamples=500, seed=3) == out


def _entry(low: float, mean: float, high: float) -> dict[str, object]:
    interval = {"mean": mean, "low": low, "high": high, "level": 0.95}
    return {
        "model": interval,
        "bicubic": interval,
        "difference": interval,
        "blocks": {"n": 161, "seeds": 1, "resamples": 2000},
    }


def test_report_reads_intervals_not_point_estimates() -> None:
    info = {
        m: {"equal_fraction": 0.999 if m == "cubic" else 0.1, "mae_dn": 1.0}
        for m in ("nearest", "average", "bilinear", "cubic", "lanczos")
    }
    row = {
        "split": {
            "width": 2006,
            "train_columns": [0, 1440],
            "test_columns": [1504, 2006],
            "gap_columns": 64,
            "test_rows": [0, 1514],
            "block": 64,
            "resamples": 2000,
        },
        "b2_60m_file": info | {"gdal": "3.10"},
        "pooled": {
            "B2_bicubic_lr": _entry(0.4, 1.0, 1.6),
            "B2_60m_file": _entry(-0.1, 0.3, 0.7),
            "B3_bicubic_lr": _entry(-0.9, -0.5, -0.2),
        },
    }
    text = "\n".join(held.heldout_report_lines(row, {}))
    assert "| B2, bicubic x1/2 | no |" in text and "model better (interval above 0)" in text
    assert "not distinguishable (interval contains 0)" in text
    assert "bicubic better (interval below 0)" in text
    assert "columns 0-1439" in text and "columns 1504-2005" in text
    assert "99.9% of its valid pixels" in text


REPO = Path(__file__).resolve().parents[1]
NOTE = "PSNR - bicubic: no interval: per-image values not stored in this run."


def _sr_row(model: list[float], bicubic: list[float]) -> dict[str, object]:
    """A row of evaluate_super_resolution with per-image PSNR (aggregates: their means)."""
    n = len(model)
    return {
        "model": {"psnr": sum(model) / n},
        "bicubic": {"psnr": sum(bicubic) / n},
        "n": n,
        "per_image": {
            "image": [f"scene_{i}.jpg" for i in range(n)],
            "model": {"psnr": model},
            "bicubic": {"psnr": bicubic},
        },
    }


def test_bicubic_difference_lines_without_per_image_values_say_so_once() -> None:
    bare = {"model": {"psnr": 23.63}, "bicubic": {"psnr": 23.04}, "n": 32}
    assert sr_intervals.bicubic_difference_lines([("a", bare), ("b", bare)]) == ["", NOTE]


def test_bicubic_difference_lines_read_the_paired_interval() -> None:
    bicubic = [20.0 + i for i in range(10)]  # images of very different difficulty
    better = _sr_row([b + 0.5 for b in bicubic], bicubic)
    mixed = _sr_row([b + (1.0 if i % 2 else -1.0) for i, b in enumerate(bicubic)], bicubic)
    bare = {"model": {"psnr": 1.0}, "bicubic": {"psnr": 2.0}, "n": 2}
    lines = sr_intervals.bicubic_difference_lines(
        [("regression", better), ("SR3", mixed), ("old", bare)]
    )
    text = "\n".join(lines)
    assert "95% interval of the paired difference" in text and "Efron & Tibshirani 1993" in text
    assert (
        "- regression: +0.50 ± 0.00 dB over 10 images: regression is better (the interval is "
        "above 0)" in lines
    )
    sr3 = next(line for line in lines if line.startswith("- SR3:"))
    assert "+0.00 ± 0.6" in sr3 and sr3.endswith("not distinguishable (the interval holds 0)")
    assert "- old: no interval: per-image values not stored in this run" in lines
    two = _sr_row([21.0, 22.5], [24.0, 26.0])  # DDPM-1000 is measured on 2 images
    (line,) = sr_intervals.bicubic_difference_lines([("DDPM", two)])[-1:]
    assert line == "- DDPM: -3.25 dB on 2 images, too few for an interval (at least 5): no reading"


def _render(results: dict, tmp_path: Path) -> str:
    args = argparse.Namespace(out=tmp_path, n=32, n_ddpm=2, seed_results=None)
    sr_study.write_report(results, args)
    return (tmp_path / "README.md").read_text()


def test_report_of_the_committed_results_only_gains_the_no_interval_notes(tmp_path: Path) -> None:
    results = json.loads((REPO / "reports/sr/results.json").read_text())
    for row in results["rows"].values():
        row.pop("per_image", None)  # as measured before per-image values were stored
    text = _render(copy.deepcopy(results), tmp_path)
    assert text.count(NOTE) == 3  # AID x4, implicit, EuroSAT
    assert "not distinguishable (the interval holds 0)" not in text
    assert "is better (the interval" not in text

    rows = results["rows"]
    bicubic = [21.0 + 0.1 * i for i in range(rows["regression_x4"]["n"])]
    rows["regression_x4"]["per_image"] = _sr_row([b + 0.59 for b in bicubic], bicubic)["per_image"]
    text = _render(results, tmp_path)
    assert text.count(NOTE) == 2  # implicit and EuroSAT still have none
    aid = text[text.index("## AID x4") : text.index("## One implicit model")]
    assert "- regression (L1): +0.59 ± 0.00 dB over 32 images: regression (L1) is better" in aid
    assert "- SR3 DDIM-20: no interval: per-image values not stored in this run" in aid
