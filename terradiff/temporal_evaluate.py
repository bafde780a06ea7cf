"""Score a temporal model against persistence on its held-out pairs (``terradiff evaluate``).

:func:`evaluate_temporal` forecasts every test window of the checkpoint's data under its fixed
split (``temporal.holdout``: held-out target dates, places or ground; never a training pixel of a
target) and scores, side by side, the model and **persistence** (the forecast "nothing changes":
the before image itself), the baseline a forecast must beat:

* PSNR (``10 log10(R^2 / MSE)``) and SSIM (Wang et al. 2004, Eq. 13; 11x11 Gaussian window)
  per band and on the visible bands (``data.rgb_bands``, else the bands named B02/B03/B04 or
  red/green/blue, else the first three), in the model's [-1, 1] units (``R = 2``; for a linear
  scaling such as ``sentinel2`` this is PSNR of reflectance with peak 1), over the pixels valid
  in both dates (:mod:`terradiff.metrics`);
* per window, then averaged over windows;
* the difference model - persistence with a percentile bootstrap interval (Efron & Tibshirani
  1993, Ch. 13) whose resampling unit is the window, or the place when the test set holds at
  least :data:`MIN_PLACES` places (windows of one place are correlated, so a window interval is
  optimistic; the result says which was used).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terradiff.errors import WrongCheckpointError
from terradiff.metrics import psnr, ssim
from terradiff.progress import progress_bar

__all__ = ["MIN_PLACES", "bootstrap_interval", "evaluate_temporal", "visible_bands"]

#: Test places from which the bootstrap resamples places instead of windows.
MIN_PLACES = 5
_METRICS = ("psnr", "ssim")
_VISIBLE_NAMES = (("B04", "B03", "B02"), ("red", "green", "blue"))


def visible_bands(names: tuple[str, ...] | list[str], rgb_bands: list[int] | None) -> list[int]:
    """0-based indices of the visible bands (see the module docstring)."""
    if rgb_bands:
        return list(rgb_bands)
    for wanted in _VISIBLE_NAMES:
        if all(w in names for w in wanted):
            return [list(names).index(w) for w in wanted]
    return list(range(min(3, len(names))))


def bootstrap_interval(
    values: np.ndarray, groups: list[str] | None, *, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (NaN dropped), resampling the values or,
    with ``groups``, whole groups (a cluster bootstrap)."""
    keep = np.isfinite(values)
    values = values[keep]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if groups is None:
        picks = rng.integers(0, values.size, size=(resamples, values.size))
        means = values[picks].mean(axis=1)
    else:
        kept = np.asarray(groups)[keep]
        names = sorted(set(kept.tolist()))
        members = [values[kept == name] for name in names]
        means = np.empty(resamples)
        for r in range(resamples):
            chosen = rng.integers(0, len(names), size=len(names))
            means[r] = np.concatenate([members[i] for i in chosen]).mean()
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _scores(
    pred: torch.Tensor, after: torch.Tensor, valid: torch.Tensor, visible: list[int]
) -> dict[str, torch.Tensor]:
    """Per window: PSNR/SSIM per band ``[B, C]`` and on the visible bands ``[B]``."""
    out = {}
    for name, fn in (("psnr", psnr), ("ssim", ssim)):
        out[name] = fn(pred, after, 2.0, valid, "none", per_band=True)
        out[f"{name}_visible"] = fn(pred[:, visible], after[:, visible], 2.0, valid, "none")
    return out


