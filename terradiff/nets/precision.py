"""The number format a trained network runs in at inference: ``sample.precision``.

Sampling calls the denoiser tens of times per image and a map calls it on every tile, so the
arithmetic's format is the largest speed setting a user has after the device. Measured on one
H200 (``benchmarks/results/unet_h200_summary.txt``, ``SMALL_64`` at batch 128, eager): DDIM-20
runs 3.1x faster under bf16 autocast than in fp32 with TF32 off (249 vs 80 images/s). On CPUs
with native bf16 arithmetic it helps less (1.5x for a 2-step DDIM on an AVX512-BF16 EPYC,
``benchmarks/results/unet_bf16_avx512bf16.txt``) and on CPUs without it bf16 is an order of
magnitude slower than fp32 (13x per UNet train step on an AVX2-only EPYC, ``BENCHMARKS.md``).

``auto`` is bf16 on a CUDA device that supports it and on a CPU with native bf16 arithmetic
(:func:`native_bf16_cpu`), and fp32 elsewhere: the rule of ``train.mixed_precision: auto``. The
default is ``fp32``, because bf16 is not free for every model (``benchmarks/bench_precision.py``
and ``benchmarks/results/precision_demo_seeds_avx512bf16.txt``, in ``BENCHMARKS.md``): on the
AVX512-BF16 EPYC bf16 ran 1.5-1.7x faster and cost nothing measurable on three SR nets and a
class-conditional generator, but raised the ``make demo`` generator's FID by about 0.3 (of 51) at
each of three sampling seeds, and by about 2 while the UNet ran wholly in bf16 (its two ends now
run in fp32: :func:`full_precision`). The weights stay fp32; the net runs under
:func:`torch.autocast` (Micikevicius et al. 2018, "Mixed Precision Training": autocast keeps
range-sensitive operators such as softmax and reductions in fp32; terradiff's GroupNorm runs in
the activations' dtype, :func:`terradiff.nets.blocks.group_norm`), with the autocast weight cache
off so that a CUDA graph capture of the denoiser
(:mod:`terradiff.nets.fast_forward`) records the casts it replays, as PyTorch's CUDA-graph notes
require. Outputs are cast back to fp32 by the callers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "INFERENCE_PRECISIONS",
    "full_precision",
    "inference_autocast",
    "native_bf16_cpu",
    "precision_tag",
    "resolve_inference_precision",
    "resolve_mixed_precision",
]

#: The choices of ``sample.precision`` / ``--precision``.
INFERENCE_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16_cpu(cpuinfo: str | None = None) -> bool:
    """Whether this CPU does bf16 arithmetic natively (AMX-BF16 or AVX512-BF16 in its flags).

    ``cpuinfo`` is the text of ``/proc/cpuinfo``, read from the system when None; a system
    without it (not Linux) counts as without native bf16.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_mixed_precision(choice: str, cpuinfo: str | None = None) -> str:
    """``auto``: ``bf16`` on CUDA with bf16, else ``fp16``; ``bf16`` on bf16-capable CPUs.

    bf16 autocast helps on CPUs with native bf16 matmul (AMX-BF16: 1.8-2.1x per train step,
    GUIDE.md; AVX512-BF16 without AMX: 1.6x, BENCHMARKS.md) and is far slower than fp32 without
    them (13x per UNet train step on an AVX2-only EPYC, BENCHMARKS.md), so ``auto`` keeps fp32
    there. ``cpuinfo`` (the text of ``/proc/cpuinfo``) is read from the system when None.
    """
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if native_bf16_cpu(cpuinfo) else "no"


def resolve_inference_precision(
    choice: str, device: torch.device | str, cpuinfo: str | None = None
) -> str:
    """``choice`` as what runs on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``auto`` is ``bf16`` on a CUDA device with bf16 support and on a CPU with native bf16
    (:func:`native_bf16_cpu` of ``cpuinfo``), ``fp32`` otherwise; an explicit choice is
    honoured on any device.

    Raises:
        ValueError: ``choice`` is not one of :data:`INFERENCE_PRECISIONS`.
    """
    if choice not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {list(INFERENCE_PRECISIONS)}, got {choice!r}")
    if choice != "auto":
        return choice
    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if kind == "cpu" and native_bf16_cpu(cpuinfo):
        return "bf16"
    return "fp32"


def precision_tag(resolved: str) -> dict[str, str]:
    """The GeoTIFF tag naming the format a net ran in (``resolved``: ``fp32``, ``bf16``, ``fp16``;
    the key :func:`terradiff.sampling_io.generation_tags` writes too)."""
    return {"TERRADIFF_INFERENCE_PRECISION": resolved}


def inference_autocast(
    choice: str, device: torch.device | str
) -> contextlib.AbstractContextManager[object]:
    """A context in which a net runs at ``choice`` (:func:`resolve_inference_precision`).

    ``fp32`` turns autocast off explicitly (a caller's enclosing autocast does not leak into
    inference); ``bf16``/``fp16`` is :func:`torch.autocast` without its weight cache.
    """
    device_type = torch.device(device).type
    resolved = resolve_inference_precision(choice, device)
    if resolved == "fp32":
        if device_type in ("cpu", "cuda"):
            return torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=_DTYPES[resolved], cache_enabled=False)


def full_precision(
    layer: Callable[[Tensor], Tensor], x: Tensor, training: bool, *, cast_back: bool = False
) -> Tensor:
    """``layer(x)``, in fp32 when a net runs under autocast at inference (not ``training``).

    A UNet's input convolution and output head go through it: the first reads ``x_t`` unrounded,
    the second writes the noise prediction, which the sampler's update amplifies at high noise
    levels, unrounded. Measured on the ``make demo`` generator
    (``benchmarks/results/precision_demo_seeds_avx512bf16.txt``): with the whole net in bf16,
    DDIM-20's FID was +1.95 to +2.40 above fp32's at three sampling seeds; with these two layers in
    fp32, +0.28 to +0.37; also keeping the time embedding in fp32 gained nothing. The two layers
    cost about 7 kFLOP per output pixel of ``SMALL_64``'s 3.2 MFLOP. In training, or without
    autocast, it is ``layer(x)``: training numerics follow ``train.mixed_precision``.

    ``cast_back`` returns the result in autocast's dtype, so that what follows runs as it would
    without this wrapper (the input convolution's case). Left in fp32, the input convolution's
    output kept the UNet's full-resolution skip and the first blocks' normalisations in fp32: a
    ``SMALL_64`` forward at batch 16 took 13-15% longer than the whole net in bf16 on a 2-core
    AMX Xeon, 2% with it cast back (``benchmarks/bench_precision_ends.py``); on a demo generator
    trained there, the cast cost 0.12-0.25 FID at three seeds and both forms were within 0.15 FID
    of fp32 (``benchmarks/results/precision_demo_cast_back_amx.txt``).
    """
    device_type = x.device.type
    if training or not torch.is_autocast_enabled(device_type):
        return layer(x)
    dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):
        out = layer(x.float())
    return out.to(dtype) if cast_back else out
