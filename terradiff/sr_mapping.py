"""Whole-raster super-resolution: a GeoTIFF -> a trained SR model -> a finer georeferenced GeoTIFF.

:func:`super_resolve_raster` adapts a super-resolution task to the tiling engine
(:func:`terradiff.data.tiling.predict_raster`): the output keeps the input's CRS and bounds with
its pixel size divided by the scale, nodata stays nodata, and values are written in the input's
units. Each tile's diffusion noise is seeded by the seed and the tile's position, so the same
seed gives the same raster however the tiles are batched or distributed (``terradiff
super-resolve``).

**Ensembles** (``ensemble = N > 1``, diffusion methods): every tile is super-resolved ``N`` times
with independent noise; bands ``1..C`` hold the per-pixel mean of the draws, an estimate of the
posterior mean ``E[HR | LR]`` (the estimate with the least expected squared error; what it
gains over one draw is measured in ``reports/sr_ensemble``), and bands ``C+1..2C`` their per-pixel
standard deviation, in the input's units (exact for linear scalings:
:meth:`~terradiff.data.transforms.scaling.Scaling.with_spread_bands`), a map of where the model is
unsure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from terradiff.data.tiling import TilingSummary, predict_raster
from terradiff.data.tiling.options import check_output_target
from terradiff.data.tiling.probe import with_tile_bytes
from terradiff.data.transforms.scaling import get_scaling, spread_bands
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.mapping import input_bands, one_step_spec, tile_generator
from terradiff.nets.precision import precision_tag

__all__ = ["ensemble_mean_and_std", "sr_predictor", "super_resolve_raster"]


def ensemble_mean_and_std(draws: torch.Tensor) -> torch.Tensor:
    """``[N, B, C, H, W]`` draws in model units -> ``[B, 2C, H, W]``: the mean, then the
    unbiased per-pixel std written as ``std - 1`` (what the tiling engine maps back through
    :meth:`~terradiff.data.transforms.scaling.Scaling.with_spread_bands`)."""
    return spread_bands(draws.mean(dim=0), draws.std(dim=0, unbiased=True))


def super_resolve_raster(
    checkpoint: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    *,
    scale: float | None = None,
    bands: list[int | str] | None = None,
    input_scaling: str | dict[str, Any] | None = None,
    nodata: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    tile: int = 64,
    overlap: int = 16,
    batch_size: int = 4,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
    fast: str | None = None,
    precision: str | None = None,
    dask: bool = False,
    scheduler: str | None = None,
    n_workers: int = 2,
    rows_per_task: int | None = None,
    cog: bool = True,
    ensemble: int = 1,
) -> TilingSummary:
    """Super-resolve a whole GeoTIFF with a trained super-resolution checkpoint.

    The output has the input's CRS and bounds and its pixel size divided by the model's scale;
    nodata pixels of the input stay nodata. Values are written in the input's physical units
    (the checkpoint's scaling inverted), as uint8 for 8-bit models and float32 otherwise.

    Args:
        checkpoint: a super-resolution run or ``step_*`` folder (its EMA weights are used).
        in_path: the low-resolution raster (any size; no high-resolution pair needed).
        out_path: the GeoTIFF to write; an existing file is refused unless ``overwrite``, and
            ``in_path`` itself always (checked before the model is loaded).
        scale: the scale asked for: any integer for an ``implicit`` model, else the model's
            ``sr.scale`` (an error otherwise).
        bands: input bands (1-based indices or names) in the model's order; default all bands.
        input_scaling: how this input's values map to [0, 1] when they are not in the units
            the model was trained on (a preset name or a scaling mapping; default the model's
            scaling); the output is written in the input's units.
        nodata: the input's nodata value, overriding the file's own (for a file whose fill
            value, e.g. 0, is not declared); its pixels are left out and written as nodata.
        sampler, steps: SR3 sampler (default: the checkpoint's ``sample`` section).
        tile: LR tile size in pixels (the model sees ``tile * scale`` HR pixels).
        overlap: LR pixels shared by neighbouring tiles (blended).
        batch_size: tiles per model call; on the CPU it is lowered until one batch's
            activations (measured on a small tile) fit 512 MiB (see :mod:`terradiff.data.tiling`,
            "Memory").
        seed: seed of the SR3 noise, per tile with the tile's position (the same seed gives the
            same raster, however the tiles are batched or distributed; in fp32 to float rounding,
            under bf16 to bf16 rounding, which depends on the batch).
        device: ``cpu``/``cuda``; default CUDA when available.
        fast: how the denoiser runs (``sample.fast``: ``auto``, ``compile``, ``graph``, ``off``;
            :mod:`terradiff.nets.fast_forward`); default the checkpoint's.
        precision: the net's number format (``sample.precision``: ``auto``, ``fp32``,
            ``bf16``, ``fp16``; :mod:`terradiff.nets.precision`); default the checkpoint's.
        dask, scheduler, n_workers, rows_per_task: compute the tiles on Dask (see
            :func:`terradiff.mapping.estimate_raster` and
            :func:`terradiff.data.distributed.predict_raster_dask`).
        cog: write a Cloud-Optimized GeoTIFF (tiles, overviews; :mod:`terradiff.data.cog`);
            False writes a plain tiled GeoTIFF.
        ensemble: draws per tile of a diffusion model; > 1 writes their mean, then their std
            (float32; see the module docstring).

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a super-resolution model.
        DataError: wrong band count, a scale the model cannot do, a bad tile size, or an output
            path that is the input, a folder, or an existing file without ``overwrite``.
        ConfigError: ``ensemble`` < 1, or > 1 for a one-pass model or a non-linear scaling.
    """
    from terradiff.tasks import load_task, resolve_device
    from terradiff.tasks.super_resolution import SuperResolutionTask

    in_path, out_path = Path(in_path), Path(out_path)
    check_output_target(out_path, overwrite=overwrite, inputs=[("input", in_path)])
    task, ckpt = load_task(checkpoint, use_ema=True)
    if not isinstance(task, SuperResolutionTask):
        raise WrongCheckpointError(
            ckpt.path,
            f"{task.config.task!r} checkpoint",
            "super-resolve needs a 'super_resolution' one",
        )
    task.check_ensemble(ensemble, str(ckpt.path))
    model_scale = task.check_scale(float(scale or task.sr.scale), str(ckpt.path))
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
    selected = input_bands(in_path, task.band_info, bands)
    dev = resolve_device(device)
    task.use_precision(precision)
    spec = task.sampling_spec(sampler, steps)
    settings = dict(
        factor=factor,
        spec=spec,
        seed=seed,
        device=dev,
        fast=fast,
        precision=precision,
        members=ensemble,
    )
    scaling = input_scaling or task.band_info.scaling
    names = task.band_info.name_list or [f"band{i + 1}" for i in range(task.band_info.count)]
    out_scaling: Any = scaling
    if ensemble > 1:
        try:
            spread = get_scaling(scaling).with_spread_bands(task.band_info.count)
        except DataError as error:
            raise ConfigError(f"--ensemble {ensemble}: {error}") from None
        out_scaling = spread.to_dict()
        names = [*names, *(f"{name}_std" for name in names)]
    options = {
        "scaling": scaling,
        "out_scaling": out_scaling,
        "out_bands": len(names),
        "scale": factor,
        "tile": tile,
        "overlap": overlap,
        "bands": selected,
        "nodata": nodata,
        "out_band_names": names if ensemble > 1 else task.band_info.name_list,
        "out_dtype": "uint8" if scaling == "uint8" and ensemble == 1 else "float32",
        "batch_size": batch_size,
        "device": dev,
        "overwrite": overwrite,
        "progress": progress,
        "cog": cog,
        "tags": precision_tag(task.inference_precision(dev)),
    }
    if dask:
        from terradiff.data.distributed import predict_raster_dask

        factory = functools.partial(sr_predictor, str(ckpt.path), **settings)
        return predict_raster_dask(
            in_path,
            out_path,
            factory,
            scheduler=scheduler,
            n_workers=n_workers,
            rows_per_task=rows_per_task,
            **options,
        )
    return predict_raster(in_path, out_path, _sr_predict_fn(task, **settings), **options)


def _sr_predict_fn(
    task: Any,
    *,
    factor: int,
    spec: SamplingSpec | None,
    seed: int,
    device: Any,
    fast: str | None = None,
    precision: str | None = None,
    members: int = 1,
) -> Callable[..., torch.Tensor]:
    """The tiling engine's ``predict_fn`` of a super-resolution task (``fast``, ``precision``:
    see :meth:`~terradiff.tasks.base.Task.use_fast` and ``use_precision``; ``members`` > 1:
    that many draws per tile, returned as :func:`ensemble_mean_and_std`)."""
    task.net.to(torch.device(device))
    task.use_fast(fast)
    task.use_precision(precision)

    def predict(
        x: torch.Tensor, valid: torch.Tensor, origins: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        out_size = (x.shape[-2] * factor, x.shape[-1] * factor)
        generator = tile_generator(seed, origins)
        draws = [
            task.super_resolve(task.net, x, out_size=out_size, spec=spec, generator=generator)
            for _ in range(members)
        ]
        if members == 1:
            return draws[0].sample
        return ensemble_mean_and_std(torch.stack([d.sample for d in draws]))

    def one_tile(x: torch.Tensor) -> torch.Tensor:  # the memory of a batch of one, one step
        size = (x.shape[-2] * factor, x.shape[-1] * factor)
        return task.super_resolve(task.net, x, out_size=size, spec=one_step_spec(spec)).sample

    multiple = task.net.downsample_factor // math.gcd(factor, task.net.downsample_factor)
    return with_tile_bytes(predict, one_tile, task.band_info.count, device, multiple)


def sr_predictor(checkpoint: str, **settings: Any) -> Callable[..., torch.Tensor]:
    """Load a super-resolution checkpoint; its ``predict_fn`` (a Dask worker's factory)."""
    from terradiff.tasks import load_task

    task, _ = load_task(checkpoint, use_ema=True)
    return _sr_predict_fn(task, **settings)
