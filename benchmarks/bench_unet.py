"""Speed of terradiff's UNet against diffusers' UNet2DModel at matched parameter count (CPU, CUDA).

Measures, in one run, for each precision (fp32, bf16 autocast):

* a training step: forward + MSE loss + backward + AdamW step, at ``--batch`` images;
* 20-step DDIM sampling (``terradiff.diffusion.samplers.ddim_sample``: 20 forwards at ``--batch``
  images under ``no_grad``), the same sampler driving both nets;
* for terradiff only, seconds per image of 20-step DDIM vs 1000-step DDPM; the 1000-step figure is
  extrapolated from a measured ``--ddpm-steps``-step DDPM run (a schedule with that many steps,
  ``ddpm_sample``) scaled by ``1000 / ddpm_steps`` (the UNet is >99% of sampling time).

Competitors (all at 64x64, 3 bands, the same batch):

* ``terradiff``: :data:`terradiff.nets.unet.SMALL_64` -- 64/128/128/256 channels, 2 ResBlocks
  per level, attention at 16x16 and 8x8 + middle, 64-channel heads, FiLM scale-shift.
* ``diffusers-default``: ``UNet2DModel(block_out_channels=(64, 128, 128, 256))`` with everything
  else at diffusers' defaults (attention in the 2nd-4th blocks, i.e. at 32x32, 16x16 and 8x8 + mid;
  ``attention_head_dim=8``; additive time embedding). Same channels as ours, parameters within
  a few percent -- the "diffusers out of the box" comparison.
* ``diffusers-matched``: the same channels with *our* layout (attention only at 16x16 and 8x8,
  64-channel heads, ``resnet_time_scale_shift="scale_shift"``): the same architecture and
  parameter count to within 0.01%, so this ratio is the implementation alone.
* ``NAME-compiled`` for each NAME in ``--compile`` (default on CUDA: terradiff and
  diffusers-matched; none on CPU): a copy of that net under ``torch.compile`` (default mode,
  static shapes), timed like the others; its compile time (the first call of each new shape,
  precision and train/eval graph) is reported apart from the timed steps. ``NAME@MODE`` compiles
  in ``torch.compile``'s ``MODE`` instead (``NAME-compiled-MODE``; ``reduce-overhead``: the
  compiled forward and backward replayed as CUDA graphs, which removes the host's launch time
  from a step the GPU waits on).
* ``terradiff-fast`` (in ``--compile`` only): terradiff as its commands run it on CUDA,
  whatever ``--channels-last`` says -- the train step as the Trainer's defaults run it
  (channels-last, the blocks compiled in place: ``train.compile``), DDIM as ``sample --fast
  compile+graph`` runs a checkpoint (contiguous weights, the inference layout default, NCHW on
  CUDA; the compiled blocks inside one CUDA graph per shape).

Settings, identical on both sides: ``torch.set_num_threads(--threads)``; cuDNN's autotuner
(``torch.backends.cudnn.benchmark``, ``--cudnn-benchmark``: on with CUDA by default, as the
``terradiff`` command sets it; the H200 figures of 2026-11-30 ran with it off); activations in
``torch.channels_last`` on CPU (terradiff does it by default on CPU; diffusers gets
``model.to(memory_format=torch.channels_last)`` and channels-last inputs), each library's default
layout on CUDA (``--channels-last``); "bf16" means ``torch.autocast(device, dtype=torch.bfloat16)``
around the forward (and the loss), on CUDA without autocast's weight cache (as terradiff's
inference runs it there: a CUDA graph needs it off), fp32 weights and optimizer; on CUDA "fp32"
has TF32 off. Each timing is the median of ``--repeats`` runs after ``--warmup`` runs, and the
competitors are interleaved (order reversed every repeat) so that load from other processes hits
all of them alike. On CUDA each timed run is bracketed by CUDA events after a synchronize.

``--device cuda`` (or ``--flops``, ``--compile``, several ``--batches``) adds, per (batch,
precision, train/DDIM, competitor): images/s, TFLOP/s and share of the bf16 (and fp32) matmul peak
measured in the same run (FLOPs counted by ``torch.utils.flop_counter`` on one forward; a train
step = 3x forward), peak CUDA memory and compile time, a side-by-side summary with ratios against
``diffusers-matched-compiled``, and a ``rows`` list in the JSON (see ``unet_bench_common.py``).

Run:  ``.venv/bin/python benchmarks/bench_unet.py`` (about 15 min on 2 cores);
      ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python ...`` for jemalloc;
      ``--quick`` for a smoke run (under a minute);
      ``bash benchmarks/gpu_session.sh`` on a lent GPU (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unet_bench_common import (
    forward_flops_per_image,
    gpu_record,
    make_row,
    matmul_peak_tflops,
    print_summary,
    report_rows,
    section,
    set_cudnn_benchmark,
    set_tf32,
)
from unet_bench_nets import (
    Competitor,
    allocator,
    build_competitors,
    compiled_copies,
    cpu_model,
    ddim_run,
    ddpm_run,
    interleaved,
    summary,
    train_inputs,
    train_step,
    warm_up,
)

from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.io import atomic_write_text
from terradiff.provenance import provenance_record

DEFAULT_COMPILED = ("terradiff", "diffusers-matched")

# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--batches", default=None, help="comma list of batch sizes (default: --batch alone)"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps per net")
    parser.add_argument("--sample-repeats", type=int, default=3, help="timed DDIM runs per net")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ddim-steps", type=int, default=20)
    parser.add_argument(
        "--ddpm-steps",
        type=int,
        default=50,
        help="steps of the measured DDPM run that the 1000-step figure is extrapolated from "
        "(0: skip that part)",
    )
    parser.add_argument(
        "--modes", default=None, help="comma list of fp32, bf16 (default fp32,bf16; CUDA bf16,fp32)"
    )
    parser.add_argument(
        "--diffusers", default="default,matched", help="comma list of diffusers variants"
    )
    parser.add_argument(
        "--compile",
        default="auto",
        help="comma list of competitors that also run under torch.compile (auto: "
        f"{','.join(DEFAULT_COMPILED)} on CUDA, none on CPU; 'none' for none); NAME@MODE in "
        "torch.compile's MODE (e.g. terradiff@reduce-overhead)",
    )
    parser.add_argument(
        "--compile-modes", default=None, help="precisions the compiled ones run in (default: all)"
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="count FLOPs and measure the matmul peak on CPU too (always on CUDA)",
    )
    parser.add_argument(
        "--peak-size", type=int, default=None, help="matmul size of the peak (CUDA 8192, CPU 1024)"
    )
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument(
        "--cudnn-benchmark",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.backends.cudnn.benchmark for every competitor (auto: on with CUDA, as the "
        "terradiff command sets it, terradiff.runtime.enable_cudnn_autotuner)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="skip the (precision, batch) sections that would start after this many seconds",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batch 2 (CUDA 16), 1 repeat, 3 DDIM steps, 4 DDPM steps",
    )
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.quick:
        args.batch, args.repeats, args.sample_repeats = (16 if cuda else 2), 1, 1
        args.ddim_steps, args.ddpm_steps = 3, min(args.ddpm_steps, 4)
        if cuda:
            args.batches, args.repeats, args.peak_size = None, 2, args.peak_size or 4096
    args.batches = _ints(args.batches) if args.batches else [args.batch]
    args.modes = _names(args.modes or ("bf16,fp32" if cuda else "fp32,bf16"))
    for mode in args.modes:
        if mode not in ("fp32", "bf16"):
            parser.error(f"unknown mode {mode!r}; use fp32 and/or bf16")
    args.compile_modes = _names(args.compile_modes) if args.compile_modes else args.modes
    if args.compile == "auto":
        args.compile = list(DEFAULT_COMPILED) if cuda else []
    else:
        args.compile = [n for n in _names(args.compile) if n != "none"]
    args.variants = _names(args.diffusers)
    # a compiled copy of a diffusers variant that is not run is dropped (auto asks for matched)
    args.compile = [
        n
        for n in args.compile
        if not (n.startswith("diffusers-") and n.partition("@")[0][10:] not in args.variants)
    ]
    args.extended = cuda or args.flops or bool(args.compile) or len(args.batches) > 1
    args.peak_size = args.peak_size or (8192 if cuda else 1024)
    return args


def installed_diffusers(variants: list[str]) -> str:
    """diffusers' version; without diffusers only terradiff can run (``--diffusers ''``)."""
    try:
        import diffusers
    except ImportError:
        if variants:
            raise
        return "not installed"
    return diffusers.__version__


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in _names(text)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    modes, batches = args.modes, args.batches
    single = len(batches) == 1
    torch.set_num_threads(args.threads)
    if cuda:
        set_tf32(False)  # fp32 means fp32 (bf16 autocast is not affected)
    # one setting for all competitors: a user of either library may set it
    set_cudnn_benchmark(args.cudnn_benchmark, device)
    diffusers_version = installed_diffusers(args.variants)

    shown = sys.argv if argv is None else [sys.argv[0], *argv]
    command = " ".join([Path(sys.executable).name, *shown])
    where = "CUDA" if cuda else "CPU"
    print(f"terradiff UNet vs diffusers UNet2DModel -- {where} speed at matched parameter count")
    print(f"command   : {command}")
    print(f"torch     : {torch.__version__} (diffusers {diffusers_version})")
    print(f"threads   : {torch.get_num_threads()} (os.cpu_count()={os.cpu_count()})")
    print(f"cpu       : {cpu_model()}")
    print(f"allocator : {allocator()}")
    gpu = gpu_record(device)
    if gpu:
        print(
            f"gpu       : {gpu['name']}, {gpu['memory_gib']} GiB, {gpu['multiprocessors']} SMs, "
            f"CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}; TF32 off; cuDNN autotuner "
            f"{'on' if torch.backends.cudnn.benchmark else 'off'} for every competitor"
        )
    batch_text = ", ".join(str(b) for b in batches)
    print(
        f"workload  : batch {batch_text}, {args.image_size}x{args.image_size}, 3 bands; "
        f"median of {args.repeats} train steps / {args.sample_repeats} sampling runs after "
        f"{args.warmup} warm-up; competitors interleaved"
        + ("  [--quick smoke run: numbers are not meaningful]" if args.quick else "")
    )

    comps = build_competitors(args.variants, args.image_size, device, args.channels_last)
    ours = comps[0]
    extra = compiled_copies(comps, args.compile)
    print("\nnets:")
    width = max(18, *(len(c.name) + 1 for c in comps + extra))
    for comp in comps + extra:
        rel = comp.params / ours.params - 1
        flag = "" if abs(rel) <= 0.10 else "  WARNING: not within 10% of terradiff"
        print(f"  {comp.name:{width}s} {comp.params:>12,d} params ({rel:+.1%}){flag}")
        print(f"  {'':{width}s} {comp.description}")
    comps += extra

    results: dict[str, Any] = {
        "provenance": provenance_record(),
        "torch": torch.__version__,
        "diffusers": diffusers_version,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "allocator": allocator(),
        **({"batch": batches[0]} if single else {"batches": batches}),
        "image_size": args.image_size,
        "quick": args.quick,
        "params": {c.name: c.params for c in comps},
        "train_step_s": {},
        "ddim_s": {},
        "per_image_s": {},
    }
    if not single:  # keyed by precision alone, these would mix batches: see "rows"
        del results["train_step_s"], results["ddim_s"]
    flops: dict[str, int] = {}
    peaks: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    if args.extended:
        flops, peaks = measure_flops_and_peaks(comps, args, device, results)
        results.update(
            {
                "device": device.type,
                "command": command,
                "machine": {
                    "gpu": gpu,
                    "cpu": cpu_model(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "diffusers": diffusers_version,
                },
                "settings": {
                    "batches": batches,
                    "modes": modes,
                    "image_size": args.image_size,
                    "repeats": args.repeats,
                    "sample_repeats": args.sample_repeats,
                    "warmup": args.warmup,
                    "ddim_steps": args.ddim_steps,
                    "compiled": [c.name for c in extra],
                    "compile_modes": args.compile_modes,
                    "compile": "torch.compile(net, dynamic=False), default mode unless the "
                    "name ends in another",
                    "channels_last": args.channels_last,
                    "tf32": False if cuda else None,
                    "cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "optimizer": "torch.optim.AdamW(lr=1e-4), defaults",
                    "timing": "CUDA events after a synchronize" if cuda else "perf_counter",
                },
                "descriptions": {c.name: c.description for c in comps},
                "rows": rows,
                "skipped": [],
                "failed": {},
            }
        )

    def write_json() -> None:
        if args.json:
            if args.extended:
                results["failed"] = {c.name: c.failed for c in comps if c.failed}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.json, json.dumps(results, indent=2))

    g = torch.Generator().manual_seed(0)
    data: dict[int, tuple[Tensor, Tensor]] = {}
    schedule = NoiseSchedule.create("linear", 1000)
    started = time.perf_counter()
    for mode in modes:
        for batch in batches:
            if args.budget_s and time.perf_counter() - started > args.budget_s:
                note = f"{mode} batch {batch}: skipped, past --budget-s {args.budget_s:.0f} s"
                print(f"\n== {note}")
                results.setdefault("skipped", []).append(note)
                continue
            if batch not in data:  # the same images for every precision
                x0 = torch.rand(batch, 3, args.image_size, args.image_size, generator=g) * 2 - 1
                data[batch] = x0, torch.randn(x0.shape, generator=g).to(device)
            x0, x_noise = data[batch]
            live = [
                c for c in comps if not c.failed and (not c.compiled or mode in args.compile_modes)
            ]
            run_section(
                live, mode, batch, x0, x_noise, schedule, args, results, flops, peaks, write_json
            )
            write_json()  # after every section, so a run cut short keeps what it measured

    if single:
        print_legacy_summary(results, comps, modes, args.ddim_steps)
    if args.extended:
        print_summary(rows, args.ddim_steps, peaks)
        failed = [c for c in comps if c.failed]
        for comp in failed:
            print(f"\n  {comp.name} failed: {comp.failed}")
    write_json()
    if args.json:
        print(f"\nwrote {args.json}")
    return results


