"""How reports print numbers: extrapolated values labelled, intervals compared, not ranked by noise.

Issue 14 asks that a report say only what its evidence allows:

* a value that was not measured in full but extrapolated (e.g. a 1,000-step sampler timed on 20
  steps) is stored as ``{"value": v, "extrapolated_from_steps": n}`` (:func:`extrapolated`) and
  printed with "extrapolated from n measured steps" (:func:`format_value`);
* a comparison is printed as mean ± interval, and two entries whose intervals overlap are "not
  distinguishable" rather than ranked (:func:`compare`, :func:`ranking`);
* two methods measured on the same units (e.g. a model and bicubic on the same images) are
  compared by the interval of their paired difference (:func:`paired_bootstrap`), "not
  distinguishable" when it holds 0 (:func:`difference_reading`).

An interval is a dict ``{"mean", "low", "high"}`` (e.g. a 95% t-interval over seeds from
:func:`interval_from_samples`, or a bootstrap interval over images), so a results JSON holds it
as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "SYMMETRIC_NOTE",
    "compare",
    "difference_reading",
    "extrapolated",
    "format_interval",
    "format_ranking",
    "format_value",
    "interval_from_samples",
    "intervals_overlap",
    "is_extrapolated",
    "paired_bootstrap",
    "ranking",
    "value_of",
]

EXTRAPOLATED_KEY = "extrapolated_from_steps"


def extrapolated(value: float, measured_steps: int) -> dict[str, Any]:
    """A value computed from ``measured_steps`` measured steps, not measured in full."""
    if measured_steps < 1:
        raise ValueError(f"measured_steps must be >= 1, got {measured_steps}")
    return {"value": float(value), EXTRAPOLATED_KEY: int(measured_steps)}


def is_extrapolated(value: Any) -> bool:
    """Whether ``value`` is an :func:`extrapolated` record."""
    return isinstance(value, Mapping) and EXTRAPOLATED_KEY in value


def value_of(value: Any) -> float:
    """The number itself, extrapolated or not (the mean of an interval)."""
    if is_extrapolated(value):
        return float(value["value"])
    if isinstance(value, Mapping) and "mean" in value:
        return float(value["mean"])
    return float(value)


def format_value(value: Any, digits: int = 2, unit: str = "") -> str:
    """``value`` with thousands separators; an extrapolated one says so, an interval prints
    as :func:`format_interval`."""
    if isinstance(value, Mapping) and "mean" in value:
        return format_interval(value, digits, unit)
    text = f"{value_of(value):,.{digits}f}{unit}"
    if is_extrapolated(value):
        text += f" (extrapolated from {value[EXTRAPOLATED_KEY]} measured steps)"
    return text


def interval_from_samples(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean and Student-t interval of ``values`` (e.g. one metric over seeds); ``n`` kept.

    One value gives an interval of zero width that says nothing: ``n`` = 1 is recorded so the
    report can say so.
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1, "level": level}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "level": level}


SYMMETRIC_NOTE = (
    "An interval symmetric to the printed digits is written `mean ± half-width`: the same 95% "
    "interval `[mean - half-width, mean + half-width]`, not a standard deviation."
)
"""The sentence a report prints beside intervals from :func:`format_interval`."""


def format_interval(
    interval: Mapping[str, Any], digits: int = 2, unit: str = "", *, signed: bool = False
) -> str:
    """``mean ± half-width`` (symmetric) or ``mean [low, high]``; ``n = 1`` is flagged.

    ``signed`` prints the mean with its sign (``+0.59``), as a difference reads best.
    """
    mean, low, high = (float(interval[k]) for k in ("mean", "low", "high"))
    sign = "+" if signed else ""
    tolerance = 0.5 * 10.0**-digits
    if abs((mean - low) - (high - mean)) <= tolerance:
        text = f"{mean:{sign},.{digits}f} ± {(high - low) / 2:,.{digits}f}{unit}"
    else:
        text = f"{mean:{sign},.{digits}f}{unit} [{low:,.{digits}f}, {high:,.{digits}f}]"
    if interval.get("n") == 1:
        text += " (one run: no interval)"
    return text


def paired_bootstrap(
    values: Sequence[float],
    reference: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Mean of ``values - reference`` over paired units, with a percentile bootstrap interval.

    ``values[i]`` and ``reference[i]`` are measured on the same unit ``i`` (e.g. a model's and
    bicubic's PSNR on image ``i``). Each of ``resamples`` replicates draws the units with
    replacement, the same draw for both, and takes the mean difference; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicates (the percentile
    interval, Efron & Tibshirani 1993, Ch. 13). Pairing removes what the units have in common
    (how hard an image is), so the interval is that of the difference, not of two overlapping
    means. Units where either value is not finite (NaN: no valid pixel, inf: identical images)
    are dropped, as the means over images drop NaN; ``n`` is the number of units used.

    The interval holds the variation over units only: the units are treated as independent
    (one image each), and the spread of training seeds is not in it.

    Returns:
        ``{"mean", "low", "high", "n", "level", "resamples", "seed"}``; seeded, so a report
        re-rendered from the same values prints the same interval.

    Raises:
        ValueError: lengths differ, no finite pair, or ``resamples`` < 1.
    """
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two lists of one length, got {a.shape}, {b.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    keep = np.isfinite(a) & np.isfinite(b)
    difference = a[keep] - b[keep]
    n = int(difference.size)
    if n == 0:
        raise ValueError("no pair of finite values")
    rng = np.random.default_rng(seed)
    replicates = difference[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return {
        "mean": float(difference.mean()),
        "low": float(low),
        "high": float(high),
        "n": n,
        "level": level,
        "resamples": resamples,
        "seed": seed,
    }


def difference_reading(
    difference: Mapping[str, Any], name_a: str, name_b: str, *, higher_is_better: bool = True
) -> str:
    """What the interval of ``a - b`` allows one to say: "not distinguishable (the interval
    holds 0)", or which is better and that the interval is above or below 0."""
    low, high = float(difference["low"]), float(difference["high"])
    if low <= 0.0 <= high:
        return "not distinguishable (the interval holds 0)"
    above = low > 0.0
    better = name_a if above == higher_is_better else name_b
    return f"{better} is better (the interval is {'above' if above else 'below'} 0)"


def intervals_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether the intervals ``[low, high]`` of ``a`` and ``b`` share a point."""
    return float(a["low"]) <= float(b["high"]) and float(b["low"]) <= float(a["high"])


def compare(
    name_a: str,
    a: Mapping[str, Any],
    name_b: str,
    b: Mapping[str, Any],
    *,
    higher_is_better: bool = True,
    digits: int = 2,
) -> str:
    """One sentence: which is better, or "not distinguishable" when the intervals overlap."""
    both = f"{name_a} {format_interval(a, digits)} vs {name_b} {format_interval(b, digits)}"
    if intervals_overlap(a, b):
        return f"{both}: not distinguishable (the intervals overlap)"
    a_better = (value_of(a) > value_of(b)) == higher_is_better
    return f"{both}: {name_a if a_better else name_b} is better"


def ranking(
    entries: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
    *,
    higher_is_better: bool = True,
) -> list[list[str]]:
    """Groups of names, best first; names in one group are not distinguishable.

    Entries are sorted by mean; an entry joins the current group when its interval overlaps
    that of any member, so only separated intervals make a rank.
    """
    items = list(entries.items() if isinstance(entries, Mapping) else entries)
    items.sort(key=lambda item: value_of(item[1]), reverse=higher_is_better)
    groups: list[list[tuple[str, Mapping[str, Any]]]] = []
    for name, interval in items:
        if groups and any(intervals_overlap(interval, other) for _, other in groups[-1]):
            groups[-1].append((name, interval))
        else:
            groups.append([(name, interval)])
    return [[name for name, _ in group] for group in groups]


def format_ranking(groups: Sequence[Sequence[str]]) -> str:
    """``A > B ≈ C``: ``>`` only between separated intervals, ``≈`` = not distinguishable."""
    text = " > ".join(" ≈ ".join(group) for group in groups)
    if any(len(group) > 1 for group in groups):
        text += " (≈: not distinguishable, the intervals overlap)"
    return text
