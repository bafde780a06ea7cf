"""What the UNet's fp32 ends cost at bf16 inference: one forward of ``SMALL_64`` three ways.

``terradiff.nets.precision.full_precision`` runs the UNet's input convolution and output head in
fp32 under autocast at inference. This times one no-grad forward under the product's bf16 context
(:func:`terradiff.nets.precision.inference_autocast`) with

* ``bf16 whole``: both ends in bf16 like the rest of the net;
* ``fp32 ends, input kept fp32``: the input convolution's fp32 output handed on as fp32 (what
  terradiff did until 2026-12-01: the full-resolution skip and the first blocks then ran in fp32);
* ``fp32 ends, input cast back``: the input convolution's output cast back to bf16 (now),

interleaved (order reversed every repeat), medians and ratios over ``bf16 whole``.

    .venv/bin/python benchmarks/bench_precision_ends.py                # SMALL_64, batch 16, CPU
    .venv/bin/python benchmarks/bench_precision_ends.py --quick        # smoke run, a second
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import terradiff.nets.unet as unet_module
from terradiff.nets.precision import full_precision, inference_autocast

VARIANTS: dict[str, Callable[..., Any]] = {
    "bf16 whole": lambda layer, x, training, cast_back=False: layer(x),
    "fp32 ends, input kept fp32": lambda layer, x, training, cast_back=False: full_precision(
        layer, x, training
    ),
    "fp32 ends, input cast back": full_precision,
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny net, batch 2, 2 repeats")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = {**unet_module.SMALL_64, "image_size": args.image_size}
    if args.quick:
        args.batch, args.image_size, args.repeats = 2, 16, 2
        config = {"base_channels": 16, "channel_mults": (1, 2), "num_res_blocks": 1,
                  "num_groups": 4, "attention_resolutions": (), "image_size": 16}  # fmt: skip
    net = unet_module.UNet(3, **config).eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)
    t = torch.full((args.batch,), 500)
    device = torch.device("cpu")

    def call(name: str) -> float:
        unet_module.full_precision = VARIANTS[name]
        try:
            with torch.no_grad(), inference_autocast("bf16", device):
                start = time.perf_counter()
                net(x, t)
                return time.perf_counter() - start
        finally:
            unet_module.full_precision = full_precision

    names = list(VARIANTS)
    for name in names:  # warm-up
        call(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(call(name))
    base = statistics.median(times["bf16 whole"])
    print(f"SMALL_64 forward, batch {args.batch}, {args.image_size} px, bf16 inference autocast, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    result = {}
    for name in names:
        median = statistics.median(times[name])
        result[name] = {"median_s": median, "ratio": median / base, "times_s": times[name]}
        runs = [round(s * 1000) for s in times[name]]
        print(f"  {name:30s} {median * 1000:8.1f} ms  x{median / base:.3f}  runs (ms) {runs}")
    return result


if __name__ == "__main__":
    main()
