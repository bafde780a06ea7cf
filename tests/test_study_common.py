"""``scripts/study_common.py``: which runs a study trains on and which it leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from accelerate.state import AcceleratorState

from scripts.study_common import (
    claim_cell,
    is_finished,
    merge_missing,
    open_results,
    record_command,
    report_header,
    train,
)
from tests.helpers import tiny_config


def test_a_time_limited_run_is_final_and_a_signalled_one_is_not(
    sample_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    raw = tiny_config(run, sample_data, max_steps=50, max_minutes=0.0001, save_every=1)
    config.write_text(yaml.safe_dump(raw))
    assert not is_finished(run, 50)  # nothing there yet
    AcceleratorState._reset_state(reset_partial_state=True)
    first = train("tiny", config)
    assert first["steps"] == 1 and is_finished(run, 50)
    # run again (as a resumed study would): the time-limited run is not trained on
    again = train("tiny", config)
    assert again["steps"] == 1 and len(json_lines(run)) == 1
    # the same last line stopped by a signal instead: unfinished, to be resumed
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "stopped_by": "SIGTERM"}) + "\n")
    assert not is_finished(run, 50)
    assert is_finished(run, 1)  # the final checkpoint of a 1-step run


def json_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_saving_one_results_file_keep_each_others_cells(tmp_path: Path) -> None:
    first, save_first = open_results(tmp_path, report_only=False, merge=("cells", "commands"))
    second, save_second = open_results(tmp_path, report_only=False, merge=("cells", "commands"))
    first.setdefault("cells", {})["a/seed0"] = {"rmse": 1.0}
    first["commands"] = ["python study.py"]
    save_first()
    second.setdefault("cells", {})["b/seed0"] = {"rmse": 2.0}
    second["commands"] = ["python study.py", "python study.py --models b"]
    save_second()  # written after the first: must not drop a/seed0
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["cells"] == {"a/seed0": {"rmse": 1.0}, "b/seed0": {"rmse": 2.0}}
    assert on_disk["commands"] == ["python study.py", "python study.py --models b"]
    # without merge, the last writer wins (the behaviour every other study relies on)
    alone, save_alone = open_results(tmp_path / "alone", report_only=False)
    alone["cells"] = {"x": 1}
    save_alone()
    assert json.loads((tmp_path / "alone" / "results.json").read_text())["cells"] == {"x": 1}


def test_merge_missing_keeps_own_values() -> None:
    mine = {"cells": {"a": 1}, "commands": ["x"]}
    merge_missing(mine, {"cells": {"a": 9, "b": 2}, "commands": ["y", "x"], "other": 3}, ["cells"])
    assert mine == {"cells": {"a": 1, "b": 2}, "commands": ["x"]}
    merge_missing(mine, {"commands": ["y", "x"]}, ["commands", "absent"])
    assert mine["commands"] == ["x", "y"] and "absent" not in mine


def test_a_cell_is_claimed_by_one_live_process(tmp_path: Path) -> None:
    import os

    assert claim_cell(tmp_path, "a/iidm/seed0")
    assert claim_cell(tmp_path, "a/iidm/seed0")  # its own claim again (a retry)
    claim = tmp_path / "a__iidm__seed1.pid"
    claim.write_text("1")  # held by a live process (pid 1 always exists)
    assert not claim_cell(tmp_path, "a/iidm/seed1")
    claim.write_text("999999999")  # its process is gone: taken over
    assert claim_cell(tmp_path, "a/iidm/seed1")
    assert claim.read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a__iidm__seed0.pid",
        "a__iidm__seed1.pid",
    ]  # no temporary file left behind


def test_report_header_names_both_machines_when_the_latest_run_was_elsewhere() -> None:
    one = {"commands": ["python a.py"], "machine_measured": "CPU A", "machine": "CPU A"}
    assert "Machine: CPU A." in report_header("T", one)
    assert "    python a.py" in report_header("T", one)
    two = {**one, "machine": "CPU B"}
    line = next(x for x in report_header("T", two) if x.startswith("Machines"))
    assert "CPU A (the first measurement)" in line and "CPU B (the latest measuring run" in line


def test_a_report_only_invocation_is_not_recorded_as_a_measuring_command() -> None:
    results: dict = {}
    record_command(results, ["--out", "x", "--report-only"])
    assert results == {}
    record_command(results, ["--out", "x"])
    assert results["commands"][0].endswith("--out x") and "machine_measured" in results