def _summary(scores: dict[str, list[torch.Tensor]], band_names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in _METRICS:
        per_band = torch.cat(scores[metric]).double()
        visible = torch.cat(scores[f"{metric}_visible"]).double()
        out[metric] = float(np.nanmean(per_band.mean(dim=1).numpy()))
        out[f"{metric}_visible"] = float(np.nanmean(visible.numpy()))
        means = np.nanmean(per_band.numpy(), axis=0)
        pairs = zip(band_names, means.tolist(), strict=True)
        out[f"{metric}_per_band"] = {n: round(v, 4) for n, v in pairs}
    return out


def evaluate_temporal(
    checkpoint: str | Path,
    *,
    data_root: str | Path | None = None,
    max_windows: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    members: int = 1,
    batch_size: int = 16,
    resamples: int = 1000,
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """PSNR and SSIM of a temporal model and of persistence on the test windows, with intervals.

    Args:
        checkpoint: a ``temporal`` run or checkpoint folder (its EMA weights are used).
        data_root: the dated images (default: the checkpoint's ``data.root``).
        max_windows: score at most this many test windows, spread evenly over the test set.
        sampler, steps: the diffusion sampling (default: the checkpoint's ``sample`` section).
        guidance: classifier-free guidance scale on the dates (default: the checkpoint's
            ``sample.guidance``); diffusion methods only.
        seed: seeds the diffusion noise (one generator per batch of windows) and the bootstrap.
        members: forecasts averaged per window (a diffusion model's ensemble mean, the estimate
            of the posterior mean that minimises the expected squared error; 1: one sample).
        batch_size: windows per forecast call.
        resamples: bootstrap resamples.
        precision: the net's number format (``sample.precision``; default the checkpoint's).

    Returns:
        ``{"model": {...}, "persistence": {...}`` (each ``psnr``, ``psnr_visible``,
        ``psnr_per_band``, ``ssim``, ``ssim_visible``, ``ssim_per_band``), ``"difference"``
        (model - persistence per metric: ``mean``, ``low``, ``high``), ``"bootstrap"``,
        ``"visible_bands"``, ``"windows"``, ``"pairs"``, ``"places"``, ``"per_window"``,
        ``"method"``, ``"sampler"``, ``"steps"``, ``"guidance"``, ``"inference_precision"``,
        ``"holdout"``,
        ``"checkpoint"``, ``"step"``, ``"seconds_per_window"``}``.

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a temporal model.
        ConfigError: ``guidance`` for a one-pass model.
    """
    from terradiff.tasks import load_task
    from terradiff.tasks.temporal import TemporalTask

    task, ckpt = load_task(checkpoint, use_ema=True, device=device or "auto")
    if not isinstance(task, TemporalTask):
        raise WrongCheckpointError(
            ckpt.path, f"{task.config.task!r} checkpoint", "evaluate_temporal needs a temporal one"
        )
    task.use_precision(precision)
    if data_root is not None:
        task.config.data.root = str(data_root)
    task.refuse_sampling_flags(ckpt.path, guidance=guidance)
    spec = task.sampling_spec(sampler, steps, guidance=guidance)
    dataset = task.dataset("test")
    indices = np.arange(len(dataset))
    if max_windows is not None and max_windows < len(indices):
        indices = np.unique(np.linspace(0, len(dataset) - 1, max_windows).round().astype(int))
    names = list(task.band_info.names)
    visible = visible_bands(names, task.config.data.rgb_bands)
    scores: dict[str, dict[str, list[torch.Tensor]]] = {"model": {}, "persistence": {}}
    per_window: list[dict[str, Any]] = []
    seconds = 0.0
    batches = range(0, len(indices), batch_size)
    for start in progress_bar(batches, desc="temporal", disable=not progress):
        items = [dataset.get(int(i)) for i in indices[start : start + batch_size]]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("before", "after", "valid")}
        metadata = torch.stack([it["metadata"] for it in items])
        present = torch.stack([it["present"] for it in items])
        generator = torch.Generator().manual_seed(seed * 1_000_003 + start)
        begin = time.perf_counter()
        forecast, _ = task.forecast(
            task.net,
            batch["before"],
            metadata,
            present,
            spec=spec,
            generator=generator,
            members=members,
        )
        seconds += time.perf_counter() - begin
        forecast = forecast.cpu().clamp(-1, 1)
        found = {
            "model": _scores(forecast, batch["after"], batch["valid"], visible),
            "persistence": _scores(batch["before"], batch["after"], batch["valid"], visible),
        }
        for who, values in found.items():
            for key, value in values.items():
                scores[who].setdefault(key, []).append(value)
        for j, item in enumerate(items):
            record = {k: item[k] for k in ("place", "source_date", "target_date")}
            record["window"] = item["window"].tolist()
            for who, values in found.items():
                for metric in _METRICS:
                    record[f"{who}_{metric}_visible"] = float(values[f"{metric}_visible"][j])
            per_window.append(record)
    places = sorted({w["place"] for w in per_window})
    unit = "place" if len(places) >= MIN_PLACES else "window"
    groups = [w["place"] for w in per_window] if unit == "place" else None
    difference = {}
    for metric in _METRICS:
        for key in (metric, f"{metric}_visible"):
            model = torch.cat(scores["model"][key]).double()
            persistence = torch.cat(scores["persistence"][key]).double()
            if model.ndim == 2:
                model, persistence = model.mean(dim=1), persistence.mean(dim=1)
            delta = (model - persistence).numpy()
            low, high = bootstrap_interval(delta, groups, resamples=resamples, seed=seed)
            difference[key] = {"mean": float(np.nanmean(delta)), "low": low, "high": high}
    return {
        "model": _summary(scores["model"], names),
        "persistence": _summary(scores["persistence"], names),
        "difference": difference,
        "bootstrap": {"unit": unit, "resamples": resamples, "level": 0.95},
        "visible_bands": [names[i] for i in visible],
        "windows": len(per_window),
        "test_windows": len(dataset),
        "pairs": len(dataset.pairs),
        "places": places,
        "holdout": task.temporal.holdout,
        "method": task.method.name,
        "members": members,
        "sampler": None if spec is None else spec.sampler,
        "steps": None if spec is None else spec.steps,
        "guidance": None if spec is None else spec.guidance,
        "inference_precision": task.inference_precision(),
        "seconds_per_window": round(seconds / max(1, len(per_window)), 4),
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "data": str(task.config.data.root),
        "per_window": per_window,
    }
