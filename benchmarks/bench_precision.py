"""bf16 against fp32 at inference, on trained checkpoints: speed and quality side by side.

``sample.precision`` (``--precision``; :mod:`terradiff.nets.precision`) runs a net under bf16
autocast. It is faster where the hardware has bf16 arithmetic (a GPU, a CPU with AVX512-BF16 or
AMX) and it rounds every activation to 8 bits of mantissa, so the question a user asks is what it
costs in quality. For each checkpoint given, this evaluates it at each precision with the same
seed, in one run:

* a **super-resolution** checkpoint (``--sr``):
  :func:`terradiff.sr_evaluate.evaluate_super_resolution` on ``--n`` held-out images (the same
  images and, for SR3, the same noise at each precision);
  mean PSNR and SSIM per precision, the paired difference bf16 - fp32 over images with a
  percentile bootstrap interval (:func:`terradiff.report_format.paired_bootstrap`), and seconds
  per image;
* a **generation** checkpoint (``--generation``): :func:`terradiff.evaluate.evaluate_checkpoint`
  (FID and KID against its real images with the offline encoder, ``--n`` samples); and, for the
  first ``--paired`` samples drawn again at each precision from the same seed, the per-image
  mean absolute difference of the bf16 and fp32 images in 8-bit levels (0-255), with a
  bootstrap interval over images.

The speed ratio is fp32 seconds per image over bf16's, measured in the same run. Quality is the
point of this benchmark; for speed alone at a fixed size see ``bench_unet.py`` and
``bench_sampling.py``.

Run (from the repository root; the checkpoints are the studies' runs, e.g. ``make
conditional-study`` and ``make seed-study``)::

    .venv/bin/python benchmarks/bench_precision.py --sr outputs/seeds/runs/sr3/seed1 \\
        --generation outputs/conditional/aid/run --json benchmarks/results/precision_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terradiff.evaluate import evaluate_checkpoint, generate_images
from terradiff.io import atomic_write_text
from terradiff.nets.precision import native_bf16_cpu
from terradiff.provenance import machine_record
from terradiff.report_format import paired_bootstrap
from terradiff.sr_evaluate import evaluate_super_resolution

PRECISIONS = ("fp32", "bf16")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sr", nargs="*", default=[], help="super-resolution checkpoints")
    parser.add_argument("--generation", nargs="*", default=[], help="generation checkpoints")
    parser.add_argument("--n", type=int, default=64, help="images per evaluation")
    parser.add_argument("--paired", type=int, default=64, help="generated images compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.sr and not args.generation:
        parser.error("give at least one checkpoint with --sr or --generation")
    return args


def at_each_precision(
    evaluate: Callable[..., dict[str, Any]], checkpoint: str, args: argparse.Namespace, **extra: Any
) -> dict[str, dict[str, Any]]:
    """``evaluate(checkpoint, ...)`` at each of :data:`PRECISIONS`, the same seed and device."""
    return {
        p: evaluate(
            checkpoint, seed=args.seed, device=args.device, precision=p, progress=False, **extra
        )
        for p in PRECISIONS
    }


def compare_sr(checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both precisions of one super-resolution checkpoint, on the same images and noise."""
    rows = at_each_precision(evaluate_super_resolution, checkpoint, args, num_images=args.n)
    fp32, bf16 = rows["fp32"], rows["bf16"]
    return {
        "kind": "super_resolution",
        "checkpoint": checkpoint,
        "method": fp32["method"],
        "sampler": fp32["sampler"],
        "steps": fp32["steps"],
        "n": fp32["n"],
        "ran": {p: rows[p]["inference_precision"] for p in PRECISIONS},
        "seconds_per_image": {p: rows[p]["model"]["seconds_per_image"] for p in PRECISIONS},
        "psnr": {p: rows[p]["model"]["psnr"] for p in PRECISIONS},
        "ssim": {p: rows[p]["model"]["ssim"] for p in PRECISIONS},
        "bicubic_psnr": fp32["bicubic"]["psnr"],
        "psnr_bf16_minus_fp32": paired_bootstrap(
            bf16["per_image"]["model"]["psnr"], fp32["per_image"]["model"]["psnr"]
        ),
        "ssim_bf16_minus_fp32": paired_bootstrap(
            bf16["per_image"]["model"]["ssim"], fp32["per_image"]["model"]["ssim"]
        ),
    }


