"""DDIM sampling speed of the SMALL_64 UNet with its denoiser eager, compiled or a CUDA graph.

The samplers of :mod:`terradiff.diffusion.samplers` are pure functions; the speed of sampling
comes from the ``model_fn`` (:mod:`terradiff.nets.fast_forward`). This benchmark runs the same
DDIM-n sampling (``ddim_sample``, eta 0, a fixed seed) with ``model_fn`` calling:

* ``eager``: the net itself (``sample.fast: off``);
* ``graph``: the net captured as a CUDA graph for the batch's shape and replayed every step
  (``sample.fast: graph``); on CPU a stand-in backend that calls the net again
  (:class:`~terradiff.nets.fast_forward.EagerCaptureBackend`: it checks the path, not a speed);
* ``compile``: the net's repeated blocks compiled in place (``sample.fast: compile``; on CPU
  the ``eager`` dynamo backend unless ``--compile-backend`` says otherwise);
* ``compile+graph``: the compiled blocks inside one CUDA graph of the whole forward
  (``sample.fast: compile+graph``; on CPU the stand-in capture around the compiled blocks).

cuDNN's autotuner (``torch.backends.cudnn.benchmark``) is on with CUDA by default, as the
``terradiff`` command sets it (``--cudnn-benchmark``; the H200 figures of 2026-11-30 ran with it
off).

For each (precision, variant) it reports images/s over ``--repeats`` timed runs after
``--warmup`` runs (the first of which captures or compiles: ``warmup_s``), the speed-up over
eager, the peak CUDA memory and the largest absolute difference of the samples from eager's.
``bf16`` runs the sampler under ``torch.autocast(bfloat16, cache_enabled=False)`` (a CUDA graph
needs the autocast cache off); ``fp32`` runs with TF32 off, as ``benchmarks/bench_unet.py``.

    python benchmarks/bench_sampling.py --device cuda --json out/sampling.json
    python benchmarks/bench_sampling.py --quick --device cpu     # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unet_bench_common import gpu_record, set_cudnn_benchmark, set_tf32, timed

from terradiff.diffusion.samplers import ddim_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.io import atomic_write_text
from terradiff.nets.fast_forward import (
    EagerCaptureBackend,
    FastForward,
    fast_forward,
)
from terradiff.nets.precision import inference_autocast
from terradiff.nets.unet import SMALL_64, UNet

VARIANTS = ("eager", "graph", "compile", "compile+graph")
PRECISIONS = ("fp32", "bf16")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs (capture/compile)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--variants", default=None, help="comma list (default: all on CUDA)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument(
        "--compile-precisions", default="fp32", help="precisions 'compile' runs in (~1 min each)"
    )
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (CUDA inductor, CPU eager)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="start no variant after S seconds but the first (0: no budget)",
    )
    parser.add_argument(
        "--cudnn-benchmark",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.backends.cudnn.benchmark (auto: on with CUDA, as the terradiff command)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: batch 1 (CUDA 8), 32 px, 2 steps"
    )
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.quick:
        args.batch, args.image_size, args.steps, args.repeats = (8 if cuda else 1), 32, 2, 1
    default_variants = "eager,graph,compile,compile+graph" if cuda else "eager,graph"
    args.variants = _names(args.variants or default_variants, VARIANTS, parser)
    args.precisions = _names(args.precisions, PRECISIONS, parser)
    args.compile_precisions = _names(args.compile_precisions, PRECISIONS, parser)
    args.compile_backend = args.compile_backend or ("inductor" if cuda else "eager")
    return args


def _names(text: str, allowed: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in allowed:
            parser.error(f"unknown name {name!r}; use {', '.join(allowed)}")
    return names


def build_net(image_size: int, device: torch.device) -> UNet:
    """A fresh SMALL_64 UNet (the same weights every time) in eval mode on ``device``."""
    torch.manual_seed(0)
    return UNet(3, **{**SMALL_64, "image_size": image_size}).to(device).eval()


def make_model_fn(
    variant: str, net: UNet, device: torch.device, compile_backend: str
) -> tuple[Callable[[Tensor, Tensor, Tensor | None], Tensor], Callable[..., Tensor]]:
    """The sampler's ``model_fn`` of ``variant`` (see the module docstring) and the forward it
    calls (a :class:`FastForward` for ``graph``)."""
    if variant == "eager":
        forward: Callable[..., Tensor] = fast_forward(net, "off")
    elif variant == "compile":
        forward = fast_forward(net, "compile", compile_backend=compile_backend)
    else:  # graph, compile+graph: on CPU the stand-in capture
        backend = None if device.type == "cuda" else EagerCaptureBackend()
        forward = fast_forward(net, variant, backend=backend, compile_backend=compile_backend)

    def model_fn(x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        return forward(x_t, t).float()

    return model_fn, forward


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context ``sample.precision`` runs the net in (``fp32`` or ``bf16``): bf16 is autocast
    without its weight cache (CUDA graphs need it off), fp32 no autocast
    (:func:`terradiff.nets.precision.inference_autocast`, what ``terradiff sample`` uses)."""
    return inference_autocast(precision, device)


