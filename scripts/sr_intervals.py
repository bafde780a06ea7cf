"""PSNR differences with paired intervals over images, for the SR and distillation reports.

Issue 14: a comparison read in a report carries an interval. A row of
:func:`terradiff.sr_evaluate.evaluate_super_resolution` stores each image's metrics beside the means
(``row["per_image"]``, model and bicubic in one image order), so a difference such as model -
bicubic is the mean of per-image differences, with a 95% percentile bootstrap interval that
resamples the images, the same draw for both (:func:`terradiff.report_format.paired_bootstrap`;
Efron & Tibshirani 1993, Ch. 13). Rows measured before per-image values were stored print
:data:`NO_PER_IMAGE` instead, never a bare difference read as established.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from terradiff.report_format import difference_reading, format_interval, paired_bootstrap

#: What a report prints where a row has no per-image values (results measured before they were
#: stored).
NO_PER_IMAGE = "no interval: per-image values not stored in this run"
#: Bootstrap replicates of every paired interval (seed 0: a re-render prints the same numbers).
RESAMPLES = 2000


MIN_IMAGES = 5
"""Fewer images give no interval: a percentile bootstrap over 2 images has 3 distinct
resamples, which is no estimate of the spread."""


def per_image(row: dict[str, Any] | None, side: str, metric: str = "psnr") -> list[float] | None:
    """The per-image ``metric`` of ``side`` (``"model"`` or ``"bicubic"``) of an SR row, or None
    when the row does not store it."""
    values = ((row or {}).get("per_image") or {}).get(side, {}).get(metric)
    return list(values) if values else None


def per_image_differences(row: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """How the per-image records of two SR rows show other images (empty: the same, or not both
    stored): image names, then bicubic PSNR image by image (a function of the crop alone)."""
    found = []
    names = [((r.get("per_image") or {}).get("image")) for r in (row, reference)]
    if names[0] is not None and names[1] is not None and names[0] != names[1]:
        found.append("per-image: other image files")
    a, b = per_image(row, "bicubic"), per_image(reference, "bicubic")
    if a is not None and b is not None and not _same_values(a, b):
        found.append("per-image bicubic PSNR differs")
    return found


def _same_values(a: Sequence[float], b: Sequence[float]) -> bool:
    """Equal lengths and values equal to the 6 stored decimals (NaN equal to NaN)."""
    return len(a) == len(b) and all(
        x == y
        or (math.isnan(x) and math.isnan(y))
        or math.isclose(x, y, rel_tol=1e-6, abs_tol=2e-6)
        for x, y in zip(a, b, strict=True)
    )


def paired_difference(
    row: dict[str, Any],
    reference: dict[str, Any] | None = None,
    *,
    reference_side: str = "bicubic",
    metric: str = "psnr",
) -> dict[str, Any] | None:
    """Interval of ``row``'s model ``metric`` minus ``reference``'s (default: the row's own
    bicubic on the same images), paired over images; None when either is not stored.

    Raises:
        ValueError: the two hold different numbers of images (compare rows of the same scenes
            only: :func:`per_image_differences`).
    """
    values = per_image(row, "model", metric)
    other = per_image(row if reference is None else reference, reference_side, metric)
    if values is None or other is None:
        return None
    if len(values) != len(other):
        raise ValueError(f"{len(values)} vs {len(other)} images: not the same scenes")
    return paired_bootstrap(values, other, resamples=RESAMPLES, seed=0)


def difference_text(interval: dict[str, Any] | None, name_a: str, name_b: str) -> str:
    """``+0.59 dB [0.41, 0.78] over 32 images: A is better (the interval is above 0)``, or
    :data:`NO_PER_IMAGE` for None."""
    if interval is None:
        return NO_PER_IMAGE
    if interval["n"] < MIN_IMAGES:
        return (
            f"{interval['mean']:+.2f} dB on {interval['n']} images, too few for an interval "
            f"(at least {MIN_IMAGES}): no reading"
        )
    return (
        f"{format_interval(interval, 2, ' dB', signed=True)} over {interval['n']} images: "
        f"{difference_reading(interval, name_a, name_b)}"
    )


def method_sentence(level: float = 0.95) -> str:
    """How the intervals were made, for the paragraph above them."""
    return (
        f"mean and {level:.0%} interval of the paired difference image by image (percentile "
        f"bootstrap over the images, the same draw for both, {RESAMPLES} resamples, seed 0; "
        "Efron & Tibshirani 1993). The interval holds the variation over images only: one "
        "training seed per model, so training variation is not in it"
    )


def bicubic_difference_lines(entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The lines under an SR table: each entry's PSNR - bicubic (its own bicubic row, on the
    same images) with its paired interval and reading; one :data:`NO_PER_IMAGE` line when no
    entry stores per-image values (so a table measured before prints nothing else)."""
    intervals = [(label, paired_difference(row)) for label, row in entries]
    if all(interval is None for _, interval in intervals):
        return ["", f"PSNR - bicubic: {NO_PER_IMAGE}."]
    lines = ["", f"PSNR - bicubic on the same images: {method_sentence()}.", ""]
    for label, interval in intervals:
        lines.append(f"- {label}: {difference_text(interval, label, 'bicubic')}")
    return lines
