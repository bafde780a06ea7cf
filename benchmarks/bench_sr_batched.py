"""The distilled SR student against SR3 DDIM-20 on batches of tiles (issue 16 item 5).

``terradiff super-resolve`` feeds a model batches of LR tiles (64 px by default, 256 px out at
x4; on CUDA the batch is what fits a share of the free memory). Issue 16 asks that the
distilled student be at least 100x faster than SR3 DDIM-20 on a GPU with the tiles batched: the
first H200 figure (31x, ``benchmarks/results/distill_h200.txt``) timed one 512x512 image, where a
network as small as the student is bound by kernel launches. This times, for each tile batch of
``--batches`` and each precision of ``--precisions``, side by side in one run:

* **SR3 DDIM-20**: ``SuperResolutionTask.super_resolve`` with the DDIM-20 spec, the x4 SR3
  architecture of ``--sr3-config`` (``configs/sr/aid_sr3_x4.yaml``);
* **student**: the same call on the light student of ``--student-config``
  (``configs/distill/aid_student_x4.yaml``; ``sr.distill: none`` so that no teacher is read:
  its feature adapters are used in training only);
* **student, CUDA graph** (``--graph``): the student's net captured once per batch shape and
  replayed (:func:`terradiff.nets.fast_forward.fast_forward`), the bicubic upsampling and the
  residual add outside it. On CPU a stand-in capture
  (:class:`~terradiff.nets.fast_forward.EagerCaptureBackend`) runs the same path: it checks the
  path (its output must equal the eager student's), not a speed.

Weights are the architectures' seeded initialisations: the time of a forward pass does not depend
on the weight values (as in ``bench_distill.py``, which times architecture-identical runs). The
LR tiles are real: ``--lr-size`` centre crops of the bundled AID JPEGs (``data/samples/aid``).
Per batch: the median of ``--repeats`` timed calls (SR3: ``--sampler-repeats``) after a warm-up
call, seconds per tile, and SR3 / student per tile at the same batch and at each one's fastest
batch. No section starts after ``--budget-s``; the JSON is rewritten after every measurement.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_sr_batched.py --quick                 # CPU smoke, seconds
    python benchmarks/bench_sr_batched.py --device cuda --graph --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_sampling import precision_context
from unet_bench_common import gpu_record, timed

from terradiff.config import config_from_dict
from terradiff.data.datasets import ImageFolderDataset
from terradiff.data.degrade.resample import upsample_to
from terradiff.io import atomic_write_text
from terradiff.nets import count_parameters
from terradiff.nets.fast_forward import EagerCaptureBackend, fast_forward
from terradiff.provenance import provenance_record
from terradiff.runtime import enable_cudnn_autotuner
from terradiff.tasks import build_task

REPO = Path(__file__).resolve().parents[1]
SR3 = "SR3 DDIM-20"
STUDENT = "student"
STUDENT_GRAPH = "student, CUDA graph"
#: The graph row's name on CPU, where a stand-in capture runs the path (no speed meaning).
STUDENT_STAND_IN = "student, stand-in capture"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--batches", default=None, help="comma list of tile batches (default 1,16,64; quick 1,2)"
    )
    parser.add_argument("--lr-size", type=int, default=64, help="LR tile side (x4 out)")
    parser.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16")
    parser.add_argument("--repeats", type=int, default=10, help="timed student calls per batch")
    parser.add_argument("--sampler-repeats", type=int, default=3, help="timed SR3 runs per batch")
    parser.add_argument("--graph", action="store_true", help="also the student as a CUDA graph")
    parser.add_argument("--sr3-config", type=Path, default=REPO / "configs/sr/aid_sr3_x4.yaml")
    parser.add_argument(
        "--student-config", type=Path, default=REPO / "configs/distill/aid_student_x4.yaml"
    )
    parser.add_argument("--data", type=Path, default=REPO / "data/samples/aid")
    parser.add_argument("--budget-s", type=float, default=0.0, help="0: no budget")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: batches 1,2, 16 px")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.quick:
        args.lr_size, args.repeats, args.sampler_repeats = 16, 2, 1
    if args.batches is None:
        args.batches = "1,2" if args.quick else "1,16,64"
    args.batch_list = sorted({int(b) for b in args.batches.split(",") if b})
    args.precision_list = [p for p in args.precisions.split(",") if p]
    bad = [p for p in args.precision_list if p not in ("fp32", "bf16")]
    if bad or not args.batch_list or min(args.batch_list) < 1:
        parser.error(f"--precisions takes fp32,bf16 (got {bad}); --batches positive integers")
    return args


def build_sr_task(path: Path, overrides: dict[str, Any], device: torch.device) -> Any:
    """The super-resolution task of the config at ``path`` (with ``sr`` overrides), its net on
    ``device`` in eval mode."""
    data = yaml.safe_load(path.read_text())
    data["sr"] = {**data.get("sr", {}), **overrides}
    task = build_task(config_from_dict(data, str(path)))
    task.net.to(device).eval()
    return task


def lr_tiles(folder: Path, size: int, count: int) -> torch.Tensor:
    """``count`` real LR tiles of ``size`` px in [-1, 1]: centre crops of the images in
    ``folder``, cycled when there are fewer images than tiles."""
    data = ImageFolderDataset(folder, image_size=size, crop="center", random_flip=False)
    return torch.stack([data[i % len(data)]["image"] for i in range(count)])


def median_time(
    device: torch.device, fn: Callable[[], Any], repeats: int
) -> tuple[float, list[float]]:
    """Median seconds of ``repeats`` timed calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = [timed(device, fn) for _ in range(repeats)]
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        enable_cudnn_autotuner()  # as the terradiff command does
    sr3 = build_sr_task(args.sr3_config, {}, device)
    student = build_sr_task(args.student_config, {"distill": "none"}, device)
    spec = sr3.sampling_spec("ddim", 20)
    tiles = lr_tiles(args.data, args.lr_size, max(args.batch_list))
    out_size = (round(args.lr_size * student.sr.scale),) * 2
    graphed = None
    if args.graph:
        backend = None if device.type == "cuda" else EagerCaptureBackend()
        graphed = fast_forward(student.net, "graph", device=device, backend=backend)
    result: dict[str, Any] = {
        "provenance": provenance_record(),
        "torch": torch.__version__,
        "machine": gpu_record(device) if device.type == "cuda" else {"device": "cpu"},
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "lr_size": args.lr_size,
        "out_size": out_size[0],
        "params": {SR3: count_parameters(sr3.net), STUDENT: count_parameters(student.net)},
        "weights": "seeded initialisation of the configs' architectures (speed only)",
        "rows": [],
        "skipped": [],
    }

    def save() -> None:
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")

    print(
        f"SR3 {result['params'][SR3]:,} params, student {result['params'][STUDENT]:,} params; "
        f"LR tiles {args.lr_size} px -> {out_size[0]} px, {args.data}"
    )
    for mode in args.precision_list:
        for batch in args.batch_list:
            elapsed = time.perf_counter() - started
            if args.budget_s and elapsed > args.budget_s:
                result["skipped"].append({"precision": mode, "batch": batch})
                print(f"  {mode} batch {batch}: skipped ({elapsed:.0f} s > --budget-s)")
                continue
            lr = tiles[:batch].to(device)
            bicubic = upsample_to(lr, out_size)
            calls: list[tuple[str, Callable[[], Any], int]] = [
                (
                    SR3,
                    lambda lr=lr: sr3.super_resolve(
                        sr3.net, lr, spec=spec, generator=torch.Generator().manual_seed(0)
                    ),
                    args.sampler_repeats,
                ),
                (STUDENT, lambda lr=lr: student.super_resolve(student.net, lr), args.repeats),
            ]
            if graphed is not None:
                calls.append(
                    (
                        STUDENT_GRAPH if device.type == "cuda" else STUDENT_STAND_IN,
                        lambda b=bicubic: (b + graphed(b).float()).clamp(-1, 1),
                        args.repeats,
                    )
                )
            section: dict[str, float] = {}
            outputs: dict[str, torch.Tensor] = {}
            for name, fn, repeats in calls:
                with torch.no_grad(), precision_context(mode, device):
                    median, times = median_time(device, fn, repeats)
                    if name != SR3:
                        out = fn()
                        outputs[name] = getattr(out, "sample", out).float()
                section[name] = median / batch
                row = {
                    "model": name,
                    "precision": mode,
                    "batch": batch,
                    "times_s": times,
                    "median_s": median,
                    "s_per_tile": median / batch,
                    "tiles_per_s": batch / median,
                }
                if name != SR3:
                    row["sr3_per_student"] = section[SR3] / row["s_per_tile"]
                if name in (STUDENT_GRAPH, STUDENT_STAND_IN):
                    diff = (outputs[name] - outputs[STUDENT]).abs().max()
                    row["max_abs_diff_vs_student"] = float(diff)
                result["rows"].append(row)
                save()
                ratio = f"  SR3 / this {row['sr3_per_student']:8.1f}x" if name != SR3 else ""
                print(
                    f"  {mode} batch {batch:4d}  {name:20s} {median:9.4f} s  "
                    f"{row['tiles_per_s']:10.1f} tiles/s{ratio}",
                    flush=True,
                )
    result["best"] = best_ratios(result["rows"])
    for line in result["best"]:
        print(
            f"  best {line['precision']}: {line['model']} at batch {line['batch']} vs SR3 at batch "
            f"{line['sr3_batch']}: {line['sr3_per_student']:.1f}x per tile"
        )
    save()
    print(f"done after {time.perf_counter() - started:.0f} s")
    return result


def best_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per precision and student variant: its fastest batch against SR3's fastest batch."""
    out = []
    for mode in dict.fromkeys(r["precision"] for r in rows):
        sr3 = [r for r in rows if r["precision"] == mode and r["model"] == SR3]
        if not sr3:
            continue
        best_sr3 = min(sr3, key=lambda r: r["s_per_tile"])
        for name in dict.fromkeys(r["model"] for r in rows if r["model"] != SR3):
            mine = [r for r in rows if r["precision"] == mode and r["model"] == name]
            if not mine:
                continue
            best = min(mine, key=lambda r: r["s_per_tile"])
            out.append(
                {
                    "precision": mode,
                    "model": name,
                    "batch": best["batch"],
                    "sr3_batch": best_sr3["batch"],
                    "sr3_per_student": best_sr3["s_per_tile"] / best["s_per_tile"],
                }
            )
    return out


if __name__ == "__main__":
    main()
