"""Cloud-Optimized GeoTIFF (COG) outputs: the layout, the compression for a data type, and the
atomic commit of a finished GeoTIFF as a COG.

Every raster a user asks for (``super-resolve``, ``estimate``, ``sample --tif-dir``,
``synthesize``) is first written as a plain tiled GeoTIFF under a hidden temporary name, block by
block (:class:`~terradiff.data.tiling.writer.GeoTiffWriter`) or at once
(:func:`~terradiff.data.raster_write.write_raster`). :func:`commit_raster` then copies it with
GDAL's COG driver to a second temporary (internal :data:`COG_BLOCK` px tiles, overviews averaged
down to one block, the compression and predictor of :func:`compression_options`, nodata, mask,
band descriptions and dataset tags copied) and moves that onto the output's name with
:func:`os.replace`; ``cog=False`` moves the first temporary itself (a plain tiled GeoTIFF).

Memory: the COG driver streams. It copies the source a row of output blocks at a time and builds
the overviews in a temporary ``.ovr.tmp`` file beside the destination, each level from the one
above, so the memory of a conversion is bounded by GDAL's block cache (:func:`cog_cache_bytes`),
not by the raster's size. Measured on a 10,000 x 10,000 float32 map (381 MiB of pixels, 5
overview levels): the process grew by 120 MiB with the 64 MiB cache it gets (17-21 s on two
shared CPU cores), and by 310 MiB with a 256 MiB cache.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from terradiff.errors import RasterError
from terradiff.io import temporary_name

#: Internal tile side of COG outputs (GDAL's and rio-cogeo's default).
COG_BLOCK = 512
#: Least and largest GDAL block cache of one conversion (bytes); see :func:`cog_cache_bytes`.
COG_CACHE = (64 * 2**20, 1024 * 2**20)
#: Compressions that take a predictor (horizontal differencing: 2; floating point: 3).
PREDICTOR_CODECS = frozenset({"deflate", "zstd", "lzw"})
#: Side files GDAL may write beside a GeoTIFF or a COG being made.
SIDE_SUFFIXES = ("", ".aux.xml", ".msk", ".ovr.tmp", ".msk.ovr.tmp")


def predictor_for(dtype: Any, codec: str) -> int | None:
    """The TIFF predictor for ``dtype`` under ``codec``: 2 for integers, 3 for floats, None for
    a codec without one (``packbits``, ``none``)."""
    if str(codec).lower() not in PREDICTOR_CODECS:
        return None
    return 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2


def compression_options(dtype: Any, codec: str) -> dict[str, str]:
    """GDAL creation options for ``codec`` (``deflate``, ``zstd``, ``lzw``, ``packbits``,
    ``none``) on data of ``dtype``: the codec and, where it takes one, the predictor."""
    codec = str(codec).lower()
    if codec == "none":
        return {}
    options = {"compress": codec}
    predictor = predictor_for(dtype, codec)
    if predictor is not None:
        options["predictor"] = str(predictor)
    return options


def cog_creation_options(dtype: Any, codec: str) -> dict[str, str]:
    """Creation options of the GDAL COG driver for a COG of ``dtype`` compressed with ``codec``.

    Tiles of :data:`COG_BLOCK` px, overviews (``AUTO``: halved until the smallest fits one tile)
    resampled with ``AVERAGE`` (nodata and masked pixels left out), BigTIFF when needed.
    """
    codec = str(codec).lower()
    options = {
        "BLOCKSIZE": str(COG_BLOCK),
        "OVERVIEWS": "AUTO",
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "COMPRESS": codec.upper(),
    }
    predictor = predictor_for(dtype, codec)
    if predictor is not None:
        options["PREDICTOR"] = "FLOATING_POINT" if predictor == 3 else "STANDARD"
    return options


def expected_overviews(height: int, width: int, block: int = COG_BLOCK) -> int:
    """How many overview levels GDAL's COG driver makes (``OVERVIEWS=AUTO``) for a raster of
    ``height x width``: the largest side is halved (rounding up) while it exceeds ``block``."""
    count, side = 0, max(height, width)
    while side > block:
        side = -(-side // 2)
        count += 1
    return count


def cog_cache_bytes(width: int, count: int, itemsize: int) -> int:
    """GDAL's block cache for converting a raster ``width`` px wide with ``count`` bands of
    ``itemsize`` bytes: two rows of :data:`COG_BLOCK` px blocks (the one being written and the
    source's), within :data:`COG_CACHE` (a 10,000 px wide 4-band float32 map: 164 MB)."""
    least, most = COG_CACHE
    return int(min(most, max(least, 2 * width * COG_BLOCK * count * itemsize)))


def remove_side_files(path: Path) -> None:
    """Delete ``path`` and the side files GDAL may have written beside it (absent ones ignored)."""
    for suffix in SIDE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def convert_to_cog(src: Path, dst: Path, dtype: Any, codec: str) -> None:
    """Copy the GeoTIFF ``src`` to a COG at ``dst`` with GDAL's COG driver (streaming).

    Raises:
        RasterioError, OSError: the copy failed (``dst`` may be left half-written).
    """
    import rasterio  # where used: training on JPEGs imports this module, not rasterio (issue 16)
    import rasterio.shutil
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # generated samples have none
        with rasterio.open(src) as source:
            cache = cog_cache_bytes(source.width, source.count, np.dtype(source.dtypes[0]).itemsize)
    with rasterio.Env(GDAL_CACHEMAX=cache), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        rasterio.shutil.copy(src, dst, driver="COG", **cog_creation_options(dtype, codec))


def commit_raster(tmp: Path, out_path: Path, *, cog: bool, dtype: Any, codec: str) -> None:
    """Move the finished GeoTIFF ``tmp`` onto ``out_path``, as a COG when ``cog``.

    With ``cog`` the COG is made under a second hidden temporary beside ``out_path`` (named for
    this process, so a killed run's leftovers are stale for
    :func:`terradiff.io.remove_stale_temporaries`) and moved onto ``out_path`` only when
    complete; ``tmp`` and GDAL's side files are removed either way. Nothing is left under
    ``out_path`` (an existing file is kept) when this fails.

    Raises:
        RasterError: the conversion or the move failed.
    """
    if not cog:
        try:
            os.replace(tmp, out_path)
        except OSError as err:
            raise RasterError(f"failed to write raster {out_path}: {err}") from err
        return
    from rasterio.errors import RasterioError

    cog_tmp = temporary_name(out_path, "tmp", ".tif")
    try:
        convert_to_cog(tmp, cog_tmp, dtype, codec)
        os.replace(cog_tmp, out_path)
    except (RasterioError, OSError) as err:
        raise RasterError(
            f"failed to write {out_path} as a Cloud-Optimized GeoTIFF: {err}"
        ) from err
    finally:
        remove_side_files(cog_tmp)
        remove_side_files(tmp)


def read_preview(path: Path, max_side: int = 512, cache_bytes: int = 64 * 2**20) -> np.ndarray:
    """Band 1 of a raster, decimated so the longer side is at most ``max_side``, as float64 with
    NaN for nodata. A COG serves it from its overviews; GDAL's block cache is ``cache_bytes``
    (a sequential read needs no more, and GDAL's default would keep a whole map)."""
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=cache_bytes), rasterio.open(path) as src:
        factor = max(1, -(-max(src.height, src.width) // max_side))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        data = src.read(1, out_shape=shape, masked=True).astype(np.float64)
    return data.filled(np.nan)


__all__ = [
    "COG_BLOCK",
    "COG_CACHE",
    "PREDICTOR_CODECS",
    "cog_cache_bytes",
    "cog_creation_options",
    "commit_raster",
    "compression_options",
    "convert_to_cog",
    "expected_overviews",
    "predictor_for",
    "read_preview",
    "remove_side_files",
]
