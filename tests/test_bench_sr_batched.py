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
    """fp32 then bf16 on the same graphed student: each precision's graph rows replay their
    own capture (equal to the eager student under the same autocast), not the fp32 one."""
    out = tmp_path / "sr_batched.json"
    result = main(["--quick", "--graph", "--precisions", "fp32,bf16", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["out_size"] == 64 and result["params"][SR3] > 10 * result["params"][STUDENT]
    rows = result["rows"]
    order = [(m, b) for b in (1, 2) for m in (SR3, STUDENT, STUDENT_STAND_IN)]
    assert [(r["precision"], r["model"], r["batch"]) for r in rows] == [
        (p, m, b) for p in ("fp32", "bf16") for m, b in order
    ]
    for row in rows:
        assert row["s_per_tile"] == pytest.approx(row["median_s"] / row["batch"])
        if row["model"] != SR3:
            sr3 = next(
                r
                for r in rows
                if (r["model"], r["batch"], r["precision"]) == (SR3, row["batch"], row["precision"])
            )
            assert row["sr3_per_student"] == pytest.approx(sr3["s_per_tile"] / row["s_per_tile"])
        if row["model"] == STUDENT_STAND_IN:
            assert row["max_abs_diff_vs_student"] == 0.0
    best = {(line["precision"], line["model"]): line for line in result["best"]}
    assert set(best) == {(p, m) for p in ("fp32", "bf16") for m in (STUDENT, STUDENT_STAND_IN)}
    fp32_student = [r for r in rows if (r["model"], r["precision"]) == (STUDENT, "fp32")]
    fastest = min(fp32_student, key=lambda r: r["s_per_tile"])["batch"]
    assert best[("fp32", STUDENT)]["batch"] == fastest


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--precisions", "fp16"], ["--batches", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    assert "--precisions takes fp32,bf16" in capsys.readouterr().err
