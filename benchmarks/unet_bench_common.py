"""Helpers of ``benchmarks/bench_unet.py``: timing on CPU and CUDA, FLOP counting, the matmul peak,
peak memory, ``torch.compile``, the result rows and the side-by-side summary.

Kept apart from the benchmark's flow so that the arithmetic can be unit-tested on CPU
(``tests/test_bench_unet.py``) and the script stays readable.

Definitions used in the results:

* **FLOPs per image** of a net: :class:`torch.utils.flop_counter.FlopCounterMode` over one eager
  forward at batch 1, fp32, ``no_grad``. It counts the matrix work only (convolutions, linear
  layers, matmuls, attention; 2 FLOPs per multiply-add); normalisation, activations and
  element-wise ops are not counted. Attention is forced to the math backend for the count (the
  CPU kernel of ``scaled_dot_product_attention`` is invisible to the counter; the math backend
  is two matmuls with the same FLOPs as the fused kernels count).
* A **training step** is counted as 3x the forward (forward + backward of activations and of
  weights); a **DDIM-n** run as n forwards.
* **Share of peak** = achieved FLOP/s / peak FLOP/s, the peak measured in the same run by a large
  square matmul (``matmul_peak_tflops``).
* **Peak memory** of a competitor: ``torch.cuda.max_memory_allocated`` over one call, minus
  whatever else was allocated before the call that is not this competitor's own (its weights,
  and for a training step its gradients and optimizer state count as its own).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

TRAIN_FORWARD_EQUIVALENTS = 3  # forward + backward (grad of inputs and of weights) = 3 forwards
REFERENCE_ORDER = ("diffusers-matched-compiled", "diffusers-matched")
COMPILED_SUFFIX = "-compiled"


# ----------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> float:
    """Seconds that ``fn()`` takes, measured on the device.

    CPU: ``time.perf_counter`` around the call. CUDA: the queue is drained first, then CUDA events
    bracket the call and the end event is waited for, so the time covers the GPU work the call
    queued (and the launch overhead where that dominates), not just the Python call.
    """
    if device.type != "cuda":
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    torch.cuda.synchronize(device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000.0


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10, warmup: int = 3
) -> list[float]:
    """TFLOP/s of ``repeats`` timed ``size``^3 matmuls (after ``warmup``), random inputs.

    2 * size^3 FLOPs per product. Call with TF32 off to get the true fp32 figure.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    for _ in range(warmup):
        torch.mm(a, b)
    flops = 2.0 * size**3
    return [flops / timed(device, lambda: torch.mm(a, b)) / 1e12 for _ in range(repeats)]


# ----------------------------------------------------------------------------- FLOPs


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of the matrix work ``fn()`` dispatches, under ``no_grad``.

    Attention runs on the math backend while counting (see the module docstring).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def forward_flops_per_image(
    model_fn: Callable[[torch.Tensor, torch.Tensor], Any],
    channels: int,
    image_size: int,
    device: torch.device,
) -> int:
    """FLOPs of one forward of ``model_fn(x, t)`` on a single ``channels`` x image_size^2 image."""
    x = torch.zeros(1, channels, image_size, image_size, device=device)
    t = torch.full((1,), 500, device=device, dtype=torch.long)
    return count_flops(lambda: model_fn(x, t))


def work_flops_per_image(forward_flops: float, kind: str, ddim_steps: int) -> float:
    """FLOPs per image of one measured unit: a train step (3 forwards) or a DDIM run (n)."""
    if kind == "train":
        return TRAIN_FORWARD_EQUIVALENTS * forward_flops
    if kind == "ddim":
        return ddim_steps * forward_flops
    raise ValueError(f"unknown kind {kind!r}; use train or ddim")


def achieved_tflops(images_per_s: float, flops_per_image: float) -> float:
    """TFLOP/s achieved at ``images_per_s`` when each image costs ``flops_per_image``."""
    return images_per_s * flops_per_image / 1e12


def share_of_peak(images_per_s: float, flops_per_image: float, peak_tflops: float) -> float:
    """Fraction (0-1) of ``peak_tflops`` that ``images_per_s`` at ``flops_per_image`` reaches."""
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be > 0, got {peak_tflops}")
    return achieved_tflops(images_per_s, flops_per_image) / peak_tflops


