"""Writing one GeoTIFF atomically (:func:`write_raster`), apart from the readers of
:mod:`terradiff.data.raster`; the tiled, block-by-block writer of large maps is
:mod:`terradiff.data.tiling.writer`. With ``cog=True`` the file is a Cloud-Optimized GeoTIFF
(:mod:`terradiff.data.cog`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from terradiff.data.cog import commit_raster, compression_options, remove_side_files
from terradiff.errors import RasterError
from terradiff.io import remove_stale_temporaries, temporary_name

_GTIFF_COMPRESS = {"deflate", "lzw", "zstd", "packbits", "none"}


def write_raster(
    path: str | os.PathLike[str],
    array: np.ndarray,
    profile: dict[str, Any] | None = None,
    *,
    nodata: float | None = None,
    overwrite: bool = False,
    valid_mask: np.ndarray | None = None,
    band_names: Sequence[str] | None = None,
    compress: str | None = None,
    tags: dict[str, str] | None = None,
    cog: bool = False,
) -> Path:
    """Write ``array`` as a GeoTIFF, atomically.

    Written to a hidden temporary beside ``path`` (:func:`terradiff.io.temporary_name`), then moved
    over it: readers never see a half-written raster; a failure leaves nothing under ``path``.

    Args:
        path: destination (a GeoTIFF is written whatever the suffix).
        array: ``[C, H, W]`` or ``[H, W]`` (bool is written as uint8, float16 as float32).
        profile: georeferencing to keep (``crs``, ``transform``, ``nodata``, ``compress``); other
            keys of a source profile (JPEG photometric, block sizes, ...) are ignored. None writes
            an ungeoreferenced raster.
        nodata: the nodata value (default: the profile's).
        overwrite: replace an existing file; otherwise an existing ``path`` is an error.
        valid_mask: ``[H, W]`` bool; invalid pixels are set to ``nodata`` when there is one,
            otherwise stored in an internal GDAL mask band (read back by :func:`read_raster`).
        band_names: band descriptions to store.
        compress: GeoTIFF compression (default: the profile's when valid for GeoTIFF, else deflate).
        tags: dataset-level GeoTIFF metadata (``gdalinfo`` lists them; rasterio's ``tags()``),
            e.g. the condition a generated image was drawn with.
        cog: write a Cloud-Optimized GeoTIFF (internal tiles, overviews, a predictor for the
            data type), made from the finished temporary by GDAL's COG driver under a second
            temporary name (:func:`terradiff.data.cog.commit_raster`); False: a plain GeoTIFF.

    Returns:
        The path written.

    Raises:
        RasterError: existing file without ``overwrite``, a bad array shape, or a write failure.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RasterError(
            f"{path} already exists; pass --overwrite (overwrite=True from Python) to replace it"
        )
    if path.is_dir():
        raise RasterError(f"{path} is a folder; give a file path to write the raster to")
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or 0 in data.shape:
        raise RasterError(
            f"cannot write array of shape {np.shape(array)} to {path}; expected [C, H, W] or [H, W]"
        )
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    profile = dict(profile or {})
    if nodata is None:
        nodata = profile.get("nodata")
    if band_names is not None and len(band_names) != data.shape[0]:
        raise RasterError(
            f"band_names has {len(band_names)} names but the array for {path} has "
            f"{data.shape[0]} bands"
        )
    mask = None
    if valid_mask is not None:
        mask = np.asarray(valid_mask, dtype=bool)
        if mask.shape != data.shape[1:]:
            raise RasterError(
                f"valid_mask of shape {mask.shape} does not match the array {data.shape} for {path}"
            )
        if nodata is not None:
            data = data.copy()
            data[:, ~mask] = np.asarray(nodata).astype(data.dtype)
            mask = None
    codec = str(compress or profile.get("compress") or "deflate").lower()
    if codec not in _GTIFF_COMPRESS:
        codec = "deflate"
    import rasterio  # where used: training on JPEGs imports this module, not rasterio (issue 16)
    from affine import Affine
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    out: dict[str, Any] = {
        "driver": "GTiff",
        "count": int(data.shape[0]),
        "height": int(data.shape[1]),
        "width": int(data.shape[2]),
        "dtype": str(data.dtype),
        "crs": profile.get("crs"),
        "transform": profile.get("transform") or Affine.identity(),
        "nodata": nodata,
        "BIGTIFF": "IF_SAFER",
    }
    out.update(compression_options(data.dtype, codec))
    if data.shape[1] >= 256 and data.shape[2] >= 256:
        out.update(tiled=True, blockxsize=256, blockysize=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)  # of earlier runs killed while writing here
    tmp = temporary_name(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **out) as dst:
                dst.write(data)
                if tags:
                    dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
                if band_names is not None:
                    for i, name in enumerate(band_names, 1):
                        dst.set_band_description(i, str(name))
                if mask is not None:
                    dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
        commit_raster(tmp, path, cog=cog, dtype=data.dtype, codec=codec)
    except (RasterioError, OSError, ValueError, TypeError) as err:
        raise RasterError(f"failed to write raster {path}: {err}") from err
    finally:
        remove_side_files(tmp)
    return path


__all__ = ["write_raster"]
