"""Layout and compile style of terradiff's ``SMALL_64`` train step: NCHW against channels-last,
whole-net against regional compilation (issue 16 item 2).

Issue 16 item 2 asks for channels-last "if measured faster". On CUDA the UNet runs NCHW by
default (:func:`terradiff.nets.memory.use_channels_last`), and the H200 profile of the compiled
train step (``benchmarks/results/profile_h200.txt``) spends about a tenth of its GPU time in
cuDNN's ``nchwToNhwc`` / ``nhwcToNchw`` transposes: cuDNN's bf16 convolutions want NHWC, so each
NCHW convolution converts its input and output. This measures whether running the activations
(and weights) channels-last removes that cost, side by side in one run:

* **eager**: both layouts at each batch, timed interleaved (order reversed every repeat);
* **compiled**: the layouts, batches and compile styles asked for, one section at a time, each
  started only while the run is under ``--budget-s`` seconds (a compile takes 70-80 s on an
  H200), its compile + first-call time recorded. Style ``whole`` is ``torch.compile(net,
  dynamic=False)`` (as ``bench_unet.py``); ``regions`` compiles each ResBlock and AttentionBlock
  in place (:func:`terradiff.nets.compile.compile_regions`), as ``terradiff train`` does, so the
  Trainer's choice can be checked against the whole-net compile in one run.

Each eager layout runs with cuDNN's heuristic algorithm choice and with its autotuner
(``torch.backends.cudnn.benchmark``, what the ``terradiff`` command turns on:
:func:`terradiff.runtime.enable_cudnn_autotuner`), interleaved (``--cudnn``); a compiled section
runs with the choice its item names (``:heuristic`` or ``:autotune``; default autotune on CUDA).

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
import copy
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
    allow_many_recompiles,
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
    interleaved,
    train_inputs,
    train_step,
    warm_up,
)

from terradiff.io import atomic_write_text
from terradiff.nets.compile import compile_regions
from terradiff.provenance import provenance_record

LAYOUTS = {"nchw": "off", "channels_last": "on"}
#: How a compiled section compiles: the whole net (``torch.compile(net)``, as ``bench_unet.py``),
#: or each ResBlock/AttentionBlock in place (:func:`terradiff.nets.compile.compile_regions`, what
#: ``terradiff train`` does with ``train.compile``).
STYLES = ("whole", "regions")
#: The compiled sections of a full run: NCHW whole and regional (the Trainer's way) at batch 128,
#: then channels-last whole, so the two questions of the H200 profile are answered in one run.
DEFAULT_COMPILED = "nchw:128,nchw:128:regions,channels_last:128"
#: cuDNN's algorithm choice: ``torch.backends.cudnn.benchmark`` off (heuristic) or on (autotune).
CUDNN = {"heuristic": False, "autotune": True}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batches", default="128,256", help="comma list of batch sizes")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--compiled",
        default=None,
        help="comma list of LAYOUT:BATCH[:STYLE][:CUDNN] compiled sections, in order ('' for "
        f"none; default {DEFAULT_COMPILED}, none with --quick); STYLE one of "
        f"{', '.join(STYLES)} (default whole), CUDNN one of {', '.join(CUDNN)} (default "
        "autotune on CUDA, heuristic on CPU)",
    )
    parser.add_argument(
        "--cudnn",
        default=None,
        help="comma list of the eager sections' cuDNN choices (default heuristic,autotune on "
        "CUDA, heuristic on CPU)",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (tests: eager)"
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
    if args.compiled is None:
        args.compiled = "" if args.quick else DEFAULT_COMPILED
    args.batch_list = [int(b) for b in args.batches.split(",") if b]
    cuda = args.device == "cuda"
    default_cudnn = "autotune" if cuda else "heuristic"
    args.cudnn_list = [c for c in (args.cudnn or f"heuristic,{default_cudnn}").split(",") if c]
    args.cudnn_list = list(dict.fromkeys(args.cudnn_list))
    if not args.cudnn_list or any(c not in CUDNN for c in args.cudnn_list):
        parser.error(f"--cudnn {args.cudnn!r}: a comma list of {', '.join(CUDNN)}")
    args.compiled_list = []
    for item in filter(None, args.compiled.split(",")):
        layout, batch, *options = item.split(":")
        styles = [o for o in options if o in STYLES]
        choices = [o for o in options if o in CUDNN]
        if (
            layout not in LAYOUTS
            or not batch.isdigit()
            or len(styles) + len(choices) != len(options)
            or len(styles) > 1
            or len(choices) > 1
        ):
            parser.error(
                f"--compiled item {item!r}: use LAYOUT:BATCH[:STYLE][:CUDNN], LAYOUT one of "
                f"{list(LAYOUTS)}, STYLE one of {list(STYLES)}, CUDNN one of {list(CUDNN)}"
            )
        style = styles[0] if styles else "whole"
        args.compiled_list.append((layout, int(batch), style, (choices or [default_cudnn])[0]))
    return args


def layout_competitor(
    layout: str, image_size: int, device: torch.device, cudnn: str | None = None
) -> Competitor:
    """terradiff SMALL_64 (seed 0) with its activations and weights in ``layout``; with
    ``cudnn`` (a :data:`CUDNN` choice) its calls set cuDNN's algorithm choice, and an
    autotuned one is named ``...-autotuned``."""
    (comp,) = build_competitors([], image_size, device, LAYOUTS[layout])
    comp.name = f"terradiff-{layout}" + ("-autotuned" if cudnn == "autotune" else "")
    comp.cudnn_benchmark = None if cudnn is None else CUDNN[cudnn]
    if layout == "channels_last":
        comp.net.to(memory_format=torch.channels_last)  # weights too, as set_channels_last does
    return comp


def compiled_competitor(base: Competitor, style: str, backend: str) -> Competitor:
    """A compiled copy of ``base`` (same weights, own optimizer), the ``style`` way."""
    net = copy.deepcopy(base.net)
    if style == "regions":
        count = compile_regions(net, backend=backend)
        fn: Any = net
        how = f"compile_regions: {count} blocks compiled in place"
    else:
        allow_many_recompiles()
        fn = torch.compile(net, dynamic=False, backend=backend)
        how = "torch.compile(net, dynamic=False)"
    return Competitor(
        f"{base.name}-compiled-{style}",
        net,
        f"{base.description}; {how}, backend {backend}",
        diffusers=False,
        channels_last_input=base.channels_last_input,
        fn=fn,
        base=base.name,
        cudnn_benchmark=base.cudnn_benchmark,
    )


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
    nets = {
        (layout, cudnn): layout_competitor(layout, args.image_size, device, cudnn)
        for cudnn in args.cudnn_list
        for layout in LAYOUTS
    }
    forward = forward_flops_per_image(next(iter(nets.values())), 3, args.image_size, device)
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
        "skipped": [],
    }

    def save() -> None:
        if args.json is not None:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")

    def add(
        comp: Competitor,
        batch: int,
        compiled: str | None,
        times: list[float],
        first: float | None,
    ) -> None:
        """One row; ``compiled`` is the compile style, None for eager."""
        name = comp.name
        ips = images_per_s(batch, times)
        row = {
            "net": name,
            "batch": batch,
            "compiled": compiled,
            "cudnn_benchmark": comp.cudnn_benchmark,
            "images_per_s": ips,
            "share_of_bf16_peak": share_of_peak(ips, train_flops, peak),
            "step_s": times,
            "first_call_s": first,
        }
        result["rows"].append(row)
        print(
            f"  {name:52s} batch {batch:4d} {compiled or 'eager':7s} "
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
            add(comp, batch, None, times[comp.name], first.get(comp.name))
    for layout, batch, style, cudnn in args.compiled_list:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            print(
                f"  compiled ({style}, {cudnn}) {layout} batch {batch}: skipped "
                f"({elapsed:.0f} s > --budget-s)"
            )
            skipped = {"layout": layout, "batch": batch, "style": style, "cudnn": cudnn}
            result["skipped"].append(skipped)
            save()
            continue
        base = nets.get((layout, cudnn)) or layout_competitor(
            layout, args.image_size, device, cudnn
        )
        comp = compiled_competitor(base, style, args.compile_backend)
        x0 = torch.randn(
            batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)
        )
        inputs = train_inputs(x0, device)
        fn = partial(train_step, inputs=inputs, mode="bf16", device=device)
        first, _ = warm_up([comp], fn, args.warmup, device, training=True)
        if comp.failed:
            continue
        times = interleaved([comp], fn, args.repeats, 0)
        add(comp, batch, style, times[comp.name], first.get(comp.name))
    print(f"done after {time.perf_counter() - started:.0f} s")
    return result


if __name__ == "__main__":
    main()
