"""Forest inventory polygons + canopy height -> a carbon-density GeoTIFF (the IIDM paper, Sec. 2.2).

For each inventory polygon (sub-compartment) with stem volume per hectare ``V_ha``:

1. ``V = V_ha x area`` (the polygon's area in hectares, from its geometry in the raster's CRS);
2. ``C = V x delta x rho x gamma`` (:func:`terradiff.carbon.stock.carbon_from_volume`);
3. ``CD_i = C x W_i`` with ``W_i`` the canopy height of pixel ``i`` normalised within the polygon
   (:func:`terradiff.carbon.stock.distribute_carbon`), written as a density ``CD_i / a_pixel``
   in Mg C/ha, so that density x pixel area summed over the polygon gives back ``C``.

Polygons are read with pyogrio (GeoPackage, Shapefile, anything OGR reads); polygons in another
CRS than the raster are reprojected (``rasterio.warp.transform_geom``); polygons with a missing or
negative volume are skipped and reported. Pixels outside every polygon are nodata; a forest mask
(255 inside a polygon with volume > 0, else 0) can be written beside the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.warp import transform_geom

from terradiff.carbon.stock import (
    DEFAULT_FACTORS,
    CarbonFactors,
    binarize_mask,
    carbon_from_volume,
    distribute_carbon,
)
from terradiff.data.raster import write_raster
from terradiff.data.tiling.options import check_output_targets
from terradiff.errors import DataError
from terradiff.io import GEOTIFF_SUFFIXES, check_named_as


@dataclass
class InventoryResult:
    """What :func:`inventory_to_carbon` wrote and skipped.

    Attributes:
        density_path: the carbon-density GeoTIFF (Mg C/ha).
        mask_path: the forest mask (0/255), when asked for.
        polygons_used: polygons distributed.
        total_carbon_mg: sum of the polygons' ``C`` (Mg C).
        skipped: ``(polygon index, reason)`` of polygons left out.
    """

    density_path: Path
    mask_path: Path | None
    polygons_used: int
    total_carbon_mg: float
    skipped: list[tuple[int, str]] = field(default_factory=list)


def read_polygons(path: str | Path, volume_field: str) -> tuple[list[dict], np.ndarray, object]:
    """``(GeoJSON-like geometries, volume per ha, CRS)`` of an inventory layer.

    Raises:
        DataError: unreadable file, or no field ``volume_field`` (the message lists the fields).
    """
    import pyogrio
    import shapely

    path = Path(path)
    if not path.exists():
        raise DataError(f"inventory polygons not found: {path}")
    try:
        info = pyogrio.read_info(path)
    except Exception as error:  # pyogrio raises its own DataSourceError types
        raise DataError(f"cannot read inventory polygons {path}: {error}") from None
    fields = list(info["fields"])
    if volume_field not in fields:
        raise DataError(
            f"{path} has no field {volume_field!r}; its fields are {fields}. Pass the field that "
            "holds stem volume per hectare (m3/ha) as volume_field / --volume-field"
        )
    meta, _, wkb, columns = pyogrio.raw.read(path, columns=[volume_field])
    geometries = [
        shapely.geometry.mapping(shapely.from_wkb(g)) if g is not None else None for g in wkb
    ]
    volumes = np.asarray([np.nan if v is None else float(v) for v in columns[0]], dtype=np.float64)
    return geometries, volumes, meta.get("crs")


def inventory_to_carbon(
    polygons_path: str | Path,
    canopy_height_path: str | Path,
    out_path: str | Path,
    *,
    volume_field: str = "volume",
    factors: CarbonFactors = DEFAULT_FACTORS,
    mask_path: str | Path | None = None,
    overwrite: bool = False,
) -> InventoryResult:
    """Write the carbon-density map of inventory polygons on a canopy-height grid.

    Args:
        polygons_path: GeoPackage/Shapefile of polygons with ``volume_field`` (m3/ha).
        canopy_height_path: canopy-height raster (m) in a projected CRS; defines the output grid.
        out_path: the carbon-density GeoTIFF to write (Mg C/ha, NaN outside the polygons).
        volume_field: the field with stem volume per hectare.
        factors: ``delta``, ``rho``, ``gamma`` of ``C = V delta rho gamma``.
        mask_path: also write the forest mask (0/255) here.
        overwrite: replace existing outputs.

    Raises:
        DataError: a raster without a projected CRS, polygons without a CRS, no usable polygon;
            an output that is not named ``.tif``/``.tiff``, exists without ``overwrite``, or is
            an input (both outputs are checked before either is written).
    """
    outputs = [(out_path, "")] + ([(mask_path, "--mask")] if mask_path is not None else [])
    for path, option in outputs:
        check_named_as(path, "GeoTIFF", GEOTIFF_SUFFIXES, option)
    check_output_targets(
        [path for path, _ in outputs],
        overwrite=overwrite,
        inputs=[("canopy-height raster", canopy_height_path), ("polygons", polygons_path)],
    )
    with rasterio.open(canopy_height_path) as src:
        heights = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        profile = src.profile
        crs, transform = src.crs, src.transform
    if crs is None or not crs.is_projected:
        raise DataError(
            f"{canopy_height_path} needs a projected CRS (metres) to measure polygon and pixel "
            f"areas; it has {crs}. Reproject it first (e.g. gdalwarp -t_srs EPSG:<UTM zone>)"
        )
    geometries, volumes, polygon_crs = read_polygons(polygons_path, volume_field)
    if polygon_crs is None:
        raise DataError(f"{polygons_path} has no CRS; assign one (e.g. ogr2ogr -a_srs) first")
    raster_crs = crs.to_string()
    if rasterio.crs.CRS.from_user_input(polygon_crs) != crs:
        geometries = [
            transform_geom(polygon_crs, raster_crs, g) if g is not None else None
            for g in geometries
        ]
    import shapely

    pixel_ha = abs(transform.a * transform.e - transform.b * transform.d) / 1e4
    skipped: list[tuple[int, str]] = []
    usable: list[tuple[int, dict, float]] = []
    for i, (geometry, volume) in enumerate(zip(geometries, volumes, strict=True)):
        if geometry is None:
            skipped.append((i, "no geometry"))
        elif not math.isfinite(volume):
            skipped.append((i, f"missing {volume_field}"))
        elif volume < 0:
            skipped.append((i, f"negative {volume_field} {volume:g}"))
        else:
            usable.append((i, geometry, volume))
    if not usable:
        raise DataError(f"no polygon of {polygons_path} has a usable {volume_field}: {skipped[:5]}")
    labels = rasterize(
        [(g, k + 1) for k, (_, g, _) in enumerate(usable)],
        out_shape=heights.shape,
        transform=transform,
        fill=0,
        dtype="int32",
    )
    density = np.full(heights.shape, np.nan)
    total = 0.0
    used = 0
    for k, (index, geometry, volume_ha) in enumerate(usable):
        inside = labels == k + 1
        if not inside.any():
            skipped.append((index, "covers no pixel of the raster"))
            continue
        area_ha = shapely.geometry.shape(geometry).area / 1e4
        carbon = float(carbon_from_volume(volume_ha * area_ha, factors))
        density[inside] = distribute_carbon(carbon, heights, inside)[inside] / pixel_ha
        total += carbon
        used += 1
    if used == 0:
        raise DataError(f"no polygon of {polygons_path} overlaps {canopy_height_path}")
    out_path = Path(out_path)
    write_raster(
        out_path,
        density[None].astype(np.float32),
        profile | {"dtype": "float32"},
        nodata=float("nan"),
        band_names=["carbon_MgC_per_ha"],
        overwrite=overwrite,
    )
    written_mask = None
    if mask_path is not None:
        forest = np.where(np.isfinite(density) & (density > 0), 1.0, 0.0)
        written_mask = write_raster(
            Path(mask_path),
            binarize_mask(forest)[None],
            profile | {"dtype": "uint8", "nodata": None},
            band_names=["forest"],
            overwrite=overwrite,
        )
    return InventoryResult(out_path, written_mask, used, total, skipped)
