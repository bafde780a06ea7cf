"""Issue 17, change detection: diffusion features (DDPM-CD) against a same-size supervised U-Net.

On the LEVIR-CD pairs of ``../shared/data/levir-cd`` (256x256 RGB tiles, LEVIR-CD's own split by
file name: 4 labelled training tiles, ``train_*`` and ``val_*``, and 7 test tiles ``test_*``):

1. an unconditional generator is trained on the before and after images of the 4 training tiles
   only (``configs/change/levir_generator.yaml``; no labels);
2. for each seed, the DDPM-CD head (``configs/change/levir_ddpm_cd.yaml``: frozen generator,
   decoder features at timesteps 50/100/400, a light head on the per-level feature differences)
   and the supervised U-Net of about the same trainable size trained from scratch on the same
   labelled crops (``configs/change/levir_supervised_unet.yaml``) are trained with the same
   budget and scored on the 7 test tiles (``terradiff evaluate``: F1, IoU, precision, recall of
   the change class from the pooled confusion counts, threshold 0.5 fixed beforehand: with 4
   labelled tiles there is no validation split to tune it on).

Intervals: mean +- std over seeds, and for every run a 95% bootstrap interval of F1 over the test
tiles (tiles resampled with replacement, counts pooled). The two methods are ranked only when
their seed intervals (mean +- std) do not overlap.

Later additions: a generator pre-trained on AID (``ddpm_cd_aid``); the average precision of the
change probabilities (``--rescore`` evaluates runs recorded before it again); and
``--calibrate``: every run scores its own training tiles whole, keeps the threshold that
maximises F1 there and is scored on the test tiles at it (no test tile chooses anything).

Run (``make change-study``)::

    python scripts/change_study.py --work outputs/change --out reports/change --calibrate
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.change_plots import plot_precision_recall, pooled_histogram  # noqa: E402
from scripts.study_common import (  # noqa: E402
    is_finished,
    open_results,
    record_command,
    report_header,
    train,
)

METHODS = {
    "ddpm_cd": ("DDPM-CD head on frozen diffusion features", "configs/change/levir_ddpm_cd.yaml"),
    "supervised_unet": (
        "supervised U-Net from scratch",
        "configs/change/levir_supervised_unet.yaml",
    ),
    "ddpm_cd_aid": (
        "DDPM-CD head, generator pre-trained on AID",
        "configs/change/levir_ddpm_cd.yaml",
    ),
}
# The generator each DDPM-CD variant reads: results key, config, data folder under --shared.
# "generator" (LEVIR's 8 training images) is the original study's; "aid_generator" (the 4,500
# AID scenes, no LEVIR image) tests the report's reading that the features, not the head, are
# what an under-fed generator lacks.
GENERATORS = {
    "ddpm_cd": ("generator", "configs/change/levir_generator.yaml", "levir-cd"),
    "ddpm_cd_aid": ("aid_generator", "configs/change/aid_generator.yaml", "aid"),
}
NAMES = {
    "ddpm_cd": "DDPM-CD",
    "ddpm_cd_aid": "DDPM-CD (AID generator)",
    "supervised_unet": "U-Net",
    "naive": "naive all-change",
}
PAIRS = (
    ("supervised_unet", "ddpm_cd"),
    ("ddpm_cd", "naive"),
    ("supervised_unet", "naive"),
    ("ddpm_cd_aid", "ddpm_cd"),
    ("ddpm_cd_aid", "supervised_unet"),
    ("ddpm_cd_aid", "naive"),
)
METRICS = ("f1", "iou", "precision", "recall")


def f1_of(counts: dict[str, float]) -> float:
    """F1 of the change class from confusion counts (0 when nothing is predicted or present)."""
    denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    return 2 * counts["tp"] / denominator if denominator else 0.0


def bootstrap_f1(
    per_window: list[dict[str, int]], resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """F1 of the pooled counts with a 95% percentile interval over resampled windows (tiles)."""
    counts = np.array([[w["tp"], w["fp"], w["fn"]] for w in per_window], dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(counts), size=(resamples, len(counts)))
    sums = counts[draws].sum(axis=1)
    denominators = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    values = np.divide(
        2 * sums[:, 0], denominators, out=np.zeros(resamples), where=denominators > 0
    )
    total = counts.sum(axis=0)
    return {
        "f1": f1_of({"tp": total[0], "fp": total[1], "fn": total[2]}),
        "low": float(np.quantile(values, 0.025)),
        "high": float(np.quantile(values, 0.975)),
    }


def tile_counts(evaluations: list[dict[str, Any]]) -> np.ndarray:
    """``[tiles, 3]`` confusion counts (tp, fp, fn) per test tile, summed over the runs (seeds)
    of one method (every evaluation lists the test tiles in the same sorted order)."""
    rows = [
        np.array([[w[k] for k in ("tp", "fp", "fn")] for w in e["per_window"]], dtype=np.float64)
        for e in evaluations
    ]
    if len({r.shape for r in rows}) != 1:
        raise ValueError("the runs were scored on different test tiles")
    return np.sum(rows, axis=0)


def naive_counts(evaluation: dict[str, Any]) -> np.ndarray:
    """Per tile, the counts of the naive "every pixel is change" prediction."""
    return np.array(
        [[w["tp"] + w["fn"], w["fp"] + w["tn"], 0] for w in evaluation["per_window"]],
        dtype=np.float64,
    )


def paired_difference(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """F1(a) - F1(b) of pooled per-tile counts ``[tiles, 3]`` with a 95% percentile interval
    from resampling the *same* tiles for both (a paired cluster bootstrap: the tile is the unit,
    so the test tiles' spread in how much changed is in the interval)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), size=(resamples, len(a)))

    def f1(counts: np.ndarray) -> np.ndarray:
        sums = counts[draws].sum(axis=1)
        denominators = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
        return np.divide(
            2 * sums[:, 0], denominators, out=np.zeros(resamples), where=denominators > 0
        )

    values = f1(a) - f1(b)
    ta, tb = a.sum(axis=0), b.sum(axis=0)
    point = f1_of(dict(zip(("tp", "fp", "fn"), ta, strict=True))) - f1_of(
        dict(zip(("tp", "fp", "fn"), tb, strict=True))
    )
    return {
        "difference": float(point),
        "low": float(np.quantile(values, 0.025)),
        "high": float(np.quantile(values, 0.975)),
    }


def tile_scores(evaluations: list[dict[str, Any]]) -> np.ndarray | None:
    """``[tiles, 2, bins]`` probability histograms (changed, unchanged) per test tile, summed
    over the runs of one method; None when a run predates them (``per_window_scores``)."""
    if not evaluations or any("per_window_scores" not in e for e in evaluations):
        return None
    rows = [
        np.array([[w["changed"], w["unchanged"]] for w in e["per_window_scores"]], np.float64)
        for e in evaluations
    ]
    if len({r.shape for r in rows}) != 1:
        raise ValueError("the runs were scored on different test tiles")
    return np.sum(rows, axis=0)


def average_precisions(histograms: np.ndarray) -> np.ndarray:
    """:func:`terradiff.metrics.change.average_precision_of` of each ``[..., 2, bins]``
    histogram pair (changed, unchanged); NaN without changed pixels."""
    from terradiff.metrics.change import average_precision_of

    histograms = np.asarray(histograms, dtype=np.float64)
    flat = histograms.reshape(-1, 2, histograms.shape[-1])
    values = [average_precision_of(changed, unchanged) for changed, unchanged in flat]
    return np.array(values).reshape(histograms.shape[:-2])


def paired_ap_difference(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """AP(a) - AP(b) of per-tile histograms ``[tiles, 2, bins]`` (each side's tiles summed), with
    a 95% percentile interval from resampling the same tiles for both (as
    :func:`paired_difference` for F1)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), size=(resamples, len(a)))
    values = average_precisions(a[draws].sum(axis=1)) - average_precisions(b[draws].sum(axis=1))
    values = values[np.isfinite(values)]  # a resample of tiles without change has no AP
    return {
        "difference": float(average_precisions(a.sum(0)) - average_precisions(b.sum(0))),
        "low": float(np.quantile(values, 0.025)),
        "high": float(np.quantile(values, 0.975)),
    }


def ap_lines(runs: dict[str, Any], rescored: dict[str, Any]) -> list[str]:
    """The threshold-free comparison: per method whose runs carry probability histograms (the
    study's own evaluations, or their re-scoring in ``rescored``), AP with seed spread, and the
    paired tile-bootstrap AP differences between such methods and the naive map (every pixel
    alike: AP = the share of changed pixels)."""
    scored = {k: rescored.get(k, {}).get("evaluation", runs[k]["evaluation"]) for k in runs}
    histograms, summaries = {}, {}
    for method in METHODS:
        evaluations = [scored[k] for k in sorted(scored) if k.startswith(method + "/")]
        h = tile_scores(evaluations)
        if h is None:
            continue
        histograms[method] = h
        values = np.array([e["average_precision"] for e in evaluations])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summaries[method] = (float(values.mean()), std, len(values))
    if not histograms:
        return []
    any_h = next(iter(histograms.values()))  # AP does not depend on how many seeds are summed
    constant = np.zeros_like(any_h)  # every pixel in one bin: the naive score, per tile
    constant[:, :, 0] = any_h.sum(axis=2)
    histograms["naive"] = constant
    lines = [
        "",
        "Threshold-free: average precision (AP, the area under the precision-recall curve of "
        "the change probabilities; F1 above depends on the fixed threshold 0.5, AP does not). "
        "Mean +- std over seeds; paired tile bootstrap of the differences (each method's seeds "
        "pooled), in points:",
        "",
    ]
    for method, (mean, std, n) in summaries.items():
        lines.append(f"- {NAMES[method]}: AP {100 * mean:.1f} +- {100 * std:.1f} ({n} seeds)")
    lines.append(
        f"- {NAMES['naive']} (every pixel alike): AP "
        f"{100 * float(average_precisions(constant.sum(0))):.1f}"
    )
    for a, b in PAIRS:
        if a in histograms and b in histograms and a != "naive":
            d = paired_ap_difference(histograms[a], histograms[b])
            lines.append(difference_line(f"AP {NAMES[a]} - {NAMES[b]}", d))
    return lines


def difference_line(label: str, d: dict[str, float]) -> str:
    """``- label: +x [+lo, +hi]`` in points, saying when the interval holds 0."""
    return f"- {label}: {difference_text(d)}"


def difference_text(d: dict[str, float]) -> str:
    """``+x [+lo, +hi]`` in points, saying when the interval holds 0."""
    separated = d["low"] > 0 or d["high"] < 0
    return f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]" + (
        "" if separated else " (the interval holds 0: not distinguishable)"
    )


def paired_lines(runs: dict[str, Any]) -> list[str]:
    """The report's paired tile-bootstrap comparisons (each method's seeds pooled; a pair is
    left out while one of its methods has no run; F1 of pooled counts does not depend on how
    many seeds were pooled, so the naive side is one copy of the per-tile counts)."""
    evaluations = {
        m: e
        for m in METHODS
        if (e := [runs[k]["evaluation"] for k in sorted(runs) if k.startswith(m + "/")])
    }
    if not {"ddpm_cd", "supervised_unet"} <= evaluations.keys():
        return []
    counts = {m: tile_counts(e) for m, e in evaluations.items()}
    naive = naive_counts(evaluations["ddpm_cd"][0])
    lines = [
        "",
        "Paired tile bootstrap (the 7 test tiles resampled together for both sides; each "
        "method's seeds pooled; 95% interval of the F1 difference, in points):",
        "",
    ]
    for a, b in PAIRS:
        if a not in counts or (b != "naive" and b not in counts):
            continue
        other = naive if b == "naive" else counts[b]
        lines.append(
            difference_line(f"{NAMES[a]} - {NAMES[b]}", paired_difference(counts[a], other))
        )
    return lines


def seed_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, std (ddof 1) and the mean +- std interval of every metric over seeds."""
    out = {}
    for metric in METRICS:
        values = np.array([run[metric] for run in runs], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        mean = float(values.mean())
        out[metric] = {
            "mean": mean,
            "std": std,
            "low": mean - std,
            "high": mean + std,
            "n": len(values),
        }
    return out


def verdict(ddpm: dict[str, float], supervised: dict[str, float]) -> str:
    """The issue's target: DDPM-CD matches (intervals overlap) or beats the U-Net in F1."""
    if ddpm["low"] > supervised["high"]:
        return "DDPM-CD beats the supervised U-Net (the intervals do not overlap): target met"
    if supervised["low"] > ddpm["high"]:
        return (
            "the supervised U-Net beats DDPM-CD (the intervals do not overlap): target **not met**"
        )
    return (
        "not distinguishable (the intervals overlap): DDPM-CD matches the U-Net at "
        "this budget, which is all the target asks, and says nothing about which is better"
    )


def aid_generator_lines(gen: dict[str, Any] | None) -> list[str]:
    """The report's description of the AID-pre-trained generator (none before it is trained)."""
    if not gen:
        return []
    return [
        "Second feature source (`configs/change/aid_generator.yaml`): the same UNet trained on "
        "random 64 px crops of the 4,500 AID scenes of `../shared/data/aid` (30 classes, "
        "0.5-8 m, no LEVIR-CD image), as DDPM-CD assumes a generator pre-trained on other "
        f"unlabelled imagery: {gen.get('steps')} steps of batch {gen.get('batch_size')} (the "
        f"LEVIR generator's budget), {gen.get('train_minutes')} min, final loss "
        f"{gen.get('final_loss', float('nan')):.4f}. Its head is trained exactly as the first "
        "DDPM-CD head (`configs/change/levir_ddpm_cd.yaml`, same seeds and steps).",
        "",
    ]


def rescore_lines(runs: dict[str, Any], rescored: dict[str, Any]) -> list[str]:
    """How the re-scored runs (``--rescore``) compare with the recorded ones, in F1."""
    if not rescored:
        return []
    lines = [
        "",
        "Re-scored runs (`--rescore`: the run evaluated again to add the probability "
        "histograms; a run whose folder was gone was trained again with the same config and "
        "seed, here on another machine, with its generator when that was gone too, recorded "
        "under `rescored_generators`): F1 recorded -> F1 re-scored:",
        "",
    ]
    for key in sorted(rescored):
        before = runs[key]["evaluation"]["f1"]
        after = rescored[key]["evaluation"]["f1"]
        how = "retrained" if rescored[key].get("retrained") else "same weights"
        lines.append(f"- {key}: {100 * before:.1f} -> {100 * after:.1f} ({how})")
    return lines


def counts_at(evaluation: dict[str, Any], threshold: float) -> np.ndarray:
    """``[tiles, 3]`` (tp, fp, fn) per test tile of one run at ``threshold`` (a bin edge of its
    probability histograms: :meth:`~terradiff.metrics.change.ChangeScoreHistogram.confusion_at`)."""
    from terradiff.metrics.change import ChangeScoreHistogram

    rows = []
    for window in evaluation["per_window_scores"]:
        c = ChangeScoreHistogram.from_dict(window).confusion_at(threshold)
        rows.append([c.tp, c.fp, c.fn])
    return np.array(rows, dtype=np.float64)


def oracle_f1(evaluation: dict[str, Any]) -> float:
    """The best F1 any one threshold gives on the run's test tiles (an upper bound)."""
    from terradiff.metrics.change import f1_optimal_threshold

    return f1_optimal_threshold(pooled_histogram([evaluation]))[1]


def mean_std(values: np.ndarray) -> str:
    """``mean +- std`` (ddof 1; 0 for one value) in points."""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{100 * values.mean():.1f} +- {100 * std:.1f}"


def scored_runs(runs: dict[str, Any], rescored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run key -> its evaluation with probability histograms: the re-scored one where there is
    one, else the study's own (runs evaluated before histograms existed are left out)."""
    scored = {k: rescored.get(k, {}).get("evaluation", runs[k]["evaluation"]) for k in runs}
    return {k: e for k, e in scored.items() if "per_window_scores" in e}


def current_calibrations(
    scored: dict[str, dict[str, Any]], calibrated: dict[str, Any]
) -> dict[str, Any]:
    """The calibrations made on the checkpoint whose test scores are in ``scored`` (a run
    re-scored after its calibration has none until ``--calibrate`` runs again)."""
    return {
        k: c
        for k, c in calibrated.items()
        if k in scored and c.get("checkpoint") == scored[k].get("checkpoint")
    }


def complete_methods(runs: dict[str, Any], *records: dict[str, Any]) -> dict[str, list[str]]:
    """Method -> its run keys, for the methods every run of which is in each of ``records``."""
    chosen = {}
    for method in METHODS:
        keys = [k for k in sorted(runs) if k.startswith(method + "/")]
        if keys and all(k in record for k in keys for record in records):
            chosen[method] = keys
    return chosen


def calibrated_counts(
    runs: dict[str, Any], rescored: dict[str, Any], calibrated: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Method -> ``[tiles, 3]`` test counts at each run's training-chosen threshold, its runs
    summed (methods whose every run has histograms and is calibrated)."""
    scored = scored_runs(runs, rescored)
    calibrated = current_calibrations(scored, calibrated)
    return {
        method: np.sum([counts_at(scored[k], calibrated[k]["threshold"]) for k in keys], axis=0)
        for method, keys in complete_methods(runs, scored, calibrated).items()
    }


def threshold_lines(
    runs: dict[str, Any], rescored: dict[str, Any], calibrated: dict[str, Any]
) -> list[str]:
    """Test F1 at the threshold each run chose on its own training tiles (``--calibrate``),
    beside F1 at 0.5 and the test-tile oracle, and the paired tile-bootstrap F1 differences at
    the chosen thresholds (a method is shown once all its seeds are calibrated)."""
    scored = scored_runs(runs, rescored)
    calibrated = current_calibrations(scored, calibrated)
    chosen = complete_methods(runs, scored, calibrated)
    if not chosen:
        return []
    lines = [
        "",
        "Threshold chosen without the test tiles (`--calibrate`): each run scores its own 4 "
        "training tiles whole and keeps the probability threshold (a multiple of 0.01) that "
        "maximises F1 there; that threshold is then applied to the test tiles. The training "
        "tiles were seen in training, so a model that fits them closely finds its threshold "
        "where it is most confident; with 4 labelled tiles there is no separate validation "
        "tile. Test F1 mean +- std over seeds, in points; 'oracle' is the best single "
        "threshold on the test tiles themselves (an upper bound, not a result):",
        "",
    ]
    counts = {}
    for method, keys in chosen.items():
        thresholds = [calibrated[k]["threshold"] for k in keys]
        evaluations = [scored[k] for k in keys]
        per_run = [counts_at(e, t) for e, t in zip(evaluations, thresholds, strict=True)]
        counts[method] = np.sum(per_run, axis=0)
        at_chosen = np.array(
            [f1_of(dict(zip(("tp", "fp", "fn"), c.sum(0), strict=True))) for c in per_run]
        )
        at_default = np.array([e["f1"] for e in evaluations])
        oracle = np.array([oracle_f1(e) for e in evaluations])
        spread = " / ".join(f"{t:.2f}" for t in thresholds)
        lines.append(
            f"- {NAMES[method]}: thresholds {spread}; test F1 {mean_std(at_chosen)} "
            f"(at 0.5: {mean_std(at_default)}; oracle {mean_std(oracle)})"
        )
    naive = naive_counts(scored[next(iter(chosen.values()))[0]])
    at_half = {m: tile_counts([scored[k] for k in chosen[m]]) for m in chosen}
    lines += [
        "",
        "Paired tile bootstrap of test F1 at the chosen thresholds, and at 0.5 for the same "
        "runs, so that only the threshold differs (points):",
        "",
    ]
    for a, b in PAIRS:
        if a in counts and (b == "naive" or b in counts):
            label = f"{NAMES[a]} - {NAMES[b]}"
            chosen_d = paired_difference(counts[a], naive if b == "naive" else counts[b])
            half_d = paired_difference(at_half[a], naive if b == "naive" else at_half[b])
            lines.append(difference_line(label, chosen_d) + "; at 0.5 " + difference_text(half_d))
    return lines


def write_report(results: dict[str, Any], out: Path) -> None:
    """``out/README.md`` from ``results``."""
    from terradiff.io import atomic_write_text

    gen = results.get("generator", {})
    runs = results.get("runs", {})
    lines = [
        *report_header(
            "Change detection on LEVIR-CD: diffusion features vs a supervised U-Net (issue 17)",
            results,
        ),
        "Data: the LEVIR-CD sample of `../shared/data/levir-cd`, LEVIR-CD's own split by file "
        "name: 4 labelled training tiles (`train_*`, `val_*`; one of them, `train_386`, has no "
        "change) and 7 test tiles (`test_*`), 256x256 px each. Training uses random 64 px crops "
        "of the training tiles; every test tile is predicted whole. This is a tiny labelled set: "
        "the numbers say what 4 tiles allow, not what either method reaches on LEVIR-CD's 445 "
        "training tiles (DDPM-CD's published F1 is 90.91 with all of them).",
        "",
        f"Generator (DDPM-CD's feature source): trained on the 8 unlabelled before/after images "
        f"of the training tiles, {gen.get('steps')} steps of batch {gen.get('batch_size')}, "
        f"{gen.get('train_minutes')} min, {gen.get('parameters')} parameters.",
        "",
        *aid_generator_lines(results.get("aid_generator")),
        "| method | trainable params | steps x batch | F1 | IoU | precision | recall | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summaries = {}
    for method, (label, _) in METHODS.items():
        cells = [runs[k] for k in sorted(runs) if k.startswith(method + "/")]
        if not cells:
            continue
        summary = seed_summary([c["evaluation"] for c in cells])
        summaries[method] = summary
        first = cells[0]
        row = " | ".join(
            f"{100 * summary[m]['mean']:.1f} +- {100 * summary[m]['std']:.1f}" for m in METRICS
        )
        lines.append(
            f"| {label} | {first['evaluation']['trainable_parameters']:,} | "
            f"{first['training']['steps']} x {first['training']['batch_size']} | {row} | "
            f"{len(cells)} |"
        )
    if runs:  # the naive baseline: every pixel called change
        any_run = next(iter(runs.values()))["evaluation"]
        positives = any_run["tp"] + any_run["fn"]
        negatives = any_run["fp"] + any_run["tn"]
        naive = f1_of({"tp": positives, "fp": negatives, "fn": 0})
        lines.append(
            f"| naive: every pixel is change | 0 | - | {100 * naive:.1f} | "
            f"{100 * positives / (positives + negatives):.1f} | "
            f"{100 * positives / (positives + negatives):.1f} | 100.0 | - |"
        )
    lines += ["", "Per run (F1 with a 95% bootstrap interval over the 7 test tiles):", ""]
    for key in sorted(runs):
        f1 = runs[key]["f1_tiles"]
        lines.append(
            f"- {key}: F1 {100 * f1['f1']:.1f} [{100 * f1['low']:.1f}, {100 * f1['high']:.1f}], "
            f"{runs[key]['training']['train_minutes']} min of training"
        )
    if {"ddpm_cd", "supervised_unet"} <= summaries.keys():
        ddpm, supervised = summaries["ddpm_cd"]["f1"], summaries["supervised_unet"]["f1"]
        if min(ddpm["n"], supervised["n"]) < 2:  # no spread over seeds yet: the tile intervals
            ddpm, supervised = (
                runs["ddpm_cd/seed0"]["f1_tiles"],
                runs["supervised_unet/seed0"]["f1_tiles"],
            )
            basis = "one seed so far, so read on the 95% tile-bootstrap intervals of seed 0"
        else:
            basis = "mean +- std over seeds"
        lines += [
            "",
            "Verdict on F1 (issue 17's target: DDPM-CD matches or beats the same-size supervised "
            f"U-Net; {basis}): {verdict(ddpm, supervised)}.",
        ]
    if {"ddpm_cd_aid", "supervised_unet"} <= summaries.keys():
        aid, supervised = summaries["ddpm_cd_aid"]["f1"], summaries["supervised_unet"]["f1"]
        if min(aid["n"], supervised["n"]) >= 2:
            lines += [
                "",
                "The same target with the AID-pre-trained generator (mean +- std over seeds): "
                f"{verdict(aid, supervised)}.",
            ]
    lines += paired_lines(runs)
    lines += rescore_lines(runs, results.get("rescored", {}))
    lines += ap_lines(runs, results.get("rescored", {}))
    rescored, calibrated = results.get("rescored", {}), results.get("calibrated", {})
    lines += threshold_lines(runs, rescored, calibrated)
    scored = scored_runs(runs, rescored)
    curves = {m: [scored[k] for k in keys] for m, keys in complete_methods(runs, scored).items()}
    counts = calibrated_counts(runs, rescored, calibrated)
    if plot_precision_recall(curves, NAMES, out / "pr_curves.png", counts):
        lines += [
            "",
            "![precision-recall curves of the test tiles, seeds pooled; dots at threshold 0.5, "
            "crosses at the thresholds chosen on the training tiles](pr_curves.png)",
        ]
    lines += ["", results.get("discussion", "").strip(), ""]
    reading = out / "reading.md"  # the hand-written reading (the study rewrites results.json)
    if reading.is_file():
        lines += [reading.read_text().strip(), ""]
    atomic_write_text(out / "README.md", "\n".join(lines).rstrip() + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default="outputs/change")
    parser.add_argument("--out", default="reports/change")
    parser.add_argument("--generator-steps", type=int, default=2000)
    parser.add_argument("--head-steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--rescore",
        nargs="+",
        default=[],
        choices=sorted(METHODS),
        help="evaluate these methods' recorded runs again (training any whose run folder is "
        "gone) to add the probability histograms of the threshold-free AP; the recorded F1 "
        "rows are kept",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="score every run with probability histograms on its training tiles and report "
        "test F1 at the threshold that maximises F1 there",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--redo", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from terradiff.evaluate import evaluate_change

    args = parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    results, save = open_results(out, redo=args.redo)
    if not args.report_only:
        record_command(results, argv)
        levir = Path(args.shared) / "levir-cd"

        def generator_for(method: str, record: dict[str, Any]) -> Path:
            """The run folder of ``method``'s generator, trained (or resumed) when not finished;
            what was trained goes into ``record``."""
            result_key, generator_config, data_folder = GENERATORS[method]
            generator = work / result_key
            record[result_key] = train(
                Path(generator_config).stem.replace("_", "-"),
                REPO / generator_config,
                [
                    f"data.root={Path(args.shared) / data_folder}",
                    f"output_dir={generator}",
                    f"train.max_steps={args.generator_steps}",
                    f"train.save_every={max(1, args.generator_steps // 4)}",
                    f"train.sample_every={args.generator_steps}",
                    "train.progress=false",
                ],
            )
            save()
            return generator

        runs = results.setdefault("runs", {})
        for seed in range(args.seeds):
            for method, (_, config) in METHODS.items():
                key = f"{method}/seed{seed}"
                if key in runs:
                    continue
                overrides = [
                    f"data.root={levir}",
                    f"output_dir={work / method / f'seed{seed}'}",
                    f"seed={seed}",
                    f"train.max_steps={args.head_steps}",
                    f"train.save_every={args.head_steps}",
                    f"train.sample_every={args.head_steps}",
                    "train.progress=false",
                ]
                if method in GENERATORS:  # trained on first need (its runs resume or are kept)
                    overrides.append(f"change.generator={generator_for(method, results)}")
                training = train(key, REPO / config, overrides)
                evaluation = evaluate_change(training["run_dir"], progress=False)
                runs[key] = {
                    "training": training,
                    "evaluation": evaluation,
                    "f1_tiles": bootstrap_f1(evaluation["per_window"]),
                }
                save()
                print(f"{key}: F1 {evaluation['f1']:.3f} IoU {evaluation['iou']:.3f}", flush=True)
        rescored = results.setdefault("rescored", {})
        for method in args.rescore:
            for key in sorted(k for k in runs if k.startswith(method + "/")):
                if key in rescored:
                    continue
                training = runs[key]["training"]
                run_dir = Path(training["run_dir"])
                # a folder gone, or one left part-trained by an interrupted re-training, is
                # trained (resumed) to its recorded steps before it is scored
                retrained = not is_finished(run_dir, training["steps"])
                if retrained:
                    overrides = [
                        f"data.root={levir}",
                        f"output_dir={run_dir}",
                        f"seed={key.rsplit('seed', 1)[1]}",
                        f"train.max_steps={training['steps']}",
                        f"train.save_every={training['steps']}",
                        f"train.sample_every={training['steps']}",
                        "train.progress=false",
                    ]
                    if method in GENERATORS:  # a generator trained again is recorded apart
                        record = results.setdefault("rescored_generators", {})
                        overrides.append(f"change.generator={generator_for(method, record)}")
                    train(key, REPO / METHODS[method][1], overrides)
                evaluation = evaluate_change(run_dir, progress=False)
                rescored[key] = {"evaluation": evaluation, "retrained": retrained}
                save()
                print(
                    f"{key} re-scored: F1 {evaluation['f1']:.3f} (recorded "
                    f"{runs[key]['evaluation']['f1']:.3f}), AP "
                    f"{evaluation['average_precision']:.3f}",
                    flush=True,
                )
        calibrated = results.setdefault("calibrated", {})
        scored = scored_runs(runs, rescored)
        for key in sorted(runs) if args.calibrate else []:
            if (
                key in scored
                and calibrated.get(key, {}).get("checkpoint") == (scored[key]["checkpoint"])
            ):
                continue  # calibrated on the weights its test scores come from
            if key not in scored:
                print(f"{key}: no probability histograms; --rescore it first", flush=True)
                continue
            on_training = evaluate_change(scored[key]["checkpoint"], split="train", progress=False)
            calibrated[key] = {
                "threshold": on_training["f1_optimal_threshold"],
                "train_f1": on_training["f1_at_optimal_threshold"],
                "train_f1_at_default": on_training["f1"],
                "tiles": on_training["tiles"],
                "checkpoint": on_training["checkpoint"],
                "per_window_scores": on_training["per_window_scores"],
            }
            save()
            print(
                f"{key}: threshold {calibrated[key]['threshold']:.2f} on the training tiles "
                f"(F1 there {on_training['f1_at_optimal_threshold']:.3f}, at 0.5 "
                f"{on_training['f1']:.3f})",
                flush=True,
            )
    write_report(results, out)
    print(f"wrote {out / 'README.md'}")


if __name__ == "__main__":
    main()
