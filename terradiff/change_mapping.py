"""Whole-image change maps: a before and an after image -> a 0/1 change mask (``terradiff change``).

:func:`detect_change` reads two co-registered images of one place (GeoTIFF, or PNG/JPEG such as
LEVIR-CD's tiles; anything GDAL opens), scales them as the change model's training data (or as
``input_scaling`` says), predicts the change probability in overlapping tiles blended with the
weights of :func:`terradiff.data.tiling.blend_weights` (every tile with the noise of the
experiment seed, so a DDPM-CD map is repeatable), and writes:

* a Cloud-Optimized GeoTIFF (``out``; a plain one with ``cog=False``; its overviews average
  the valid pixels, which on a 0/1 mask rounds to the majority): band 1 the change mask, uint8,
  1 = change, 0 = no change, 255 (the declared nodata) where either input has no data; with
  ``probability`` a band 2, the change probability scaled to 0-255 (``round(255 p)``, uint8
  like the mask). It keeps the before
  image's CRS and transform (the after image's when only that one has them; none for two PNGs)
  and records the model, the net's number format, threshold, inputs and input scaling as tags;
* optionally a PNG (``png``): the mask as black (no change) and white (change), for viewing.

``terradiff change`` also takes STAC Items as ``--before``/``--after``
(:mod:`terradiff.interop.stac`) and writes a STAC Item beside a georeferenced mask
(:meth:`ChangeMapSummary.stac_properties`: threshold, changed share, and the before -> after
period when both inputs are dated Items).

The inputs are held in memory whole (fine up to a few thousand pixels a side); tiles bound only
the network's activations. Two inputs of different sizes, or georeferenced on different grids,
are refused with a :class:`~terradiff.errors.DataError` naming both files: change detection
compares pixels, so the images must be co-registered first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from terradiff.data.raster import RasterData, read_raster
from terradiff.data.raster_write import write_raster
from terradiff.data.tiling import blend_weights, tile_windows
from terradiff.data.tiling.options import check_output_targets
from terradiff.data.tiling.value_check import check_input_values, samples_of_array
from terradiff.data.transforms.scaling import get_scaling
from terradiff.errors import DataError, WrongCheckpointError
from terradiff.io import GEOTIFF_SUFFIXES, atomic_path, check_named_as

if TYPE_CHECKING:
    from terradiff.interop.stac import StacImage

__all__ = ["MASK_NODATA", "ChangeMapSummary", "detect_change", "read_pair"]

#: The mask value (and declared nodata) of pixels where either input has no data.
MASK_NODATA = 255
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ChangeMapSummary:
    """What :func:`detect_change` wrote.

    Attributes:
        path: the GeoTIFF; png: the PNG (or None).
        height, width: its size in pixels (the inputs').
        changed_pixels: pixels marked change; change_fraction: their share of the valid pixels.
        threshold: change where the probability exceeds it.
        georeferenced: the GeoTIFF carries a CRS.
        tiles: model calls; seconds: wall time of the prediction.
    """

    path: Path
    png: Path | None
    height: int
    width: int
    changed_pixels: int
    change_fraction: float
    threshold: float
    georeferenced: bool
    tiles: int
    seconds: float

    def stac_properties(self, before: StacImage | None, after: StacImage | None) -> dict[str, Any]:
        """Properties of the mask's STAC Item: threshold and changed share, and the period
        ``start_datetime`` (the before Item's date) - ``end_datetime`` (the after Item's) when
        both inputs are dated STAC Items."""
        record: dict[str, Any] = {
            "terradiff:threshold": self.threshold,
            "terradiff:changed_pixels": self.changed_pixels,
            "terradiff:change_fraction": self.change_fraction,
        }
        if before is not None and after is not None and before.datetime and after.datetime:
            start, end = (d.replace("+00:00", "Z") for d in (before.datetime, after.datetime))
            record |= {"start_datetime": start, "end_datetime": end}
        return record

    def describe(self) -> str:
        """One line for the command line."""
        where = "georeferenced as the input" if self.georeferenced else "no georeferencing"
        text = (
            f"wrote {self.path}: {self.width}x{self.height} px, {self.changed_pixels} changed "
            f"pixels ({100 * self.change_fraction:.2f}%) at threshold {self.threshold:g}, "
            f"{where}, {self.tiles} tile(s) in {self.seconds:.1f} s"
        )
        return text + (f"; PNG {self.png}" if self.png is not None else "")


def read_pair(before: str | Path, after: str | Path, bands: int) -> tuple[RasterData, RasterData]:
    """Read both images and check that they are one grid of ``bands`` bands.

    Raises:
        DataError: another band count, two sizes, or two different CRS/transforms (both
            georeferenced); the message names both files.
    """
    images = []
    for what, path in (("before", before), ("after", after)):
        image = read_raster(path)
        if image.count != bands:
            raise DataError(
                f"the {what} image {path} has {image.count} bands; the model reads {bands} "
                "(red, green, blue for LEVIR-CD models): give a 3-band image (drop an alpha band)"
            )
        images.append(image)
    first, second = images
    if first.array.shape[1:] != second.array.shape[1:]:
        h1, w1 = first.array.shape[1:]
        h2, w2 = second.array.shape[1:]
        raise DataError(
            f"the before image {before} is {w1}x{h1} px and the after image {after} is "
            f"{w2}x{h2} px; change detection compares pixels, so both must be one size (crop "
            "or resample one onto the other's grid)"
        )
    if (
        first.has_crs
        and second.has_crs
        and (first.crs != second.crs or first.transform != second.transform)
    ):
        raise DataError(
            f"the before image {before} ({first.crs}, {tuple(first.transform)[:6]}) and the "
            f"after image {after} ({second.crs}, {tuple(second.transform)[:6]}) are not on one "
            "grid; reproject one onto the other (e.g. gdalwarp -te/-tr of the before image)"
        )
    return first, second


def _probability(
    task: Any, before: torch.Tensor, after: torch.Tensor, tile: int, overlap: int
) -> tuple[np.ndarray, int]:
    """The blended change probability ``[H, W]`` of a pair ``[C, H, W]`` and the tile count."""
    height, width = before.shape[-2:]
    windows = tile_windows(height, width, tile, overlap)
    total = np.zeros((height, width), np.float64)
    weight = np.zeros((height, width), np.float64)
    for window in windows:
        top, left = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        rows, cols = slice(top, top + h), slice(left, left + w)
        pair = before[None, :, rows, cols], after[None, :, rows, cols]
        p = task.change_probability(task.net, *pair)
        wts = blend_weights(
            h,
            w,
            min(overlap, h, w),
            margin=min(overlap, h, w) // 4,
            top=top > 0,
            bottom=top + h < height,
            left=left > 0,
            right=left + w < width,
        )
        total[rows, cols] += wts * p[0, 0].numpy()
        weight[rows, cols] += wts
    return (total / weight).astype(np.float32), len(windows)


def _write_png(path: Path, mask: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask == 1, 255, 0).astype(np.uint8)).save(tmp, format="PNG")


def detect_change(
    model: str | Path,
    before: str | Path,
    after: str | Path,
    out: str | Path,
    *,
    threshold: float | None = None,
    input_scaling: str | dict[str, Any] | None = None,
    png: str | Path | None = None,
    probability: bool = False,
    tile: int = 256,
    overlap: int = 32,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    cog: bool = True,
    precision: str | None = None,
) -> ChangeMapSummary:
    """Write the change mask of ``before`` -> ``after`` (see the module docstring).

    Args:
        model: a ``change`` run or checkpoint folder.
        before, after: the two images (same size; same grid when both are georeferenced).
        out: the GeoTIFF to write (not a PNG/JPEG name: use ``png`` for a PNG).
        threshold: change where the probability exceeds it (default: ``change.threshold``).
        input_scaling: how the images' values map to [0, 1] when they are not in the units the
            model was trained on: a preset name or a scaling mapping
            (:func:`~terradiff.data.transforms.scaling.get_scaling`); default the model's.
        png: also write the mask as a PNG here.
        probability: add the change probability as band 2 (0-255).
        tile, overlap: tile side and overlap in pixels.
        device: where the network runs (default: CUDA when available).
        overwrite: replace existing outputs.
        cog: write the mask as a Cloud-Optimized GeoTIFF; False: a plain GeoTIFF.
        precision: the net's number format (``sample.precision``: ``auto``, ``fp32``, ``bf16``,
            ``fp16``; :mod:`terradiff.nets.precision`); default the checkpoint's.

    Raises:
        DataError: an output that is an input, exists without ``overwrite``, or is a PNG name;
            inputs that are not one grid (:func:`read_pair`); a threshold outside (0, 1).
        WrongCheckpointError: ``model`` is not a change model.
    """
    from terradiff.nets.precision import precision_tag
    from terradiff.tasks import load_task
    from terradiff.tasks.change import ChangeTask

    out = Path(out)
    if out.suffix.lower() in _IMAGE_SUFFIXES:
        raise DataError(
            f"--out {out} names a {out.suffix} file, but the mask is written as a GeoTIFF; give a "
            ".tif path for --out and the PNG path to --png"
        )
    check_named_as(out, "GeoTIFF", GEOTIFF_SUFFIXES, "--out")
    if png is not None:
        check_named_as(png, "PNG", (".png",), "--png")
    outputs = [out, *([Path(png)] if png is not None else [])]
    check_output_targets(
        outputs, overwrite=overwrite, inputs=[("before image", before), ("after image", after)]
    )
    task, ckpt = load_task(model, use_ema=True, device=device or "auto")
    if not isinstance(task, ChangeTask):
        raise WrongCheckpointError(
            ckpt.path,
            f"{task.config.task!r} checkpoint",
            "terradiff change needs a 'change' model (terradiff train configs/change/...)",
        )
    task.use_precision(precision)
    threshold = task.change.threshold if threshold is None else float(threshold)
    if not 0.0 < threshold < 1.0:
        raise DataError(f"--threshold must be a probability in (0, 1), got {threshold}")
    first, second = read_pair(before, after, task.num_bands)
    scaling = get_scaling(input_scaling) if input_scaling else task.band_info.band_scaling()
    for path, image in ((before, first), (after, second)):  # values the model was trained on
        names = image.band_names or [f"band_{k + 1}" for k in range(image.count)]
        samples, sampled = samples_of_array(image.array, image.valid_mask, names)
        check_input_values(
            Path(path),
            samples,
            sampled,
            scaling,
            image.array.dtype,
        )
    valid = first.valid_mask & second.valid_mask
    pair = [
        torch.from_numpy(np.where(valid, scaling.to_model(x.array.astype(np.float32)), 0.0))
        for x in (first, second)
    ]
    start = time.perf_counter()
    prob, tiles = _probability(task, pair[0].float(), pair[1].float(), tile, overlap)
    seconds = time.perf_counter() - start
    mask = np.where(valid, prob > threshold, MASK_NODATA).astype(np.uint8)
    bands = [mask]
    names = ["change"]
    if probability:
        bands.append(np.where(valid, np.round(prob * 255.0), MASK_NODATA).astype(np.uint8))
        names.append("change_probability_x255")
    source = first if first.has_crs else second
    profile = {"crs": source.crs, "transform": source.transform} if source.has_crs else None
    tags = {
        "TERRADIFF_CHECKPOINT": str(ckpt.path),
        "TERRADIFF_METHOD": task.method.name,
        **precision_tag(task.inference_precision()),
        "TERRADIFF_THRESHOLD": f"{threshold:g}",
        "TERRADIFF_BEFORE": str(before),
        "TERRADIFF_AFTER": str(after),
        "TERRADIFF_INPUT_SCALING": json.dumps(scaling.to_dict()),
    }
    write_raster(
        out,
        np.stack(bands),
        profile,
        nodata=MASK_NODATA,
        overwrite=overwrite,
        band_names=names,
        tags=tags,
        cog=cog,
    )
    if png is not None:
        _write_png(Path(png), mask)
    changed = int((mask == 1).sum())
    return ChangeMapSummary(
        path=out,
        png=None if png is None else Path(png),
        height=int(mask.shape[0]),
        width=int(mask.shape[1]),
        changed_pixels=changed,
        change_fraction=changed / max(1, int(valid.sum())),
        threshold=threshold,
        georeferenced=profile is not None,
        tiles=tiles,
        seconds=seconds,
    )
