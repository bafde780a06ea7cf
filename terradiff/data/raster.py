"""Read and write rasters (GeoTIFF and anything GDAL opens) with rasterio; no torch here.

The data edge of terradiff (``../shared/GUIDE.md``, "How data flows"): a file becomes a
:class:`RasterData` — an array ``[C, H, W]`` in physical units, a boolean ``valid_mask [H, W]``
(nodata, NaN and GDAL mask bands folded in), the rasterio profile (CRS, transform, dtype, nodata)
and the band names — and maps go back to disk with :func:`write_raster`, atomically.

Bands are selected by 1-based index (GDAL's convention) or by name. Names come from, in order: the
``band_names`` the caller passes (a list, or a known product key of :data:`KNOWN_BAND_NAMES` such as
``"eurosat"``), the file's band descriptions, its colour interpretation (``red``, ``green``, ...)
or ``band_<i>``. Sentinel-2 style names match with or without the zero: ``"B04"`` finds ``"B4"``.

Rasters without a CRS (JPEG, PNG, BioMassters chips) read fine (:attr:`RasterData.has_crs`).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from terradiff.data.raster_write import write_raster
from terradiff.errors import RasterError

if TYPE_CHECKING:  # rasterio is imported where used: JPEG training needs none (issue 16)
    from rasterio.windows import Window

#: EuroSAT multispectral band order (Helber et al. 2019), as torchgeo documents it: B8A is *last*.
EUROSAT_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip
#: Sentinel-2 L1C, all 13 bands in ESA's order (B8A after B08).
SENTINEL2_L1C_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
#: BioMassters ``*_S2_MM.tif`` (Nascetti et al. 2023): 10 L2A bands and the cloud probability.
BIOMASSTERS_S2_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "CLP",
)  # fmt: skip

#: Product keys accepted wherever ``band_names`` is: the file's bands in file order.
KNOWN_BAND_NAMES: dict[str, tuple[str, ...]] = {
    "eurosat": EUROSAT_BANDS,
    "sentinel2_l1c": SENTINEL2_L1C_BANDS,
    "biomassters_s2": BIOMASSTERS_S2_BANDS,
    "rgb": ("red", "green", "blue"),
    "rgbn": ("red", "green", "blue", "nir"),
}

BandSelection = Sequence[int | str]
BandNames = Sequence[str] | str
if TYPE_CHECKING:
    WindowLike = Window | tuple[tuple[int, int], tuple[int, int]]


def _named_colors() -> dict[Any, str]:
    """The colour interpretations that name a band, as :func:`file_band_names` reads them."""
    from rasterio.enums import ColorInterp

    return {
        ColorInterp.red: "red",
        ColorInterp.green: "green",
        ColorInterp.blue: "blue",
        ColorInterp.alpha: "alpha",
    }


@dataclass
class RasterInfo:
    """What a raster's header says, without reading pixels (see :func:`inspect_raster`)."""

    path: str
    count: int
    height: int
    width: int
    dtype: str
    band_names: list[str]
    crs: Any
    transform: Any
    nodata: float | None

    @property
    def has_crs(self) -> bool:
        """Whether the file carries a coordinate reference system."""
        return self.crs is not None


@dataclass
class RasterData:
    """Pixels of a raster (or a window of it) with their mask and georeferencing.

    Attributes:
        array: values in physical units, ``[C, H, W]``, the file's dtype.
        valid_mask: ``[H, W]`` bool, True where every selected band holds data (not nodata, not
            NaN, not masked by a GDAL mask band, not outside the file for boundless windows).
        profile: the rasterio profile, updated for the selection and the window (``count``,
            ``width``, ``height``, ``transform``); ``crs`` is None for ungeoreferenced files.
        band_names: one name per selected band.
        path: the file read.
    """

    array: np.ndarray
    valid_mask: np.ndarray
    profile: dict[str, Any]
    band_names: list[str] = field(default_factory=list)
    path: str = ""

    @property
    def has_crs(self) -> bool:
        """Whether the file carries a CRS (JPEG/PNG and BioMassters chips do not)."""
        return self.profile.get("crs") is not None

    @property
    def crs(self) -> Any:
        """The rasterio CRS, or None."""
        return self.profile.get("crs")

    @property
    def transform(self) -> Any:
        """The affine pixel -> CRS transform of ``array`` (identity for ungeoreferenced files)."""
        return self.profile.get("transform")

    @property
    def nodata(self) -> float | None:
        """The nodata value of the file, or None."""
        return self.profile.get("nodata")

    @property
    def count(self) -> int:
        """Number of bands in ``array``."""
        return int(self.array.shape[0])


