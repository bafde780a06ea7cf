"""STAC Items in and out (local files only), with ``pystac`` (the ``stac`` extra).

In: ``--image ITEM.json`` of ``terradiff estimate`` / ``super-resolve`` / ``forecast`` (and
the ``input`` of ``super-resolve``, ``--before``/``--after`` of ``change``) names a local STAC
Item.
:func:`resolve_stac_item` picks the assets holding the model's bands, matched by name against
each asset's bands (STAC 1.1 ``bands`` or the EO extension's ``eo:bands``: ``name`` and common
name) or, for a single-band asset, its key; bands spread over several assets on one grid are
stacked by a small GDAL VRT (no pixels copied). The Item's ``datetime`` and ``gsd`` are kept:
``forecast`` conditions on the datetime as the before image's date (unless ``--source-date``
is given), and every output Item carries both.

Out: :func:`write_stac_item` writes ``<raster>.stac.json`` beside an output raster: the
footprint (the raster's corners in WGS84) and bbox, datetime (the input's when known, else the
time of writing), ``proj:`` fields (code, shape, transform, bbox), ground sample distance, the
model and command that made it (``terradiff:model``, ``terradiff:command``), a ``derived_from``
link to the input Item, and the raster as its ``data`` asset with band names and types. Without
pystac the verbs still write their rasters and log that no Item was written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from rasterio.warp import transform_bounds, transform_geom

from terradiff.errors import DataError, MissingExtraError
from terradiff.extras import require
from terradiff.io import atomic_write_text

__all__ = [
    "STAC_SUFFIX",
    "StacImage",
    "is_stac_item",
    "model_band_names",
    "resolve_stac_item",
    "stac_inputs",
    "stac_item_path",
    "write_output_items",
    "write_stac_item",
]

log = logging.getLogger(__name__)

STAC_SUFFIX = ".stac.json"
_PURPOSE = "STAC Items (--image ITEM.json and the Items beside outputs)"
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class StacImage:
    """What :func:`resolve_stac_item` found in an Item.

    Attributes:
        item: the Item's JSON file.
        raster: the raster to read: an asset's file, or a VRT stacking several assets.
        bands: 1-based bands of ``raster`` in the requested order.
        band_names: the requested names, in that order.
        assets: asset key -> local file, of the assets used.
        datetime: the Item's datetime (ISO 8601), or its ``start_datetime``; None if neither.
        gsd: ground sample distance (m) of the Item or of its first used asset; None if unknown.
    """

    item: Path
    raster: Path
    bands: list[int]
    band_names: list[str]
    assets: dict[str, Path] = field(default_factory=dict)
    datetime: str | None = None
    gsd: float | None = None

    def metadata(self) -> dict[str, Any]:
        """``{"datetime", "gsd"}`` for a summary or a metadata condition (None left out)."""
        return {k: v for k, v in (("datetime", self.datetime), ("gsd", self.gsd)) if v is not None}


def is_stac_item(path: str | Path) -> bool:
    """True when ``path`` is a ``.json`` file holding a STAC Item (a Feature with stac_version)."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("type") == "Feature" and "stac_version" in data


def _asset_bands(asset: Any) -> list[dict[str, Any]]:
    """The band records of an asset (STAC 1.1 ``bands`` or ``eo:bands``), possibly empty."""
    extra = asset.extra_fields
    bands = extra.get("bands") or extra.get("eo:bands") or []
    return [b for b in bands if isinstance(b, dict)]


def _band_labels(record: dict[str, Any]) -> set[str]:
    labels = (record.get("name"), record.get("common_name"), record.get("eo:common_name"))
    return {str(v).lower() for v in labels if v}


def _local_file(item: Any, key: str, item_path: Path) -> Path:
    href = item.assets[key].get_absolute_href() or item.assets[key].href
    if "://" in href and not href.startswith("file://"):
        raise DataError(
            f"{item_path}: asset {key!r} is remote ({href}); terradiff reads local files only: "
            "download it and point the asset's href at the file"
        )
    path = Path(href.removeprefix("file://"))
    if not path.is_absolute():
        path = item_path.parent / path
    if not path.is_file():
        raise DataError(f"{item_path}: asset {key!r} points at {path}, which does not exist")
    return path


def _find(item: Any, name: str) -> list[tuple[str, int]]:
    """``(asset key, 1-based band)`` of every asset band called ``name`` (any spelling)."""
    wanted = name.lower()
    found = []
    for key, asset in item.assets.items():
        records = _asset_bands(asset)
        if records:
            found += [(key, i + 1) for i, r in enumerate(records) if wanted in _band_labels(r)]
        elif key.lower() == wanted:
            found.append((key, 1))
    return found