def measure_flops_and_peaks(
    comps: list[Competitor], args: argparse.Namespace, device: torch.device, results: dict
) -> tuple[dict[str, int], dict[str, float]]:
    """FLOPs of one forward per image of each net, and the bf16 (and fp32) matmul peaks."""
    flops: dict[str, int] = {}
    with section("FLOPs per image (one forward, batch 1; torch.utils.flop_counter)"):
        for comp in comps:
            if comp.base not in flops:
                comp.net.eval()
                flops[comp.base] = forward_flops_per_image(comp, 3, args.image_size, device)
            flops[comp.name] = flops[comp.base]
            print(f"   {comp.name:28s} {flops[comp.name] / 1e9:8.2f} GFLOP")
    peaks: dict[str, float] = {}
    peak_runs: dict[str, list[float]] = {}
    size = args.peak_size
    with section(f"matmul peak ({size}^3, median of {10 if device.type == 'cuda' else 3})"):
        for mode in ["bf16", *(["fp32"] if "fp32" in args.modes else [])]:
            dtype = torch.bfloat16 if mode == "bf16" else torch.float32
            repeats = 10 if device.type == "cuda" else 3
            peak_runs[mode] = matmul_peak_tflops(device, dtype, size, repeats=repeats, warmup=2)
            peaks[mode] = statistics.median(peak_runs[mode])
            print(f"   {mode}: {peaks[mode]:8.1f} TFLOP/s")
    results["flops_per_image_forward"] = flops
    results["flop_note"] = (
        "torch.utils.flop_counter.FlopCounterMode over one eager forward at batch 1 (fp32, "
        "attention on the math backend): matrix work only, 2 FLOPs per multiply-add; a train "
        f"step counts 3x forward, a DDIM-{args.ddim_steps} run {args.ddim_steps}x forward"
    )
    results["peak_tflops"] = peaks
    results["peak_tflops_runs"] = peak_runs
    results["peak_matmul_size"] = size
    return flops, peaks