# ----------------------------------------------------------------------------- memory, compile


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def resident_bytes(net: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes a competitor holds between calls: weights, and its grads and optimizer state."""
    params = list(net.parameters())
    total = tensor_bytes(params) + tensor_bytes(p.grad for p in params)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += tensor_bytes(v for v in state.values())
    return total


def peak_memory_bytes(device: torch.device, fn: Callable[[], Any], own_bytes: int) -> int | None:
    """Peak CUDA memory of ``fn()`` counting only ``own_bytes`` of what was allocated before.

    None on CPU (no allocator statistics there).
    """
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    others = torch.cuda.memory_allocated(device) - own_bytes
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - others


def allow_many_recompiles(limit: int = 64) -> None:
    """Each (shape, precision, grad mode, train/eval) pair compiles its own graph: allow them."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name) and getattr(config, name) < limit:
            setattr(config, name, limit)


def compile_net(net: nn.Module, mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile`` in ``mode`` (None: the default), shapes static (one graph per batch
    size)."""
    allow_many_recompiles()
    return torch.compile(net, dynamic=False, mode=mode)


def set_cudnn_benchmark(choice: str, device: torch.device) -> bool:
    """``--cudnn-benchmark auto|on|off`` as ``torch.backends.cudnn.benchmark`` (auto: on with
    CUDA, as the ``terradiff`` command sets it); the value set."""
    torch.backends.cudnn.benchmark = choice == "on" or (choice == "auto" and device.type == "cuda")
    return torch.backends.cudnn.benchmark


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls and convolutions (off: fp32 means fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def gpu_record(device: torch.device) -> dict[str, Any]:
    """Name, memory, multiprocessors and CUDA/cuDNN versions of a CUDA device ({} on CPU)."""
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


# ----------------------------------------------------------------------------- rows and summary


def make_row(
    *,
    batch: int,
    mode: str,
    kind: str,
    competitor: str,
    times_s: Sequence[float],
    forward_flops: float | None = None,
    ddim_steps: int = 20,
    peaks_tflops: dict[str, float] | None = None,
    peak_mem_bytes: int | None = None,
    compile_s: float | None = None,
) -> dict[str, Any]:
    """One measured (batch, precision, kind, competitor) cell with its derived figures."""
    median = statistics.median(times_s)
    images_per_s = batch / median
    row: dict[str, Any] = {
        "batch": batch,
        "mode": mode,
        "kind": kind,
        "competitor": competitor,
        "times_s": list(times_s),
        "median_s": median,
        "images_per_s": images_per_s,
        "peak_mem_mib": None if peak_mem_bytes is None else peak_mem_bytes / 2**20,
        "compile_s": compile_s,
    }
    if forward_flops is not None:
        work = work_flops_per_image(forward_flops, kind, ddim_steps)
        row["gflop_per_image"] = work / 1e9
        row["tflops"] = achieved_tflops(images_per_s, work)
        for peak_mode, peak in (peaks_tflops or {}).items():
            row[f"share_of_{peak_mode}_peak"] = share_of_peak(images_per_s, work, peak)
    return row


def reference_name(names: Sequence[str]) -> str:
    """The competitor ratios are taken against: diffusers-matched compiled, else eager, else 1st."""
    for name in REFERENCE_ORDER:
        if name in names:
            return name
    return names[0]


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def summary_table(
    rows: Sequence[dict[str, Any]],
    kind: str,
    metric: str = "images_per_s",
    fmt: str = ",.0f",
    ratios: bool = True,
) -> list[str]:
    """Lines of a side-by-side table of ``metric`` for one ``kind`` (train or ddim).

    One line per (batch, mode), one column per competitor (in first-seen order); with ``ratios``
    each cell also shows ``value / reference value`` for the :func:`reference_name` competitor of
    that line (> 1: more of ``metric`` than the reference).
    """
    mine = [r for r in rows if r["kind"] == kind]
    names: list[str] = []
    for r in mine:
        if r["competitor"] not in names:
            names.append(r["competitor"])
    if not names:
        return []
    widths = [max(14, len(n)) for n in names]
    lines = [
        f"{'batch':>6s} {'mode':4s} | "
        + " | ".join(f"{n:>{w}s}" for n, w in zip(names, widths, strict=True))
    ]
    keys = list(dict.fromkeys((r["batch"], r["mode"]) for r in mine))
    for batch, mode in keys:
        cells = {r["competitor"]: r for r in mine if (r["batch"], r["mode"]) == (batch, mode)}
        ref = cells[reference_name(list(cells))].get(metric) if ratios else None
        out = []
        for name, width in zip(names, widths, strict=True):
            value = cells[name].get(metric) if name in cells else None
            text = _cell(value, fmt)
            if ratios and value is not None and ref:
                text += f" ({value / ref:.2f}x)"
            out.append(f"{text:>{width}s}")
        lines.append(f"{batch:>6d} {mode:4s} | " + " | ".join(out))
    return lines


def print_summary(rows: Sequence[dict[str, Any]], ddim_steps: int, peaks: dict[str, float]) -> None:
    """The side-by-side summary of the extended (CUDA / --flops / --compile) run."""
    names = list(dict.fromkeys(r["competitor"] for r in rows))
    if not names:
        return
    ref = reference_name(names)
    labels = {"train": "train step", "ddim": f"DDIM-{ddim_steps}"}
    print(
        f"\nsummary: images/s (ratio = images/s / the same line's {ref}"
        + (f", else {REFERENCE_ORDER[1]}" if ref == REFERENCE_ORDER[0] else "")
        + "; > 1 = faster)"
    )
    for kind, label in labels.items():
        print(f"\n  {label}, images/s")
        for line in summary_table(rows, kind):
            print("   " + line)
    extra = []  # (row key, heading, format) of the tables printed without ratios
    if "bf16" in peaks:
        extra.append(
            (
                "share_of_bf16_peak",
                f"\n  share of the measured bf16 matmul peak ({peaks['bf16']:,.1f} TFLOP/s); "
                f"train step = {TRAIN_FORWARD_EQUIVALENTS}x forward FLOPs, DDIM-{ddim_steps} = "
                f"{ddim_steps}x",
                ".1%",
            )
        )
    extra += [
        (
            "peak_mem_mib",
            "\n  peak memory, MiB (this competitor's weights/grads/optimizer state + the call)",
            ",.0f",
        ),
        (
            "compile_s",
            "\n  compile + first call, s (compiled competitors; not in the timed steps)",
            ".1f",
        ),
    ]
    for key, heading, fmt in extra:
        if key != "share_of_bf16_peak" and all(r.get(key) is None for r in rows):
            continue
        print(heading)
        for kind, label in labels.items():
            print(f"  {label}")
            for line in summary_table(rows, kind, key, fmt, ratios=False):
                print("   " + line)


def report_rows(rows: list[dict[str, Any]]) -> None:
    """Images/s, TFLOP/s, share of the bf16 peak, peak memory and compile time of a section."""
    for row in rows:
        cells = [f"{row['images_per_s']:10,.1f} images/s"]
        if "tflops" in row:
            cells.append(f"{row['tflops']:7.2f} TFLOP/s")
        if "share_of_bf16_peak" in row:
            cells.append(f"{row['share_of_bf16_peak']:6.1%} of bf16 peak")
        if row.get("peak_mem_mib") is not None:
            cells.append(f"peak {row['peak_mem_mib']:,.0f} MiB")
        if row.get("compile_s") is not None:
            cells.append(f"compile+1st call {row['compile_s']:.1f} s")
        print(f"   {row['competitor']:28s} " + ", ".join(cells), flush=True)


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    """Print a section title, then its wall time."""
    print(f"\n== {title}", flush=True)
    start = time.perf_counter()
    yield
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the summary of a results JSON again (also of a run cut short: rows so far)."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("json", type=Path, help="a bench_unet.py --json file with 'rows'")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text())
    if "rows" not in results:
        parser.error(f"{args.json} has no 'rows' (a CPU run without --flops/--compile?)")
    settings = results.get("settings", {})
    gpu = (results.get("machine") or {}).get("gpu") or {}
    print(f"command : {results.get('command')}")
    print(
        f"machine : {gpu.get('name', results.get('cpu'))}; torch {results.get('torch')}, "
        f"diffusers {results.get('diffusers')}"
    )
    print(f"date    : {(results.get('provenance') or {}).get('date')}")
    for note in results.get("skipped") or []:
        print(f"skipped : {note}")
    for name, why in (results.get("failed") or {}).items():
        print(f"failed  : {name}: {why[:300]}")
    print_summary(results["rows"], settings.get("ddim_steps", 20), results.get("peak_tflops", {}))


if __name__ == "__main__":
    main()
