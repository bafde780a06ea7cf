"""xarray in, xarray out: whole-raster inference for notebooks, without tiles or files.

Each function takes an ``xarray.DataArray`` with a CRS (rioxarray's ``da.rio.crs``) and spatial
coordinates, and returns one with the output's coordinates, CRS, band names and nodata::

    import rioxarray
    from terradiff import api

    scene = rioxarray.open_rasterio("scene.tif", chunks=True)    # lazy, dask-backed
    hr = api.super_resolve(scene.isel(x=slice(0, 512), y=slice(0, 512)), "runs/sr-x4")
    carbon = api.estimate_carbon(api.open_raster("s2.tif"), "runs/carbon")  # attrs: totals

They reuse the file path of ``terradiff super-resolve`` / ``estimate``
(:func:`terradiff.sr_mapping.super_resolve_raster`, :func:`terradiff.mapping.estimate_raster`)
unchanged, so the values are exactly those of the command line: the input is written window by
window to a GeoTIFF (a lazy/dask input is computed one window at a time, never whole), the
tiling engine maps it window by window, and the result is read back with rioxarray. With
``workdir`` the files stay there and the result is returned lazily (dask chunks of the output
GeoTIFF); without it they live in a temporary folder and the result is loaded into memory
before the folder is removed.

Needs the ``xarray`` extra (``pip install 'terradiff[xarray]'``: xarray, rioxarray); without it
every function raises :class:`~terradiff.errors.MissingExtraError` naming it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from terradiff.errors import DataError
from terradiff.extras import require

__all__ = ["estimate_carbon", "open_raster", "super_resolve"]

_PURPOSE = "terradiff.api"


def _libraries() -> tuple[Any, Any]:
    """``(xarray, rioxarray)``, or the error naming the ``xarray`` extra."""
    xr = require("xarray", "xarray", _PURPOSE)
    rioxarray = require("rioxarray", "xarray", _PURPOSE)
    return xr, rioxarray


def _check_input(da: Any, xr: Any, what: str) -> Any:
    """``da`` as ``(band, y, x)`` with a CRS, or a :class:`DataError` saying what to fix."""
    if not isinstance(da, xr.DataArray):
        raise DataError(f"{what} must be an xarray.DataArray, got {type(da).__name__}")
    try:
        x_dim, y_dim = da.rio.x_dim, da.rio.y_dim
    except Exception as error:  # rioxarray's MissingSpatialDimensionError
        raise DataError(
            f"{what} has no spatial dimensions rioxarray recognises ({error}); name them x/y "
            "(or longitude/latitude), or set them with da.rio.set_spatial_dims(...)"
        ) from None
    if da.rio.crs is None:
        raise DataError(
            f"{what} has no CRS (da.rio.crs is None); set it with da.rio.write_crs('EPSG:...')"
        )
    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        raise DataError(
            f"{what} must have dimensions (band, {y_dim}, {x_dim}) or ({y_dim}, {x_dim}); got "
            f"{da.dims}"
        )
    other = next(d for d in da.dims if d not in (x_dim, y_dim))
    return da.transpose(other, y_dim, x_dim)


def _write_geotiff(da: Any, path: Path) -> None:
    """Write ``da`` window by window (a dask array is computed one window at a time)."""
    da.rio.to_raster(path, windowed=True, tiled=True)


def open_raster(path: str | Path, *, lazy: bool = True) -> Any:
    """A GeoTIFF as a ``DataArray`` with coordinates, CRS and band names (rioxarray).

    Args:
        path: the raster.
        lazy: dask chunks of whole file blocks (one band each, about dask's default chunk
            size; read on demand); False reads it into memory.
    """
    _, rioxarray = _libraries()
    chunks = _block_chunks(path) if lazy else None
    da = rioxarray.open_rasterio(path, chunks=chunks, mask_and_scale=False)
    return da if lazy else da.load()


def _block_chunks(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Dask chunks of ``path`` by dimension name: one band, whole internal blocks of about
    dask's default chunk size (what rioxarray's ``chunks=True`` picks, without its deprecated
    tuple form)."""
    import numpy as np
    import rasterio
    from dask.array.core import normalize_chunks

    with rasterio.open(path) as src:
        shape, block = (src.count, src.height, src.width), (1, *src.block_shapes[0])
        dtype = np.dtype(src.dtypes[0])
    bands, rows, cols = normalize_chunks(
        (1, "auto", "auto"), shape=shape, dtype=dtype, previous_chunks=block
    )
    return {"band": bands, "y": rows, "x": cols}


@contextlib.contextmanager
def _folder(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="terradiff-api-") as tmp:
        yield Path(tmp)


def _result(path: Path, keep: bool, name: str) -> Any:
    """The output GeoTIFF as a DataArray: lazy when its file is kept, else loaded and closed."""
    da = open_raster(path, lazy=keep)
    if not keep:
        da.close()
    return da.rename(name)


