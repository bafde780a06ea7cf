"""Whole-raster inference: GeoTIFF tiles -> a task's model -> one blended, georeferenced GeoTIFF.

The tiling engine (:func:`terradiff.data.tiling.predict_raster`) reads the input window by window,
blends overlapping predictions and writes the output atomically with the input's CRS and bounds;
this module adapts a trained task to it: it checks that the raster carries the bands the model was
trained on, converts values with the checkpoint's scaling and calls the task's predictor per batch
of tiles. :func:`estimate_carbon_maps` maps several images (dates) of an area in one call, with a
panel of the maps and a summary JSON (the ``terradiff estimate`` verb). Super-resolution has its
own module, :mod:`terradiff.sr_mapping`, and temporal forecasts :mod:`terradiff.forecast_mapping`;
both use this module's band check and per-tile seeding.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from terradiff.carbon.map_totals import carbon_map_totals
from terradiff.data.band_info import BandInfo
from terradiff.data.cog import read_preview
from terradiff.data.raster import inspect_raster
from terradiff.data.tiling import TilingSummary, predict_raster
from terradiff.data.tiling.options import check_output_target, check_output_targets
from terradiff.data.tiling.probe import with_tile_bytes
from terradiff.data.transforms.scaling import spread_bands
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.io import GEOTIFF_SUFFIXES, atomic_write_text
from terradiff.nets.precision import precision_tag

__all__ = [
    "CarbonMapSummary",
    "CarbonMaps",
    "ImageCarbonMap",
    "estimate_carbon_maps",
    "estimate_raster",
    "input_bands",
    "one_step_spec",
    "tile_generator",
]


def input_bands(path: Path, band_info: BandInfo, bands: list[int | str] | None) -> list[int | str]:
    """The 1-based bands (or names) of ``path`` that feed the model, checked against it."""
    info = inspect_raster(path)
    expected = band_info.count
    names = list(band_info.names)
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


def tile_generator(seed: int, origins: list[tuple[int, int]] | None) -> torch.Generator:
    """A generator seeded by ``seed`` and the batch's first tile corner (order-independent)."""
    row, col = origins[0] if origins else (0, 0)
    return torch.Generator().manual_seed(seed * 1_000_003 + row * 65_537 + col)


def one_step_spec(spec: SamplingSpec | None) -> SamplingSpec | None:
    """``spec`` cut to one DDIM step: what a probe of a tile's memory runs (the activations of
    a step do not depend on the sampler or the steps)."""
    return None if spec is None else dataclasses.replace(spec, sampler="ddim", steps=1)


@dataclass(frozen=True)
class CarbonMapSummary:
    """What :func:`estimate_raster` did and found.

    Attributes:
        tiling: the tiling run (tiles, seconds, peak buffers).
        total_carbon_mg: carbon stock over the counted pixels, Mg C (density x pixel area); NaN
            for a raster without a projected CRS (unknown pixel area).
        mean_density: mean carbon density over the counted pixels, Mg C/ha.
        counted_pixels: pixels counted (valid, and forest when a mask is given).
        pixel_area_ha: area of one output pixel, hectares (from the raster's transform; 0 for a
            raster without a CRS in metres).
        uncertainty: the output has a second band with the ensemble standard deviation.
    """

    tiling: TilingSummary
    total_carbon_mg: float
    mean_density: float
    counted_pixels: int
    pixel_area_ha: float
    uncertainty: bool


