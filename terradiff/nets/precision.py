"""The number format a trained network runs in at inference: ``sample.precision``.

Sampling calls the denoiser tens of times per image and a map calls it on every tile, so the
arithmetic's format is the largest speed setting a user has after the device. Measured on one
H200 (``benchmarks/results/unet_h200_summary.txt``, ``SMALL_64`` at batch 128, eager): DDIM-20
runs 3.1x faster under bf16 autocast than in fp32 with TF32 off (249 vs 80 images/s). On CPUs
with native bf16 arithmetic it helps less (1.5x for a 2-step DDIM on an AVX512-BF16 EPYC,
``benchmarks/results/unet_bf16_avx512bf16.txt``) and on CPUs without it bf16 is an order of
magnitude slower than fp32 (13x per UNet train step on an AVX2-only EPYC, ``BENCHMARKS.md``).

So ``auto`` is bf16 on a CUDA device that supports it and fp32 everywhere else: a CPU run gives
the same numbers on every CPU unless ``bf16`` is asked for. The weights stay fp32; the net runs
under :func:`torch.autocast` (Micikevicius et al. 2018, "Mixed Precision Training": the
operators that need range, such as normalisations, softmax and reductions, stay fp32), with the
autocast weight cache off so that a CUDA graph capture of the denoiser
(:mod:`terradiff.nets.fast_forward`) records the casts it replays, as PyTorch's CUDA-graph notes
require. Outputs are cast back to fp32 by the callers.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["INFERENCE_PRECISIONS", "inference_autocast", "resolve_inference_precision"]

#: The choices of ``sample.precision`` / ``--precision``.
INFERENCE_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_inference_precision(choice: str, device: torch.device | str) -> str:
    """``choice`` as what runs on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``auto`` is ``bf16`` on a CUDA device with bf16 support, ``fp32`` otherwise; an explicit
    choice is honoured on any device (bf16 on a CPU is fast only with AVX512-BF16 or AMX).

    Raises:
        ValueError: ``choice`` is not one of :data:`INFERENCE_PRECISIONS`.
    """
    if choice not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {list(INFERENCE_PRECISIONS)}, got {choice!r}")
    if choice != "auto":
        return choice
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


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
