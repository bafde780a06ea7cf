"""The output side of a tiled run: physical values, nodata, and an atomically committed GeoTIFF.

:func:`choose_out_nodata` picks the output's nodata value (or a mask band), :func:`to_output`
turns blended model values into the output type, and :class:`GeoTiffWriter` writes finished rows
into a hidden temporary file beside the output and moves it onto the output's name only on
:meth:`~GeoTiffWriter.commit`, as a Cloud-Optimized GeoTIFF unless ``cog`` is off
(:mod:`terradiff.data.cog`; see "Nodata" and "Atomicity" in :mod:`terradiff.data.tiling`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from terradiff.data.cog import commit_raster, compression_options, remove_side_files
from terradiff.data.transforms import Scaling
from terradiff.errors import RasterError
from terradiff.io import (
    GEOTIFF_SUFFIXES,
    check_named_as,
    remove_stale_temporaries,
    temporary_name,
)

#: Block side of tiled GeoTIFF outputs (outputs that fit in one block are written in strips).
BLOCK = 256


def representable(value: float, dtype: np.dtype) -> bool:
    """Whether ``value`` can be stored exactly in ``dtype`` (always True for float types)."""
    if np.issubdtype(dtype, np.floating):
        return True
    if not math.isfinite(value) or value != int(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def choose_out_nodata(
    dtype: np.dtype,
    out_nodata: float | None,
    in_nodata: float | None,
    maybe_invalid: bool,
    out_path: Path,
) -> tuple[float | None, bool]:
    """The output nodata value and whether a mask band is needed instead.

    Args:
        dtype: the output type.
        out_nodata: the nodata value asked for, if any.
        in_nodata: the input's nodata value, if any.
        maybe_invalid: whether the input can have invalid pixels at all.
        out_path: the output file (named in errors).

    Raises:
        RasterError: ``out_nodata`` does not fit ``dtype``.
    """
    if out_nodata is not None:
        if not representable(float(out_nodata), dtype):
            raise RasterError(
                f"out_nodata {out_nodata} does not fit the output type {dtype.name} of {out_path}; "
                "choose a value in its range or a float out_dtype"
            )
        return float(out_nodata), False
    if np.issubdtype(dtype, np.floating):
        return float("nan"), False
    if in_nodata is not None and representable(float(in_nodata), dtype):
        return float(in_nodata), False
    return None, maybe_invalid


def to_output(
    values: np.ndarray,
    valid: np.ndarray,
    scaling: Scaling,
    dtype: np.dtype,
    nodata: float | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Model range -> physical values of ``dtype``; invalid pixels -> nodata.

    Returns:
        The array, the final validity and the count of valid but non-finite predictions.
    """
    phys = scaling.from_model(values)
    finite = np.isfinite(phys).all(axis=0)
    nonfinite = int(np.count_nonzero(valid & ~finite))
    valid = valid & finite
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        phys = np.nan_to_num(phys, nan=0.0, posinf=info.max, neginf=info.min)
        out = np.clip(np.rint(phys), info.min, info.max).astype(dtype)
        if nodata is not None:
            fill = dtype.type(nodata)
            step = dtype.type(1)
            away = fill + step if fill == info.min else fill - step
            out[(out == fill) & valid[None]] = away
            out[:, ~valid] = fill
    else:
        out = phys.astype(dtype, copy=False)
        out[:, ~valid] = np.nan if nodata is None else nodata
    return out, valid, nonfinite


def check_output_path(out_path: Path, overwrite: bool) -> None:
    """Refuse a folder, a name that does not end ``.tif``/``.tiff``, or an existing file without
    ``overwrite``.

    Raises:
        RasterError: ``out_path`` is a folder, or exists and ``overwrite`` is False.
        DataError: another ending (:func:`~terradiff.io.check_named_as`).
    """
    check_named_as(out_path, "GeoTIFF", GEOTIFF_SUFFIXES)
    if out_path.is_dir():
        raise RasterError(f"{out_path} is a folder; give a file path to write the raster to")
    if out_path.exists() and not overwrite:
        raise RasterError(
            f"{out_path} already exists; pass --overwrite (overwrite=True from Python) "
            "to replace it"
        )


def temporary_path(out_path: Path) -> Path:
    """A fresh hidden name beside ``out_path`` to write it under until it is complete.

    It names this process (:func:`terradiff.io.temporary_name`), so that a temporary left by a
    killed run is recognised as stale by the next write into the folder.
    """
    return temporary_name(out_path, "tmp")


def remove_temporary(tmp: Path) -> None:
    """Delete ``tmp`` and the side files GDAL may have written beside it (absent ones ignored)."""
    remove_side_files(tmp)