def _available(item: Any) -> list[str]:
    """Each asset band as ``name (common name)``, or a single-band asset's key."""
    names = []
    for key, asset in item.assets.items():
        labels = []
        for record in _asset_bands(asset):
            name = record.get("name") or key
            common = record.get("common_name") or record.get("eo:common_name")
            labels.append(f"{name} ({common})" if common else str(name))
        names += labels or [key]
    return names


def _data_assets(item: Any) -> list[str]:
    return [
        k
        for k, a in item.assets.items()
        if "data" in (a.roles or []) or (a.media_type or "").startswith("image/tiff")
    ]


def resolve_stac_item(
    path: str | Path,
    bands: Sequence[str] | None = None,
    *,
    workdir: str | Path | None = None,
    stack: bool = False,
) -> StacImage:
    """The local raster and bands of a STAC Item that hold ``bands``.

    Args:
        path: the Item's JSON file.
        bands: band names (or common names, e.g. ``red``; or single-band asset keys) in the
            order the model wants them; None: every band of the Item's one data asset.
        workdir: where a VRT is written when the bands come from several assets (default: the
            Item's folder).
        stack: always read through a VRT ``<workdir>/<item id>.vrt`` whose bands are the
            requested ones in order (1..n, named), even when one asset holds them all.

    Raises:
        MissingExtraError: pystac is not installed (names the ``stac`` extra).
        DataError: an unreadable Item, a band no asset holds (the message lists those that
            exist), one held by several assets, a remote asset, or assets on different grids.
    """
    pystac = require("pystac", "stac", _PURPOSE)
    path = Path(path)
    try:
        item = pystac.Item.from_file(str(path.resolve()))
    except Exception as error:  # pystac raises several kinds for a bad file
        raise DataError(f"{path}: not a readable STAC Item ({error})") from None
    if bands is None:
        data = _data_assets(item) or list(item.assets)
        if len(data) != 1:
            raise DataError(
                f"{path}: the Item has {len(data)} data assets {data}; choose the bands with "
                f"--bands (names or common names), e.g. --bands {','.join(_available(item)[:3])}"
            )
        count = len(_asset_bands(item.assets[data[0]])) or _raster_count(
            _local_file(item, data[0], path)
        )
        picks = [(data[0], i + 1) for i in range(count)]
        names = [str(i) for i in range(1, count + 1)]
    else:
        picks, names = [], [str(b) for b in bands]
        for name in names:
            found = _find(item, name)
            if not found:
                raise DataError(
                    f"{path}: no asset band is called {name!r}; the Item has {_available(item)}"
                )
            if len({key for key, _ in found}) > 1:
                raise DataError(
                    f"{path}: band {name!r} is in several assets {[k for k, _ in found]}; name "
                    "the band by its asset key instead"
                )
            picks.append(found[0])
    files = {key: _local_file(item, key, path) for key, _ in picks}
    if len(files) == 1 and not stack:
        raster = next(iter(files.values()))
        band_numbers = [band for _, band in picks]
    else:
        folder = Path(workdir) if workdir is not None else path.parent
        sources = [(files[k], b, n) for (k, b), n in zip(picks, names, strict=True)]
        raster = _write_vrt(folder / f"{item.id}.vrt", sources, path)
        band_numbers = list(range(1, len(picks) + 1))
    return StacImage(
        item=path,
        raster=raster,
        bands=band_numbers,
        band_names=names,
        assets=files,
        datetime=_datetime(item),
        gsd=_gsd(item, [k for k, _ in picks]),
    )


def _raster_count(path: Path) -> int:
    with rasterio.open(path) as src:
        return int(src.count)


def _datetime(item: Any) -> str | None:
    if item.datetime is not None:
        return item.datetime.isoformat()
    start = item.properties.get("start_datetime")
    return str(start) if start else None


def _gsd(item: Any, keys: list[str]) -> float | None:
    value = item.properties.get("gsd")
    for key in keys:
        value = value if value is not None else item.assets[key].extra_fields.get("gsd")
    return None if value is None else float(value)


