"""Two terradiff jobs on one machine: OpenMP waiting policy and thread counts (CPU).

A real-world case from issue 13: two jobs on a 2-core machine slowed each other 10-50x. This
measures, in one run, the same workload under each setting, once alone and as two concurrent
processes. Workloads (``--workload``):

* ``forward``: ``--repeats`` no-grad forwards of a small UNet at batch 4, 64x64, 3 bands;
* ``train``: ``--repeats`` training steps of ``configs/demo_aid.yaml``'s UNet (batch 16, 32x32);
* ``demo``: ``terradiff train configs/demo_aid.yaml`` for ``--repeats`` steps, the whole loop of
  ``make demo`` (data pipeline, EMA, logging, final checkpoint), timed from call to return;
* ``super-resolve``: ``--repeats`` calls of ``terradiff super-resolve`` on a ``--sr-window`` px
  window (256) of the bundled NAIP sample with ``make sr-example``'s regression x4 UNet
  (untrained weights), the inference verbs' case; each call timed from call to return.

Settings (``--settings``; the OpenMP of torch's Linux wheels is GNU libgomp):

* ``active``: ``OMP_WAIT_POLICY=ACTIVE``, idle threads spin (libgomp: for minutes);
* ``unset (libgomp default)``: no policy; libgomp spins 300,000 iterations, then sleeps (not
  meaningful for ``demo``, whose ``terradiff`` command sets a policy when none is set);
* ``passive, spin N``: ``OMP_WAIT_POLICY=PASSIVE`` with ``GOMP_SPINCOUNT=N`` (libgomp spins N
  iterations before it sleeps; other OpenMP runtimes ignore the variable and stay passive);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE``, threads sleep at once;
* ``passive, 1 thread``: passive and ``--threads 1`` in each job.

Each figure is the median wall time of ``--trials`` trials per setting (each trial's time is kept
in the JSON); the settings are interleaved trial by trial so that outside load hits them alike.
The ratio column divides the concurrent time by the alone time of the ``passive`` setting (the
slowdown a user sees from starting a second job). Results:
``benchmarks/results/threads[_WORKLOAD].json`` and BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/bench_threads.py`` (about 2 minutes on 2 idle cores for the
forward workload; ``--workload demo --repeats 100`` about 5 minutes per setting and trial).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

FORWARD_WORKLOAD = """
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

# The training step of `make demo` (configs/demo_aid.yaml's net, batch 16 at 32x32, AdamW).
TRAIN_WORKLOAD = """
import sys, time, torch
from terradiff.nets.unet import UNet
from terradiff.runtime import configure_threads
configure_threads(int(sys.argv[1]) if sys.argv[1] != "0" else None)
torch.manual_seed(0)
net = UNet(3, 3, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
           attention_resolutions=(8,), image_size=32, dropout=0.1, num_groups=8,
           head_channels=32)
opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
x, t = torch.randn(16, 3, 32, 32), torch.randint(0, 1000, (16,)).float()
def step():
    loss = torch.nn.functional.mse_loss(net(x, t), x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    step()
print(time.perf_counter() - start)
"""

# `make demo`'s training itself: `terradiff train configs/demo_aid.yaml` for a number of steps
# (the real loop: decoding the AID sample, the data pipeline, EMA, logging, the final checkpoint),
# timed from the call to its return.
DEMO_WORKLOAD = """
import sys, tempfile, time
from terradiff.cli import main
threads = [] if sys.argv[1] == "0" else ["--threads", sys.argv[1]]
with tempfile.TemporaryDirectory() as run:
    start = time.perf_counter()
    code = main([*threads, "train", "configs/demo_aid.yaml", "--output-dir", run, "--overwrite",
                 "--set", f"train.max_steps={sys.argv[2]}", "--set", "train.save_every=100000",
                 "--set", "train.sample_every=100000"])
    elapsed = time.perf_counter() - start
if code:
    raise SystemExit(code)
print(elapsed)
"""

# Inference as a user runs it: `terradiff super-resolve` of a --sr-window px window (default 256)
# of the bundled NAIP
# sample with `make sr-example`'s regression x4 UNet (untrained: the time does not depend on the
# weights), called --repeats times, each call timed from call to return (model load, tiling,
# GeoTIFF writing included).
SR_WORKLOAD = """
import sys, tempfile, time
from pathlib import Path
import rasterio
from rasterio.windows import Window
from terradiff.checkpoint import save_checkpoint
from terradiff.cli import main
from terradiff.config_loading import load_config
from terradiff.data.band_info import BandInfo
from terradiff.tasks import build_task
threads = [] if sys.argv[1] == "0" else ["--threads", sys.argv[1]]
side = int(sys.argv[3])
with tempfile.TemporaryDirectory() as folder:
    work = Path(folder)
    task = build_task(load_config("configs/sr/sample_regression_x4.yaml"),
                      BandInfo(3, ("red", "green", "blue"), "uint8"))
    save_checkpoint(work / "run/checkpoints/step_00000001", config=task.checkpoint_config(),
                    model_state=task.net.state_dict())
    with rasterio.open("data/samples/naip/m_4709963_se_14_1_20190904.tif") as src:
        window = Window(0, 0, side, side)
        data = src.read(window=window)
        profile = {"driver": "GTiff", "width": side, "height": side, "count": src.count,
                   "dtype": src.dtypes[0], "crs": src.crs,
                   "transform": src.window_transform(window)}
    with rasterio.open(work / "crop.tif", "w", **profile) as dst:
        dst.write(data)
    elapsed = 0.0
    for call in range(int(sys.argv[2])):
        start = time.perf_counter()
        code = main([*threads, "super-resolve", "--model", str(work / "run"),
                     str(work / "crop.tif"), str(work / f"out{call}.tif"), "--bands", "1,2,3"])
        elapsed += time.perf_counter() - start
        if code:
            raise SystemExit(code)
print(elapsed)
"""