def run_section(
    comps: list[Competitor],
    mode: str,
    batch: int,
    x0: Tensor,
    x_noise: Tensor,
    schedule: NoiseSchedule,
    args: argparse.Namespace,
    results: dict[str, Any],
    flops: dict[str, int],
    peaks: dict[str, float],
    save: Callable[[], None] | None = None,
) -> None:
    """Train step, DDIM and (terradiff) DDPM at one precision and batch; fills ``results``
    and calls ``save`` once the train steps are in (a run cut short in DDIM keeps them)."""
    device = x_noise.device
    single = len(args.batches) == 1
    inputs = train_inputs(x0, device)

    def add_rows(kind: str, times: dict, first: dict, memory: dict) -> None:
        if not args.extended:
            return
        for comp in comps:
            if comp.name not in times:
                continue
            results["rows"].append(
                make_row(
                    batch=batch,
                    mode=mode,
                    kind=kind,
                    competitor=comp.name,
                    times_s=times[comp.name],
                    forward_flops=flops.get(comp.name),
                    ddim_steps=args.ddim_steps,
                    peaks_tflops=peaks,
                    peak_mem_bytes=memory.get(comp.name),
                    compile_s=first.get(comp.name) if comp.compiled else None,
                )
            )
        report_rows(
            [
                r
                for r in results["rows"]
                if (r["batch"], r["mode"], r["kind"]) == (batch, mode, kind)
            ]
        )

    with section(f"{mode}: training step (forward + backward + AdamW), batch {batch}"):
        fn = lambda c: train_step(c, inputs, mode, device)  # noqa: E731
        first, memory = warm_up(comps, fn, args.warmup, device, training=True)
        live = [c for c in comps if not c.failed]
        times = interleaved(live, fn, args.repeats, 0)
        if single:
            results["train_step_s"][mode] = times
        report(live, times)
        add_rows("train", times, first, memory)
        if save is not None:
            save()
    with section(
        f"{mode}: {args.ddim_steps}-step DDIM sampling ({args.ddim_steps} forwards, "
        f"batch {batch}, no_grad)"
    ):
        # warm-up: a 1-step run (a whole sampling run each is wasteful)
        warm = lambda c: ddim_run(c, x_noise, mode, 1, schedule)  # noqa: E731
        first, memory = warm_up(live, warm, 1, device, training=False)
        live = [c for c in live if not c.failed]
        times = interleaved(
            live,
            lambda c: ddim_run(c, x_noise, mode, args.ddim_steps, schedule),
            args.sample_repeats,
            0,
        )
        if single:
            results["ddim_s"][mode] = times
        report(live, times)
        add_rows("ddim", times, first, memory)
    if args.ddpm_steps <= 0:
        return
    ours = comps[0]
    with section(f"{mode}: terradiff seconds per image, DDIM vs DDPM"):
        ddpm = ddpm_run(ours, x_noise, mode, args.ddpm_steps)
        per_forward = ddpm / args.ddpm_steps
        ddim_img = statistics.median(times[ours.name]) / batch
        ddpm_img = per_forward * 1000 / batch
        results["per_image_s"][mode if single else f"{mode}/b{batch}"] = {
            f"ddim_{args.ddim_steps}": ddim_img,
            "ddpm_1000_extrapolated": ddpm_img,
            "ddpm_measured_steps": args.ddpm_steps,
            "ddpm_measured_s": ddpm,
        }
        print(f"   DDIM {args.ddim_steps:4d} steps : {ddim_img:8.3f} s/image (measured)")
        print(
            f"   DDPM 1000 steps : {ddpm_img:8.3f} s/image (EXTRAPOLATED: a measured "
            f"{args.ddpm_steps}-step DDPM run, {ddpm:.2f} s at batch {batch}, "
            f"x 1000/{args.ddpm_steps})"
        )
        print(f"   ratio           : {ddpm_img / ddim_img:8.1f}x")


