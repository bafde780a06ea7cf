"""The rows of a ``torch.profiler`` summary: operators by self time, with their share.

Shared by ``bench_student_profile.py`` (CPU) and ``bench_profile.py`` (device time on a GPU);
imports torch only, so a lent GPU machine without rasterio or pydantic runs it.

Device time is counted twice in ``key_averages()``: a kernel is an event of its own (its
duration) *and* part of the self device time of the operator that launched it (``aten::mm``
holds the time of its GEMM kernel). A share of the sum over both kinds is wrong, so device time
is summarised at one level at a time (:data:`KERNELS` or :data:`OPERATORS`).
"""

from __future__ import annotations

from typing import Any

CPU_TIME = "self_cpu_time_total"
DEVICE_TIME = "self_device_time_total"
KERNELS = "kernels"  # device events: each kernel's own duration (their sum is the busy time)
OPERATORS = "operators"  # host events: the device time of the kernels each launched itself
ALL = "all"  # every event with any of the attribute (CPU time: no double counting)


def is_device_event(event: Any) -> bool:
    """Whether a ``key_averages()`` entry is a device event (a kernel, a memcpy or memset)."""
    kind = getattr(event, "device_type", None)
    return kind is not None and getattr(kind, "name", str(kind)) != "CPU"


def profile_rows(
    events: Any, rows: int, attribute: str = CPU_TIME, level: str = ALL
) -> list[dict[str, Any]]:
    """The ``rows`` operators or kernels of profile ``events`` with the most self time
    (``attribute``: :data:`CPU_TIME` or :data:`DEVICE_TIME`, microseconds), with their share of
    the total over the events of ``level`` that have any: :data:`ALL`, or for device time
    :data:`KERNELS` (device events) or :data:`OPERATORS` (host events), which must not be mixed
    (see the module's docstring)."""
    if level not in (ALL, KERNELS, OPERATORS):
        raise ValueError(f"level must be {ALL!r}, {KERNELS!r} or {OPERATORS!r}, got {level!r}")
    averages = [
        e
        for e in events.key_averages()
        if getattr(e, attribute, 0) > 0
        and (level == ALL or is_device_event(e) == (level == KERNELS))
    ]
    total = sum(getattr(e, attribute) for e in averages) or 1.0
    ordered = sorted(averages, key=lambda e: getattr(e, attribute), reverse=True)
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": getattr(e, attribute) / 1000.0,
            "share": getattr(e, attribute) / total,
        }
        for e in ordered[:rows]
    ]
