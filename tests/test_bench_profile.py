"""``benchmarks/bench_profile.py`` (issue 16 item 6): the train-step profile runs and its table
lists operators by self time, largest first; device time is summed over one level (kernels or
operators), never both."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest
import torch
from bench_profile import main, summary_lines
from profile_table import DEVICE_TIME, KERNELS, OPERATORS, profile_rows
from torch.autograd import DeviceType


def test_cpu_smoke_run_writes_an_ordered_table(tmp_path: Path) -> None:
    out = tmp_path / "profile.txt"
    args = ["--device", "cpu", "--batch", "2", "--image-size", "16", "--steps", "2"]
    main([*args, "--warmup", "1", "--rows", "8", "--no-compile", "--out", str(out)])
    text = out.read_text()
    assert "## before: eager + for-each AdamW" in text and "## after" not in text
    rows = re.findall(r"^\| `(.+?)` \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+) \|$", text, re.M)
    assert len(rows) == 8
    per_step = [float(r[1]) for r in rows]
    assert per_step == sorted(per_step, reverse=True)
    assert sum(float(r[2]) for r in rows) <= 100.5
    ops = {r[0]: float(r[3]) for r in rows}
    assert any(op.startswith("aten::convolution") for op in ops), ops


class FakeEvent:
    """One ``key_averages()`` entry: a name, a count, where it ran and its self times (us)."""

    def __init__(self, key: str, device_type: DeviceType, device_us: float, cpu_us: float = 0):
        self.key, self.count, self.device_type = key, 2, device_type
        self.self_device_time_total, self.self_cpu_time_total = device_us, cpu_us


class FakeProfile:
    def __init__(self, events: list[FakeEvent]) -> None:
        self.events = events

    def key_averages(self) -> list[FakeEvent]:
        return self.events


# aten::mm launched the GEMM kernel: its self device time is that kernel's duration again
GPU_EVENTS = [
    FakeEvent("aten::mm", DeviceType.CPU, 6000.0, cpu_us=50.0),
    FakeEvent("sm90_gemm_kernel", DeviceType.CUDA, 6000.0),
    FakeEvent("triton_fused_norm", DeviceType.CUDA, 2000.0),  # launched by compiled code
    FakeEvent("aten::empty", DeviceType.CPU, 0.0, cpu_us=10.0),
]


def test_device_time_is_counted_once_per_level() -> None:
    kernels = profile_rows(FakeProfile(GPU_EVENTS), 10, DEVICE_TIME, KERNELS)
    assert [(r["op"], r["self_ms"], r["share"]) for r in kernels] == [
        ("sm90_gemm_kernel", 6.0, 0.75),
        ("triton_fused_norm", 2.0, 0.25),
    ]
    operators = profile_rows(FakeProfile(GPU_EVENTS), 10, DEVICE_TIME, OPERATORS)
    assert [(r["op"], r["share"]) for r in operators] == [("aten::mm", 1.0)]
    with pytest.raises(ValueError, match="level"):
        profile_rows(FakeProfile(GPU_EVENTS), 10, DEVICE_TIME, "both")


def test_gpu_summary_sets_kernel_time_against_the_wall_time() -> None:
    lines = summary_lines(FakeProfile(GPU_EVENTS), torch.device("cuda"), 2, 5, wall_ms=8.0)
    # 8 ms of kernels over 2 steps = 4 ms per step, in a step of 8 ms: busy half of it
    assert "kernel time per step: 4.00 ms" in lines[0] and "busy 50%" in lines[0]
    assert "| `sm90_gemm_kernel` | 3.000 | 75.0% | 1 |" in lines
    assert "| `aten::mm` | 3.000 | 100.0% | 1 |" in lines
