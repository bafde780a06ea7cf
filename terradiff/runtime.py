"""Process-level settings that make CPU inference faster: glibc's allocator.

Large-image inference on a CPU allocates and frees tensors of tens of megabytes at every layer.
glibc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB, rising to at most 32 MiB) with a
fresh ``mmap`` and gives them back with ``munmap`` on free, so each such tensor is page-faulted
and zeroed by the kernel again, every layer, every call: for a small network at 512x512 that costs
as much as the arithmetic (measured in ``benchmarks/bench_distill.py``: the distilled SR student
runs about 1.7x faster with the setting below; a large UNet about 5% faster). PyTorch's CPU
performance guide recommends jemalloc or tcmalloc (``LD_PRELOAD``) for the same reason; this module
gets most of that effect without a preload, by ``mallopt(3)``: large blocks come from the heap and
freed memory stays in the process (``M_MMAP_THRESHOLD`` 1 GiB, ``M_TRIM_THRESHOLD`` 2 GiB), at the
price of a resident size that does not shrink back until the process ends.

The ``terradiff`` command calls :func:`tune_cpu_allocator` at start; a library user may call it
once. ``TERRADIFF_DEFAULT_MALLOC=1`` turns it off; with jemalloc/tcmalloc/mimalloc preloaded, or
on a C library other than glibc, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1

_tuned: bool | None = None


def preloaded_allocator() -> str | None:
    """The name of an allocator this process has preloaded (jemalloc, tcmalloc, mimalloc)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return next((lib for lib in ("jemalloc", "tcmalloc", "mimalloc") if lib in maps), None)


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in the process (glibc only); ``True`` when the setting is active.

    Idempotent; see the module docstring for what it does and why.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("TERRADIFF_DEFAULT_MALLOC") == "1" or preloaded_allocator() is not None:
        return _tuned
    name = ctypes.util.find_library("c")
    if name is None:
        return _tuned
    try:
        libc = ctypes.CDLL(name)
        if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
            return _tuned
        mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD_BYTES))
        trim_ok = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD_BYTES))
    except OSError:
        return _tuned
    _tuned = bool(mmap_ok and trim_ok)
    return _tuned


def allocator_description() -> str:
    """One line for benchmark reports: which allocator and settings this process runs with."""
    lib = preloaded_allocator()
    if lib is not None:
        return f"{lib} (LD_PRELOAD={os.environ.get('LD_PRELOAD', '')})"
    if _tuned:
        return (
            "glibc malloc tuned by terradiff.runtime (M_MMAP_THRESHOLD 1 GiB, "
            "M_TRIM_THRESHOLD 2 GiB)"
        )
    return "glibc malloc, default settings"
