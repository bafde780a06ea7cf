"""FID/KID of a trained generator against real images of its dataset.

Composes a task (:func:`terradiff.tasks.load_task`), a sampler and the metrics of
:mod:`terradiff.metrics`: generate ``N`` images with the EMA weights, embed them and the real
images with one frozen encoder, and compare the feature distributions with the Frechet distance
(Heusel et al. 2017, Eq. 6) and the unbiased kernel distance (Binkowski et al. 2018). The real
images are taken as the model saw them (same bands, scaling and size; centre crops, no flips) and
their statistics are cached per dataset file list and encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.metrics import evaluate_generation, load_feature_extractor, reference_statistics
from terradiff.metrics.fid import fingerprint_files
from terradiff.progress import progress_bar
from terradiff.tasks.base import Task, check_data_bands

#: The fewest images (generated, and real) FID/KID can be computed from: a covariance needs two.
MIN_FID_IMAGES = 2

#: Decimals kept of each per-image metric of super-resolution evaluation
#: (:func:`terradiff.sr_evaluate.evaluate_super_resolution`; far below the spread over images
#: that a bootstrap over them measures; keeps results JSONs small).
PER_IMAGE_DIGITS = 6

#: What evaluation takes instead of a checkpoint of the key's task.
_NOT_GENERATION = {
    "carbon": "evaluate_checkpoint measures FID/KID of 'generation' checkpoints; use "
    "terradiff.carbon_evaluate.evaluate_carbon (what `terradiff evaluate` runs for this one)",
    "super_resolution": "evaluate_checkpoint measures FID/KID of 'generation' checkpoints; use "
    "evaluate_super_resolution (what `terradiff evaluate` runs for this one)",
    "change": "evaluate_checkpoint measures FID/KID of 'generation' checkpoints; use "
    "evaluate_change (what `terradiff evaluate` runs for this one)",
}
_FID_ONLY = "evaluate_checkpoint measures FID/KID of 'generation' checkpoints only"


def default_cache_dir() -> Path:
    """``$TERRADIFF_CACHE`` or ``$XDG_CACHE_HOME/terradiff`` (``~/.cache/terradiff``)."""
    if os.environ.get("TERRADIFF_CACHE"):
        return Path(os.environ["TERRADIFF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "terradiff"


@torch.no_grad()
def generate_images(
    task: Task,
    num_images: int,
    *,
    batch_size: int = 50,
    spec: SamplingSpec | None = None,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """``num_images`` samples in [-1, 1] from ``task.net``, drawn batch by batch (CPU tensor).

    One generator seeded with ``seed`` feeds every batch, so the result depends on ``seed`` and
    ``batch_size`` only; ``spec`` defaults to the task's :meth:`~Task.sampling_spec`. A
    class-conditional model draws image ``i`` of class ``i mod K`` (:func:`requested_classes`).
    """
    generator = torch.Generator().manual_seed(seed)
    images: list[torch.Tensor] = []
    labels = requested_classes(task, num_images)
    with progress_bar(total=num_images, desc="sampling", unit="img", disable=not progress) as bar:
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            extra = {}
            if labels is not None:
                condition = task.make_condition(n)  # type: ignore[attr-defined]
                extra["condition"] = dataclasses.replace(condition, labels=labels[start:][:n])
            out = task.sample(task.net, n, generator=generator, spec=spec, **extra)
            images.append(out.sample.float().cpu())
            bar.update(n)
    return torch.cat(images)


def requested_classes(task: Task, num_images: int) -> torch.Tensor | None:
    """The class of each image :func:`generate_images` draws (None: not class-conditional)."""
    index = getattr(task, "class_index", None)
    return None if index is None else torch.arange(num_images) % len(index)


def conditional_accuracy(
    images: torch.Tensor,
    labels: torch.Tensor,
    model_classes: list[str],
    extractor: Any,
    *,
    rgb_bands: list[int] | None = None,
    batch_size: int = 100,
    seed: int = 0,
    resamples: int = 1000,
) -> dict[str, Any] | None:
    """How often a classifier assigns generated images to the class they were asked for.

    ``extractor`` must have ``logits`` and ``classes`` (the shipped ``aid-cnn``) and know every
    class of the model by name; otherwise None. The interval is a 95% percentile bootstrap over
    the images.
    """
    known = list(getattr(extractor, "classes", []) or [])
    if not hasattr(extractor, "logits") or not set(model_classes) <= set(known):
        return None
    target = torch.tensor([known.index(name) for name in model_classes])[labels]
    rgb = images if rgb_bands is None else images[:, rgb_bands]
    with torch.no_grad():
        predicted = torch.cat(
            [
                extractor.logits(rgb[i : i + batch_size]).argmax(1)
                for i in range(0, len(rgb), batch_size)
            ]
        )
    hits = (predicted.cpu() == target).float()
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, len(hits), (resamples, len(hits)), generator=generator)
    means = hits[draws].mean(1)
    return {
        "conditional_accuracy": float(hits.mean()),
        "conditional_accuracy_ci95": [float(means.quantile(0.025)), float(means.quantile(0.975))],
        "classifier": getattr(extractor, "name", type(extractor).__name__),
        "chance": 1.0 / len(model_classes),
    }


#: The split a model trained on a split is scored on (:data:`terradiff.data.datasets.SPLITS`).
HELD_OUT_SPLIT = {"train": "test", "fit": "val"}


def real_dataset(
    config: ExperimentConfig,
    data_root: str | Path | None = None,
    split: str | None = None,
    image_size: int | None = None,
    band_info: BandInfo | None = None,
) -> Any:
    """The real images to compare with: the config's data (or ``data_root``), unaugmented.

    ``split`` overrides ``data.split`` (``"test"``: the files held out from training);
    ``image_size`` overrides ``data.image_size`` (the size of the centre crop; the model's
    config checks, made for its training size, are not applied to it).

    ``band_info`` (the model's bands) refuses images of another band count, naming the folder.

    Raises:
        ConfigError: ``image_size`` outside 8..4096.
        DataError: images of another band count than ``band_info``'s.
    """
    from terradiff.tasks.base import build_dataset

    changes: dict[str, Any] = {}
    if data_root is not None:
        changes["root"] = str(data_root)
    if image_size is not None:  # the crop only: the model's own checks are for training sizes
        if not 8 <= image_size <= 4096:
            raise ConfigError(f"--image-size {image_size}: give a crop of 8 to 4096 pixels")
        changes["image_size"] = image_size
    if changes:
        config = config.model_copy(update={"data": config.data.model_copy(update=changes)})
    dataset = build_dataset(config, train=False, split=split)
    if band_info is not None:
        check_data_bands(dataset, band_info, dataset.root)
    return dataset


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    num_samples: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    encoder: str | None = None,
    encoder_weights: str | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
    max_real: int | None = None,
    cache_dir: str | Path | None = None,
    grid_path: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Sample from a checkpoint and compute FID/KID against its (or the given) real images.

    Args:
        checkpoint: a run folder (latest checkpoint) or a ``step_*`` folder.
        num_samples: generated images (default ``config.evaluate.num_samples``).
        sampler: ``ddpm``, ``ddim`` or ``dpm_solver`` (default: the config's).
        steps: sampler steps (ignored by ``ddpm``, which runs all ``T``).
        guidance: classifier-free guidance scale of a conditional model (default: the config's).
        encoder: ``aid-cnn`` (default, offline), ``inception`` or a ``.safetensors`` path.
        encoder_weights: the local weights file ``inception`` needs.
        seed: seed of the generated images and of the KID subsets.
        data_root: real images to compare with (default: the checkpoint's training data).
        max_real: use at most this many real images (default: all).
        cache_dir: where reference statistics are cached (default :func:`default_cache_dir`).
        grid_path: also save the first (up to 64) generated images as a PNG grid here.
        progress: show progress bars.
        device: where the network samples (default: CUDA when available, else the CPU).
        precision: the net's number format while sampling (``sample.precision``; default the
            checkpoint's; :mod:`terradiff.nets.precision`).

    Returns:
        The metrics of :func:`terradiff.metrics.evaluate_generation` (FID, KID, and
        ``precision``/``recall``: fidelity and diversity, not the number format, which is
        ``inference_precision``) plus what was evaluated: checkpoint, step, sampler, steps,
        inference_precision, seconds spent sampling and per image; for a class-conditional
        model also :func:`conditional_accuracy` (when the encoder classifies).

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a generation model (a super-resolution one
            is evaluated by :func:`terradiff.sr_evaluate.evaluate_super_resolution`; a carbon
            one is not evaluated here).
        ConfigError: fewer than :data:`MIN_FID_IMAGES` images, or a bad sampler/steps/encoder.
        DataError: fewer than :data:`MIN_FID_IMAGES` real images, or of other bands.
    """
    from terradiff.tasks import load_task
    from terradiff.tasks.generation import GenerationTask

    task, ckpt = load_task(checkpoint, use_ema=True, device=device or "auto")
    if not isinstance(task, GenerationTask):
        kind = task.config.task
        needed = _NOT_GENERATION.get(kind, _FID_ONLY)
        raise WrongCheckpointError(ckpt.path, f"{kind!r} checkpoint", needed)
    task.use_precision(precision)
    config = task.config
    evaluate_cfg = config.evaluate
    n = evaluate_cfg.num_samples if num_samples is None else num_samples
    if n < MIN_FID_IMAGES:
        raise ConfigError(
            f"--n {n} (num_samples={n} from Python): FID and KID compare two distributions of "
            f"image features and need at least {MIN_FID_IMAGES} generated images; pass --n "
            f"{MIN_FID_IMAGES} or more (hundreds for a meaningful FID)"
        )
    spec = task.sampling_spec(sampler, steps, guidance=guidance)
    try:
        extractor = load_feature_extractor(
            encoder or evaluate_cfg.encoder, weights=encoder_weights or evaluate_cfg.encoder_weights
        )
    except ValueError as error:
        raise ConfigError(f"--encoder: {error}") from None
    rgb_bands = config.data.rgb_bands
    if task.num_bands != 3 and rgb_bands is None:
        raise ConfigError(
            f"the model makes {task.num_bands}-band images and the encoder takes RGB; set "
            "data.rgb_bands in the config (0-based indices of the red, green and blue bands)"
        )
    dataset = real_dataset(config, data_root, band_info=task.band_info)
    if len(dataset) < MIN_FID_IMAGES:
        raise DataError(
            f"{dataset.root} has {len(dataset)} real image(s); FID and KID need at least "
            f"{MIN_FID_IMAGES}: pass --data with more images"
        )
    # the statistics depend on the files and on how they become tensors
    recipe = json.dumps(
        {
            k: config.data.model_dump(mode="json").get(k)
            for k in ("bands", "scaling", "crop", "classes")
        },
        sort_keys=True,
    )
    key = (
        f"{Path(dataset.root).name}-{fingerprint_files(dataset.files, dataset.root)[:12]}"
        f"-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"
    )
    real = reference_statistics(
        lambda: dataset,
        extractor,
        cache_dir or default_cache_dir() / "fid",
        key,
        image_size=config.data.image_size,
        max_images=max_real,
        rgb_bands=rgb_bands,
        batch_size=evaluate_cfg.batch_size,
        progress=progress,
    )
    start = time.perf_counter()
    fake = generate_images(
        task,
        n,
        batch_size=evaluate_cfg.batch_size,
        spec=spec,
        seed=seed,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    if grid_path is not None:
        from terradiff.viz import save_image_grid

        save_image_grid(fake[:64], grid_path, rgb_bands=rgb_bands)
    metrics = evaluate_generation(
        fake,
        real,
        extractor,
        rgb_bands=rgb_bands,
        kid_subset_size=evaluate_cfg.kid_subset_size,
        seed=seed,
        batch_size=evaluate_cfg.batch_size,
    )
    labels = requested_classes(task, n)
    if labels is not None:
        accuracy = conditional_accuracy(
            fake,
            labels,
            list(task.class_index),  # type: ignore[attr-defined]
            extractor,
            rgb_bands=rgb_bands,
            batch_size=evaluate_cfg.batch_size,
            seed=seed,
        )
        metrics = {**metrics, **(accuracy or {})}
    return {
        **metrics,
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        **spec_record(spec),
        "inference_precision": task.inference_precision(),
        "sampling_seconds": round(seconds, 2),
        "seconds_per_image": round(seconds / n, 4),
        "real_images": str(dataset.root),
        "seed": seed,
    }


def evaluate_change(
    checkpoint: str | Path,
    *,
    data_root: str | Path | None = None,
    threshold: float | None = None,
    split: str = "test",
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """F1, IoU, precision, recall and overall accuracy of a change model on its test split.

    The test tiles (or those of ``split``) of the checkpoint's data (or ``data_root``) under its
    fixed split rule (``data.rule``; LEVIR-CD's own by default) are predicted whole, in windows of
    :data:`~terradiff.tasks.change.EVALUATION_WINDOW` pixels (LEVIR-CD's 256 px tiles: one
    window each), one window per call with the noise of the experiment seed, so a tile's score
    does not depend on what else is evaluated. The metrics are computed from the confusion
    counts of all test pixels, change being the positive class
    (:class:`~terradiff.metrics.change.ChangeConfusion`), plus the threshold-free average
    precision of the probabilities (:class:`~terradiff.metrics.change.ChangeScoreHistogram`)
    and the threshold that would maximise F1 on these tiles
    (:func:`~terradiff.metrics.change.f1_optimal_threshold`): read on the training tiles
    (``split="train"``) it is a threshold chosen without the test tiles, for
    ``terradiff change --threshold``; on the test tiles it is an oracle, not a score.

    Args:
        threshold: change where the probability exceeds it (default: ``change.threshold``).
        split: the tiles scored: ``"test"``, ``"train"`` (the labelled tiles the model was
            trained on, whole) or ``"all"``.
        precision: the net's number format (``sample.precision``; default the checkpoint's).

    Returns:
        ``{"f1", "iou", "precision", "recall", "overall_accuracy", "tp", "fp", "fn", "tn",
        "per_window" (the counts of each window), "average_precision", "per_window_scores"
        (each window's probability histograms of changed and unchanged pixels, for intervals
        of the average precision), "threshold", "f1_optimal_threshold" and
        "f1_at_optimal_threshold" (NaN without changed pixels), "split", "tiles", "windows",
        "pixels", "change_fraction", "method",
        "trainable_parameters", "parameters", "inference_precision" (the net's number format;
        ``precision`` is the metric), "seconds_per_window", "checkpoint", "step", "data",
        "rule"}``.

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a change model.
        ConfigError: a threshold outside (0, 1).
        DataError: an unknown split, or one with no tile
            (:func:`~terradiff.data.levir.split_pairs`).
    """
    from terradiff.metrics.change import (
        ChangeConfusion,
        ChangeScoreHistogram,
        f1_optimal_threshold,
    )
    from terradiff.nets.change import count_parameters
    from terradiff.tasks import load_task
    from terradiff.tasks.change import ChangeTask

    task, ckpt = load_task(checkpoint, use_ema=True, device=device or "auto")
    if not isinstance(task, ChangeTask):
        raise WrongCheckpointError(
            ckpt.path, f"{task.config.task!r} checkpoint", "evaluate_change needs a 'change' one"
        )
    task.use_precision(precision)
    if data_root is not None:
        task.config.data.root = str(data_root)
    threshold = task.change.threshold if threshold is None else float(threshold)
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold must be a probability in (0, 1), got {threshold}")
    dataset = task.dataset(split)
    confusion = ChangeConfusion()
    per_window: list[dict[str, int]] = []
    scores = ChangeScoreHistogram.empty()
    per_window_scores: list[dict[str, list[int]]] = []
    seconds = 0.0
    for index in progress_bar(range(len(dataset)), desc="change", disable=not progress):
        item = dataset.get(index)
        begin = time.perf_counter()
        probability = task.change_probability(task.net, item["before"][None], item["after"][None])
        seconds += time.perf_counter() - begin
        window = ChangeConfusion()
        window.update(probability, item["label"][None], threshold=threshold)
        confusion = confusion + window
        per_window.append({k: int(getattr(window, k)) for k in ("tp", "fp", "fn", "tn")})
        window_scores = ChangeScoreHistogram.empty().update(probability, item["label"][None])
        scores = scores + window_scores
        per_window_scores.append(window_scores.as_dict())
    best_threshold, best_f1 = (
        f1_optimal_threshold(scores) if sum(scores.changed) else (math.nan, math.nan)
    )
    return {
        **confusion.as_dict(),
        "per_window": per_window,  # confusion counts, for intervals over windows (tiles)
        "average_precision": scores.average_precision(),
        "per_window_scores": per_window_scores,
        "threshold": threshold,
        "f1_optimal_threshold": best_threshold,
        "f1_at_optimal_threshold": best_f1,
        "split": split,
        "tiles": [pair.name for pair in dataset.pairs],
        "windows": len(dataset),
        "pixels": confusion.total,
        "change_fraction": dataset.change_fraction,
        "method": task.method.name,
        "trainable_parameters": count_parameters(task.net),
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "inference_precision": task.inference_precision(),
        "seconds_per_window": round(seconds / max(1, len(dataset)), 4),
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "data": str(dataset.root),
        "rule": task.config.data.rule or "upstream",
    }


def image_names(dataset: Any, indices: list[int]) -> list[str]:
    """The files of ``dataset`` at ``indices`` relative to its root (the index where unknown)."""
    files = getattr(dataset, "files", None)
    if files is None or len(files) != len(dataset):
        return [str(i) for i in indices]
    root = Path(dataset.root)
    names = []
    for i in indices:
        path = Path(files[i])
        names.append(path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path))
    return names


def spec_record(spec: SamplingSpec | None) -> dict[str, Any]:
    """What a result records of the sampling that ran (all None for a one-pass model)."""
    if spec is None:
        return {"sampler": None, "steps": None, "eta": None, "guidance": None}
    return {
        "sampler": spec.sampler,
        "steps": spec.steps,
        "eta": spec.eta,
        "guidance": spec.guidance,
    }
