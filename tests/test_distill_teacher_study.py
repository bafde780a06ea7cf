"""scripts/distill_teacher_study.py: the students' overrides, rows read from the committed
reports, and differences paired seed by seed over the same scenes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from scripts import distill_teacher_study as study
from scripts.seed_study import REPLICATES, STUDENT_CONFIG, seed_zero_row
from scripts.study_common import load_variant


def test_a_student_distils_the_teacher_of_its_seed_at_its_budget(tmp_path: Path) -> None:
    words = study.overrides(study.STUDENTS["reg_1000"], 2, tmp_path)
    config = load_variant(study.REPO / STUDENT_CONFIG, words)
    assert config.seed == 2
    assert config.sr.teacher == str(study.TEACHER_RUNS / "seed2")
    assert config.sr.distill == "mse_mmd" and config.sr.mmd_weight == 0.1
    assert config.train.max_steps == 1000 and config.train.batch_size == 8
    assert Path(config.output_dir) == tmp_path / "reg_1000" / "seed2"
    alone = load_variant(
        study.REPO / STUDENT_CONFIG, study.overrides(study.STUDENTS["none_200"], 0, tmp_path)
    )
    assert alone.sr.distill == "none" and alone.train.max_steps == 200


def _shifted(shift: float, seed: int) -> dict[str, Any]:
    """The committed student row's scenes with the model's PSNR moved by ``shift`` + a seed term."""
    row = copy.deepcopy(seed_zero_row(REPLICATES["student_none"]))
    model = row["per_image"]["model"]
    model["psnr"] = [v + shift + 0.01 * seed for v in row["per_image"]["bicubic"]["psnr"]]
    row["model"]["psnr"] = sum(model["psnr"]) / len(model["psnr"])
    return row


def test_the_report_pairs_new_rows_with_the_committed_ones(tmp_path: Path) -> None:
    out = tmp_path / "report"
    for seed in (0, 1, 2):
        for key, shift in (("reg_200", 0.40), ("none_1000", 0.50), ("none_200", 0.35)):
            path = study.row_path(out, key, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "key": key,
                "seed": seed,
                "row": _shifted(shift, seed),
                "run": {
                    "name": f"{key}_seed{seed}",
                    "steps": 1,
                    "batch_size": 8,
                    "train_minutes": 1.0,
                    "final_loss": 0.1,
                },
                "wall_minutes": 1.0,
                "machine": "test machine",
                "provenance": {},
            }
            path.write_text(json.dumps(record))
    rows = study.load_all(out)
    assert sorted(rows["single_step_200"]) == [0, 1, 2]  # reports/distill + reports/seeds
    assert sorted(rows[study.TEACHER]) == [0, 1, 2]  # reports/sr_detail's regression rows
    assert rows["reg_1000"] == {}
    summary = study.write_report(out, rows)
    gain = summary["models"]["reg_200"]["minus_bicubic"]
    assert gain["per_seed"] == pytest.approx({0: 0.40, 1: 0.41, 2: 0.42})
    difference = summary["comparisons"]["reg_200 - none_200"]
    assert difference["per_seed"] == pytest.approx({0: 0.05, 1: 0.05, 2: 0.05})
    committed = summary["models"]["single_step_200"]["minus_bicubic"]["over_seeds"]["mean"]
    against = summary["comparisons"]["reg_200 - single_step_200"]["over_seeds"]["mean"]
    assert against == pytest.approx(0.41 - committed, abs=1e-9)
    assert summary["comparisons"]["reg_1000 - none_1000"] is None  # not measured yet
    text = (out / "README.md").read_text()
    assert (
        "| student, regression-UNet teacher, 1,000 steps | - | - | not measured yet | - | - | - |"
        in text
    )
    assert "regression UNet (the teacher)" in text
    assert "| not measured |" in text  # the committed rows lack the detail measure
    assert "not every seed measured yet" in text
    assert "Reproduction: student, no teacher, 200 steps retrained here" in text
    saved = json.loads((out / "results.json").read_text())
    assert [r["key"] for r in saved["runs"]].count("reg_200") == 3


def test_a_missing_teacher_is_trained_as_the_seed_study_trains_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, Path, list[str]]] = []
    monkeypatch.setattr(study, "train", lambda *args: calls.append(args) or {})
    study.ensure_teacher(1)
    (name, config, words) = calls[0]
    assert name == "regression_seed1" and config.name == "aid_regression_x4.yaml"
    assert f"output_dir={study.TEACHER_RUNS / 'seed1'}" in words and "seed=1" in words