def normalize_band_name(name: str) -> str:
    """Canonical form of a band name for matching: upper case, Sentinel-2 zero dropped.

    ``"B04"``, ``"b4"`` and ``"B4"`` all become ``"B4"``; ``"B8A"`` stays ``"B8A"``.
    """
    key = name.strip().upper()
    match = re.fullmatch(r"B0*(\d+)([A-Z]?)", key)
    if match:
        return f"B{int(match.group(1))}{match.group(2)}"
    return key


def known_band_names(band_names: BandNames, count: int, path: str | os.PathLike[str]) -> list[str]:
    """Validate caller-given band names (a list or a :data:`KNOWN_BAND_NAMES` key) for a file.

    Raises:
        RasterError: an unknown product key, or a name count that differs from the file's bands.
    """
    if isinstance(band_names, str):
        key = band_names.lower()
        if key not in KNOWN_BAND_NAMES:
            raise RasterError(
                f"unknown band-name product {band_names!r}; known: {sorted(KNOWN_BAND_NAMES)} "
                "(or pass a list with one name per band)"
            )
        names = list(KNOWN_BAND_NAMES[key])
    else:
        names = [str(n) for n in band_names]
    if len(names) != count:
        raise RasterError(
            f"band_names has {len(names)} names but file {path} has {count} bands; "
            "give one name per band of the file, in file order"
        )
    return names


def resolve_bands(
    selection: BandSelection | None, names: Sequence[str], path: str | os.PathLike[str]
) -> list[int]:
    """Turn a band selection into 1-based band indices of a file.

    Args:
        selection: 1-based indices and/or names; None selects every band.
        names: the file's band names, in file order.
        path: the file (for error messages).

    Returns:
        1-based band indices, in the order of ``selection``.

    Raises:
        RasterError: an index out of range or an unknown name; the message names the file, the
            band and the known bands.
    """
    count = len(names)
    if selection is None:
        return list(range(1, count + 1))
    if isinstance(selection, str | int):
        selection = [selection]
    if len(selection) == 0:
        raise RasterError(f"empty band selection for file {path}; pass None to read all bands")
    exact = {n.lower(): i for i, n in reversed(list(enumerate(names, 1)))}
    loose = {normalize_band_name(n): i for i, n in reversed(list(enumerate(names, 1)))}
    indices: list[int] = []
    for band in selection:
        if isinstance(band, bool) or not isinstance(band, int | np.integer | str):
            raise RasterError(
                f"band {band!r} for file {path} is neither a 1-based index nor a band name"
            )
        if isinstance(band, str):
            if band.lower() in exact:
                indices.append(exact[band.lower()])
                continue
            if normalize_band_name(band) in loose:
                indices.append(loose[normalize_band_name(band)])
                continue
            if not band.strip().isdigit():
                raise RasterError(
                    f"file {path} has no band named {band!r}; known bands: {list(names)}. Select "
                    f"by 1-based index (e.g. --bands 1,2,3), or, from Python, name the file's "
                    f"bands with band_names= (a list, or one of {sorted(KNOWN_BAND_NAMES)})"
                )
            band = int(band)
        index = int(band)
        if index < 1 or index > count:
            raise RasterError(
                f"file {path} has {count} band{'s' if count != 1 else ''}; band {index} requested "
                f"(bands are 1-based: 1..{count}; names {list(names)})"
            )
        indices.append(index)
    return indices