def sample_once(
    model_fn: Callable[..., Tensor],
    schedule: NoiseSchedule,
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
) -> Tensor:
    """One DDIM run of ``args.batch`` images from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=generator)
    with torch.no_grad(), precision_context(precision, device):
        out = ddim_sample(model_fn, schedule, x_T.to(device), steps=args.steps, generator=generator)
    return out.sample


def measure(
    variant: str,
    precision: str,
    schedule: NoiseSchedule,
    args: argparse.Namespace,
    device: torch.device,
    reference: Tensor | None,
) -> tuple[dict[str, Any], Tensor]:
    """Warm up, time and check one (precision, variant); its row and its samples."""
    net = build_net(args.image_size, device)
    model_fn, forward = make_model_fn(variant, net, device, args.compile_backend)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    samples = sample_once(model_fn, schedule, args, device, precision)
    for _ in range(args.warmup - 1):
        samples = sample_once(model_fn, schedule, args, device, precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    warmup_s = time.perf_counter() - start
    times = [
        timed(device, lambda: sample_once(model_fn, schedule, args, device, precision))
        for _ in range(args.repeats)
    ]
    median = statistics.median(times)
    row: dict[str, Any] = {
        "variant": variant,
        "precision": precision,
        "batch": args.batch,
        "image_size": args.image_size,
        "ddim_steps": args.steps,
        "times_s": [round(t, 5) for t in times],
        "median_s": round(median, 5),
        "images_per_s": round(args.batch / median, 2),
        "warmup_s": round(warmup_s, 2),
        "peak_mib": (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else None
        ),
        "max_abs_diff_vs_eager": (
            None if reference is None else float((samples - reference).abs().max())
        ),
    }
    if isinstance(forward, FastForward):
        row["graphs_captured"] = len(forward.graphed.captures)
    return row, samples.detach()


def with_speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``speedup_vs_eager``: its images/s over eager's of the same precision."""
    eager = {r["precision"]: r["images_per_s"] for r in rows if r["variant"] == "eager"}
    for row in rows:
        base = eager.get(row["precision"])
        row["speedup_vs_eager"] = round(row["images_per_s"] / base, 3) if base else None
    return rows


def plan(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(precision, variant) in run order: per precision eager first (the reference), then the
    graph; the compiled ones last (a minute of compilation each: a budget cuts them first)."""
    compiled = [v for v in args.variants if "compile" in v]
    for precision in args.precisions:
        for variant in args.variants:
            if variant not in compiled:
                yield precision, variant
    for variant in compiled:
        for precision in args.precisions:
            if precision in args.compile_precisions:
                yield precision, variant


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    set_cudnn_benchmark(args.cudnn_benchmark, device)
    schedule = NoiseSchedule.create("linear", 1000)
    results: dict[str, Any] = {
        "benchmark": "bench_sampling",
        "command": " ".join(["python", "benchmarks/bench_sampling.py", *(argv or sys.argv[1:])]),
        "device": args.device,
        "machine": {"torch": torch.__version__, **gpu_record(device)},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",) and not callable(v)},
        "rows": [],
        "skipped": [],
        "failed": {},
    }

    def write_json() -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.json, json.dumps(results, indent=2, default=str) + "\n")

    start = time.perf_counter()
    references: dict[str, Tensor] = {}
    for precision, variant in plan(args):
        name = f"{variant}/{precision}"
        if args.budget_s and results["rows"] and time.perf_counter() - start > args.budget_s:
            results["skipped"].append(f"{name} (budget {args.budget_s:g} s spent)")
            print(f"skip {name}: budget spent", flush=True)
            continue
        if device.type == "cuda":
            set_tf32(False)
        try:
            row, samples = measure(
                variant, precision, schedule, args, device, references.get(precision)
            )
        except Exception as error:  # a failing variant is reported, the others still run
            results["failed"][name] = f"{type(error).__name__}: {error}"
            print(f"FAILED {name}: {type(error).__name__}: {error}", flush=True)
            continue
        if variant == "eager":
            references[precision] = samples
        results["rows"].append(row)
        with_speedups(results["rows"])
        print(
            f"{name:>14}: {row['images_per_s']:9.2f} images/s (DDIM-{args.steps}, batch "
            f"{args.batch}), x{row['speedup_vs_eager'] or float('nan'):.2f} vs eager, warm-up "
            f"{row['warmup_s']:.1f} s, max |diff| {row['max_abs_diff_vs_eager']}",
            flush=True,
        )
        write_json()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    write_json()
    return results


if __name__ == "__main__":
    main()
