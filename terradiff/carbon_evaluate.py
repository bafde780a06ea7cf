"""Score a carbon model's maps of whole chips against the naive maps (``terradiff evaluate``).

:func:`evaluate_carbon` maps every chip of one split whole (``carbon.train_chips``,
``val_chips``, ``test_chips``, or the hash split; choose settings on ``val``, read ``test`` once
at the end) and scores it on the chip's forest pixels (the forest mask, valid in image and
target: the IIDM paper's evaluation) in the target's unit (Mg C/ha), pooled over the chips:

* RMSE, MAE, bias (mean of prediction - truth) and R^2 (1 - SS_res / SS_tot over the pooled
  pixels), as :func:`terradiff.carbon.metrics.carbon_metrics` computes them on one chip;
* beside the two naive maps made from the training chips alone, which a carbon map must beat
  before it says anything: the **constant** (the mean carbon of every valid training pixel) and
  the **forest mean** (the training forest pixels' mean; on forest pixels this is the
  per-class-mean map);
* 95% percentile intervals from the block bootstrap of :mod:`terradiff.carbon.intervals`
  (``block`` px squares resampled within each chip; Kunsch 1989, Efron & Tibshirani 1993), and
  the differences model - naive paired on the same resampled blocks.

A diffusion model's map is one sample per chip (``ensemble`` N: the mean of N); the interval
covers the choice of pixels, not the sampling noise: a second ``seed`` shows that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terradiff.carbon.intervals import block_bootstrap, block_stats, metrics_from_stats
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.progress import progress_bar
from terradiff.report_format import difference_reading

__all__ = ["CARBON_SPLITS", "NAIVE_MAPS", "evaluate_carbon"]

CARBON_SPLITS = ("train", "val", "test")
NAIVE_MAPS = ("constant", "forest_mean")
_METRICS = ("rmse", "mae", "r2", "bias")
_TAILS = (2.5, 97.5)


def _training_means(dataset: Any) -> dict[str, float]:
    """Mean carbon of the training chips' valid pixels and of their forest pixels."""
    total = forest_total = 0.0
    count = forest_count = 0
    for i in range(len(dataset.pairs)):
        _, image_valid, target, target_valid, mask = dataset.load(i)
        valid = image_valid & target_valid & np.isfinite(target[0])
        carbon = target[0].astype(np.float64)
        total, count = total + carbon[valid].sum(), count + int(valid.sum())
        forest = valid & mask
        forest_total += carbon[forest].sum()
        forest_count += int(forest.sum())
    if count == 0:
        raise ConfigError(
            "the training chips hold no valid carbon pixel, so the naive maps cannot be made; "
            "check carbon.train_chips and the chips' nodata"
        )
    forest_mean = forest_total / forest_count if forest_count else total / count
    return {"constant": total / count, "forest_mean": forest_mean}


def _interval(replicates: np.ndarray, point: float) -> dict[str, float]:
    low, high = np.nanpercentile(replicates, _TAILS)
    return {"mean": float(point), "low": float(low), "high": float(high)}


def _check_options(task: Any, ensemble: int | None, sampler: str | None, steps: int | None) -> None:
    """Refuse sampling options for a one-pass model (they would be ignored silently)."""
    given = {"--ensemble": ensemble not in (None, 1), "--sampler": sampler, "--steps": steps}
    unread = [flag for flag, value in given.items() if value]
    if unread and not task.stochastic:
        raise ConfigError(
            f"{', '.join(unread)}: a carbon '{task.carbon.method}' model maps in one pass and "
            "samples nothing; drop them (they apply to diffusion methods: iidm, idm)"
        )


