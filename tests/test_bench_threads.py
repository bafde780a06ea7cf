"""benchmarks/bench_threads.py: each setting's environment reaches the timed job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_threads

ROOT = Path(__file__).resolve().parents[1]


def test_settings_set_only_their_own_openmp_variables(monkeypatch) -> None:
    """A policy or spin count of the calling shell must not leak into another setting."""
    monkeypatch.setenv("GOMP_SPINCOUNT", "123")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    seen = {
        name: [
            bench_threads.job_environment(bench_threads.SETTINGS[name][0]).get(variable)
            for variable in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        ]
        for name in ("unset (libgomp default)", "passive, spin 10000", "passive")
    }
    assert seen == {
        "unset (libgomp default)": [None, None],
        "passive, spin 10000": ["PASSIVE", "10000"],
        "passive": ["PASSIVE", None],
    }


def test_a_job_reports_the_last_line_it_prints(monkeypatch) -> None:
    monkeypatch.setitem(bench_threads.WORKLOADS, "tiny", "print('warming up')\nprint(1.5)")
    assert bench_threads.run_jobs({}, 1, 2, 1, "tiny") == 1.5


@pytest.mark.parametrize("workload", ["demo", "super-resolve"])
def test_the_cli_workloads_time_real_commands(tmp_path: Path, workload: str) -> None:
    """Two steps of `make demo`'s training on the bundled AID sample, or one `terradiff
    super-resolve` of a 96 px NAIP window (the benchmark's 256 px took 20 s on one thread),
    alone, one setting.

    Started from another folder: the jobs find configs/ and data/ under the repository.
    """
    out = tmp_path / "threads_cli.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_threads.py"),
            "--workload",
            workload,
            "--trials",
            "1",
            "--repeats",
            "2" if workload == "demo" else "1",
            "--jobs",
            "1",
            "--settings",
            "passive, 1 thread",
            "--sr-window",
            "96",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert record["workload"] == workload and row["setting"] == "passive, 1 thread"
    assert record.get("sr_window") == (96 if workload == "super-resolve" else None)
    assert row["alone_s"] > 0 and len(row["alone_trials_s"]) == 1 and "two_jobs_s" not in row
