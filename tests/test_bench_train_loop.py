"""``benchmarks/bench_train_loop.py`` runs end to end (CPU smoke run; timings are not checked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_train_loop


def test_quick_run_times_the_bare_step_and_both_loops(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    assert bench_train_loop.main(["--quick", "--device", "cpu", "--json", str(out)]) == 0
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) >= {"bare step", "loop device_batches=off", "loop device_batches=on"}
    assert rows["loop device_batches=off"]["batches"] == "DataLoader"
    assert rows["loop device_batches=on"]["batches"].startswith("DeviceBatches(")
    assert all(row["steps_per_s"] > 0 for row in rows.values())


def test_schedule_model_is_the_schedule_study_net(tmp_path: Path) -> None:
    from terradiff.tasks.base import build_unet

    args = bench_train_loop.parse_args(["--model", "schedule", "--device", "cpu"])
    config = bench_train_loop.make_config(args, tmp_path, "off")
    net = build_unet(config, 3, 3)
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.8e6  # the 1.68 M of issue 16
    assert config.model.base_channels == 32 and config.train.batch_size == 64
