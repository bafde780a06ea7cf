"""Memory layout of terradiff's ``SMALL_64`` train step: NCHW against channels-last (issue 16).

Issue 16 item 2 asks for channels-last "if measured faster". On CUDA the UNet runs NCHW by
default (:func:`terradiff.nets.memory.use_channels_last`), and the H200 profile of the compiled
train step (``benchmarks/results/profile_h200.txt``) spends about a tenth of its GPU time in
cuDNN's ``nchwToNhwc`` / ``nhwcToNchw`` transposes: cuDNN's bf16 convolutions want NHWC, so each
NCHW convolution converts its input and output. This measures whether running the activations
(and weights) channels-last removes that cost, side by side in one run:

* **eager**: both layouts at each batch, timed interleaved (order reversed every repeat);
* **compiled**: ``torch.compile(net, dynamic=False)`` of the layouts and batches asked for, one
  section at a time, each started only while the run is under ``--budget-s`` seconds (a compile
  takes about 70 s on an H200), its compile + first-call time recorded.

Everything is the bf16-autocast train step of ``bench_unet.py`` (forward, MSE on eps, backward,
AdamW) on fixed random inputs; images/s and the share of the bf16 matmul peak measured in the
same run. The JSON (``--json``) is rewritten after every section, so a run cut short keeps what
it measured.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_layout.py --quick               # CPU smoke run, seconds
    python benchmarks/bench_layout.py --device cuda --json out.json   # eager + compiled, ~3 min
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unet_bench_common import (
    forward_flops_per_image,
    gpu_record,
    matmul_peak_tflops,
    set_tf32,
    share_of_peak,
    work_flops_per_image,
)
from unet_bench_nets import (
    Competitor,
    build_competitors,
    compiled_copies,
    interleaved,
    train_inputs,
    train_step,
    warm_up,
)

from terradiff.io import atomic_write_text
from terradiff.provenance import provenance_record

LAYOUTS = {"nchw": "off", "channels_last": "on"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batches", default="128,256", help="comma list of batch sizes")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--compiled",
        default="channels_last:128,channels_last:256,nchw:256",
        help="comma list of LAYOUT:BATCH compiled sections, in order ('' for none)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=100.0, help="no compiled section starts after this"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: batch 2, 32 px")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.quick:
        args.batches, args.image_size, args.warmup, args.repeats = "2", 32, 1, 2
        args.compiled = ""
    args.batch_list = [int(b) for b in args.batches.split(",") if b]
    args.compiled_list = []
    for item in filter(None, args.compiled.split(",")):
        layout, _, batch = item.partition(":")
        if layout not in LAYOUTS or not batch.isdigit():
            parser.error(
                f"--compiled item {item!r}: use LAYOUT:BATCH, LAYOUT one of {list(LAYOUTS)}"
            )
        args.compiled_list.append((layout, int(batch)))
    return args


def layout_competitor(layout: str, image_size: int, device: torch.device) -> Competitor:
    """terradiff SMALL_64 (seed 0) with its activations and weights in ``layout``."""
    (comp,) = build_competitors([], image_size, device, LAYOUTS[layout])
    comp.name = f"terradiff-{layout}"
    if layout == "channels_last":
        comp.net.to(memory_format=torch.channels_last)  # weights too, as set_channels_last does
    return comp


def images_per_s(batch: int, times: list[float]) -> float:
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    if device.type == "cuda":
        set_tf32(False)
    peak = statistics.median(
        matmul_peak_tflops(device, torch.bfloat16, 8192 if device.type == "cuda" else 512)
    )
    nets = {layout: layout_competitor(layout, args.image_size, device) for layout in LAYOUTS}
    forward = forward_flops_per_image(nets["nchw"], 3, args.image_size, device)
    train_flops = work_flops_per_image(forward, "train", 0)
    result: dict[str, Any] = {
        "provenance": provenance_record(),
        "torch": torch.__version__,
        "machine": gpu_record(device) if device.type == "cuda" else {"device": "cpu"},
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "image_size": args.image_size,
        "bf16_peak_tflops": peak,
        "forward_gflop_per_image": forward / 1e9,
        "rows": [],
    }

    def save() -> None:
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")

    def add(name: str, batch: int, compiled: bool, times: list[float], first: float | None) -> None:
        ips = images_per_s(batch, times)
        row = {
            "net": name,
            "batch": batch,
            "compiled": compiled,
            "images_per_s": ips,
            "share_of_bf16_peak": share_of_peak(ips, train_flops, peak),
            "step_s": times,
            "first_call_s": first,
        }
        result["rows"].append(row)
        print(
            f"  {name:24s} batch {batch:4d} {'compiled' if compiled else 'eager':8s} "
            f"{ips:9,.1f} images/s  {row['share_of_bf16_peak']:6.1%} of bf16 peak"
            + (f"  compile+1st call {first:.1f} s" if compiled and first is not None else ""),
            flush=True,
        )
        save()

    print(f"bf16 matmul peak {peak:.1f} TFLOP/s; {forward / 1e9:.2f} GFLOP per image forward")
    for batch in args.batch_list:
        x0 = torch.randn(
            batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)
        )
        inputs = train_inputs(x0, device)
        fn = partial(train_step, inputs=inputs, mode="bf16", device=device)
        comps = list(nets.values())
        first, _ = warm_up(comps, fn, args.warmup, device, training=True)
        times = interleaved(comps, fn, args.repeats, 0)
        for comp in comps:
            add(comp.name, batch, False, times[comp.name], first.get(comp.name))
    for layout, batch in args.compiled_list:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            print(f"  compiled {layout} batch {batch}: skipped ({elapsed:.0f} s > --budget-s)")
            continue
        (comp,) = compiled_copies([nets[layout]], [nets[layout].name])
        x0 = torch.randn(
            batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)
        )
        inputs = train_inputs(x0, device)
        fn = partial(train_step, inputs=inputs, mode="bf16", device=device)
        first, _ = warm_up([comp], fn, args.warmup, device, training=True)
        if comp.failed:
            continue
        times = interleaved([comp], fn, args.repeats, 0)
        add(comp.name, batch, True, times[comp.name], first.get(comp.name))
    print(f"done after {time.perf_counter() - started:.0f} s")
    return result


if __name__ == "__main__":
    main()
