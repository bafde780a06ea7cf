"""The rows of a ``torch.profiler`` summary: operators by self time, with their share.

Shared by ``bench_student_profile.py`` (CPU) and ``bench_profile.py`` (device time on a GPU);
imports torch only, so a lent GPU machine without rasterio or pydantic runs it.
"""

from __future__ import annotations

from typing import Any

CPU_TIME = "self_cpu_time_total"
DEVICE_TIME = "self_device_time_total"


def profile_rows(events: Any, rows: int, attribute: str = CPU_TIME) -> list[dict[str, Any]]:
    """The ``rows`` operators (or kernels) of profile ``events`` with the most self time
    (``attribute``: :data:`CPU_TIME` or :data:`DEVICE_TIME`, microseconds), with their share of
    the total over every event that has any."""
    averages = [e for e in events.key_averages() if getattr(e, attribute, 0) > 0]
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