def _on_input_grid(out: Any, da: Any) -> Any:
    """``out`` with ``da``'s spatial dimension names and coordinates (the same grid).

    The GeoTIFF round trip recomputes pixel-centre coordinates from the transform, which can
    differ from the input's in the last bit; taking the input's makes ``xr.align`` exact.
    """
    x_dim, y_dim = da.rio.x_dim, da.rio.y_dim
    out = out.rename({out.rio.x_dim: x_dim, out.rio.y_dim: y_dim})
    if out.sizes[x_dim] != da.sizes[x_dim] or out.sizes[y_dim] != da.sizes[y_dim]:
        raise DataError(  # pragma: no cover - the tiling engine keeps the grid
            f"the carbon map has {out.sizes[y_dim]}x{out.sizes[x_dim]} pixels, the input "
            f"{da.sizes[y_dim]}x{da.sizes[x_dim]}"
        )
    return out.assign_coords({x_dim: da[x_dim].values, y_dim: da[y_dim].values})


def super_resolve(
    da: Any, model: str | Path, *, workdir: str | Path | None = None, **options: Any
) -> Any:
    """Super-resolve a georeferenced ``DataArray`` with a trained super-resolution model.

    Args:
        da: ``(band, y, x)`` (or ``(y, x)``) in the units the model was trained on (e.g. uint8
            for an 8-bit model), with a CRS; may be lazy (dask).
        model: a super-resolution run or ``step_*`` folder.
        workdir: keep ``input.tif`` / ``output.tif`` here and return the result lazily;
            default a temporary folder and an in-memory result.
        **options: those of :func:`terradiff.sr_mapping.super_resolve_raster` (``scale``,
            ``bands``, ``tile``, ``overlap``, ``sampler``, ``steps``, ``seed``, ``device``,
            ``batch_size``, ``input_scaling``, ``cog``, ``progress`` (default False),
            ``ensemble``: N draws of a diffusion model, their mean then their std bands, ...).

    Returns:
        ``(band, y, x)`` on the input's extent with the pixel size divided by the scale, the
        input's CRS, the model's band names (``long_name``) and nodata.
    """
    from terradiff.sr_mapping import super_resolve_raster

    xr, _ = _libraries()
    da = _check_input(da, xr, "super_resolve's input")
    options.setdefault("progress", False)
    with _folder(workdir) as folder:
        source, target = folder / "input.tif", folder / "output.tif"
        _write_geotiff(da, source)
        summary = super_resolve_raster(model, source, target, overwrite=True, **options)
        out = _result(target, workdir is not None, "super_resolved")
    out.attrs["terradiff_scale"] = summary.scale
    return out


def estimate_carbon(
    da: Any,
    model: str | Path,
    *,
    mask: Any = None,
    workdir: str | Path | None = None,
    **options: Any,
) -> Any:
    """Map carbon density (Mg C/ha) over a georeferenced ``DataArray`` with a carbon model.

    Args:
        da: ``(band, y, x)`` image with a CRS, in the units the model was trained on (or give
            ``input_scaling``); may be lazy (dask).
        model: a carbon run or ``step_*`` folder.
        mask: an optional forest mask on the same grid (forest > 0) for the totals.
        workdir: as for :func:`super_resolve`.
        **options: those of :func:`terradiff.mapping.estimate_raster` (``bands``, ``tile``,
            ``overlap``, ``ensemble``, ``uncertainty``, ``seed``, ``device``, ...).

    Returns:
        ``(band, y, x)`` on the input's grid (its very coordinates) and CRS: band 1 the
        density, band 2 its ensemble standard deviation with ``uncertainty``; ``attrs`` hold
        ``total_carbon_MgC``, ``mean_density_MgC_per_ha``, ``counted_pixels`` and
        ``pixel_area_ha``.
    """
    from terradiff.mapping import estimate_raster

    xr, _ = _libraries()
    da = _check_input(da, xr, "estimate_carbon's input")
    options.setdefault("progress", False)
    with _folder(workdir) as folder:
        source, target = folder / "input.tif", folder / "output.tif"
        _write_geotiff(da, source)
        mask_path = None
        if mask is not None:
            mask_path = folder / "mask.tif"
            _write_geotiff(_check_input(mask, xr, "estimate_carbon's mask"), mask_path)
        summary = estimate_raster(
            model, source, target, mask_path=mask_path, overwrite=True, **options
        )
        out = _on_input_grid(_result(target, workdir is not None, "carbon_density"), da)
    out.attrs.update(
        {
            "units": "Mg C/ha",
            "total_carbon_MgC": summary.total_carbon_mg,
            "mean_density_MgC_per_ha": summary.mean_density,
            "counted_pixels": summary.counted_pixels,
            "pixel_area_ha": summary.pixel_area_ha,
        }
    )
    return out