def _write_vrt(out: Path, sources: list[tuple[Path, int, str]], item_path: Path) -> Path:
    """A VRT whose band ``i`` is band ``sources[i][1]`` of file ``sources[i][0]`` (one grid)."""
    grids = {}
    for file, _, _ in sources:
        with rasterio.open(file) as src:
            grids[file] = (src.crs, src.transform, src.width, src.height, src.dtypes[0], src.nodata)
    first_file = sources[0][0]
    crs, transform, width, height, _, _ = grids[first_file]
    for file, (c, t, w, h, _, _) in grids.items():
        if (c, w, h) != (crs, width, height) or not t.almost_equals(transform):
            raise DataError(
                f"{item_path}: assets {first_file.name} ({width}x{height}, {abs(transform.a):g} "
                f"units/px) and {file.name} ({w}x{h}, {abs(t.a):g} units/px) are on different "
                "grids; terradiff reads bands on one grid: resample them to one first"
            )
    bands = []
    for i, (file, band, name) in enumerate(sources, start=1):
        dtype, nodata = grids[file][4], grids[file][5]
        nodata_xml = "" if nodata is None else f"<NoDataValue>{nodata!r}</NoDataValue>"
        bands.append(
            f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float64")}" band="{i}">'
            f"<Description>{escape(name)}</Description>{nodata_xml}<SimpleSource>"
            f'<SourceFilename relativeToVRT="0">{escape(str(file.resolve()))}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    srs = f"  <SRS>{escape(crs.to_wkt())}</SRS>\n" if crs is not None else ""
    geo = ", ".join(repr(v) for v in transform.to_gdal())
    text = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n{srs}'
        f"  <GeoTransform>{geo}</GeoTransform>\n" + "\n".join(bands) + "\n</VRTDataset>\n"
    )
    atomic_write_text(out, text)
    return out


# --------------------------------------------------------------------------- out


def stac_item_path(raster: str | Path) -> Path:
    """Where the Item of an output raster goes: ``map.tif`` -> ``map.stac.json``."""
    raster = Path(raster)
    return raster.with_name(raster.stem + STAC_SUFFIX)


def _media_type(src: Any) -> str:
    cog = bool(src.profile.get("tiled")) and bool(src.overviews(1))
    return "image/tiff; application=geotiff" + ("; profile=cloud-optimized" if cog else "")


def _nodata(value: float | None) -> Any:
    if value is None:
        return None
    return "nan" if math.isnan(value) else value


def _plain(value: Any) -> Any:
    """Nested tuples (what rasterio returns) as nested lists of floats (GeoJSON)."""
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else float(value)