@dataclass
class OutputSpec:
    """What the output file will be.

    Attributes:
        path: the output file.
        dtype: its data type.
        nodata: its nodata value (None: none, or a mask band when ``use_mask``).
        use_mask: invalid pixels go to an internal mask band.
        codec: GeoTIFF compression (``"none"`` for none).
        band_names: band descriptions asked for, or None.
        input_band_names: names of the selected input bands, the default descriptions when the
            output has as many bands.
        scaling: how the model's [-1, 1] maps back to physical units.
        tags: GeoTIFF metadata tags.
        height: output rows.
        width: output columns.
        crs: output CRS (None for none).
        transform: output affine transform.
        cog: commit the output as a Cloud-Optimized GeoTIFF (False: the plain tiled GeoTIFF).
    """

    path: Path
    dtype: np.dtype
    nodata: float | None
    use_mask: bool
    codec: str
    band_names: list[str] | None
    input_band_names: list[str]
    scaling: Scaling
    tags: dict[str, str]
    height: int
    width: int
    crs: Any
    transform: Any
    cog: bool = True


class RowSink(Protocol):
    """Where a tiled run puts its finished output pixels (a window of rows and columns)."""

    def write_rows(
        self, array: np.ndarray, mask: np.ndarray | None, row: int, col: int = 0
    ) -> None:
        """Store ``array [C, rows, cols]`` (and its uint8 ``mask``) at output row ``row`` and
        column ``col``."""


class GeoTiffWriter:
    """Writes output rows into a temporary GeoTIFF beside the output; :meth:`commit` moves it.

    The file is created on the first :meth:`write_rows` (when the band count is known). Until
    :meth:`commit` nothing exists under the output's name; :meth:`discard` (a no-op after a
    commit) closes and deletes the temporary file. Making a writer first removes the stale
    temporaries of the output's folder (those of killed runs on this host:
    :func:`terradiff.io.remove_stale_temporaries`).

    Attributes:
        spec: the output.
        tmp: the temporary file.
        dst: the open rasterio dataset, or None before the first write.
    """

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        remove_stale_temporaries(spec.path.parent)
        self.tmp = temporary_path(spec.path)
        self.dst: Any = None
        self.committed = False

    def open(self, count: int) -> Any:
        """Create the temporary GeoTIFF with ``count`` bands."""
        out = self.spec
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "count": count,
            "height": out.height,
            "width": out.width,
            "dtype": out.dtype.name,
            "crs": out.crs,
            "transform": out.transform,
            "nodata": out.nodata,
            "BIGTIFF": "IF_SAFER",
        }
        profile.update(compression_options(out.dtype, out.codec))
        if max(out.height, out.width) > BLOCK:
            profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
        names = out.band_names
        if names is None and count == len(out.input_band_names):
            names = list(out.input_band_names)
            if names == [f"band_{k}" for k in range(1, count + 1)]:
                names = None  # the input has no band names: write none rather than placeholders
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dst = self.dst = rasterio.open(self.tmp, "w", **profile)  # discard() closes it
            if names is not None:
                for band, name in enumerate(names, 1):
                    dst.set_band_description(band, name)
            dst.update_tags(**out.tags)
        except (RasterioError, OSError, ValueError) as err:
            raise RasterError(f"cannot create output raster {out.path}: {err}") from err
        return dst

    def write_rows(
        self, array: np.ndarray, mask: np.ndarray | None, row: int, col: int = 0
    ) -> None:
        """Write ``array [C, rows, cols]`` (and ``mask``, when given) at output row ``row`` and
        column ``col``."""
        if self.dst is None:
            self.dst = self.open(array.shape[0])
        window = Window(col, row, array.shape[2], array.shape[1])
        try:
            self.dst.write(array, window=window)
            if mask is not None:
                self.dst.write_mask(mask, window=window)
        except (RasterioError, OSError) as err:
            raise RasterError(f"failed to write raster {self.spec.path}: {err}") from err

    def commit(self) -> None:
        """Close the temporary output and move it onto the output's name (atomic).

        It becomes a Cloud-Optimized GeoTIFF on the way when ``spec.cog``
        (:func:`~terradiff.data.cog.commit_raster`).
        """
        out = self.spec
        try:
            self.dst.close()
        except (RasterioError, OSError) as err:
            raise RasterError(f"failed to write raster {out.path}: {err}") from err
        commit_raster(self.tmp, out.path, cog=out.cog, dtype=out.dtype, codec=out.codec)
        self.committed = True

    def discard(self) -> None:
        """Close and delete the temporary file unless the output was committed."""
        if self.dst is not None and not self.dst.closed:
            with contextlib.suppress(Exception):
                self.dst.close()
        if not self.committed:
            remove_temporary(self.tmp)


__all__ = [
    "BLOCK",
    "GeoTiffWriter",
    "OutputSpec",
    "RowSink",
    "check_output_path",
    "choose_out_nodata",
    "remove_temporary",
    "representable",
    "temporary_path",
    "to_output",
]