def evaluate_carbon(
    checkpoint: str | Path,
    *,
    split: str = "test",
    data_root: str | Path | None = None,
    ensemble: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    block: int = 32,
    resamples: int = 2000,
    keep_blocks: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """RMSE, MAE, R^2 and bias of a carbon model's maps of ``split``, beside the naive maps.

    Args:
        checkpoint: a ``carbon`` run or checkpoint folder (its EMA weights are used).
        split: the chips scored: ``"val"`` (where settings are chosen), ``"test"`` (the final
            score, once) or ``"train"``.
        data_root: the prepared chips (default: the checkpoint's ``data.root``).
        ensemble: maps averaged per chip (diffusion methods; default ``carbon.ensemble``).
        sampler, steps: the diffusion sampling (default: the checkpoint's ``sample`` section).
        seed: seeds the sampling noise (one generator per chip).
        block: side of the bootstrap's square blocks, pixels.
        resamples: bootstrap replicates.
        keep_blocks: also return ``"block_stats"``: per map (model and naive) and chip the
            ``[blocks, 6]`` sums of :func:`terradiff.carbon.intervals.block_stats`, so that
            several runs or draws can be pooled in one bootstrap.
        precision: the net's number format (``sample.precision``; default the checkpoint's).

    Returns:
        ``{"model", "constant", "forest_mean"}`` (each metric of :data:`_METRICS` as
        ``{"mean", "low", "high"}``), ``"model_minus_constant"`` and
        ``"model_minus_forest_mean"`` (paired RMSE and MAE differences), ``"reading"`` (what
        the RMSE differences allow one to say), ``"per_chip"``, ``"training_means"``,
        ``"split"``, ``"chips"``, ``"forest_pixels"``, ``"method"``, ``"sampler"``,
        ``"steps"``, ``"ensemble"``, ``"seed"``, ``"block"``, ``"resamples"``,
        ``"inference_precision"``, ``"checkpoint"``, ``"step"``, ``"seconds_per_chip"``.

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a carbon model.
        ConfigError: an unknown split; sampling options for a one-pass model; a block < 2.
        DataError: a split with no chips, chips missing under the data root, or no forest
            pixel to score.
    """
    from terradiff.tasks import load_task
    from terradiff.tasks.carbon import CarbonTask

    task, ckpt = load_task(checkpoint, use_ema=True, device=device or "auto")
    if not isinstance(task, CarbonTask):
        raise WrongCheckpointError(
            ckpt.path, f"{task.config.task!r} checkpoint", "evaluate_carbon needs a carbon one"
        )
    if split not in CARBON_SPLITS:
        raise ConfigError(
            f"--split {split!r}: a carbon model is scored on the chips of one of "
            f"{list(CARBON_SPLITS)} (choose settings on 'val', report 'test' once)"
        )
    if block < 2:
        raise ConfigError(f"block {block}: the bootstrap's blocks are squares of 2 px or more")
    _check_options(task, ensemble, sampler, steps)
    task.use_precision(precision)
    if data_root is not None:
        task.config.data.root = str(data_root)
    spec = task.sampling_spec(sampler, steps)
    dataset = task.dataset(split)  # whole chips, unaugmented; DataError when empty
    means = _training_means(task.dataset("train"))
    stats: dict[str, list[np.ndarray]] = {name: [] for name in ("model", *NAIVE_MAPS)}
    per_chip: list[dict[str, Any]] = []
    members, seconds = 0, 0.0
    for i in progress_bar(range(len(dataset)), desc=f"carbon {split}", disable=not progress):
        item = dataset.get(i)
        _, _, target, _, _ = dataset.load(i)
        forest = (item["mask"][0] > 0) & (item["valid"][0] > 0)
        truth = target[0].astype(np.float64)
        forest = forest.numpy() & np.isfinite(truth)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        begin = time.perf_counter()
        estimate = task.estimate(
            task.net, item["image"][None], ensemble=ensemble, spec=spec, generator=generator
        )
        seconds += time.perf_counter() - begin
        members = estimate.members
        prediction = task.to_physical(estimate.mean)[0, 0].cpu().numpy().astype(np.float64)
        maps = {"model": prediction, **{n: np.full_like(truth, means[n]) for n in NAIVE_MAPS}}
        for name, values in maps.items():
            stats[name].append(block_stats(values, truth, forest, block))
        chip = metrics_from_stats(stats["model"][-1].sum(0))
        per_chip.append(
            {
                "chip": dataset.pairs[i].name,
                "forest_pixels": int(forest.sum()),
                **{m: float(chip[m]) for m in _METRICS},
            }
        )
    if not any(chip["forest_pixels"] for chip in per_chip):
        raise DataError(
            f"the {split} chips {[c['chip'] for c in per_chip]} hold no forest pixel valid in "
            f"image and target, so there is nothing to score: check their mask.tif (forest = "
            "values > 0) and nodata, or score another --split"
        )
    replicates = {
        name: metrics_from_stats(block_bootstrap([s[None] for s in chips], resamples, seed=seed))
        for name, chips in stats.items()
    }
    points = {
        name: metrics_from_stats(sum(s.sum(0) for s in chips)) for name, chips in stats.items()
    }
    result: dict[str, Any] = {}
    for name in stats:
        result[name] = {m: _interval(replicates[name][m], points[name][m]) for m in _METRICS}
    reading = {}
    for naive in NAIVE_MAPS:
        result[f"model_minus_{naive}"] = {
            m: _interval(
                replicates["model"][m] - replicates[naive][m],
                float(points["model"][m] - points[naive][m]),
            )
            for m in ("rmse", "mae")
        }
        reading[naive] = difference_reading(
            result[f"model_minus_{naive}"]["rmse"],
            "the model",
            f"the {naive.replace('_', ' ')} map",
            higher_is_better=False,
        )
    if keep_blocks:
        result["block_stats"] = {name: [c.tolist() for c in chips] for name, chips in stats.items()}
    return {
        **result,
        "reading": {f"rmse_vs_{naive}": text for naive, text in reading.items()},
        "per_chip": per_chip,
        "training_means": means,
        "split": split,
        "chips": [p.name for p in dataset.pairs],
        "forest_pixels": int(sum(c["forest_pixels"] for c in per_chip)),
        "method": task.carbon.method,
        "sampler": spec.sampler if spec else None,
        "steps": spec.steps if spec else None,
        "ensemble": members,
        "seed": seed,
        "block": block,
        "resamples": resamples,
        "inference_precision": task.inference_precision(),
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "seconds_per_chip": seconds / max(len(dataset), 1),
    }