def _json_value(value: Any) -> Any:
    """NaN/inf (not JSON) -> None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_stac_item(
    raster: str | Path,
    *,
    model: str | Path,
    command: Sequence[str] | str,
    source: StacImage | None = None,
    properties: dict[str, Any] | None = None,
    also_from: Sequence[StacImage] = (),
) -> Path:
    """Write the STAC Item of an output raster beside it (:func:`stac_item_path`), atomically.

    Args:
        raster: the GeoTIFF written.
        model: the run or checkpoint that made it.
        command: the command line (a list is quoted with ``shlex.join``).
        source: the STAC input it was made from (datetime, ``derived_from`` link), if any.
        properties: extra Item properties (e.g. ``terradiff:total_carbon_MgC``, or
            ``start_datetime``/``end_datetime`` of a change mask).
        also_from: further STAC inputs (e.g. the before image of a change mask): a
            ``derived_from`` link each.

    Raises:
        MissingExtraError: pystac is not installed (names the ``stac`` extra).
    """
    pystac = require("pystac", "stac", _PURPOSE)
    from pystac.extensions.projection import ProjectionExtension

    raster = Path(raster)
    out = stac_item_path(raster)
    with rasterio.open(raster) as src:
        crs, bounds, transform = src.crs, src.bounds, src.transform
        shape = [int(src.height), int(src.width)]
        band_records = [
            {
                "name": src.descriptions[i] or f"band_{i + 1}",
                "data_type": src.dtypes[i],
                **({"nodata": _nodata(src.nodata)} if src.nodata is not None else {}),
            }
            for i in range(src.count)
        ]
        media_type = _media_type(src)
    if crs is None:
        raise DataError(f"{raster} has no CRS: a STAC Item needs a footprint; georeference it")
    left, bottom, right, top = bounds
    corners = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
    footprint = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [corners]})
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    now = datetime.now(UTC)
    when = datetime.fromisoformat(source.datetime) if source and source.datetime else now
    item = pystac.Item(
        id=raster.stem,
        geometry={"type": "Polygon", "coordinates": _plain(footprint["coordinates"])},
        bbox=[west, south, east, north],
        datetime=when,
        properties={
            "created": now.isoformat().replace("+00:00", "Z"),
            "terradiff:model": str(model),
            "terradiff:command": command if isinstance(command, str) else shlex.join(command),
            **{k: _json_value(v) for k, v in (properties or {}).items()},
        },
    )
    if crs.is_projected and crs.linear_units.lower() in ("metre", "meter", "m"):
        item.common_metadata.gsd = abs(transform.a)
    item.add_asset(
        "data",
        pystac.Asset(
            href=f"./{raster.name}",
            media_type=media_type,
            roles=["data"],
            extra_fields={"bands": band_records},
        ),
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    if epsg is not None:
        projection.epsg = epsg
    else:
        projection.wkt2 = crs.to_wkt()
    projection.shape = shape
    projection.transform = list(transform)[:6]
    projection.bbox = list(bounds)
    if source is not None and source.gsd is not None:
        item.properties["terradiff:input_gsd"] = source.gsd
    for parent in [*([source] if source is not None else []), *also_from]:
        item.add_link(pystac.Link("derived_from", str(parent.item.resolve()), "application/json"))
    record = item.to_dict(include_self_link=False, transform_hrefs=False)
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------- for the verbs


def model_band_names(model: str | Path) -> list[str]:
    """The band names a run or checkpoint was trained on (only its ``config.json`` is read).

    Raises:
        DataError: the model's bands are unnamed (then ``--bands`` must name them).
    """
    from terradiff.checkpoint import read_checkpoint_config

    names = list((read_checkpoint_config(model).get("bands") or {}).get("names") or [])
    if not names:
        raise DataError(
            f"{model}: the model's bands are unnamed, so a STAC Item's assets cannot be matched "
            "to them; pass --bands with the Item's band names in the model's order"
        )
    return names


@contextlib.contextmanager
def stac_inputs(
    images: Sequence[str | Path], model: str | Path, bands: Sequence[int | str] | None
) -> Iterator[tuple[list[Path], list[int] | None, list[StacImage | None]]]:
    """The rasters to map for ``--image``/``input`` arguments that may be STAC Items.

    Yields ``(rasters, bands, sources)``: plain GeoTIFFs pass through (``bands`` None: keep the
    caller's); STAC Items become VRTs (in a temporary folder that lives as long as the context)
    whose bands 1..n are ``bands`` -- or the model's band names -- in order.

    Raises:
        DataError: STAC Items mixed with plain rasters, or see :func:`resolve_stac_item`.
    """
    flags = [is_stac_item(p) for p in images]
    if not any(flags):
        yield [Path(p) for p in images], None, [None] * len(images)
        return
    if not all(flags):
        raise DataError(
            "give either STAC Items or rasters as the images of one command, not both "
            f"(STAC: {[str(p) for p, f in zip(images, flags, strict=True) if f]})"
        )
    names = [str(b) for b in bands] if bands else model_band_names(model)
    with tempfile.TemporaryDirectory(prefix="terradiff-stac-") as tmp:
        sources = [resolve_stac_item(p, names, workdir=tmp, stack=True) for p in images]
        try:
            yield [s.raster for s in sources], list(range(1, len(names) + 1)), list(sources)
        except DataError as error:
            name_items_in(error, sources)
            raise


def name_items_in(error: DataError, sources: Sequence[StacImage]) -> None:
    """Make ``error``'s message name the STAC Items, not the temporary VRTs read for them.

    A command reads each Item through a VRT in a temporary folder (:func:`stac_inputs`), so a
    size, grid or band error raised while reading names that VRT, which is gone when the user
    reads the message. Each VRT path (full, then its file name) becomes ``STAC Item <json>``.
    Only an error whose message is its one argument is rewritten (others keep theirs).
    """
    if len(error.args) != 1 or not isinstance(error.args[0], str):
        return
    if type(error).__str__ is not Exception.__str__:
        return
    message = error.args[0]
    for source in sources:
        if source.raster.suffix != ".vrt":  # an asset's own file: its path is the right name
            continue
        named = f"STAC Item {source.item}"
        for form in (str(source.raster), str(source.raster.resolve()), source.raster.name):
            message = message.replace(form, named)
    error.args = (message,)


def write_output_items(
    outputs: Sequence[str | Path],
    *,
    model: str | Path,
    command: Sequence[str],
    sources: Sequence[StacImage | None],
    properties: Sequence[dict[str, Any] | None] | None = None,
    also_from: Sequence[StacImage] = (),
) -> list[Path]:
    """:func:`write_stac_item` for each output, never failing the command that made them.

    Without pystac, or for a raster without a CRS (no footprint), a warning says why no Item
    was written. ``also_from``: further inputs every output is derived from.
    """
    written = []
    extras = properties or [None] * len(outputs)
    for out, source, extra in zip(outputs, sources, extras, strict=True):
        try:
            written.append(
                write_stac_item(
                    out,
                    model=model,
                    command=command,
                    source=source,
                    properties=extra,
                    also_from=also_from,
                )
            )
        except MissingExtraError as error:
            log.warning("no STAC Item beside %s: %s", out, error)
            break
        except DataError as error:
            log.warning("no STAC Item beside %s: %s", out, error)
    return written
