"""The change study's precision-recall figure (``reports/change/pr_curves.png``).

One curve per method from the probability histograms of its test tiles (seeds pooled: the counts
of all runs added, so the curve is that of the pooled pixels, as the pooled F1 and AP of the
report), with the operating points the report scores: the fixed threshold 0.5 and, once the runs
are calibrated (``--calibrate``), each run's threshold chosen on its training tiles (their counts
pooled). The naive map (every pixel alike) is the horizontal line at the changed share.
Called by ``scripts/change_study.py`` when it writes the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Colour per method (the study's METHODS keys).
COLOURS = {"supervised_unet": "tab:blue", "ddpm_cd": "tab:orange", "ddpm_cd_aid": "tab:green"}


def pooled_histogram(evaluations: list[dict[str, Any]]) -> Any:
    """The sum of every window's histogram over the runs (a
    :class:`~terradiff.metrics.change.ChangeScoreHistogram`)."""
    from terradiff.metrics.change import ChangeScoreHistogram

    windows = [
        ChangeScoreHistogram.from_dict(w) for e in evaluations for w in e["per_window_scores"]
    ]
    return sum(windows[1:], windows[0])


def operating_point(counts: np.ndarray) -> tuple[float, float]:
    """``(recall, precision)`` of pooled ``[..., 3]`` (tp, fp, fn) counts (precision 1 when
    nothing is called change)."""
    tp, fp, fn = np.asarray(counts, dtype=np.float64).reshape(-1, 3).sum(axis=0)
    precision = tp / (tp + fp) if tp + fp else 1.0
    return float(tp / (tp + fn)), float(precision)


def plot_precision_recall(
    scored: dict[str, list[dict[str, Any]]],
    names: dict[str, str],
    path: Path,
    calibrated_counts: dict[str, np.ndarray] | None = None,
) -> bool:
    """Write the figure for the methods of ``scored`` (method -> its runs' test evaluations,
    each with ``per_window_scores``); ``calibrated_counts`` (method -> pooled counts at the
    training-chosen thresholds) adds those points. Returns False (and writes nothing) when no
    method has histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from terradiff.io import atomic_path

    if not scored:
        return False
    figure = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    prevalence = None
    for method, evaluations in scored.items():
        colour = COLOURS.get(method, "tab:grey")
        histogram = pooled_histogram(evaluations)
        _, precision, recall = histogram.precision_recall_curve()
        label = f"{names[method]} (AP {100 * histogram.average_precision():.1f}, pooled)"
        axis.plot(recall, precision, "-", color=colour, label=label)
        default = [[w[k] for k in ("tp", "fp", "fn")] for e in evaluations for w in e["per_window"]]
        axis.plot(*operating_point(np.array(default)), "o", color=colour, markersize=7)
        if calibrated_counts and method in calibrated_counts:
            point = operating_point(calibrated_counts[method])
            axis.plot(*point, "X", color=colour, markersize=9, markeredgecolor="black")
        prevalence = sum(histogram.changed) / (sum(histogram.changed) + sum(histogram.unchanged))
    if prevalence is not None:
        axis.axhline(prevalence, color="black", linestyle="--", linewidth=1)
        axis.annotate(
            f"naive: every pixel alike ({100 * prevalence:.1f}%)",
            (0.02, prevalence),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=8,
        )
    axis.plot([], [], "o", color="grey", label="threshold 0.5")
    if calibrated_counts:
        axis.plot(
            [],
            [],
            "X",
            color="grey",
            markeredgecolor="black",
            label="threshold from training tiles",
        )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("recall (change pixels found)")
    axis.set_ylabel("precision")
    axis.set_title("LEVIR-CD, 7 test tiles, seeds pooled", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return True
