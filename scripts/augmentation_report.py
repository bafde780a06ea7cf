"""Render ``reports/augmentation/`` (README.md, figures) from the study's ``results.json``.

Every number in the README comes from ``results.json`` (written by
``scripts/augmentation_study.py``); run ``python scripts/augmentation_study.py --report-only`` to
re-render without training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.augmentation_study import CONDITIONS, TARGET_GAIN, gain_verdict, table

#: The subset issue 15's target is set on (10 real AID images per class).
TARGET_SUBSET = "aid/k10"
OTHER_SUBSET = " (issue 15's 3-point target is set at 10 AID images per class only)."


def target_words(met: bool) -> str:
    """The verdict on issue 15's target, for the target subset."""
    return (
        f"; issue 15's target (>= {100 * TARGET_GAIN:.0f} points, separated, at 10 real AID "
        "images per class) is " + ("met." if met else "**not met**.")
    )


LABELS = {
    "real": "real only",
    "classic": "real + classic augmentation (dihedral, mixup/cutmix)",
    "synthetic": "real + synthetic",
    "synthetic+classic": "real + synthetic + classic augmentation",
}


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def subset_prefixes(results: dict[str, Any]) -> list[str]:
    """``dataset/k<k>`` of every subset with a chosen guidance scale, in study order."""
    return list(results.get("chosen_scale", {}))


def plot(results: dict[str, Any], out: Path, seeds: int) -> Path | None:
    """Bar chart: test accuracy mean +- std per condition, one group per subset."""
    prefixes = subset_prefixes(results)
    if not prefixes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.2 + 1.8 * len(prefixes), 3.6))
    width = 0.8 / len(CONDITIONS)
    for i, condition in enumerate(CONDITIONS):
        means, stds, xs = [], [], []
        for j, prefix in enumerate(prefixes):
            row = table(results, prefix, seeds).get(condition)
            if row is not None:
                xs.append(j + (i - 1.5) * width)
                means.append(100 * row["mean"])
                stds.append(100 * row["std"])
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=LABELS[condition])
    ax.set_xticks(range(len(prefixes)), [p.replace("/k", "\n") + " real/class" for p in prefixes])
    ax.set_ylabel(f"test accuracy (%), mean +- std of {seeds} seeds")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], out: Path) -> None:
    """``out/README.md`` and ``out/accuracy.png`` from ``results``."""
    from terradiff.io import atomic_write_text

    seeds = int(results.get("seeds", 3))
    lines = [
        "# Synthetic training data for scene classification (issue 15, item 6)",
        "",
        "Commands (`make augmentation-study` runs them; each measurement is saved as it is made,",
        "so they resume):",
        "",
        *[f"    {command}" for command in results.get("commands", [])],
        "",
        f"Machine: {results.get('machine_measured', results.get('machine', '?'))}.",
        "",
    ]
    plot_path = plot(results, out, seeds)
    for prefix in subset_prefixes(results):
        rows = table(results, prefix, seeds)
        split = results.get("splits", {}).get(prefix, {})
        generator = results.get("generators", {}).get(prefix, {})
        trained_on = split.get("train", {}).get("images")
        lines += [
            f"## {prefix.replace('/k', ': ')} real images per class",
            "",
            "Settings: "
            + ", ".join(
                f"`{k}={v}`" for k, v in results.get("settings", {}).get(prefix, {}).items()
            )
            + ".",
            "",
            "Images: "
            + ", ".join(f"{name} {part['images']}" for name, part in split.items())
            + f". Generator: {generator.get('steps')} steps of batch "
            f"{generator.get('batch_size')}, {generator.get('train_minutes')} min, "
            f"{generator.get('parameters')} parameters, trained on the {trained_on} real "
            "training images only. Guidance scale chosen on validation: "
            f"{results['chosen_scale'][prefix]:g}.",
            "",
            "| condition | test accuracy (%) mean +- std | seeds |",
            "|---|---|---|",
        ]
        for condition in CONDITIONS:
            row = rows.get(condition)
            if row is not None:
                cell = f"{pct(row['mean'])} +- {pct(row['std'])}"
                lines.append(f"| {LABELS[condition]} | {cell} | {row['n']} |")
        judged = {
            key.rsplit("/s", 1)[1]: value
            for key, value in results.get("judge", {}).items()
            if key.startswith(prefix + "/s") and value
        }
        if judged:
            lines += [
                "",
                "How recognisable the generated images are: the accuracy of the shipped `aid-cnn` "
                "classifier (trained on 80% of all AID, so a judge here, not a held-out model) on "
                "the generated images w.r.t. the class each was asked for, 95% bootstrap "
                f"interval over images (chance {100 / 30:.1f}%): "
                + "; ".join(
                    f"scale {scale}: {pct(v['conditional_accuracy'])}% "
                    f"[{pct(v['conditional_accuracy_ci95'][0])}, "
                    f"{pct(v['conditional_accuracy_ci95'][1])}]"
                    for scale, v in sorted(judged.items(), key=lambda item: float(item[0]))
                )
                + ".",
            ]
        figure = f"samples_{prefix.replace('/k', '_k')}.png"
        if (out / figure).is_file():
            lines += [
                "",
                f"![first 8 classes: 6 real training images per row, then 6 generated at scale "
                f"{results['chosen_scale'][prefix]:g}]({figure})",
            ]
        if "synthetic+classic" in rows and "classic" in rows:
            verdict = gain_verdict(rows["synthetic+classic"], rows["classic"])
            lines += [
                "",
                f"Synthetic + classic vs classic alone: {100 * verdict['gain']:+.1f} points; "
                + (
                    "the mean +- std intervals do not overlap"
                    if verdict["separated"]
                    else "the mean +- std intervals overlap (not distinguishable)"
                )
                + (target_words(verdict["met"]) if prefix == TARGET_SUBSET else OTHER_SUBSET),
            ]
        lines.append("")
    if plot_path is not None:
        lines += [f"![test accuracy per condition]({plot_path.name})", ""]
    reading = out / "reading.md"  # the hand-written reading (kept apart: the study rewrites
    if reading.is_file():  # results.json while it runs)
        lines += [reading.read_text().strip(), ""]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
