"""Provenance of results JSONs: recorded automatically; a re-render keeps the measured machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from terradiff.provenance import git_state, paths_in_argv, provenance_record

ROOT = Path(__file__).resolve().parents[1]


def test_record_has_the_command_data_code_machine_software_and_date(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    argv = ["python", "scripts/x_study.py", "--data", str(data), f"data.root={data}", "--n", "3"]
    record = provenance_record(argv, data_paths=[tmp_path / "extra"])
    assert record["argv"] == argv  # exactly as run, not tidied
    assert record["data_paths"] == [
        {"path": str(data.resolve()), "exists": True},
        {"path": str((tmp_path / "extra").resolve()), "exists": False},
    ]
    assert set(record["machine"]) >= {"cpu", "logical_cores", "usable_cores", "torch_threads"}
    assert record["machine"]["logical_cores"] >= 1 and record["machine"]["cpu"]
    assert record["torch"] and record["python"] and record["date"].endswith("+00:00")
    json.dumps(record)  # JSON-ready


def test_git_state_names_the_commit_and_dirtiness() -> None:
    state = git_state(ROOT)
    if state["commit"] is None:
        pytest.skip("not a git checkout")
    assert len(state["commit"]) == 40 and isinstance(state["dirty"], bool)
    assert state["dirty"] == bool(state["changed"])
    assert git_state(Path("/")) == {"commit": None, "dirty": None, "changed": []}


def test_paths_in_argv_skips_flags_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: 1")
    found = paths_in_argv(["--out", str(tmp_path / "missing"), str(tmp_path / "a.yaml"), "-v"])
    assert found == [str((tmp_path / "a.yaml").resolve())]


@pytest.fixture()
def study_common(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import study_common

    return study_common


def test_report_only_keeps_the_measured_machine(
    study_common, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["scripts/x_study.py", "--out", str(tmp_path)])
    results, save = study_common.open_results(tmp_path)
    assert results["provenance"]["argv"][-2:] == ["--out", str(tmp_path)]
    assert results["machine"] == study_common.machine_description()
    results["machine"] = "the measuring machine"  # as if measured elsewhere
    results["provenance"]["date"] = "2026-01-01T00:00:00+00:00"
    save()

    monkeypatch.setattr(sys, "argv", ["scripts/x_study.py", "--report-only"])
    rendered, _ = study_common.open_results(tmp_path)
    assert rendered["machine"] == "the measuring machine"
    assert rendered["provenance"]["date"] == "2026-01-01T00:00:00+00:00"
    assert rendered["rendered_with"]["argv"][-1] == "--report-only"

    # a second measuring run keeps the first one's provenance beside its own
    again, _ = study_common.open_results(tmp_path, report_only=False)
    assert again["provenance_earlier"][0]["date"] == "2026-01-01T00:00:00+00:00"
    assert again["machine"] == study_common.machine_description()
