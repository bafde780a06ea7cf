"""benchmarks/bench_sampling.py: the CPU smoke run the GPU session's sampling section rests on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_sampling


def test_quick_cpu_run_finishes_in_seconds_with_eager_samples(tmp_path: Path) -> None:
    """``--quick --device cpu``: eager and the graph path (its CPU stand-in) in fp32 and bf16,
    the same samples, JSON written (1.9 s alone on one thread of this machine)."""
    out = tmp_path / "sampling.json"
    results = bench_sampling.main(["--quick", "--device", "cpu", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results, default=str))
    rows = {(r["variant"], r["precision"]): r for r in results["rows"]}
    assert set(rows) == {("eager", "fp32"), ("graph", "fp32"), ("eager", "bf16"), ("graph", "bf16")}
    assert not results["failed"] and not results["skipped"]
    for (variant, _), row in rows.items():
        assert row["images_per_s"] > 0 and row["batch"] == 1 and row["ddim_steps"] == 2
        if variant == "graph":
            assert row["max_abs_diff_vs_eager"] == 0.0 and row["graphs_captured"] == 1


def test_plan_runs_eager_first_and_compile_last_in_its_precisions() -> None:
    args = bench_sampling.parse_args(
        ["--variants", "eager,graph,compile", "--precisions", "fp32,bf16"]
    )
    assert list(bench_sampling.plan(args)) == [
        ("fp32", "eager"),
        ("fp32", "graph"),
        ("bf16", "eager"),
        ("bf16", "graph"),
        ("fp32", "compile"),
    ]
    assert args.compile_backend == "eager" and args.batch == 128 and args.steps == 20
    with pytest.raises(SystemExit):
        bench_sampling.parse_args(["--variants", "turbo"])


def test_compiled_graph_runs_after_compile_and_gives_the_eager_samples() -> None:
    """``compile+graph`` on the CPU: the eager dynamo backend's blocks inside the stand-in
    capture, one capture, samples within float tolerance of eager's."""
    args = bench_sampling.parse_args(["--variants", "eager,compile+graph,compile,graph"])
    assert list(bench_sampling.plan(args))[-2:] == [("fp32", "compile+graph"), ("fp32", "compile")]
    results = bench_sampling.main(
        ["--quick", "--variants", "eager,compile+graph", "--precisions", "fp32"]
    )
    assert not results["failed"]
    row = results["rows"][-1]
    assert row["variant"] == "compile+graph" and row["graphs_captured"] == 1
    assert row["max_abs_diff_vs_eager"] < 1e-4


def test_speedups_are_over_eager_of_the_same_precision() -> None:
    rows = [
        {"variant": "eager", "precision": "fp32", "images_per_s": 100.0},
        {"variant": "graph", "precision": "fp32", "images_per_s": 250.0},
        {"variant": "graph", "precision": "bf16", "images_per_s": 50.0},
    ]
    speedups = [r["speedup_vs_eager"] for r in bench_sampling.with_speedups(rows)]
    assert speedups == [1.0, 2.5, None]


def test_budget_skips_the_variants_that_would_start_late(tmp_path: Path) -> None:
    results = bench_sampling.main(
        ["--quick", "--precisions", "fp32", "--budget-s", "1e-9", "--json", str(tmp_path / "b")]
    )
    assert [r["variant"] for r in results["rows"]] == ["eager"]
    assert results["skipped"] == ["graph/fp32 (budget 1e-09 s spent)"]


def run_session_script(out: Path, timeout: int, **knobs: str) -> subprocess.CompletedProcess:
    """``bash benchmarks/gpu_session.sh --quick`` on the CPU with ``knobs`` as its environment
    switches, writing under ``out``."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "OUT": str(out),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        **knobs,
    }
    script = str(root / "benchmarks" / "gpu_session.sh")
    done = subprocess.run(
        ["bash", script, "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_gpu_session_script_runs_its_cpu_sections(tmp_path: Path) -> None:
    """``DEVICE=cpu UNET=0 SR_BATCHED=1 LAYOUT=1 bash benchmarks/gpu_session.sh --quick``: the
    script's sampling, SR and layout sections end to end on the CPU (shell errors show here, not
    on a lent GPU), each writing its JSON, the last line naming every exit code."""
    done = run_session_script(tmp_path, 180, UNET="0", SR_BATCHED="1", LAYOUT="1")
    for bench in ("bench_sampling", "bench_sr_batched", "bench_layout"):
        assert f"{bench} exit 0" in done.stdout
    rows = json.loads((tmp_path / "sampling_gpu.json").read_text())["rows"]
    assert {r["variant"] for r in rows} == {"eager", "graph"}
    assert json.loads((tmp_path / "sr_batched.json").read_text())["best"]
    assert len(json.loads((tmp_path / "layout.json").read_text())["rows"]) == 2
    assert not (tmp_path / "unet_gpu.json").exists()
