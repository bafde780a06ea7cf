"""Whole-raster inference: GeoTIFF tiles -> a task's model -> one blended, georeferenced GeoTIFF.

The tiling engine (:func:`terradiff.data.tiling.predict_raster`) reads the input window by window,
blends overlapping predictions and writes the output atomically with the input's CRS and bounds;
this module adapts a trained task to it: it checks that the raster carries the bands the model was
trained on, converts values with the checkpoint's scaling and calls the task's predictor per batch
of tiles.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from terradiff.data.raster import inspect_raster
from terradiff.data.tiling import TilingSummary, predict_raster
from terradiff.errors import DataError

__all__ = ["super_resolve_raster"]


def _input_bands(path: Path, band_info: dict, bands: list[int | str] | None) -> list[int | str]:
    """The 1-based bands (or names) of ``path`` that feed the model, checked against it."""
    info = inspect_raster(path)
    expected = int(band_info["count"])
    names = list(band_info.get("names") or [])
    if bands is not None:
        if len(bands) != expected:
            raise DataError(
                f"--bands selects {len(bands)} bands of {path}, the model expects {expected}: "
                f"{names}"
            )
        return bands
    if info.count != expected:
        raise DataError(
            f"{path} has {info.count} bands {info.band_names}, the model expects {expected} bands "
            f"{names} in that order; select them with --bands (1-based indices or names)"
        )
    return list(range(1, expected + 1))


def super_resolve_raster(
    checkpoint: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    *,
    scale: float | None = None,
    bands: list[int | str] | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    tile: int = 64,
    overlap: int = 16,
    batch_size: int = 4,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> TilingSummary:
    """Super-resolve a whole GeoTIFF with a trained super-resolution checkpoint.

    The output has the input's CRS and bounds and its pixel size divided by the model's scale;
    nodata pixels of the input stay nodata. Values are written in the input's physical units
    (the checkpoint's scaling inverted), as uint8 for 8-bit models and float32 otherwise.

    Args:
        checkpoint: a super-resolution run or ``step_*`` folder (its EMA weights are used).
        in_path: the low-resolution raster (any size; no high-resolution pair needed).
        out_path: the GeoTIFF to write; an existing file is refused unless ``overwrite``.
        scale: the scale asked for: any integer for an ``implicit`` model, else the model's
            ``sr.scale`` (an error otherwise).
        bands: input bands (1-based indices or names) in the model's order; default all bands.
        sampler, steps: SR3 sampler (default: the checkpoint's ``sample`` section).
        tile: LR tile size in pixels (the model sees ``tile * scale`` HR pixels).
        overlap: LR pixels shared by neighbouring tiles (blended).
        batch_size: tiles per model call.
        seed: seed of the SR3 noise (the same seed gives the same raster).
        device: ``cpu``/``cuda``; default CUDA when available.

    Raises:
        DataError: wrong band count, a scale the model cannot do, or a bad tile size.
    """
    from terradiff.tasks import load_task
    from terradiff.tasks.super_resolution import SuperResolutionTask

    task, ckpt = load_task(checkpoint, use_ema=True)
    if not isinstance(task, SuperResolutionTask):
        raise DataError(
            f"{ckpt.path} is a {task.config.task!r} checkpoint; super-resolve needs a "
            "'super_resolution' one"
        )
    model_scale = float(task.sr.scale)
    if task.sr.method == "implicit":  # continuous scales: any scale asked for
        model_scale = float(scale or model_scale)
    elif scale is not None and not math.isclose(scale, model_scale):
        raise DataError(
            f"{ckpt.path} super-resolves x{model_scale:g} only; got --scale {scale:g}. Use a "
            f"model trained for x{scale:g} (or an 'implicit' one), or --scale {model_scale:g}"
        )
    if not model_scale.is_integer():
        raise DataError(
            f"whole-raster inference needs an integer scale (output pixels must nest in input "
            f"pixels); got x{model_scale:g}. Super-resolve at an integer scale and resample"
        )
    factor = int(model_scale)
    multiple = task.net.downsample_factor
    if (tile * factor) % multiple:
        raise DataError(
            f"--tile {tile} gives {tile * factor}-pixel HR tiles, which must be a multiple of "
            f"{multiple} for this UNet; choose e.g. --tile {multiple * max(1, tile // multiple)}"
        )
    in_path, out_path = Path(in_path), Path(out_path)
    selected = _input_bands(in_path, task.band_info, bands)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task.net.to(dev)
    generator = torch.Generator().manual_seed(seed)

    def predict(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out_size = (x.shape[-2] * factor, x.shape[-1] * factor)
        result = task.super_resolve(
            task.net, x, out_size=out_size, sampler=sampler, steps=steps, generator=generator
        )
        return result.sample

    scaling = task.band_info.get("scaling") or "none"
    return predict_raster(
        in_path,
        out_path,
        predict,
        scaling=scaling,
        scale=factor,
        tile=tile,
        overlap=overlap,
        bands=selected,
        out_band_names=list(task.band_info.get("names") or []) or None,
        out_dtype="uint8" if scaling == "uint8" else "float32",
        batch_size=batch_size,
        device=dev,
        overwrite=overwrite,
        progress=progress,
    )
