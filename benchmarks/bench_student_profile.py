"""Where the distilled SR student spends its time, and what channels-last buys it on this CPU.

Loads a student run (``--run``, default ``runs/distill/aid-student-x4``; an architecture-identical
run of a few training steps times the same, since a forward pass costs the same whatever the
weight values) and super-resolves one real LR input (four AID scenes tiled, as
``bench_distill.py``) to ``--size`` px:

* the forward in NCHW and in channels-last activations (``LightSRNet.channels_last`` False /
  True), ``--repeats`` timed calls each after a warm-up, interleaved, medians and spread: the
  artefact behind the channels-last default of :func:`terradiff.nets.memory.use_channels_last`;
* a ``torch.profiler`` table of one channels-last forward (the memory format the CPU default
  uses): self CPU time per operator and its share of the total, so a sentence such as "X% of the
  time is up-sampling" has a file behind it.

Run (1 thread, nothing else running)::

    .venv/bin/python benchmarks/bench_student_profile.py --json \\
        benchmarks/results/student_profile.json > benchmarks/results/student_profile.txt
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sr import cpu_model, real_512, time_calls, write_json
from profile_table import profile_rows

from terradiff.data.degrade import bicubic_downsample
from terradiff.runtime import allocator_description, tune_cpu_allocator
from terradiff.tasks import load_task

SCALE = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/distill/aid-student-x4"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--size", type=int, default=512, help="output side in px")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=15, help="operators in the profile table")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    task, ckpt = load_task(args.run, use_ema=True)
    net = task.net.eval()
    hr = real_512(args.shared)
    if args.size != hr.shape[-1]:
        hr = torch.nn.functional.interpolate(hr, size=args.size, mode="bicubic").clamp(-1, 1)
    lr = bicubic_downsample(hr, SCALE)
    machine = f"{cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, "
    machine += allocator_description()
    print(f"machine: {machine}\nrun: {args.run} (weights of step {ckpt.step})")

    def forward(channels_last: bool) -> None:
        net.channels_last = channels_last
        task.super_resolve(net, lr, generator=torch.Generator())

    def no_warmup() -> None:  # both were warmed up once before the loop
        return None

    times: dict[str, list[float]] = {"nchw": [], "channels_last": []}
    with torch.no_grad():
        forward(False)
        forward(True)  # warm-ups
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            times["nchw"] += time_calls(lambda: forward(False), 1, warmup=no_warmup)
            times["channels_last"] += time_calls(lambda: forward(True), 1, warmup=no_warmup)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["nchw"] / medians["channels_last"]
        for name, values in times.items():
            print(
                f"{name:14s} median {medians[name]:.3f} s  (min {min(values):.3f}, "
                f"max {max(values):.3f}, n {len(values)})"
            )
        print(f"channels-last speed-up over NCHW: {ratio:.2f}x")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            forward(True)
    rows = profile_rows(prof, args.rows)
    print(f"\nprofile of one channels-last forward at {args.size} px (self CPU time):")
    print(f"{'operator':40s} {'calls':>6s} {'self ms':>9s} {'share':>7s}")
    for row in rows:
        print(f"{row['op'][:40]:40s} {row['calls']:6d} {row['self_ms']:9.1f} {row['share']:7.1%}")
    if args.json:
        write_json(
            args.json,
            machine,
            args,
            run_step=ckpt.step,
            size=args.size,
            times=times,
            medians=medians,
            channels_last_speedup=ratio,
            profile=rows,
        )


if __name__ == "__main__":
    main()
