"""``scripts/study_common.py``: which runs a study trains on and which it leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from accelerate.state import AcceleratorState

from scripts.study_common import is_finished, train
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