def estimate_raster(
    checkpoint: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    *,
    mask_path: str | Path | None = None,
    bands: list[int | str] | None = None,
    input_scaling: str | dict[str, Any] | None = None,
    nodata: float | None = None,
    ensemble: int | None = None,
    uncertainty: bool = False,
    sampler: str | None = None,
    steps: int | None = None,
    tile: int = 128,
    overlap: int = 32,
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
) -> CarbonMapSummary:
    """A carbon-density GeoTIFF (Mg C/ha) of a whole image with a trained ``carbon`` checkpoint.

    The output keeps the input's CRS, transform and size; nodata pixels of the input are nodata
    (NaN) in the map. With ``uncertainty`` (or ``ensemble > 1``) a second band holds the per-pixel
    standard deviation of the ensemble. The totals count valid pixels, and only forest pixels when
    ``mask_path`` (a raster on the same grid, forest > 0) is given; they are read back block by
    block, so memory stays bounded. ``input_scaling`` maps an image whose values are not in the
    units the model was trained on (a preset name or scaling mapping; default the model's).
    ``nodata`` overrides the image's nodata value (for a file whose fill value is not declared).
    The map is a Cloud-Optimized GeoTIFF unless ``cog`` is False. ``fast`` runs the denoiser of
    a diffusion model compiled or as a CUDA graph (see
    :meth:`~terradiff.tasks.base.Task.use_fast`; default the model's ``sample.fast``);
    ``precision`` is the net's number format (:meth:`~terradiff.tasks.base.Task.use_precision`;
    default the model's ``sample.precision``).

    Raises:
        WrongCheckpointError: ``checkpoint`` is not a carbon model.
        DataError: wrong bands, a mask on another grid, a bad tile, or an output path that is
            the image or the mask (even with ``overwrite``), a folder, or an existing file
            without ``overwrite``.
    """
    from terradiff.data.paired import check_same_grid
    from terradiff.tasks import load_task, resolve_device
    from terradiff.tasks.carbon import CarbonTask

    in_path, out_path = Path(in_path), Path(out_path)
    inputs = [("input image", in_path), ("mask", mask_path)]
    check_output_target(out_path, overwrite=overwrite, inputs=inputs)
    task, ckpt = load_task(checkpoint, use_ema=True)
    if not isinstance(task, CarbonTask):
        raise WrongCheckpointError(
            ckpt.path, f"{task.config.task!r} checkpoint", "estimate needs a 'carbon' one"
        )
    if mask_path is not None:
        check_same_grid(in_path, Path(mask_path))
    multiple = getattr(task.net, "downsample_factor", 1)
    if tile % multiple:
        raise DataError(
            f"--tile {tile} must be a multiple of {multiple} for this model; choose e.g. "
            f"--tile {multiple * max(1, tile // multiple)}"
        )
    selected = input_bands(in_path, task.band_info, bands)
    members = ensemble or task.default_members
    with_std = uncertainty or members > 1
    dev = resolve_device(device)
    task.use_precision(precision)
    settings = {
        "members": members,
        "spec": task.sampling_spec(sampler, steps),
        "seed": seed,
        "with_std": with_std,
        "device": dev,
        "fast": fast,
        "precision": precision,
    }
    out_scaling = task.target_scaling.to_dict()
    if with_std:  # the same [0, max] scaling for the std band (see predict)
        for key in ("mins", "maxs"):
            out_scaling[key] = list(out_scaling[key]) * 2
    options = {
        "scaling": input_scaling or task.band_info.scaling,
        "out_scaling": out_scaling,
        "scale": 1,
        "tile": tile,
        "overlap": overlap,
        "bands": selected,
        "nodata": nodata,
        "out_bands": 2 if with_std else 1,
        "out_band_names": ["carbon_MgC_per_ha", "carbon_std_MgC_per_ha"][: 2 if with_std else 1],
        "batch_size": batch_size,
        "device": dev,
        "overwrite": overwrite,
        "progress": progress,
        "cog": cog,
        "tags": precision_tag(task.inference_precision(dev)),
    }
    if dask:
        from terradiff.data.distributed import predict_raster_dask

        factory = functools.partial(carbon_predictor, str(ckpt.path), **settings)
        summary = predict_raster_dask(
            in_path,
            out_path,
            factory,
            scheduler=scheduler,
            n_workers=n_workers,
            rows_per_task=rows_per_task,
            **options,
        )
    else:
        summary = predict_raster(in_path, out_path, _carbon_predict_fn(task, **settings), **options)
    density_sum, count, area = carbon_map_totals(out_path, mask_path)
    return CarbonMapSummary(
        tiling=summary,
        total_carbon_mg=density_sum * area if area > 0 else float("nan"),
        mean_density=density_sum / count if count else float("nan"),
        counted_pixels=count,
        pixel_area_ha=area,
        uncertainty=with_std,
    )


