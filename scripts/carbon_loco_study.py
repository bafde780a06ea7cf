"""Issue 14, carbon: leave-one-chip-out (LOCO) over the three shared BioMassters chips.

Each chip of ``../shared/data/biomassters`` (prepared as ``scripts/carbon_study.py`` does) is
the test chip once; the models are fitted on the left part of the other two. The right
``--val-fraction`` of each training chip's columns (after a ``--val-gap`` buffer used by neither)
is the validation region, on which every model choice is made: RF ``max_depth``, and for the
regression UNet and IIDM (``configs/carbon/biomassters_iidm.yaml`` via ``study_common.train``)
the checkpoint, i.e. the number of training steps, among ``--checkpoints`` evenly spaced ones.
Rows: constant (mean of all valid training pixels), per-class mean (training forest / non-forest
means applied by the test chip's forest mask), RF (:mod:`terradiff.carbon.baselines`), UNet
regression, IIDM (noise prediction, as configured) and IIDM-x0 (the same net predicting x_0, the
setting ``reports/sr_settings`` chose for SR on validation); ``--seeds`` seeds for RF and the
networks. Which IIDM target the README names is chosen on the validation region too
(:func:`prediction_choice`). Metrics on the test chip's forest
pixels (:func:`terradiff.carbon.metrics.carbon_metrics`, Mg C/ha): RMSE, MAE, R^2, bias.

Intervals: a 95% percentile bootstrap (Efron & Tibshirani 1993) over ``--block``-pixel square
blocks of the test chip (blocks, not pixels, because neighbouring pixels are correlated: the block
bootstrap of Kunsch 1989), each replicate also drawing one training seed; pooled over folds by
resampling blocks within each chip; differences to the constant paired (the same blocks). Cells
(fold x model x seed) are saved as measured, so a rerun skips finished ones; ``--report-only``
re-renders README.md and the figure from ``results.json``.

Run (``make carbon-loco-study``, ~2.5-3 h on 2 CPU cores with the defaults)::

    python scripts/carbon_loco_study.py --work outputs/carbon_loco --out reports/carbon_loco

Two processes started with the same command share the work: each claims a cell before measuring
it (:func:`claim_cell`) and saves under a lock, keeping the cells the other saved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.study_common import claim_cell, open_results, record_command, train  # noqa: E402
from terradiff.carbon.intervals import block_bootstrap as bootstrap  # noqa: E402
from terradiff.carbon.intervals import block_stats, metrics_from_stats  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.report_format import (  # noqa: E402
    SYMMETRIC_NOTE,
    format_interval,
    format_ranking,
    interval_from_samples,
    ranking,
)

BASE = REPO / "configs/carbon/biomassters_iidm.yaml"
MODELS = (
    "constant",
    "class_mean",
    "rf",
    "regression",
    "iidm",
    "iidm_x0",
    "iidm_mean4",
    "iidm_x0_mean4",
)
NAIVE = ("constant", "class_mean")
NETS = {"regression": ("carbon", "regression"), "iidm": None, "iidm_x0": None}
"""Trained networks and their method switch (None: the base config's IIDM)."""
NET_OVERRIDES = {"iidm_x0": ["diffusion.prediction=x0"]}
"""Config overrides of a network row beyond the base config."""
IIDM_TARGETS = {"iidm": "eps", "iidm_x0": "x0"}
"""The IIDM rows and the prediction target each trains (:func:`prediction_choice`)."""
ENSEMBLES = {"iidm_mean4": ("iidm", 4), "iidm_x0_mean4": ("iidm_x0", 4)}
"""Rows that map with the checkpoint chosen for another row: (that row, samples averaged).
The mean of N samples has expected squared error var/N above the conditional mean's, so N is
fixed beforehand (4: three quarters of what any N could remove), not tuned."""
LABELS = {
    "constant": "constant (training mean)",
    "class_mean": "per-class mean (forest / non-forest)",
    "rf": "RF",
    "regression": "UNet regression",
    "iidm": "IIDM",
    "iidm_x0": "IIDM-x0 (x_0 prediction)",
    "iidm_mean4": "IIDM mean-4 (mean of 4 samples)",
    "iidm_x0_mean4": "IIDM-x0 mean-4 (mean of 4 samples)",
}
METRICS = ("rmse", "mae", "r2", "bias")
KEYS = ("mean", "low", "high")
RULE = "lowest RMSE on the validation region's forest pixels (never the test chip)"


def make_folds(chips: list[str]) -> list[dict[str, Any]]:
    """Leave-one-chip-out: each chip once the test chip, the others the training chips."""
    return [{"test": t, "train": [c for c in chips if c != t]} for t in sorted(chips)]


def split_columns(width: int, val_fraction: float, gap: int) -> tuple[range, range]:
    """``(fit columns, validation columns)``: validation the right ``val_fraction``, and a
    ``gap``-column buffer left of it in neither (a fixed spatial split, not random pixels)."""
    val = max(1, round(width * val_fraction))
    fit_end = width - val - gap
    if fit_end < 1:
        raise ValueError(f"width {width}: nothing left to fit on with {val_fraction=} {gap=}")
    return range(0, fit_end), range(width - val, width)


def write_fold_data(chips_dir: Path, fold: dict[str, Any], root: Path, args: Any) -> dict:
    """``root/<chip>_fit`` and ``root/<chip>_val`` column crops of the fold's training chips
    (image, target, mask; georeferencing follows the window); the test chip is not copied."""
    from terradiff.data.raster import read_raster
    from terradiff.data.raster_write import write_raster

    names: dict[str, list[str]] = {"fit": [], "val": []}
    for chip in fold["train"]:
        height, width = read_raster(chips_dir / chip / "mask.tif").array.shape[-2:]
        fit, val = split_columns(width, args.val_fraction, args.val_gap)
        for part, cols in (("fit", fit), ("val", val)):
            folder = root / f"{chip}_{part}"
            names[part].append(folder.name)
            folder.mkdir(parents=True, exist_ok=True)
            for file in ("image.tif", "target.tif", "mask.tif"):
                if (folder / file).is_file():
                    continue
                data = read_raster(
                    chips_dir / chip / file, window=((0, height), (cols.start, cols.stop))
                )
                extra = {"valid_mask": data.valid_mask, "band_names": data.band_names}
                write_raster(folder / file, data.array, data.profile, overwrite=True, **extra)
    return names


def load_chip(chip_dir: Path) -> dict[str, Any]:
    """Image, band names, carbon (Mg C/ha), forest (= mask and valid) and valid pixels."""
    from terradiff.data.raster import read_raster

    image, target = read_raster(chip_dir / "image.tif"), read_raster(chip_dir / "target.tif")
    valid = image.valid_mask & target.valid_mask
    return {
        "image": image.array.astype(np.float32),
        "names": image.band_names,
        "carbon": target.array[0].astype(np.float64),
        "forest": (read_raster(chip_dir / "mask.tif").array[0] > 0) & valid,
        "valid": valid,
    }


def class_means(chips: list[dict[str, Any]]) -> dict[str, float]:
    """Training means: all valid pixels (the constant) and forest / non-forest pixels."""
    carbon = np.concatenate([c["carbon"][c["valid"]] for c in chips])
    forest = np.concatenate([c["forest"][c["valid"]] for c in chips])
    nonforest = float(carbon[~forest].mean()) if (~forest).any() else 0.0
    return {
        "all": float(carbon.mean()),
        "forest": float(carbon[forest].mean()),
        "nonforest": nonforest,
    }


def class_mean_map(means: dict[str, float], forest: np.ndarray) -> np.ndarray:
    """The per-class baseline: the forest mean on (test) forest pixels, non-forest elsewhere."""
    return np.where(forest, means["forest"], means["nonforest"])


def fit_rf(
    fit: list[dict], val: list[dict], test: dict, depths: list[int | None], seed: int, args: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """RF (:func:`terradiff.carbon.baselines.make_pixel_model`) on the fit pixels, ``max_depth``
    chosen by the validation RMSE; the chosen model's test map and the choice made."""
    from terradiff.carbon.baselines import make_pixel_model, pixel_features, predict_map

    def features(chip: dict) -> np.ndarray:
        return pixel_features(chip["image"], chip["names"])[0]

    x = np.concatenate([features(c)[c["forest"].reshape(-1)] for c in fit])
    y = np.concatenate([c["carbon"][c["forest"]] for c in fit])
    if len(x) > args.max_pixels:
        keep = np.random.default_rng(seed).choice(len(x), args.max_pixels, replace=False)
        x, y = x[keep], y[keep]
    scores, models = {}, {}
    for depth in depths:
        model = make_pixel_model("rf", seed).set_params(max_depth=depth).fit(x, y)
        maps = [predict_map(model, features(c), c["carbon"].shape) for c in val]
        scores[str(depth)] = forest_rmse(maps, val)
        models[str(depth)] = model
    best = min(scores, key=scores.__getitem__)
    choice = {"max_depth": best, "rule": RULE, "val_rmse_by_max_depth": scores}
    choice["training_pixels"] = len(x)
    return predict_map(models[best], features(test), test["carbon"].shape), choice


def net_maps(
    checkpoint: Path, chips: list[dict[str, Any]], ddim_steps: int, seed: int, members: int = 1
) -> list[np.ndarray]:
    """A checkpoint's (EMA weights, loaded once) maps of ``chips`` in Mg C/ha; DDIM for
    diffusion models, each the mean of ``members`` samples drawn from a generator seeded with
    ``seed`` per chip (so the first sample is the one-sample map)."""
    import torch

    from terradiff.tasks import load_task

    task, _ = load_task(checkpoint, use_ema=True)
    spec = task.sampling_spec(steps=ddim_steps)
    maps = []
    for chip in chips:
        x = torch.from_numpy(task.band_info.band_scaling().to_model(chip["image"]))[None].float()
        x = torch.where(torch.from_numpy(chip["valid"])[None, None], x, torch.zeros_like(x))
        generator = torch.Generator().manual_seed(seed)
        estimate = task.estimate(task.net, x, ensemble=members, spec=spec, generator=generator)
        maps.append(task.to_physical(estimate.mean)[0, 0].numpy().astype(np.float64))
    return maps


def forest_rmse(maps: list[np.ndarray], chips: list[dict[str, Any]]) -> float:
    """RMSE of ``maps`` over the forest pixels of ``chips`` together (Mg C/ha)."""
    errors = [(m - c["carbon"])[c["forest"]] for m, c in zip(maps, chips, strict=True)]
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def train_net(
    model: str, run_dir: Path, data_root: Path, names: dict, seed: int, args: Any
) -> dict:
    """Train one network of one fold and seed (resumed if interrupted), checkpoints kept at
    ``--checkpoints`` evenly spaced steps for the validation choice."""
    steps = args.iidm_steps if model in IIDM_TARGETS else args.regression_steps
    every = max(1, steps // args.checkpoints)
    overrides = [
        f"data.root={data_root}",
        f"output_dir={run_dir}",
        f"name=loco-{model}",
        f"seed={seed}",
        f"carbon.train_chips={json.dumps(names['fit'])}",
        f"carbon.val_chips={json.dumps(names['val'])}",
        "carbon.test_chips=[]",
        f"train.max_steps={steps}",
        f"train.save_every={every}",
        f"train.keep_checkpoints={args.checkpoints + 1}",
        f"train.warmup_steps={min(50, steps // 10)}",
        "train.sample_every=1000000000",
        "train.progress=false",
    ]
    overrides += NET_OVERRIDES.get(model, [])
    return train(f"loco-{model}", BASE, overrides + args.set, NETS[model])


def choose_checkpoint(run_dir: Path, val: list[dict], ddim_steps: int, seed: int) -> dict:
    """The checkpoint (training step) with the lowest RMSE on the validation pixels."""
    from terradiff.checkpoint import list_checkpoints

    scores, paths = {}, {}
    for path in list_checkpoints(run_dir):
        step = int(path.name.split("_")[-1])
        scores[str(step)] = forest_rmse(net_maps(path, val, ddim_steps, seed), val)
        paths[str(step)] = str(path)
    best = min(scores, key=scores.__getitem__)
    return {"step": int(best), "rule": RULE, "checkpoint": paths[best], "val_rmse_by_step": scores}


def prediction_choice(cells: dict[str, Any]) -> dict[str, Any] | None:
    """Which IIDM prediction target the README names, chosen on validation only.

    Rule (fixed before the IIDM-x0 runs): over the (fold, seed) pairs measured for every IIDM
    row, the target whose chosen checkpoints have the lower mean validation RMSE. Also the
    paired per-pair differences (x0 - eps) and how many pairs favour each. None until a pair
    has both rows.
    """
    by_row: dict[str, dict[str, float]] = {row: {} for row in IIDM_TARGETS}
    for key, cell in cells.items():
        test, model, seed = key.split("/")
        if model in IIDM_TARGETS and "choice" in cell:
            chosen = cell["choice"]["val_rmse_by_step"][str(cell["choice"]["step"])]
            by_row[model][f"{test}/{seed}"] = float(chosen)
    pairs = sorted(set.intersection(*(set(v) for v in by_row.values())))
    if not pairs:
        return None
    means = {row: float(np.mean([by_row[row][p] for p in pairs])) for row in IIDM_TARGETS}
    best = min(means, key=means.__getitem__)
    differences = [by_row["iidm_x0"][p] - by_row["iidm"][p] for p in pairs]
    return {
        "rule": "lower mean validation RMSE of the chosen checkpoints over the shared "
        "(fold, seed) pairs",
        "pairs": pairs,
        "mean_val_rmse": {IIDM_TARGETS[r]: v for r, v in means.items()},
        "x0_minus_eps": differences,
        "x0_lower_in": int(sum(d < 0 for d in differences)),
        "chosen_row": best,
        "chosen_target": IIDM_TARGETS[best],
    }


def choice_lines(choice: dict[str, Any] | None) -> list[str]:
    """The README section stating the validation choice of the IIDM target."""
    if choice is None:
        return []
    mean = choice["mean_val_rmse"]
    diffs = ", ".join(f"{d:+.2f}" for d in choice["x0_minus_eps"])
    return [
        "## IIDM prediction target, chosen on validation",
        "",
        f"Rule, fixed in code before the IIDM-x0 runs: {choice['rule']}. Over "
        f"{len(choice['pairs'])} (fold, seed) pairs, mean validation RMSE {mean['eps']:.2f} "
        f"(eps) and {mean['x0']:.2f} (x0) Mg C/ha; x0 - eps per pair: {diffs} (x0 lower in "
        f"{choice['x0_lower_in']} of {len(choice['pairs'])}). Chosen: "
        f"**{choice['chosen_target']}** ({LABELS[choice['chosen_row']]}).",
        "",
    ]


def point_metrics(folds: list[np.ndarray]) -> dict[str, float]:
    """The metrics of all blocks, averaged over seeds (seed ``s`` of every fold together)."""
    seeds = min(stats.shape[0] for stats in folds)
    per_seed = [metrics_from_stats(sum(s[k].sum(0) for s in folds)) for k in range(seeds)]
    return {m: float(np.mean([p[m] for p in per_seed])) for m in METRICS}


def intervals(folds: list[np.ndarray], references: dict[str, list], args: Any) -> dict[str, Any]:
    """Point values and 95% percentile intervals of every metric; of the paired RMSE difference
    model - reference for each of ``references``; and the seeds' Student-t RMSE interval."""
    tails = (2.5, 97.5)
    point = point_metrics(folds)
    reps = metrics_from_stats(bootstrap(folds, args.resamples))
    out: dict[str, Any] = {"seeds": int(folds[0].shape[0])}
    for m in METRICS:
        low, high = np.nanpercentile(reps[m], tails)
        out[m] = {"mean": point[m], "low": float(low), "high": float(high), "level": 0.95}
    for name, ref in references.items():
        diff = reps["rmse"] - metrics_from_stats(bootstrap(ref, args.resamples))["rmse"]
        low, high = np.percentile(diff, tails)
        mean = point["rmse"] - point_metrics(ref)["rmse"]
        out[f"rmse_minus_{name}"] = {"mean": mean, "low": float(low), "high": float(high)}
    if folds[0].shape[0] > 1 and len(folds) == 1:
        per_seed = metrics_from_stats(folds[0].sum(1))["rmse"]
        out["rmse_seed_interval"] = interval_from_samples([float(v) for v in per_seed])
    return out


def summarise(results: dict[str, Any], args: Any) -> dict[str, Any]:
    """``{fold test chip or "pooled": {model: intervals}}`` from the cells' block statistics."""
    cells, fold_names = results.get("cells", {}), [f["test"] for f in results["folds"]]

    def stats(test: str, model: str) -> np.ndarray | None:
        found = [v["blocks"] for k, v in sorted(cells.items()) if k.startswith(f"{test}/{model}/")]
        return np.asarray(found, dtype=np.float64) if found else None

    summary: dict[str, Any] = {}
    for scope in [*fold_names, "pooled"]:
        tests = fold_names if scope == "pooled" else [scope]
        found = {m: [stats(t, m) for t in tests] for m in MODELS}
        found = {m: f for m, f in found.items() if all(x is not None for x in f)}
        # every other model is a reference: the naive ones for the table, the learned ones for
        # the paired comparisons between learned models (reading)
        summary[scope] = {
            m: intervals(f, {k: v for k, v in found.items() if k != m}, args)
            for m, f in found.items()
        }
    return summary


ABOUT = """\
**Seasonal mismatch.** Chip 000aa810 has Sentinel-2 images for months 06-11 (March to August)
only, so its composite is a spring/summer median, while the other two chips' composites are
medians over the whole year, winter months included. Whenever 000aa810 is the test chip the models
meet a composite unlike their training ones, and when it is a training chip its features differ
from the other training chip's. This is a property of the available data, not corrected here.

**Folds.** Each chip is the test chip once; the models are fitted on the left part of the other two
(columns 0-{fit_end} of 256); the right {val_fraction:.0%} of their columns is the validation region
(a buffer of {val_gap} columns between the two is used by neither); the test chip is read only
for the final scoring. Only 3 chips exist here, so every fold's score is one 256x256 chip (2.56 km
x 2.56 km, Finland): little evidence about other places.

**Models; choices made on validation, never on the test chip.** Constant = mean carbon of all valid
training pixels. Per-class mean = the training forest pixels' mean on the test chip's forest
pixels, the non-forest mean elsewhere: it uses the test chip's forest mask, which the IIDM's
forest-masked scoring also uses; under that mask it is a constant at the training forest mean. RF:
max_depth from {rf_depths} by validation RMSE, fitted on at most {max_pixels:,} forest pixels.
UNet regression and IIDM: `configs/carbon/biomassters_iidm.yaml` (widths as configured, not
tuned), {regression_steps} and {iidm_steps} steps x batch 8 of 64x64 crops; the checkpoint
(training steps) among {checkpoints} evenly spaced ones chosen by validation RMSE; IIDM sampled
with DDIM-{ddim_steps}, one sample. The IIDM predicts the noise (eps), as configured; IIDM-x0
is the same config with `diffusion.prediction: x0` and the same budget (the target that
`reports/sr_settings` chose for SR on validation), added after the first five rows. The
mean-4 rows map with the checkpoint chosen for their one-sample row and average 4 DDIM samples
(the first is the one-sample map); 4 was fixed beforehand, not tuned. Seeds:
{seeds} for RF and the networks. Budget: about
{minutes[train]:.0f} minutes of network training and {minutes[all]:.0f} minutes in all (training,
validation, test maps) on the CPU of the machine above.

**Intervals.** 95% percentile bootstrap over {block}x{block}-pixel blocks of the test chip
({resamples} resamples), each replicate drawing one seed too, so the interval covers test-pixel
sampling and training seed; pooled: blocks resampled within each chip. `RMSE - constant` and
`RMSE - per-class mean` are paired (the same blocks for both), as are the comparisons between
the learned models listed under each table. `RMSE over seeds` is the Student-t
interval of the seeds' RMSEs alone. Metrics on the test chip's forest pixels, Mg C/ha; bias =
mean(prediction - truth). Ranked only where the intervals separate (≈: not distinguishable;
the ranking chains overlapping unpaired intervals, the paired differences are the sharper test).
{symmetric}"""


def _fmt(iv: dict[str, Any] | None, digits: int = 2) -> str:
    return format_interval(iv, digits) if iv else "-"


def _verdict(iv: dict[str, Any], zero_means: str, above: str, below: str) -> str:
    """What an interval allows one to say about its sign."""
    if iv["low"] > 0:
        return above
    if iv["high"] < 0:
        return below
    return zero_means


def reading(scope: dict[str, Any]) -> list[str]:
    """Sentences that say only what the intervals allow (one scope: a fold or pooled)."""
    rmse = {LABELS[m]: v["rmse"] for m, v in scope.items()}
    groups = format_ranking(ranking(rmse, higher_is_better=False))
    lines = [f"- RMSE ranking by the unpaired intervals (conservative; lower is better): {groups}."]
    for model, row in scope.items():
        said = []
        for ref in NAIVE:
            if f"rmse_minus_{ref}" in row:
                diff, name = row[f"rmse_minus_{ref}"], LABELS[ref].split(" (")[0]
                verdict = _verdict(diff, "not distinguishable from", "worse than", "better than")
                said.append(f"{verdict} the {name} (RMSE difference {_fmt(diff)}, paired)")
        r2 = _verdict(row["r2"], "R^2 not distinguishable from 0", "R^2 above 0", "R^2 below 0")
        bias = _verdict(row["bias"], "no bias the interval can show", "biased high", "biased low")
        said += [f"{r2} ({_fmt(row['r2'], 3)})", f"{bias} ({_fmt(row['bias'])} Mg C/ha)"]
        lines.append(f"- {LABELS[model]}: {'; '.join(said)}.")
    learned = [m for m in scope if m not in NAIVE]
    for i, model in enumerate(learned):
        for other in learned[i + 1 :]:
            diff = scope[model].get(f"rmse_minus_{other}")
            if diff is None:
                continue
            verdict = _verdict(diff, "not distinguishable from", "worse than", "better than")
            lines.append(
                f"- {LABELS[model]} {verdict} {LABELS[other]} (RMSE difference {_fmt(diff)}, "
                "paired)."
            )
    return lines


def interval_table(scope: dict[str, Any]) -> list[str]:
    """One row per model of a fold (or the pooled scope): every metric with its interval."""
    lines = [
        "| model | seeds | RMSE | MAE | R^2 | bias | RMSE - constant | RMSE - per-class mean | "
        "RMSE over seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, r in scope.items():
        lines.append(
            f"| {LABELS[model]} | {r['seeds']} | {_fmt(r['rmse'])} | {_fmt(r['mae'])} | "
            f"{_fmt(r['r2'], 3)} | {_fmt(r['bias'])} | {_fmt(r.get('rmse_minus_constant'))} | "
            f"{_fmt(r.get('rmse_minus_class_mean'))} | "
            f"{_fmt(r.get('rmse_seed_interval'))} |"
        )
    return lines


def save_plot(summary: dict[str, Any], path: Path) -> None:
    """RMSE with its 95% block-bootstrap interval per model, one panel per fold and pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = list(summary)
    fig, axes = plt.subplots(1, len(scopes), figsize=(3.4 * len(scopes), 3.6), sharey=True)
    for ax, scope in zip(np.atleast_1d(axes), scopes, strict=True):
        rows = summary[scope]
        names = list(rows)
        means, low, high = (np.array([rows[m]["rmse"][k] for m in names]) for k in KEYS)
        err = np.stack([means - low, high - means])
        ax.errorbar(range(len(names)), means, yerr=err, fmt="o", capsize=4)
        short = [LABELS[m].split(" (")[0] for m in names]
        ax.set_xticks(range(len(names)), short, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"test chip {scope}" if scope != "pooled" else "pooled (3 chips)", fontsize=9)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("RMSE, Mg C/ha (forest pixels)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def partial_banner(results: dict[str, Any]) -> list[str]:
    """A warning line when some fold lacks cells (a snapshot of a study that resumes)."""
    cells = results.get("cells", {})
    seeds = int(results.get("budget", {}).get("seeds", 1))
    folds = list(results.get("data", {}).get("chips", {}))
    expected = {
        f"{fold}/{model}/seed{seed}"
        for fold in folds
        for model in MODELS
        for seed in range(1 if model in NAIVE else seeds)
    }
    missing = len(expected - set(cells))
    if not missing:
        return []
    return [
        f"**Partial snapshot: {len(expected) - missing} of {len(expected)} cells measured** (the "
        "`seeds` columns say how many per row; the study resumes). Read no ranking from it until "
        "it is complete.",
        "",
    ]


def write_report(results: dict[str, Any], summary: dict[str, Any], out: Path) -> None:
    """``README.md`` (tables, choices, reading, command) and ``rmse.png`` from the results."""
    from terradiff.carbon.biomassters import MONTH_NAMES

    b, data = results["budget"], results["data"]
    fit, _ = split_columns(256, b["val_fraction"], b["val_gap"])
    cells = results.get("cells", {}).values()
    train_min = sum(c["train"]["train_minutes"] for c in cells if "train" in c)
    minutes = {"train": train_min, "all": sum(c.get("seconds", 0) for c in cells) / 60}
    save_plot(summary, out / "rmse.png")

    def months(idx: list[int]) -> str:
        return ", ".join(f"{i:02d} {MONTH_NAMES[i][:3]}" for i in idx)

    lines = [
        "# Carbon density, leave-one-chip-out over the three BioMassters chips (issue 14)",
        "",
        *partial_banner(results),
        "Every number is read from `results.json` (its `provenance` holds the exact argv, commit, "
        f"machine and date). Machine of the measurement: {results.get('machine_measured', '?')}. "
        "Commands that measured:",
        "",
        *[f"    {c}" for c in results.get("commands", [])],
        "",
        "## Data, folds and the seasonal mismatch",
        "",
        "| chip | Sentinel-2 months in the files (00 = Sep) | months in the composite | "
        "forest fraction | mean carbon of forest pixels (Mg C/ha) |",
        "|---|---|---|---|---|",
        *[
            f"| {c} | {months(v['files'])} | {months(v['used'])} | {v['forest_fraction']} | "
            f"{v['mean_carbon_forest']} |"
            for c, v in data["chips"].items()
        ],
        "",
        ABOUT.format(fit_end=fit.stop - 1, minutes=minutes, symmetric=SYMMETRIC_NOTE, **b),
        "",
        "![RMSE per model and fold](rmse.png)",
        "",
    ]
    for scope, rows in summary.items():
        title = "Pooled over the folds" if scope == "pooled" else f"Test chip {scope}"
        lines += [f"## {title}", "", *interval_table(rows), "", *reading(rows), ""]
    lines += choice_lines(results.get("iidm_choice"))
    written = out / "reading.md"  # the hand-written reading, kept apart from the rendered tables
    if written.is_file():
        lines += [written.read_text().strip(), ""]
    lines += ["## Choices made on validation", "", "| cell | choice | validation RMSE |", "|-|-|-|"]
    for key, cell in sorted(results.get("cells", {}).items()):
        choice = cell.get("choice")
        if choice and "members" in choice:
            lines.append(
                f"| {key} | step {choice['step']} (the one-sample row's), mean of "
                f"{choice['members']} | {choice['val_rmse_by_step'][str(choice['step'])]:.2f} "
                f"(one sample: {choice['val_rmse_one_sample']:.2f}) |"
            )
        elif choice and "step" in choice:
            scores = ", ".join(f"{k}: {v:.2f}" for k, v in choice["val_rmse_by_step"].items())
            lines.append(f"| {key} | step {choice['step']} (lowest) | by step: {scores} |")
        elif choice:
            scores = ", ".join(f"{k}: {v:.2f}" for k, v in choice["val_rmse_by_max_depth"].items())
            lines.append(f"| {key} | max_depth {choice['max_depth']} (lowest) | {scores} |")
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


def chip_record(shared: Path, chips_dir: Path) -> dict[str, Any]:
    """Per chip: months in the raw files, months in the composite, forest fraction, mean."""
    from terradiff.carbon.biomassters import month_files

    manifest = json.loads((chips_dir / "manifest.json").read_text())["chips"]
    keep = ("forest_fraction", "mean_carbon_forest")
    return {
        c: {"files": sorted(month_files(shared / c)), "used": v["months"]} | {k: v[k] for k in keep}
        for c, v in sorted(manifest.items())
    }


def ensemble_choice(base: dict[str, Any], members: int, val_rmse: float) -> dict[str, Any]:
    """The choice record of an ensemble row: the checkpoint chosen for its one-sample row, and
    the validation RMSE of the mean of ``members`` samples beside the one-sample one."""
    step = base["choice"]["step"]
    return {
        "step": step,
        "checkpoint": base["choice"]["checkpoint"],
        "members": members,
        "rule": "the checkpoint chosen (on validation) for the one-sample row",
        "val_rmse_by_step": {str(step): val_rmse},
        "val_rmse_one_sample": base["choice"]["val_rmse_by_step"][str(step)],
    }


def measure(
    model: str, fold: dict, seed: int, args: Any, data: dict, cells: dict[str, Any]
) -> dict[str, Any]:
    """One cell: fit or train ``model`` for ``fold`` and ``seed``, map the test chip, score it
    (an :data:`ENSEMBLES` row maps with the checkpoint of its one-sample row's cell)."""
    from terradiff.carbon.metrics import carbon_metrics

    test, fit, val = data["test"], data["fit"], data["val"]
    cell: dict[str, Any] = {}
    start = time.perf_counter()
    if model in ("constant", "class_mean"):
        cell["means"] = means = class_means(fit)
        pred = class_mean_map(means, test["forest"])
        if model == "constant":
            pred = np.full(test["carbon"].shape, means["all"])
    elif model == "rf":
        pred, cell["choice"] = fit_rf(fit, val, test, args.rf_depths, seed, args)
    elif model in ENSEMBLES:
        row, members = ENSEMBLES[model]
        base = cells[f"{fold['test']}/{row}/seed{seed}"]
        checkpoint = Path(base["choice"]["checkpoint"])
        *val_maps, pred = net_maps(checkpoint, [*val, test], args.ddim_steps, seed, members)
        cell["choice"] = ensemble_choice(base, members, forest_rmse(val_maps, val))
    else:
        run_dir = args.work / "runs" / fold["test"] / model / f"seed{seed}"
        cell["train"] = train_net(model, run_dir, data["root"], data["names"], seed, args)
        cell["choice"] = choose_checkpoint(run_dir, val, args.ddim_steps, seed)
        [pred] = net_maps(Path(cell["choice"]["checkpoint"]), [test], args.ddim_steps, seed)
    np.save(args.work / "maps" / f"{fold['test']}_{model}_seed{seed}.npy", pred.astype(np.float32))
    full = carbon_metrics(pred, test["carbon"], test["forest"], args.max_density)
    cell["metrics"] = {k: full[k] for k in (*METRICS, "pixels")}
    cell["blocks"] = block_stats(pred, test["carbon"], test["forest"], args.block).tolist()
    cell["seconds"] = round(time.perf_counter() - start, 1)
    return cell


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (defaults: the CPU budget of the committed report, ~2.5-3 h)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path("outputs/carbon_loco"))
    p.add_argument("--out", type=Path, default=Path("reports/carbon_loco"))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--seeds", type=int, default=3, help="seeds of RF and the networks")
    p.add_argument("--iidm-steps", type=int, default=400)
    p.add_argument("--regression-steps", type=int, default=400)
    p.add_argument("--checkpoints", type=int, default=4, help="candidate checkpoints per run")
    p.add_argument("--ddim-steps", type=int, default=20)
    depth = lambda s: None if s == "none" else int(s)  # noqa: E731
    p.add_argument("--rf-depths", type=depth, nargs="+", default=[6, 12, None], help="none: no cap")
    p.add_argument("--max-pixels", type=int, default=20_000, help="RF training pixels at most")
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--val-gap", type=int, default=8, help="buffer columns fit | validation")
    p.add_argument("--block", type=int, default=32, help="bootstrap block side (pixels)")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--set", action="append", default=[], help="config override, every network")
    p.add_argument("--report-only", action="store_true", help="re-render from results.json")
    p.add_argument("--redo", action="store_true", help="start results.json afresh")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Measure every missing cell (saved one by one), then write the report."""
    from terradiff.carbon.prepare import prepare_biomassters

    args = parse_args(argv)
    results, save = open_results(
        args.out,
        args.redo,
        report_only=args.report_only,
        data_paths=[args.shared / "biomassters"],
        merge=("cells", "commands"),
    )
    if not args.report_only:
        record_command(results, argv)
        chips_dir = args.work / "chips"
        if not (chips_dir / "manifest.json").is_file():
            prepare_biomassters(args.shared / "biomassters", chips_dir)
        (args.work / "maps").mkdir(parents=True, exist_ok=True)
        results["data"] = {"chips": chip_record(args.shared / "biomassters", chips_dir)}
        results["folds"] = make_folds(list(results["data"]["chips"]))
        keys = "seeds iidm_steps regression_steps checkpoints ddim_steps rf_depths max_pixels"
        keys += " val_fraction val_gap block resamples"
        results["budget"] = {k: getattr(args, k) for k in keys.split()}
        cells = results.setdefault("cells", {})
        args.max_density = float(yaml.safe_load(BASE.read_text())["carbon"]["max_density"])
        for seed in range(args.seeds):
            for fold in results["folds"]:
                root = args.work / "folds" / fold["test"]
                names = write_fold_data(chips_dir, fold, root, args)
                data = {
                    "root": root,
                    "names": names,
                    "test": load_chip(chips_dir / fold["test"]),
                    "fit": [load_chip(root / n) for n in names["fit"]],
                    "val": [load_chip(root / n) for n in names["val"]],
                }
                for model in args.models:
                    if seed > 0 and model in ("constant", "class_mean"):
                        continue  # deterministic: one "seed"
                    key = f"{fold['test']}/{model}/seed{seed}"
                    if key in cells:
                        continue
                    if model in ENSEMBLES:
                        base = f"{fold['test']}/{ENSEMBLES[model][0]}/seed{seed}"
                        if base not in cells:
                            print(f"skipping {key}: {base} not measured yet (rerun)", flush=True)
                            continue
                    if not claim_cell(args.work / "claims", key):
                        continue
                    print(f"measuring {key} ...", flush=True)
                    cells[key] = measure(model, fold, seed, args, data, cells)
                    m, sec = cells[key]["metrics"], cells[key]["seconds"]
                    print(f"  RMSE {m['rmse']:.2f} R^2 {m['r2']:.3f} ({sec:.0f} s)", flush=True)
                    save()
    args.resamples = results["budget"]["resamples"]
    summary = summarise(results, args)
    results["summary"] = summary
    results["iidm_choice"] = prediction_choice(results.get("cells", {}))
    save()
    write_report(results, summary, args.out)
    print(f"wrote {args.out / 'README.md'}")
    for model, row in summary.get("pooled", {}).items():
        print(f"pooled {LABELS[model]}: RMSE {_fmt(row['rmse'])}, R^2 {_fmt(row['r2'], 3)}")


if __name__ == "__main__":
    main()
