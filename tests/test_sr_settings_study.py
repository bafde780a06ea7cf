"""scripts/sr_settings_study.py: the validation choice, its config check, the report's readings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from scripts import sr_settings_study as study
from scripts.seed_study import REPLICATES, seed_zero_row


def _row(template: dict[str, Any], gain: float) -> dict[str, Any]:
    """A copy of an SR row whose model PSNR is its bicubic PSNR + ``gain`` image by image."""
    row = copy.deepcopy(template)
    bicubic = row["per_image"]["bicubic"]["psnr"]
    row["per_image"]["model"]["psnr"] = [b + gain + 0.01 * (i % 3) for i, b in enumerate(bicubic)]
    row["model"]["psnr"] = sum(row["per_image"]["model"]["psnr"]) / len(bicubic)
    return row


def _save(out: Path, name: str, row: dict[str, Any], run_name: str | None = None) -> None:
    run = {"steps": 1600, "batch_size": 8, "train_minutes": 14.0, "final_loss": 0.05}
    record = {
        "name": name,
        "overrides": ["seed=0"],
        "run": {"name": run_name or name, **run},
        "row": row,
        "machine": "test machine",
        "provenance": {},
    }
    path = study.row_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_choice_is_the_best_candidate_on_validation() -> None:
    template = seed_zero_row(REPLICATES["sr3"])
    gains = dict(zip(study.CANDIDATES, (-6.0, -0.5, 0.2, 0.1, 0.3), strict=True))
    validation = {c: _row(template, gain) for c, gain in gains.items()}
    assert study.chosen_candidate(validation) == "residual_0.5_x0"
    assert study.candidate_label("residual_0.5_x0") == "SR3, residual s = 0.5, x0"
    del validation["image_x0"]
    with pytest.raises(study.StudyError, match="image_x0"):
        study.chosen_candidate(validation)


def test_the_test_config_must_hold_the_choice(tmp_path: Path) -> None:
    config = tmp_path / "residual.yaml"
    text = Path(study.REPO / study.BASE_CONFIG).read_text()
    text = text.replace(
        "  degradation: bicubic",
        "  degradation: bicubic\n  target: residual\n  residual_scale: 0.5",
    )
    config.write_text(text.replace("  schedule: linear", "  schedule: linear\n  prediction: x0"))
    study.check_test_config("residual_0.5_x0", config)
    with pytest.raises(study.StudyError, match=r"set 'diffusion\.prediction: eps'"):
        study.check_test_config("residual_0.5", config)
    with pytest.raises(study.StudyError, match=r"set 'sr\.residual_scale: 0\.25'"):
        study.check_test_config("residual_0.25", config)


def test_the_committed_configs_hold_the_committed_choice() -> None:
    validation = study.load_validation(study.REPO / "reports" / "sr_settings")
    if len(validation) < len(study.CANDIDATES):
        pytest.skip("the validation phase has not been committed")
    for model in study.TEST_MODELS.values():
        study.check_test_config(study.chosen_candidate(validation), study.REPO / model.config)


def test_testing_before_validating_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert study.main(["--phase", "test", "--out", str(tmp_path)]) == 2
    assert "run --phase val --only" in capsys.readouterr().err
    assert not (tmp_path / "rows").exists()  # nothing was trained


def test_report_reads_only_what_the_seed_intervals_allow(tmp_path: Path) -> None:
    template = seed_zero_row(REPLICATES["sr3"])
    for candidate, gain in zip(study.CANDIDATES, (-6.0, 0.1, 0.05, -2.0, 0.3), strict=True):
        _save(tmp_path, f"val_{candidate}", _row(template, gain))
    sr3, implicit = study.TEST_MODELS["sr3"], study.TEST_MODELS["implicit"]
    for seed, gain in zip(study.SEEDS, (0.2, 0.3, 0.25), strict=True):
        _save(tmp_path, sr3.row_name(seed), _row(template, gain))
    implicit_x4 = seed_zero_row(REPLICATES["implicit"])
    for seed, gain in zip(study.SEEDS, (-0.1, 0.2, 0.1), strict=True):
        _save(tmp_path, implicit.row_name(seed), _row(implicit_x4, gain))
    implicit_x2 = json.loads((study.REPO / "reports/sr/results.json").read_text())["rows"]
    x2 = _row(implicit_x2["implicit_x2"], 0.5)
    _save(tmp_path, implicit.row_name(0, 2), x2, run_name=implicit.row_name(0))

    summary = study.write_report(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert summary["chosen"] == "residual_0.5_x0"
    assert "**Chosen: SR3, residual s = 0.5, x0** (`sr.target=residual" in text
    versus_bicubic = summary["differences"]["sr3"]["SR3, validation choice - bicubic"]
    assert versus_bicubic["over_seeds"]["low"] > 0
    assert "SR3, validation choice - bicubic: seeds +0.21, +0.31, +0.26 dB" in text
    # the image-target seeds are the committed ones (6-9 dB below bicubic)
    versus_sr3 = summary["differences"]["sr3"]["SR3, validation choice - SR3 (AID x4, DDIM-20)"]
    assert versus_sr3["over_seeds"]["low"] > 5
    # -0.09, +0.21, +0.11 over three seeds: an interval across 0, so no reading
    implicit_line = next(
        line for line in text.splitlines() if line.startswith("- implicit, validation choice - bic")
    )
    assert "not distinguishable" in implicit_line, implicit_line
    assert summary["differences"]["implicit"]["x2 seed 0"]["minus_bicubic"]["low"] > 0
    assert "| x2 |" in text and "| x6 |" not in text  # only the measured scales
    assert "| test_implicit_seed0 |" in text and "| test_implicit_seed0_x2 |" not in text
