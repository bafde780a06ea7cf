"""``benchmarks/bench_sr_batched.py`` (issue 16 item 5): the student and SR3 DDIM-20 timed on the
same batches of real LR tiles, with per-tile ratios that follow from the timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_sr_batched import SR3, STUDENT, STUDENT_STAND_IN, main, parse_args


def test_quick_run_rows_ratios_and_stand_in_graph(tmp_path: Path) -> None:
    out = tmp_path / "sr_batched.json"
    result = main(["--quick", "--graph", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["out_size"] == 64 and result["params"][SR3] > 10 * result["params"][STUDENT]
    rows = result["rows"]
    assert [(r["model"], r["batch"]) for r in rows] == [
        (SR3, 1),
        (STUDENT, 1),
        (STUDENT_STAND_IN, 1),
        (SR3, 2),
        (STUDENT, 2),
        (STUDENT_STAND_IN, 2),
    ]
    for row in rows:
        assert row["s_per_tile"] == pytest.approx(row["median_s"] / row["batch"])
        if row["model"] != SR3:
            sr3 = next(r for r in rows if r["model"] == SR3 and r["batch"] == row["batch"])
            assert row["sr3_per_student"] == pytest.approx(sr3["s_per_tile"] / row["s_per_tile"])
        if row["model"] == STUDENT_STAND_IN:
            assert row["max_abs_diff_vs_student"] == 0.0
    best = {line["model"]: line for line in result["best"]}
    assert set(best) == {STUDENT, STUDENT_STAND_IN}
    student_rows = [r for r in rows if r["model"] == STUDENT]
    assert best[STUDENT]["batch"] == min(student_rows, key=lambda r: r["s_per_tile"])["batch"]


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--precisions", "fp16"], ["--batches", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    assert "--precisions takes fp32,bf16" in capsys.readouterr().err


def test_bf16_stand_in_graph_is_its_own_capture_and_equals_the_student(tmp_path: Path) -> None:
    """fp32 then bf16 on the same graphed student: the bf16 rows replay a bf16 capture (its
    output equals the eager student's under the same autocast), not the fp32 one."""
    argv = ["--quick", "--graph", "--batches", "2", "--precisions", "fp32,bf16"]
    result = main([*argv, "--json", str(tmp_path / "out.json")])
    graph_rows = [r for r in result["rows"] if r["model"] == STUDENT_STAND_IN]
    assert [r["precision"] for r in graph_rows] == ["fp32", "bf16"]
    assert all(r["max_abs_diff_vs_student"] == 0.0 for r in graph_rows)