def compare_generation(checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both precisions of one generation checkpoint: FID/KID, and paired image differences."""
    from terradiff.tasks import load_task

    rows = at_each_precision(evaluate_checkpoint, checkpoint, args, num_samples=args.n)
    task, _ = load_task(checkpoint, use_ema=True, device=args.device)
    images = {}
    for p in PRECISIONS:
        task.use_precision(p)
        images[p] = generate_images(task, args.paired, seed=args.seed, progress=False)
    levels = ((images["bf16"] - images["fp32"]).abs() * 127.5).flatten(1).mean(1)
    return {
        "kind": "generation",
        "checkpoint": checkpoint,
        "sampler": rows["fp32"]["sampler"],
        "steps": rows["fp32"]["steps"],
        "guidance": rows["fp32"]["guidance"],
        "n": args.n,
        "ran": {p: rows[p]["inference_precision"] for p in PRECISIONS},
        "seconds_per_image": {p: rows[p]["seconds_per_image"] for p in PRECISIONS},
        "fid": {p: rows[p]["fid"] for p in PRECISIONS},
        "kid": {p: [rows[p]["kid_mean"], rows[p]["kid_std"]] for p in PRECISIONS},
        "conditional_accuracy": {p: rows[p].get("conditional_accuracy") for p in PRECISIONS},
        "paired_images": args.paired,
        "mean_abs_difference_levels": paired_bootstrap(levels.tolist(), [0.0] * len(levels)),
        "max_abs_difference_levels": float((images["bf16"] - images["fp32"]).abs().max() * 127.5),
    }


def format_row(row: dict[str, Any]) -> list[str]:
    """The lines of one checkpoint's comparison."""
    speed = row["seconds_per_image"]
    ratio = speed["fp32"] / speed["bf16"] if speed["bf16"] else float("nan")
    how = "one pass" if row["sampler"] is None else f"{row['sampler']}-{row['steps']}"
    lines = [f"{row['checkpoint']} ({row['kind']}, {how}, n={row['n']}, ran {row['ran']})"]
    lines.append(
        f"  s/image: fp32 {speed['fp32']:.4f}, bf16 {speed['bf16']:.4f} -> bf16 {ratio:.2f}x"
    )
    if row["kind"] == "super_resolution":
        for metric in ("psnr", "ssim"):
            diff = row[f"{metric}_bf16_minus_fp32"]
            lines.append(
                f"  {metric}: fp32 {row[metric]['fp32']:.4f}, bf16 {row[metric]['bf16']:.4f}; "
                f"bf16 - fp32 {diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"
            )
        lines.append(f"  bicubic psnr {row['bicubic_psnr']:.4f}")
    else:
        kid = row["kid"]
        lines.append(f"  FID: fp32 {row['fid']['fp32']:.2f}, bf16 {row['fid']['bf16']:.2f}")
        lines.append(
            f"  KID: fp32 {kid['fp32'][0]:.4f} +- {kid['fp32'][1]:.4f}, "
            f"bf16 {kid['bf16'][0]:.4f} +- {kid['bf16'][1]:.4f}"
        )
        accuracy = row["conditional_accuracy"]
        if accuracy["fp32"] is not None:
            lines.append(
                f"  conditional accuracy: fp32 {accuracy['fp32']:.3f}, bf16 {accuracy['bf16']:.3f}"
            )
        diff = row["mean_abs_difference_levels"]
        lines.append(
            f"  |bf16 - fp32| per image, mean over {row['paired_images']} images: "
            f"{diff['mean']:.2f} [{diff['low']:.2f}, {diff['high']:.2f}] of 255 levels "
            f"(largest pixel difference {row['max_abs_difference_levels']:.1f})"
        )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    result: dict[str, Any] = {
        "command": "python benchmarks/bench_precision.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            **machine_record(),
            "cpu_native_bf16": native_bf16_cpu(),
            "torch": torch.__version__,
            "device": args.device,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": [],
    }
    print(f"machine: {result['machine']}", flush=True)
    jobs = [(compare_sr, c) for c in args.sr] + [(compare_generation, c) for c in args.generation]
    for compare, checkpoint in jobs:
        row = compare(checkpoint, args)
        result["rows"].append(row)
        print("\n".join(format_row(row)), flush=True)
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