def _carbon_predict_fn(
    task: Any,
    *,
    members: int,
    spec: SamplingSpec | None,
    seed: int,
    with_std: bool,
    device: str,
    fast: str | None = None,
    precision: str | None = None,
) -> Callable[..., torch.Tensor]:
    """The tiling engine's ``predict_fn`` of a carbon task (mean, and ``std - 1`` if asked)."""
    task.net.to(torch.device(device))
    task.use_fast(fast)
    task.use_precision(precision)

    def predict(
        x: torch.Tensor, valid: torch.Tensor, origins: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        result = task.estimate(
            task.net,
            x,
            ensemble=members,
            spec=spec,
            generator=tile_generator(seed, origins),
        )
        if not with_std:
            return result.mean
        # the std travels through the output's [0, max] scaling as "std - 1"
        return spread_bands(result.mean, result.std)

    def one_tile(x: torch.Tensor) -> torch.Tensor:  # the memory of a batch of one, one step
        return task.estimate(task.net, x, ensemble=1, spec=one_step_spec(spec)).mean

    multiple = getattr(task.net, "downsample_factor", 1)
    return with_tile_bytes(predict, one_tile, task.band_info.count, device, multiple)


def carbon_predictor(checkpoint: str, **settings: Any) -> Callable[..., torch.Tensor]:
    """Load a carbon checkpoint and return its ``predict_fn`` (a Dask worker's factory)."""
    from terradiff.tasks import load_task

    task, _ = load_task(checkpoint, use_ema=True)
    return _carbon_predict_fn(task, **settings)


@dataclass(frozen=True)
class ImageCarbonMap:
    """One image's map made by :func:`estimate_carbon_maps`.

    Attributes:
        image: the input image.
        path: the carbon map written.
        summary: what :func:`estimate_raster` found.
        counted: the pixels the totals count: ``"forest"`` (a mask was given) or ``"valid"``.
    """

    image: Path
    path: Path
    summary: CarbonMapSummary
    counted: str

    def describe(self) -> str:
        """One line: the map written, its tiling and its totals."""
        result = self.summary
        total = (
            f"total carbon {result.total_carbon_mg:,.1f} Mg C"
            if result.pixel_area_ha > 0
            else "total carbon unknown (no projected CRS: pixel area unknown)"
        )
        return (
            f"wrote {self.path}: {result.tiling.tiles} tiles in {result.tiling.seconds:.1f} s; "
            f"{total} over {result.counted_pixels:,} {self.counted} pixels, mean density "
            f"{result.mean_density:.2f} Mg C/ha"
        )

    def record(self) -> dict[str, Any]:
        """The map's entry in the summary JSON (totals, pixels, tiles, seconds)."""
        result = self.summary
        return {
            "map": str(self.path),
            "total_carbon_MgC": result.total_carbon_mg,
            "mean_density_MgC_per_ha": result.mean_density,
            "counted_pixels": result.counted_pixels,
            "pixel_area_ha": result.pixel_area_ha,
            "tiles": result.tiling.tiles,
            "seconds": result.tiling.seconds,
            "uncertainty_band": result.uncertainty,
        }


@dataclass(frozen=True)
class CarbonMaps:
    """What :func:`estimate_carbon_maps` wrote.

    Attributes:
        maps: one map per image, in the order of the images.
        panel: the PNG panel of the maps (several images only; else None).
        summary_path: the summary JSON written (None when none was asked for).
    """

    maps: list[ImageCarbonMap]
    panel: Path | None
    summary_path: Path | None

    def records(self) -> dict[str, dict[str, Any]]:
        """The summary JSON: :meth:`ImageCarbonMap.record` by input image."""
        return {str(m.image): m.record() for m in self.maps}


def estimate_carbon_maps(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    out: str | Path,
    *,
    mask_path: str | Path | None = None,
    ensemble: int | None = None,
    uncertainty: bool = False,
    summary_path: str | Path | None = None,
    on_map: Callable[[ImageCarbonMap], None] | None = None,
    **options: Any,
) -> CarbonMaps:
    """Carbon maps of one image, or of several images (dates) of an area, with a panel.

    One image is mapped to ``out`` (a GeoTIFF). Several are mapped to ``OUT/<stem>_carbon.tif``
    (``out`` is then a folder, created if needed), and ``OUT/panel.png`` shows the maps side by
    side in Mg C/ha. Every output (maps, panel, summary) is checked before the first is
    written: none may be an image or the mask, and none may exist unless ``overwrite=True`` is
    among ``options``.

    Args:
        checkpoint: a carbon run or ``step_*`` folder.
        images: the image GeoTIFFs (file names must differ when there are several).
        out: the map, or the folder of the maps for several images.
        mask_path, ensemble, uncertainty: see :func:`estimate_raster` (one mask for every image).
        summary_path: also write :meth:`CarbonMaps.records` here as JSON.
        on_map: called with each map as soon as it is written (e.g. to report progress).
        **options: passed on to :func:`estimate_raster` (bands, sampler, tile, Dask, ...).

    Returns:
        The maps, their totals and the panel.

    Raises:
        ConfigError: several images with the same file name (their maps would collide), or
            several images and an ``out`` that is a file.
        WrongCheckpointError, DataError: see :func:`estimate_raster`.
    """
    paths = [Path(p) for p in images]
    out = Path(out)
    outputs = [Path(summary_path)] if summary_path else []
    if len(paths) > 1:
        stems = [p.stem for p in paths]
        repeated = sorted({s for s in stems if stems.count(s) > 1})
        if repeated:
            raise ConfigError(
                f"several --image files have the same name {repeated}; their maps would collide "
                "in --out; rename or link them with distinct names (e.g. the date)"
            )
        if (out.exists() and not out.is_dir()) or (
            not out.exists() and out.suffix.lower() in (*GEOTIFF_SUFFIXES, ".png")
        ):
            what = "is a file" if out.exists() else f"names a {out.suffix} file"
            raise ConfigError(
                f"--out {out} {what}; with several --image, --out is the folder of the maps "
                "(<image>_carbon.tif and panel.png): give a folder path"
            )
        targets = [out / f"{p.stem}_carbon.tif" for p in paths]
        outputs.append(out / "panel.png")
    else:
        targets = [out]
    inputs = [("input image", p) for p in paths] + [("mask", mask_path)]
    overwrite = bool(options.get("overwrite", False))
    check_output_targets([*targets, *outputs], overwrite=overwrite, inputs=inputs)
    if len(paths) > 1:
        out.mkdir(parents=True, exist_ok=True)
    maps = []
    for image, target in zip(paths, targets, strict=True):
        summary = estimate_raster(
            checkpoint,
            image,
            target,
            mask_path=mask_path,
            ensemble=ensemble,
            uncertainty=uncertainty,
            **options,
        )
        item = ImageCarbonMap(image, target, summary, "forest" if mask_path else "valid")
        maps.append(item)
        if on_map is not None:
            on_map(item)
    panel = None
    if len(paths) > 1:
        from terradiff.viz import save_map_panel

        panel = save_map_panel(
            {m.image.stem: read_preview(m.path) for m in maps}, out / "panel.png", unit="Mg C/ha"
        )
    result = CarbonMaps(maps, panel, Path(summary_path) if summary_path else None)
    if result.summary_path is not None:
        atomic_write_text(result.summary_path, json.dumps(result.records(), indent=2) + "\n")
    return result
