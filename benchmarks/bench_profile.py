"""Where a train step of the SMALL_64 UNet spends its time, before and after the fast path.

Issue 16, item 6: a ``torch.profiler`` summary of the train step (forward, MSE on eps, backward,
AdamW) as text, so the next engineer sees which kernels dominate:

* ``before``: the eager net and ``torch.optim.AdamW`` with its default (for-each) update;
* ``after``: what ``terradiff train`` runs on CUDA by default: the net channels-last
  (``train.channels_last: true``; NCHW in the summaries written before 2026-12-01), the
  repeated blocks compiled in place (:func:`terradiff.nets.compile.compile_regions`, as
  ``train.compile: auto``) and the fused AdamW (one kernel for the whole update on CUDA; the
  for-each one elsewhere).

Each variant is warmed up (``--warmup`` steps, which include compilation), then ``--steps`` steps
are timed without the profiler (the wall time of a step), then profiled. On a GPU it lists the
``--rows`` kernels with the most device time, their summed time against the wall time (how busy
the GPU is: a step the host cannot feed fast enough leaves it idle) and the operators by the
device time of the kernels they launched; on the CPU the operators by self CPU time. Shares are
of one level's total: ``key_averages`` counts a kernel's time again in its operator's
(``profile_table``), which the summaries written before 2026-12-01 added up. bf16 autocast on
CUDA, fp32 on the CPU (whose bf16 is emulated on the machines here).

Run (GPU; from ``benchmarks/gpu_session.sh`` with ``PROFILE=1``)::

    python benchmarks/bench_profile.py --device cuda --out benchmarks/results/profile_cuda.txt

CPU smoke run (a few seconds; ``tests/test_bench_profile.py``)::

    python benchmarks/bench_profile.py --device cpu --batch 2 --image-size 16 --steps 1 \\
        --warmup 1 --no-compile --out /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_table import ALL, CPU_TIME, DEVICE_TIME, KERNELS, OPERATORS, profile_rows

from terradiff.nets.compile import compile_regions
from terradiff.nets.memory import set_channels_last
from terradiff.nets.unet import SMALL_64, UNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="profiled steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="steps before profiling")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="profile 'before' only")
    parser.add_argument("--out", type=Path, required=True, help="text file of the tables")
    return parser.parse_args(argv)


def make_step(net: UNet, device: torch.device, batch: int, fused: bool) -> Any:
    """One train step of ``net`` on fixed random inputs (the profile needs costs, not data)."""
    generator = torch.Generator().manual_seed(0)
    size = net.config["image_size"]
    x0 = torch.randn(batch, 3, size, size, generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    x_t = 0.7 * x0 + 0.7 * noise
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True if fused else None)
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.mse_loss(net(x_t, t).float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_variant(name: str, args: argparse.Namespace, device: torch.device) -> list[str]:
    """Warm up and profile one variant; its table as lines."""
    torch.manual_seed(0)
    net = UNet(3, **{**SMALL_64, "image_size": args.image_size}).to(device).train()
    after = name == "after"
    if after:  # what Trainer.fit builds by default (train.channels_last: true, compile: auto)
        set_channels_last(net, True)
        compile_regions(net)
    step = make_step(net, device, args.batch, fused=after and device.type == "cuda")
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()  # the same steps unprofiled: the wall time they take
    for _ in range(args.steps):
        step()
    synchronize(device)
    wall_ms = 1000.0 * (time.perf_counter() - start) / args.steps
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        synchronize(device)
    return [
        f"## {name}: "
        + (
            "channels-last, compiled blocks, "
            + ("fused AdamW" if device.type == "cuda" else "for-each AdamW")
            if after
            else "eager + for-each AdamW"
        ),
        "",
        f"warm-up: {args.warmup} steps in {warmup_s:.1f} s (compilation included)",
        "",
        *summary_lines(prof, device, args.steps, args.rows, wall_ms),
        "",
    ]


def table_lines(table: list[dict[str, Any]], steps: int, rows: int, head: str) -> list[str]:
    """A markdown table of the first ``rows`` of ``table``: ms per step, share, calls per step."""
    lines = [f"| {head} | ms per step | share | calls per step |", "|---|---|---|---|"]
    for row in table[:rows]:
        op = row["op"] if len(row["op"]) <= 90 else row["op"][:87] + "..."
        lines.append(
            f"| `{op}` | {row['self_ms'] / steps:.3f} | {row['share']:.1%} | "
            f"{row['calls'] / steps:g} |"
        )
    return lines


def summary_lines(
    prof: Any, device: torch.device, steps: int, rows: int, wall_ms: float
) -> list[str]:
    """Where a step's time goes. On the CPU: operators by self CPU time. On a GPU: the kernels'
    summed durations against the unprofiled wall time of a step (the share of the step the
    device is busy; the rest it waits for the host), the kernels by duration, and the operators
    by the device time of the kernels they launched (kernels launched by compiled code outside
    any operator are in the first table only)."""
    if device.type != "cuda":
        table = profile_rows(prof, 10**9, CPU_TIME, ALL)
        total_ms = sum(r["self_ms"] for r in table) / steps
        return [
            f"wall time per step, unprofiled: {wall_ms:.2f} ms; self CPU time per step under the "
            f"profiler: {total_ms:.2f} ms over {len(table)} kinds of operator",
            "",
            *table_lines(table, steps, rows, "operator (self CPU time)"),
        ]
    kernels = profile_rows(prof, 10**9, DEVICE_TIME, KERNELS)
    operators = profile_rows(prof, 10**9, DEVICE_TIME, OPERATORS)
    busy_ms = sum(r["self_ms"] for r in kernels) / steps
    return [
        f"wall time per step, unprofiled: {wall_ms:.2f} ms; kernel time per step: {busy_ms:.2f} ms "
        f"over {len(kernels)} kinds of kernel, so the GPU is busy {busy_ms / wall_ms:.0%} of the "
        "step (one stream: kernels do not overlap); the rest it waits for the host",
        "",
        *table_lines(kernels, steps, rows, "kernel (duration)"),
        "",
        *table_lines(operators, steps, rows, "operator (device time of the kernels it launched)"),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"# Train-step profile: SMALL_64 UNet, batch {args.batch}, {args.image_size} px, {name}",
        "",
        f"torch {torch.__version__}; {args.steps} profiled steps per variant after {args.warmup} "
        f"warm-up steps; {'bf16 autocast' if device.type == 'cuda' else 'fp32'}.",
        "",
    ]
    for variant in ("before",) if args.no_compile else ("before", "after"):
        lines += profile_variant(variant, args, device)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")  # a run cut short keeps 'before'
    print("\n".join(lines))


if __name__ == "__main__":
    main()