@contextlib.contextmanager
def open_raster(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Open a raster for reading (a context manager); every failure becomes a :class:`RasterError`.

    Yields:
        The open rasterio dataset, closed on exit.

    Raises:
        RasterError: a missing, empty, folder or unreadable path.
    """
    path = Path(path)
    if not path.exists():
        raise RasterError(
            f"raster file not found: {path} (resolved from {Path.cwd()}); check the path"
        )
    if path.is_dir():
        raise RasterError(f"{path} is a folder, not a raster file; give a file path")
    size = path.stat().st_size
    if size == 0:
        raise RasterError(f"raster file {path} is empty (0 bytes); re-create or remove it")
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path)
        except (RasterioError, OSError) as err:
            raise RasterError(
                f"cannot open raster {path} ({size} bytes): {err}. The file is corrupt, truncated "
                "or not a format GDAL reads; re-download or remove it"
            ) from err
        try:
            yield src
        finally:
            src.close()


def file_band_names(src: Any, band_names: BandNames | None) -> list[str]:
    """The names of the bands of the open raster ``src``, in file order.

    ``band_names`` (a list or a :data:`KNOWN_BAND_NAMES` key) when given, else the file's band
    descriptions, its colour interpretation or ``band_<i>``.
    """
    if band_names is not None:
        return known_band_names(band_names, src.count, src.name)
    descriptions = list(src.descriptions)
    named_colors = _named_colors()
    colors = [named_colors.get(c) for c in src.colorinterp]
    color_ok = all(colors) and len(set(colors)) == len(colors)
    names = []
    for i in range(src.count):
        if descriptions[i]:
            names.append(str(descriptions[i]))
        elif color_ok:
            names.append(str(colors[i]))
        else:
            names.append(f"band_{i + 1}")
    return names


def inspect_raster(
    path: str | os.PathLike[str], *, band_names: BandNames | None = None
) -> RasterInfo:
    """Read a raster's header only (band count, size, names, CRS): cheap, for folder scans.

    Raises:
        RasterError: missing, empty or unreadable file.
    """
    with open_raster(path) as src:
        return RasterInfo(
            path=str(path),
            count=int(src.count),
            height=int(src.height),
            width=int(src.width),
            dtype=str(src.dtypes[0]),
            band_names=file_band_names(src, band_names),
            crs=src.crs,
            transform=src.transform,
            nodata=src.nodata,
        )


def _as_window(window: WindowLike, path: Any, height: int, width: int, boundless: bool) -> Window:
    from rasterio.windows import Window

    if not isinstance(window, Window):
        try:
            (row_start, row_stop), (col_start, col_stop) = window
            window = Window(col_start, row_start, col_stop - col_start, row_stop - row_start)
        except (TypeError, ValueError) as err:
            raise RasterError(
                f"window {window!r} for file {path} is not a rasterio Window nor "
                "((row_start, row_stop), (col_start, col_stop))"
            ) from err
    window = Window(
        round(window.col_off),
        round(window.row_off),
        round(window.width),
        round(window.height),
    )
    if window.width <= 0 or window.height <= 0:
        raise RasterError(f"window {window} for file {path} is empty; give a positive size")
    inside = (
        window.col_off >= 0
        and window.row_off >= 0
        and window.col_off + window.width <= width
        and window.row_off + window.height <= height
    )
    if not inside and not boundless:
        raise RasterError(
            f"window {window} reaches outside file {path} ({height} rows x {width} cols); "
            "pass boundless=True to pad with nodata (masked invalid) or shrink the window"
        )
    return window


def read_block(
    src: Any,
    indices: list[int],
    window: Window | None,
    nodata: list[float | None],
    force_nodata: bool,
    path: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(array [C, H, W], valid [H, W])`` of the bands ``indices`` (1-based) of an open raster.

    ``window`` lies inside ``src`` (None: all of it). Pixels are invalid as :func:`read_raster`
    flags them: the band's ``nodata`` (also where the file flags none, with ``force_nodata``),
    NaN or +-inf, or a mask band. ``path`` names the file in the :class:`RasterError` of
    unreadable pixels.
    """
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError

    try:
        array = src.read(indices, window=window)
        valid = np.ones(array.shape[1:], dtype=bool)
        for k, band in enumerate(indices):
            flags = src.mask_flag_enums[band - 1]
            if force_nodata or MaskFlags.nodata in flags:
                value = nodata[k]
                if value is not None:
                    valid &= ~np.isnan(array[k]) if np.isnan(value) else array[k] != value
            elif MaskFlags.all_valid not in flags:  # per-dataset mask band or alpha band
                valid &= src.read_masks(band, window=window) != 0
    except (RasterioError, OSError) as err:
        raise RasterError(
            f"cannot read pixels of raster {path}: {err}. The file is corrupt or truncated; "
            "re-download or remove it"
        ) from err
    if np.issubdtype(array.dtype, np.floating):  # NaN and +-inf are no measurement
        valid &= np.isfinite(array).all(axis=0)
    return array, valid


def _read_padded(
    src: Any,
    indices: list[int],
    window: Window,
    nodata: list[float | None],
    force_nodata: bool,
    path: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a window that may reach outside the raster; outside pixels are nodata and invalid."""
    r0, c0 = max(window.row_off, 0), max(window.col_off, 0)
    r1 = min(window.row_off + window.height, src.height)
    c1 = min(window.col_off + window.width, src.width)
    if (r0, c0, r1 - r0, c1 - c0) == (window.row_off, window.col_off, window.height, window.width):
        return read_block(src, indices, window, nodata, force_nodata, path)
    dtype = np.dtype(src.dtypes[indices[0] - 1])
    fill = next((v for v in nodata if v is not None), 0)
    array = np.full((len(indices), window.height, window.width), fill, dtype=dtype)
    valid = np.zeros((window.height, window.width), dtype=bool)
    if r1 > r0 and c1 > c0:
        from rasterio.windows import Window

        inner, inner_valid = read_block(
            src, indices, Window(c0, r0, c1 - c0, r1 - r0), nodata, force_nodata, path
        )
        rows = slice(r0 - window.row_off, r1 - window.row_off)
        cols = slice(c0 - window.col_off, c1 - window.col_off)
        array[:, rows, cols] = inner
        valid[rows, cols] = inner_valid
    return array, valid


def read_raster(
    path: str | os.PathLike[str],
    *,
    bands: BandSelection | None = None,
    window: WindowLike | None = None,
    band_names: BandNames | None = None,
    nodata: float | None = None,
    boundless: bool = False,
) -> RasterData:
    """Read a raster (or a window of it) into an array with its validity mask and profile.

    Args:
        path: any file GDAL opens (GeoTIFF, JPEG, PNG, ...).
        bands: 1-based indices and/or band names, in the order wanted; None reads every band.
        window: a :class:`rasterio.windows.Window` or ``((row_start, row_stop), (col_start,
            col_stop))``; None reads the whole raster. The profile's transform follows the window.
        band_names: names for the file's bands in file order (a list, or a key of
            :data:`KNOWN_BAND_NAMES`), for files without band descriptions.
        nodata: overrides the file's nodata value (e.g. ``0`` for Sentinel-2 products that do not
            tag it).
        boundless: let the window reach outside the raster; outside pixels are masked invalid.

    Returns:
        A :class:`RasterData`. ``valid_mask`` is False where any selected band is nodata, NaN or
        +-inf, or masked by the file's mask band.

    Raises:
        RasterError: missing, empty or corrupt file, a band out of range, an unknown band name or a
            window outside the raster; the message names the file, the band and the fix.
    """
    with open_raster(path) as src:
        names = file_band_names(src, band_names)
        indices = resolve_bands(bands, names, path)
        win = None
        if window is not None:
            win = _as_window(window, path, src.height, src.width, boundless)
        file_nodata: list[float | None] = [src.nodatavals[i - 1] for i in indices]
        if nodata is not None:
            file_nodata = [nodata] * len(indices)
        if win is None:
            array, valid = read_block(src, indices, None, file_nodata, nodata is not None, path)
        else:
            array, valid = _read_padded(src, indices, win, file_nodata, nodata is not None, path)
        profile = dict(src.profile)
        profile.update(
            count=len(indices),
            height=int(array.shape[1]),
            width=int(array.shape[2]),
            dtype=str(array.dtype),
            nodata=nodata if nodata is not None else src.nodata,
        )
        if win is not None:
            from affine import Affine

            profile["transform"] = src.transform @ Affine.translation(win.col_off, win.row_off)
    return RasterData(
        array=array,
        valid_mask=valid,
        profile=profile,
        band_names=[names[i - 1] for i in indices],
        path=str(path),
    )


__all__ = [
    "BIOMASSTERS_S2_BANDS",
    "EUROSAT_BANDS",
    "KNOWN_BAND_NAMES",
    "SENTINEL2_L1C_BANDS",
    "RasterData",
    "RasterInfo",
    "file_band_names",
    "inspect_raster",
    "known_band_names",
    "normalize_band_name",
    "open_raster",
    "read_block",
    "read_raster",
    "resolve_bands",
    "write_raster",
]
