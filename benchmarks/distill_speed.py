"""The pure parts of ``bench_distill.py``, shared with ``scripts/distill_study.py``.

Rows of the speed benchmark (one per model and output size): the median and the spread of
``--repeats`` timings, the speed-ups over the reference models at the same size, and the tables
that print them. A figure computed from a short run (SR3 DDPM-1000, timed on a few ancestral
steps) is stored with :func:`terradiff.report_format.extrapolated`, and so is every ratio that
divides by or into it, so :func:`terradiff.report_format.format_value` labels it wherever it is
printed (bench output, ``BENCHMARKS.md`` table, ``reports/distill``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from terradiff.report_format import EXTRAPOLATED_KEY, extrapolated, format_value, value_of

SR3_DDIM = "SR3 DDIM-20"
SR3_DDPM = "SR3 DDPM-1000"
REGRESSION = "aid-regression-x4"
TEACHER = "aid-single-step-x4"
REFERENCES = (SR3_DDIM, SR3_DDPM, REGRESSION, TEACHER)
REFERENCE_LABELS = {
    SR3_DDIM: "SR3 DDIM-20",
    SR3_DDPM: "SR3 DDPM-1000",
    REGRESSION: "regression UNet",
    TEACHER: "single-step teacher",
}
TABLE_REFERENCES = (SR3_DDIM, SR3_DDPM, REGRESSION)
NOT_FOUND = "run not found"


def speedup_key(reference: str) -> str:
    """``speedup_vs_sr3_ddim_20`` etc.: the key of a row's speed-up over ``reference``."""
    return "speedup_vs_" + reference.lower().replace(" ", "_").replace("-", "_")


