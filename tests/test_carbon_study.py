"""``scripts/carbon_study.py`` (issue 14): the naive rows and the interval section of the
single-split carbon report, on the bundled real BioMassters chips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from carbon_loco_study import MODELS as LOCO_MODELS
from carbon_study import _chip_arrays, loco_fold_lines, measure_naive


def test_naive_maps_are_the_training_chip_means(sample_data: Path, tmp_path: Path) -> None:
    chips = sample_data / "biomassters"
    args = argparse.Namespace(work=tmp_path, max_density=150.0)
    train = _chip_arrays(chips / "0060c0a5")
    test = _chip_arrays(chips / "000aa810")
    constant = measure_naive("constant", chips / "0060c0a5", chips / "000aa810", args)
    mean = train["carbon"][train["valid"]].mean()
    scored = test["carbon"][test["forest"]]
    assert constant["bias"] == pytest.approx(mean - scored.mean(), rel=1e-6)
    assert constant["rmse"] == pytest.approx(np.sqrt(((mean - scored) ** 2).mean()), rel=1e-6)
    per_class = measure_naive("class_mean", chips / "0060c0a5", chips / "000aa810", args)
    forest_mean = train["carbon"][train["forest"]].mean()
    assert per_class["bias"] == pytest.approx(forest_mean - scored.mean(), rel=1e-6)
    saved = np.load(tmp_path / "class_mean_map.npy")
    assert np.allclose(saved[test["forest"]], forest_mean)


def test_the_interval_section_reads_the_leave_one_chip_out_fold(tmp_path: Path) -> None:
    lines = loco_fold_lines("000aa810")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == len(LOCO_MODELS) and any(row.startswith("| IIDM | 3 |") for row in rows)
    assert loco_fold_lines("000aa810", tmp_path / "missing.json") == []
    assert loco_fold_lines("no-such-chip") == []