WORKLOADS = {
    "forward": FORWARD_WORKLOAD,
    "train": TRAIN_WORKLOAD,
    "demo": DEMO_WORKLOAD,
    "super-resolve": SR_WORKLOAD,
}

# OpenMP's waiting policy (OMP_WAIT_POLICY) and, for GNU OpenMP (libgomp, torch's OpenMP on
# Linux), how long an idle thread spins before it sleeps (GOMP_SPINCOUNT, in spin iterations;
# libgomp's default without a policy is 300,000, with PASSIVE 0).
SETTINGS = {
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, 0),
    "unset (libgomp default)": ({}, 0),
    "passive, spin 10000": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, 0),
    "passive, spin 3000": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}, 0),
    "passive, spin 1000": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}, 0),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "passive, 1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
ROOT = Path(__file__).resolve().parents[1]  # demo and super-resolve read configs/ and data/ here


def job_environment(env_extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without its OpenMP settings, plus those of one setting."""
    return {k: v for k, v in os.environ.items() if k not in CLEARED} | env_extra


def run_jobs(
    env_extra: dict[str, str],
    threads: int,
    jobs: int,
    repeats: int,
    workload: str = "forward",
    sr_window: int = 256,
) -> float:
    """Wall seconds of the slowest of ``jobs`` concurrent workload processes (each workload reads
    the threads, the repeats and the super-resolve window side from its argv)."""
    env = job_environment(env_extra)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKLOADS[workload], str(threads), str(repeats), str(sr_window)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(jobs)
    ]
    times = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"workload failed with exit code {proc.returncode}:\n{err[-2000:]}")
        times.append(float(out.strip().splitlines()[-1]))
    return max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="forward")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument(
        "--jobs",
        nargs="+",
        type=int,
        choices=(1, 2),
        default=[1, 2],
        help="run each setting alone (1) and/or as two concurrent jobs (2)",
    )
    parser.add_argument(
        "--sr-window",
        type=int,
        default=256,
        help="side in pixels of the NAIP window the super-resolve workload maps (256)",
    )
    parser.add_argument(
        "--out", default=None, help="default benchmarks/results/threads[_WORKLOAD].json"
    )
    args = parser.parse_args()
    suffix = "" if args.workload == "forward" else "_" + args.workload.replace("-", "_")
    out = args.out or f"benchmarks/results/threads{suffix}.json"
    settings, jobs_list = args.settings, sorted(set(args.jobs))
    times: dict[tuple[str, int], list[float]] = {(s, j): [] for s in settings for j in jobs_list}
    for trial in range(args.trials):
        order = settings if trial % 2 == 0 else list(reversed(settings))
        for name in order:
            env_extra, threads = SETTINGS[name]
            for jobs in jobs_list:
                times[(name, jobs)].append(
                    run_jobs(env_extra, threads, jobs, args.repeats, args.workload, args.sr_window)
                )
    base_name = "passive" if "passive" in settings else settings[0]
    base = statistics.median(times[(base_name, 1)]) if 1 in jobs_list else None
    rows = []
    print(
        f"{'setting':<24} {'alone s':>8} {'2 jobs s':>9} {'2 jobs / ' + base_name + ' alone':>28}"
    )
    for name in settings:
        row: dict[str, object] = {"setting": name}
        for jobs, key in ((1, "alone"), (2, "two_jobs")):
            if jobs in jobs_list:
                row[f"{key}_s"] = statistics.median(times[(name, jobs)])
                row[f"{key}_trials_s"] = times[(name, jobs)]
        if base and "two_jobs_s" in row:
            row["ratio"] = row["two_jobs_s"] / base
        rows.append(row)
        cells = [
            f"{row[k]:{w}.2f}" if k in row else f"{'-':>{w}}"
            for k, w in (("alone_s", 8), ("two_jobs_s", 9), ("ratio", 28))
        ]
        print(f"{name:<24} " + " ".join(cells))
    from terradiff.provenance import provenance_record  # torch only after the timed jobs ran

    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": shlex.join(["python", "benchmarks/bench_threads.py", *sys.argv[1:]]),
        "workload": args.workload,
        **({"sr_window": args.sr_window} if args.workload == "super-resolve" else {}),
        "ratio_base": base_name,
        "trials": args.trials,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "provenance": provenance_record(),
    }
    Path(out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
