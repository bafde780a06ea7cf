"""The pure parts of ``scripts/augmentation_study.py`` (issue 15, item 6): splits that keep the
generator and classifier away from the test images, the augmentations, and the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scripts.augmentation_report import write_report
from scripts.augmentation_study import (
    Split,
    aid_split,
    dihedral,
    eurosat_split,
    file_number,
    gain_verdict,
    mix,
    summarize,
)


def test_file_number() -> None:
    assert file_number(Path("x/airport_17.jpg")) == 17
    assert file_number(Path("dense_residential_150.jpg")) == 150
    with pytest.raises(ValueError, match="no _<number>"):
        file_number(Path("airport.jpg"))


def test_aid_split_keeps_train_validation_and_test_apart(shared_data: Path) -> None:
    split = aid_split(shared_data / "aid")
    assert len(split.classes) == 30
    subset = split.subset(10)
    for name in split.classes:
        train = {file_number(p) for p in subset[name]}
        val = {file_number(p) for p in split.val[name]}
        test = {file_number(p) for p in split.test[name]}
        assert train == set(range(1, 11))
        assert val == set(range(51, 101)) and test == set(range(101, 151))
    assert split.describe(10)["test"]["images"] == 1500


def test_eurosat_split_uses_its_own_test_folder(shared_data: Path) -> None:
    split = eurosat_split(shared_data / "eurosat-ms", 10)
    assert len(split.classes) == 10
    for name in split.classes:
        train, val = set(split.subset(10)[name]), set(split.val[name])
        assert len(train) == 10 and not train & val
        assert all("test" in p.parts for p in split.test[name])
    assert sum(len(v) for v in split.test.values()) == 54


def test_a_subset_larger_than_a_class_is_refused() -> None:
    split = Split(["a"], {"a": [Path("a_1.jpg")]}, {"a": []}, {"a": []})
    with pytest.raises(ValueError, match="fewer than 2"):
        split.subset(2)


def test_dihedral_gives_one_of_the_eight_transforms_per_image() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = dihedral(x, torch.Generator().manual_seed(0))
    for image, original in zip(out, x, strict=True):
        options = [torch.rot90(original, k, dims=(-2, -1)) for k in range(4)]
        options += [o.flip(-1) for o in options]
        assert any(torch.equal(image, o) for o in options)


def test_mix_targets_are_distributions_that_match_the_pixels() -> None:
    x = torch.zeros(8, 1, 16, 16)
    x[::2] = 1.0  # even images white, odd black
    y = torch.tensor([0, 1] * 4)
    generator = torch.Generator().manual_seed(3)
    kinds = set()
    for _ in range(30):
        mixed, target = mix(x, y, 2, generator)
        assert torch.allclose(target.sum(1), torch.ones(8))
        # the share of class 0 in each target is the share of white pixels in its image
        assert torch.allclose(target[:, 0], mixed.mean(dim=(1, 2, 3)), atol=1e-5)
        kinds.add("none" if torch.equal(mixed, x) else "mixed")
    assert kinds == {"none", "mixed"}


def test_summary_and_verdict() -> None:
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    stats = summarize([0.2, 0.3, 0.4])
    assert stats["mean"] == pytest.approx(0.3) and stats["std"] == pytest.approx(0.1)
    classic = {"mean": 0.30, "std": 0.01}
    assert gain_verdict({"mean": 0.35, "std": 0.01}, classic)["met"]
    assert not gain_verdict({"mean": 0.35, "std": 0.05}, classic)["met"]  # intervals overlap
    assert not gain_verdict({"mean": 0.32, "std": 0.001}, classic)["met"]  # gain under 3 points


def test_report_does_not_rank_overlapping_conditions(tmp_path: Path) -> None:
    cells = {}
    for condition, values in {
        "real": (0.20, 0.22, 0.24),
        "classic": (0.25, 0.27, 0.29),
        "synthetic": (0.24, 0.26, 0.28),
        "synthetic+classic": (0.26, 0.28, 0.30),
    }.items():
        scale = "/s3" if "synthetic" in condition else ""
        for seed, value in enumerate(values):
            cells[f"aid/k10/{condition}{scale}/seed{seed}"] = {"val": value, "test": value}
    judge = {"conditional_accuracy": 0.5, "conditional_accuracy_ci95": [0.4, 0.6]}
    results = {
        "seeds": 3,
        "cells": cells,
        "chosen_scale": {"aid/k10": 3.0},
        "judge": {"aid/k10/s3": judge, "aid/k25/s1": judge | {"conditional_accuracy": 0.9}},
    }
    write_report(results, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| real + classic augmentation (dihedral, mixup/cutmix) | 27.0 +- 2.0 | 3 |" in text
    assert "+1.0 points" in text and "not distinguishable" in text and "**not met**" in text
    assert "scale 3: 50.0% [40.0, 60.0]" in text and "90.0" not in text  # k25 is not this subset
    assert (tmp_path / "accuracy.png").is_file()