def spread(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles (inclusive method) of ``times``; ``n`` kept."""
    if not times:
        raise ValueError("no timings")
    ordered = sorted(float(t) for t in times)
    if len(ordered) > 1:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    median = statistics.median(ordered)
    return {
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "n": len(ordered),
    }


def timing_row(
    model: str,
    times: Sequence[float],
    parameters: int,
    *,
    measured_steps: int | None = None,
    total_steps: int = 1000,
) -> dict[str, Any]:
    """A timed model: ``seconds`` is the median of ``times`` (seconds per output image), with
    ``seconds_min``/``_max``/``_q1``/``_q3`` beside it and the raw ``times``.

    With ``measured_steps``, each time is a run of that many sampler steps: every figure is
    scaled to ``total_steps`` and stored as an :func:`extrapolated` record (``times`` stay the
    measured wall times of the short runs).
    """
    factor = 1.0 if measured_steps is None else total_steps / measured_steps
    stats = spread([t * factor for t in times])

    def wrap(value: float) -> Any:
        return value if measured_steps is None else extrapolated(value, measured_steps)

    row: dict[str, Any] = {"model": model, "parameters": int(parameters)}
    row["seconds"] = wrap(stats["median"])
    for key in ("min", "max", "q1", "q3"):
        row[f"seconds_{key}"] = wrap(stats[key])
    row["repeats"] = stats["n"]
    row["times"] = [round(float(t), 6) for t in times]
    return row


def missing_row(model: str, reason: str) -> dict[str, Any]:
    """The row of a model whose run is not on this machine (``reason`` says where it looked)."""
    return {"model": model, "missing": reason}


def ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator`` of two seconds; extrapolated when either one is."""
    value = value_of(numerator) / value_of(denominator)
    steps = [
        int(v[EXTRAPOLATED_KEY])
        for v in (numerator, denominator)
        if isinstance(v, Mapping) and EXTRAPOLATED_KEY in v
    ]
    return extrapolated(value, min(steps)) if steps else value


def add_speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set each timed row's speed-up over every timed reference of the same size (in place)."""
    timed = {r["model"]: r for r in rows if "seconds" in r}
    for row in rows:
        if "seconds" not in row:
            continue
        for reference in REFERENCES:
            key = speedup_key(reference)
            row.pop(key, None)
            if reference in timed and reference != row["model"]:
                row[key] = ratio(timed[reference]["seconds"], row["seconds"])
    return rows


_NOTE = re.compile(r"extrapolated from (\d+) measured steps")


def per_size(bench: Mapping[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Rows by output size (px) of a ``bench_distill.py`` JSON.

    Reads this format (``per_size``) and the earlier one (``per_image_512``: 512 px only, the
    extrapolation as a free-text ``note``, turned into an :func:`extrapolated` record here).
    """
    if "per_size" in bench:
        return {int(size): list(part["rows"]) for size, part in bench["per_size"].items()}
    rows = []
    for old in bench.get("per_image_512", []):
        row = {k: v for k, v in old.items() if k != "note"}
        match = _NOTE.search(str(old.get("note", "")))
        if match:
            row["seconds"] = extrapolated(old["seconds"], int(match.group(1)))
        rows.append(row)
    return {512: add_speedups(rows)} if rows else {}


def find_row(rows: Iterable[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """The row of ``model`` (empty when absent)."""
    for row in rows:
        if row["model"] == model:
            return dict(row)
    return {}


def seconds_digits(seconds: float) -> int:
    """Decimals that show a time to about 3 significant figures."""
    return 4 if seconds < 0.1 else 3 if seconds < 1 else 2 if seconds < 100 else 1


def format_seconds(value: Any) -> str:
    """Seconds (``-`` for none), labelled when extrapolated."""
    if value is None:
        return "-"
    return format_value(value, seconds_digits(value_of(value)))


def format_spread(row: Mapping[str, Any]) -> str:
    """``min-max`` of a timed row (plain numbers: the median beside them carries any label)."""
    if "seconds_min" not in row:
        return "-"
    low, high = value_of(row["seconds_min"]), value_of(row["seconds_max"])
    digits = seconds_digits(low)
    return f"{low:,.{digits}f}-{high:,.{digits}f}"


def format_speedup(value: Any) -> str:
    """``157x``, ``2.3x``, ``0.05x`` (``-`` for none), labelled when extrapolated."""
    if value is None:
        return "-"
    number = value_of(value)
    digits = 0 if number >= 10 else 1 if number >= 1 else max(2, 1 - math.floor(math.log10(number)))
    return format_value(value, digits, unit="x")


def speed_table(
    sizes: Mapping[int, Sequence[Mapping[str, Any]]],
    labels: Mapping[str, str] | None = None,
    *,
    scale: int = 4,
    references: Sequence[str] = TABLE_REFERENCES,
) -> list[str]:
    """Markdown: one table per output size, every model's median seconds, min-max, repeats and
    speed-ups over ``references``; a model without a run says so."""
    labels = labels or {}
    lines: list[str] = []
    for size in sorted(sizes):
        header = "| model | s / image (median) | min-max | repeats | params | " + " | ".join(
            f"vs {REFERENCE_LABELS.get(r, r)}" for r in references
        )
        lines += [
            f"**{size}x{size} output** ({size // scale}x{size // scale} LR input, x{scale})",
            "",
            header + " |",
            "|---" * (5 + len(references)) + "|",
        ]
        for row in sizes[size]:
            label = labels.get(row["model"], row["model"])
            if "missing" in row:
                cells = [row["missing"], *["-"] * (3 + len(references))]
            else:
                cells = [
                    format_seconds(row["seconds"]),
                    format_spread(row),
                    str(row.get("repeats", "-")),
                    f"{row['parameters']:,}",
                    *[format_speedup(row.get(speedup_key(r))) for r in references],
                ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def speedups_by_size(
    sizes: Mapping[int, Sequence[Mapping[str, Any]]], model: str, reference: str
) -> dict[int, Any]:
    """``model``'s speed-up over ``reference`` at each size where both were timed."""
    found = {}
    for size in sorted(sizes):
        value = find_row(sizes[size], model).get(speedup_key(reference))
        if value is not None:
            found[size] = value
    return found