def print_legacy_summary(
    results: dict[str, Any], comps: list[Competitor], modes: list[str], ddim_steps: int
) -> None:
    """Median seconds and diffusers / terradiff ratios (the CPU summary, one batch)."""
    ours = comps[0]
    print("\nsummary (median seconds; ratio = diffusers / terradiff, > 1 means terradiff faster)")
    for key, label in (("train_step_s", "train step"), ("ddim_s", f"{ddim_steps}-step DDIM")):
        for mode in modes:
            times = results[key].get(mode)
            if not times:
                continue
            base = statistics.median(times[ours.name])
            cells = [f"terradiff {base:.3f}"]
            for comp in comps[1:]:
                if comp.name in times:
                    med = statistics.median(times[comp.name])
                    cells.append(f"{comp.name} {med:.3f} ({med / base:.2f}x)")
            print(f"  {label:13s} {mode:4s}: " + ", ".join(cells))


def report(comps: list[Competitor], times: dict[str, list[float]]) -> None:
    """Print medians and the diffusers/terradiff ratio."""
    base = statistics.median(times[comps[0].name])
    width = max(18, *(len(c.name) + 1 for c in comps))
    for comp in comps:
        med = statistics.median(times[comp.name])
        who = "diffusers" if comp.diffusers else comp.name  # time ratio vs eager terradiff
        ratio = "" if comp is comps[0] else f"   ratio {who}/terradiff = {med / base:.2f}x"
        print(f"   {comp.name:{width}s} {summary(times[comp.name])}{ratio}", flush=True)


if __name__ == "__main__":
    main()
