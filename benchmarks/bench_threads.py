"""Two terradiff jobs on one machine: OpenMP waiting policy and thread counts (CPU).

A real-world case from issue 13: two jobs on a 2-core machine slowed each other 10-50x. This
measures, in one run, the same workload (``--repeats`` forwards of a small UNet at batch 4,
64x64, 3 bands, no_grad) under each setting, once alone and as two concurrent processes:

* ``active``: OpenMP's default (threads spin while waiting), threads = cores;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (what the ``terradiff`` command sets), threads = cores;
* ``passive, 1 thread``: ``OMP_WAIT_POLICY=PASSIVE`` and ``--threads 1`` in each job.

Each figure is the median wall time of ``--trials`` trials per setting; the settings are
interleaved trial by trial so that outside load hits them alike. The ratio column divides the
concurrent time by the alone time of the ``passive`` setting (the slowdown a user sees from
starting a second job). Results: ``benchmarks/results/threads.json`` and BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/bench_threads.py`` (about 2 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOAD = """
import sys, time, torch
from terradiff.nets.unet import UNet
from terradiff.runtime import configure_threads
configure_threads(int(sys.argv[1]) if sys.argv[1] != "0" else None)
net = UNet(3, 3, base_channels=32, channel_mults=(1, 2, 2), attention_resolutions=(),
           image_size=64, num_groups=8).eval()
x, t = torch.randn(4, 3, 64, 64), torch.ones(4)
with torch.no_grad():
    net(x, t)
    start = time.perf_counter()
    for _ in range(int(sys.argv[2])):
        net(x, t)
print(time.perf_counter() - start)
"""

SETTINGS = {
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, 0),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "passive, 1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}


def run_jobs(env_extra: dict[str, str], threads: int, jobs: int, repeats: int) -> float:
    """Wall seconds of the slowest of ``jobs`` concurrent workload processes."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)} | env_extra
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKLOAD, str(threads), str(repeats)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(jobs)
    ]
    times = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"workload failed with exit code {proc.returncode}")
        times.append(float(out.strip().splitlines()[-1]))
    return max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/threads.json")
    args = parser.parse_args()
    times: dict[tuple[str, int], list[float]] = {(s, j): [] for s in SETTINGS for j in (1, 2)}
    for trial in range(args.trials):
        order = list(SETTINGS) if trial % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            env_extra, threads = SETTINGS[name]
            for jobs in (1, 2):
                times[(name, jobs)].append(run_jobs(env_extra, threads, jobs, args.repeats))
    base = statistics.median(times[("passive", 1)])
    rows = []
    print(f"{'setting':<20} {'alone s':>8} {'2 jobs s':>9} {'2 jobs / passive alone':>23}")
    for name in SETTINGS:
        alone = statistics.median(times[(name, 1)])
        both = statistics.median(times[(name, 2)])
        rows.append({"setting": name, "alone_s": alone, "two_jobs_s": both, "ratio": both / base})
        print(f"{name:<20} {alone:8.2f} {both:9.2f} {both / base:23.2f}")
    from terradiff.provenance import provenance_record  # torch only after the timed jobs ran

    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python benchmarks/bench_threads.py",
        "trials": args.trials,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "provenance": provenance_record(),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
