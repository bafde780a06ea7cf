"""Process-level settings: threads, OpenMP waiting and glibc's allocator for CPU work; cuDNN's
autotuner for CUDA work.

**Threads.** :func:`configure_threads` gives torch as many threads as this process may use:
``--threads N`` when given, else ``OMP_NUM_THREADS`` when set, else the cores of the process's
CPU affinity mask (``os.sched_getaffinity``), capped by a cgroup CPU quota (``cpu.max``, what
containers and batch schedulers set). torch's own default counts the machine's physical cores,
which oversubscribes a container that may use fewer.

**OpenMP waiting.** An OpenMP thread that runs out of work waits for the next parallel region.
It can spin (fast to wake, but it holds its core) or sleep (frees the core, but waking it costs a
system call; on a virtual machine more). OpenMP's default spins, and when another process wants
the same cores (two jobs on a 2-core machine) the spinning starves both: two 60-step runs of
``make demo``'s training at once took 148 s, against 2 x 23 s one after the other
(``benchmarks/bench_threads.py``, a 2-vCPU machine). Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``)
avoids that, but a small job alone then pays for a wake-up at every parallel region: the same
training alone took 35 s. GNU OpenMP (libgomp, the OpenMP of torch's Linux wheels) can spin a
fixed number of iterations first (``GOMP_SPINCOUNT``): with :data:`SPIN_COUNT` (10,000, about
0.1-0.5 ms) it took 25 s alone, and two at once took 54 s, about as long as one after the other
(``BENCHMARKS.md``, where one run of three disagrees: the host is noisy). The ``terradiff``
command therefore sets ``OMP_WAIT_POLICY=PASSIVE`` and
``GOMP_SPINCOUNT=10000`` when the environment sets neither (:func:`prefer_bounded_openmp_spinning`;
it must happen before torch is imported); other OpenMP runtimes ignore the spin count and stay
passive. Several jobs sharing a machine do best with ``--threads`` = their share of the cores, or
``GOMP_SPINCOUNT=0``.

**Allocator.**

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

**cuDNN's autotuner.** For a convolution cuDNN offers several algorithms; by default PyTorch takes
the one cuDNN's heuristics name. With ``torch.backends.cudnn.benchmark`` on, the first call of each
new shape times the candidates and later calls of that shape use the fastest (the "enable cuDNN
auto-tuner" advice of PyTorch's performance tuning guide,
https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html). terradiff's GPU work repeats
few shapes many times (a training crop, a sampler's 20-1000 calls, a map's tile batches), so the
one-off timing pays back; a new shape (a map's smaller last batch) costs one more timing. It may
also pick a kernel that works on NCHW directly where the heuristic pick converts to NHWC and back
(the ``nchwToNhwc`` kernels of ``benchmarks/results/profile_h200.txt``); on an H200 its effect
is not yet measured (``BENCHMARKS.md``). The ``terradiff`` command
and :meth:`terradiff.train.Trainer.fit` on CUDA call :func:`enable_cudnn_autotuner`;
``TERRADIFF_CUDNN_BENCHMARK=0`` keeps the heuristic choice (the chosen algorithms may differ from
run to run, so results on a GPU are not bitwise repeatable either way). It changes nothing on a
CPU.
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

SPIN_COUNT = 10_000
"""Spin iterations of an idle GNU OpenMP thread before it sleeps (``bench_threads.py``)."""

_tuned: bool | None = None


def prefer_bounded_openmp_spinning() -> bool:
    """Make idle OpenMP threads spin :data:`SPIN_COUNT` iterations, then sleep.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT`` (which GNU OpenMP reads ahead of the
    policy) unless the environment sets either; a user's ``OMP_WAIT_POLICY=ACTIVE`` or own spin
    count is kept as it is.

    Returns:
        Whether it can still take effect (False once torch, and with it OpenMP, is loaded).
    """
    import sys

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return "torch" not in sys.modules


def available_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (see the module docstring) and return the number used.

    Args:
        threads: an explicit count (``--threads``); None = ``OMP_NUM_THREADS`` when set, else
            :func:`available_cores`.
    """
    import torch

    if threads is None:
        from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(from_env) if from_env.isdigit() and int(from_env) > 0 else None
    count = threads if threads is not None else available_cores()
    torch.set_num_threads(count)
    return count


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


CUDNN_BENCHMARK_ENV = "TERRADIFF_CUDNN_BENCHMARK"
"""Set to ``0`` to keep cuDNN's heuristic algorithm choice (see the module docstring)."""


def enable_cudnn_autotuner() -> bool:
    """Turn cuDNN's autotuner on (``torch.backends.cudnn.benchmark``) unless
    ``TERRADIFF_CUDNN_BENCHMARK=0``; whether it is on afterwards.

    Process-wide and idempotent; an explicit ``0`` leaves the flag as the process set it.
    """
    import torch

    if os.environ.get(CUDNN_BENCHMARK_ENV, "").strip() != "0":
        torch.backends.cudnn.benchmark = True
    return bool(torch.backends.cudnn.benchmark)
