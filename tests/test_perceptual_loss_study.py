"""scripts/perceptual_loss_study.py: the validation choice, the cells it adds, the seed-paired
comparison and the rendered report (fake rows; the real runs are the study's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import perceptual_loss_study as study
from terradiff.metrics.feature_distance import FEATURE_DISTANCE_NAME

SCENES = 6


def _row(psnr_gain: float, distance: float, detail: float, seed: int = 0) -> dict[str, Any]:
    """An evaluate row of 6 scenes: the model ``psnr_gain`` dB above bicubic (plus a small
    per-scene and per-seed term), at the given mean distance and detail."""
    bicubic = {
        "psnr": [22.0 + i for i in range(SCENES)],
        "ssim": [0.5] * SCENES,
        FEATURE_DISTANCE_NAME: [3.3] * SCENES,
        "hf_power_db": [-16.0] * SCENES,
    }
    model = {
        "psnr": [v + psnr_gain + 0.01 * i + 0.02 * seed for i, v in enumerate(bicubic["psnr"])],
        "ssim": [0.55] * SCENES,
        FEATURE_DISTANCE_NAME: [distance + 0.01 * i for i in range(SCENES)],
        "hf_power_db": [detail - 0.1 * seed] * SCENES,
    }
    means = {k: sum(v) / SCENES for k, v in model.items()}
    return {
        "model": means,
        "bicubic": {k: sum(v) / SCENES for k, v in bicubic.items()},
        "per_image": {"model": model, "bicubic": bicubic},
        "split": "test",
    }


def _save(out: Path, phase: str, weight: float, seed: int, row: dict[str, Any]) -> None:
    path = study.row_path(out, phase, weight, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {"steps": 1000, "batch_size": 8, "train_minutes": 10.0, "final_loss": 0.1}
    run["run_dir"] = str(out / "no-run")  # no checkpoints: the example figure is skipped
    record = {"phase": phase, "weight": weight, "seed": seed, "run": run, "row": row}
    path.write_text(json.dumps(record))


def _validation(out: Path, gains: dict[float, float], distances: dict[float, float]) -> None:
    _save(out, "val", 0.0, 0, _row(0.5, 3.0, -9.0))
    for weight in study.WEIGHTS:
        _save(out, "val", weight, 0, _row(gains[weight], distances[weight], -6.0))


def _validation_choosing_the_third(out: Path) -> float:
    """Validation rows (all above bicubic) whose nearest weight is the grid's third."""
    weights = study.WEIGHTS
    distances = {w: 2.5 if i == 2 else 3.0 - 0.01 * i for i, w in enumerate(weights)}
    _validation(out, dict.fromkeys(weights, 0.2), distances)
    return weights[2]


def test_the_choice_is_the_nearest_weight_that_stays_above_bicubic(tmp_path: Path) -> None:
    weights = study.WEIGHTS
    assert study.chosen_weight(study.load_records(tmp_path)) is None
    gains = {w: (0.2 if w != weights[-1] else -0.2) for w in weights}
    distances = {w: 3.0 - 0.1 * i for i, w in enumerate(weights)}  # the largest weight nearest
    _validation(tmp_path, gains, distances)
    assert study.chosen_weight(study.load_records(tmp_path)) == weights[-2]  # last is below
    _validation(tmp_path, dict.fromkeys(weights, -0.1), dict.fromkeys(weights, 2.5))
    assert study.chosen_weight(study.load_records(tmp_path)) == min(weights)


def test_the_choice_adds_the_other_seeds_of_it_and_of_the_baseline(tmp_path: Path) -> None:
    first = study.cells({})
    assert len(first) == 2 * (len(study.WEIGHTS) + 1)
    assert {phase for phase, _, _ in first} == {"val", "test"}
    assert all(seed == 0 for _, _, seed in first)
    w3 = _validation_choosing_the_third(tmp_path)
    later = study.cells(study.load_records(tmp_path))
    assert set(later) - set(first) == {("test", w, s) for w in (0.0, w3) for s in (1, 2)}


def test_a_baseline_test_run_is_read_from_the_teacher_study_only_when_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study, "BASELINE_RUNS", str(tmp_path / "none_1000" / "seed{seed}"))
    own = study.run_dir(tmp_path / "runs", "test", 0.0, 1)
    assert own == tmp_path / "runs" / "test" / "w0" / "seed1"
    finished = {tmp_path / "none_1000" / "seed1"}
    monkeypatch.setattr(study, "is_finished", lambda folder, steps: folder in finished)
    assert study.run_dir(tmp_path / "runs", "test", 0.0, 1) == tmp_path / "none_1000" / "seed1"
    assert study.run_dir(tmp_path / "runs", "test", 0.0, 1, smoke=True) == own
    assert study.run_dir(tmp_path / "runs", "val", 0.0, 1) != tmp_path / "none_1000" / "seed1"


