"""The seed replicates of ``scripts/seed_study.py`` (issue 14): pairing and reading over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts.seed_study import (
    REPLICATES,
    difference_line,
    overrides_for,
    seed_difference,
    seed_zero_row,
)
from scripts.study_common import load_variant


def _row(model: list[float], bicubic: list[float]) -> dict:
    return {"per_image": {"model": {"psnr": model}, "bicubic": {"psnr": bicubic}}}


def test_difference_to_bicubic_is_the_per_seed_paired_mean_with_a_t_interval() -> None:
    bicubic = [20.0, 21.0, 22.0, 23.0, 24.0]
    rows = {
        0: _row([20.5, 21.5, 22.5, 23.5, 24.5], bicubic),  # +0.5
        1: _row([21.0, 22.0, 23.0, 24.0, 25.0], bicubic),  # +1.0
        2: _row([20.0, 21.0, 22.0, 23.0, 24.0 + 3.0], bicubic),  # +0.6
    }
    difference = seed_difference(rows)
    assert difference is not None
    assert difference["per_seed"] == pytest.approx({0: 0.5, 1: 1.0, 2: 0.6})
    over = difference["over_seeds"]
    sd = math.sqrt(((0.5 - 0.7) ** 2 + (1.0 - 0.7) ** 2 + (0.6 - 0.7) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert over["mean"] == pytest.approx(0.7)
    assert over["high"] - over["mean"] == pytest.approx(half)
    assert over["n"] == 3


def test_two_models_pair_seed_s_with_seed_s_on_the_same_images() -> None:
    a = {s: _row([10.0 + s] * 5, [0.0] * 5) for s in (0, 1, 2)}
    b = {s: _row([9.0] * 5, [0.0] * 5) for s in (0, 1, 2)}
    difference = seed_difference(a, b)
    assert difference is not None
    assert difference["per_seed"] == pytest.approx({0: 1.0, 1: 2.0, 2: 3.0})
    assert seed_difference(a, {0: b[0]}) is None  # seeds differ: nothing to pair
    assert seed_difference({0: {"per_image": {}}}) is None  # no per-image values


def test_non_finite_images_are_dropped_and_too_few_give_nothing() -> None:
    rows = {0: _row([1.0, float("inf"), 3.0, 4.0, 5.0, 6.0], [0.0] * 6)}
    difference = seed_difference(rows)
    assert difference is not None
    assert difference["per_seed"][0] == pytest.approx((1 + 3 + 4 + 5 + 6) / 5)
    assert seed_difference({0: _row([1.0, 2.0], [0.0, 0.0])}) is None


def test_a_reading_needs_an_interval_over_seeds_that_excludes_zero() -> None:
    holds_zero = seed_difference(
        {s: _row([v] * 5, [0.0] * 5) for s, v in ((0, 0.4), (1, -0.3), (2, 0.2))}
    )
    above = seed_difference(
        {s: _row([v] * 5, [0.0] * 5) for s, v in ((0, 1.0), (1, 1.1), (2, 0.9))}
    )
    assert "not distinguishable" in difference_line("A", "bicubic", holds_zero)
    assert "A is better" in difference_line("A", "bicubic", above)
    one_seed = seed_difference({0: _row([1.0] * 5, [0.0] * 5)})
    assert "no interval over seeds" in difference_line("A", "B", one_seed)
    assert "not every seed" in difference_line("A", "B", None)


def test_only_the_seed_changes_and_students_distil_the_teacher_of_their_seed() -> None:
    runs_root = Path("outputs/seeds/runs")
    for key, replicate in REPLICATES.items():
        seed_zero = load_variant(Path(replicate.config), list(replicate.overrides), None)
        config = load_variant(Path(replicate.config), overrides_for(replicate, 2, runs_root), None)
        assert config.seed == 2, key
        assert config.train.max_steps == seed_zero.train.max_steps, key
        assert config.model == seed_zero.model, key
        if replicate.needs_teacher:
            assert Path(config.sr.teacher) == runs_root / "teacher" / "seed2", key


def test_every_seed_zero_row_is_committed_with_per_image_values() -> None:
    for key, replicate in REPLICATES.items():
        row = seed_zero_row(replicate)
        assert row["per_image"]["model"]["psnr"], key
        assert seed_difference({0: row}) is not None, key


def test_other_reports_read_the_seed_summary_and_print_nothing_without_it(tmp_path: Path) -> None:
    from scripts.seed_study import seed_summary_lines

    assert seed_summary_lines(["student"], path=tmp_path / "missing.json") == []
    a = {s: _row([1.0 + 0.1 * s] * 5, [0.0] * 5) for s in (0, 1, 2)}
    b = {s: _row([0.5] * 5, [0.0] * 5) for s in (0, 1, 2)}
    summary = {
        "models": {"student": {"label": "student, MSE + MMD", "minus_bicubic": seed_difference(a)}},
        "comparisons": {"regression - student": seed_difference(a, b)},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(summary))  # keys of per_seed become strings, as on disk
    lines = seed_summary_lines(["student", "teacher"], [("regression", "student")], path=path)
    assert len(lines) == 2
    assert lines[0].startswith("- student, MSE + MMD - bicubic: seeds +1.00, +1.10, +1.20 dB")
    assert "regression UNet (AID x4) - student, MSE + MMD" in lines[1]


@pytest.mark.parametrize("bad", [["--seeds", "0"], ["--only", "sr4"], ["--seeds", "x"]])
def test_bad_arguments_exit_2_before_any_training(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 0 is the committed row (never re-trained here); unknown models are refused."""
    from scripts.seed_study import main

    with pytest.raises(SystemExit) as caught:
        main(bad)
    assert caught.value.code == 2
    assert "invalid" in capsys.readouterr().err


def test_save_row_keeps_the_loss_log_and_the_record(tmp_path: Path) -> None:
    import time

    from scripts.seed_study import save_row

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    path = tmp_path / "out" / "rows" / "student_seed2.json"
    run = {"run_dir": str(run_dir), "steps": 1}
    save_row(path, tmp_path / "out", ("student", 2), run, {"n": 3}, time.time(), "../data")
    record = json.loads(path.read_text())
    assert (record["key"], record["seed"], record["row"]) == ("student", 2, {"n": 3})
    assert record["run"] == run and record["wall_minutes"] >= 0 and record["machine"]
    log = tmp_path / "out" / "training_logs" / "student_seed2.jsonl"
    assert log.read_text() == '{"step": 1, "loss": 0.5}\n'