def test_the_report_pairs_the_choice_with_l1_alone_seed_by_seed(tmp_path: Path) -> None:
    w3 = _validation_choosing_the_third(tmp_path)
    for seed in study.SEEDS:
        _save(tmp_path, "test", 0.0, seed, _row(0.5, 3.0, -9.0, seed))
        _save(tmp_path, "test", w3, seed, _row(0.3, 2.5, -6.0, seed))
    comparison = study.seed_comparison(study.load_records(tmp_path), w3)
    psnr = comparison["metrics"]["psnr"]
    assert psnr["per_seed"] == pytest.approx([-0.2] * 3)
    distance = comparison["metrics"][FEATURE_DISTANCE_NAME]["over_seeds"]
    assert distance["mean"] == pytest.approx(-0.5) and distance["high"] < 0
    study.write_report(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert f"Choice: w = {w3:g}." in text
    assert "more detail" in text and "w = 0 (L1 only) is better" in text
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["choice"] == w3
    assert (tmp_path / "curve.png").is_file() and not (tmp_path / "examples.png").exists()


def _second(record_path: Path, model: float) -> None:
    """Add a second-encoder score (``model`` per scene, bicubic 4.0) to a saved row."""
    record = json.loads(record_path.read_text())
    record["second_encoder"] = {
        "weights": "reports/perceptual_loss/encoder_b/none.safetensors",
        "fingerprint": "f",
        "per_image": {"model": [model] * SCENES, "bicubic": [4.0] * SCENES},
    }
    record_path.write_text(json.dumps(record))


def test_the_second_encoder_section_compares_the_choice_in_the_other_encoder(
    tmp_path: Path,
) -> None:
    w3 = _validation_choosing_the_third(tmp_path)
    for seed in study.SEEDS:
        _save(tmp_path, "test", 0.0, seed, _row(0.5, 3.0, -9.0, seed))
        _save(tmp_path, "test", w3, seed, _row(0.3, 2.5, -6.0, seed))
    records = study.load_records(tmp_path)
    assert study.second_encoder_lines(records, w3, None) == []  # nothing scored yet
    for seed in study.SEEDS:
        _second(study.row_path(tmp_path, "test", 0.0, seed), 3.0 + 0.01 * seed)
        _second(study.row_path(tmp_path, "test", w3, seed), 2.9)
    records = study.load_records(tmp_path)
    assert records[("test", w3, 1)]["row"]["per_image"]["model"][study.SECOND] == [2.9] * SCENES
    second = study.seed_comparison(records, w3, study.SECOND_METRICS)
    assert second["metrics"][study.SECOND]["per_seed"] == pytest.approx([-0.10, -0.11, -0.12])
    comparison = study.seed_comparison(records, w3)
    text = "\n".join(study.second_encoder_lines(records, w3, comparison))
    assert "| bicubic | 3.300 | 4.000 |" in text
    assert "AID feature distance, second encoder" in text
    assert "the second encoder sees -0.110 (22%)" in text  # of the -0.5 trained against
    context = {
        "sr3": {
            "name": "SR3, one draw",
            "psnr": 21.5,
            "hf_power_db": -2.3,
            FEATURE_DISTANCE_NAME: [2.4, 2.5],
            study.SECOND: [2.6, 2.8],
        }
    }
    lines = study.second_encoder_lines(records, w3, comparison, context)
    assert any(
        "is farther from the reference than one SR3 draw (2.900 vs 2.700)" in x for x in lines
    )
    context["sr3"][study.SECOND] = [2.95, 2.95]
    nearer = study.second_encoder_lines(records, w3, comparison, context)
    assert any("also nearer to" in x and "not ruled out" in x for x in nearer)
    assert (
        "| SR3, one draw (PSNR 21.50 dB, detail -2.3 dB; same draw in both) | 2.450 | 2.700 |"
        in (lines)
    )
    study.write_report(tmp_path)
    assert "## The distance in a second encoder trained apart" in (
        (tmp_path / "README.md").read_text()
    )


def test_the_encoder_description_reads_its_json(tmp_path: Path) -> None:
    from terradiff.metrics.aid_encoder import AID_ENCODER_WEIGHTS

    text = study.encoder_description(AID_ENCODER_WEIGHTS.with_suffix(".json"))
    assert "1,529,534 parameters" in text and "held-out accuracy 81.0%" in text
    assert "seed 0" in text and "scripts/train_fid_encoder.py" in text
    assert study.encoder_description(tmp_path / "b.json") == "config b.json not found"
