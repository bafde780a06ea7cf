"""Inventory polygons + canopy height -> carbon density, with hand-computed totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from terradiff.carbon.inventory import inventory_to_carbon
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import DataError

UTM = CRS.from_epsg(32633)
ORIGIN = (500_000.0, 6_000_200.0)  # top-left corner, 10 m pixels, 20 x 20


def _chm(path: Path) -> np.ndarray:
    heights = np.arange(400, dtype=np.float32).reshape(20, 20) % 17 + 1.0
    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    write_raster(path, heights[None], {"crs": UTM, "transform": transform})
    return heights


def _box(col0: int, row0: int, cols: int, rows: int) -> shapely.Polygon:
    x0, y0 = ORIGIN[0] + 10 * col0, ORIGIN[1] - 10 * row0
    return shapely.box(x0, y0 - 10 * rows, x0 + 10 * cols, y0)


def _write_polygons(path: Path, polygons: list, volumes: list[float | None], crs: str) -> None:
    pyogrio.raw.write(
        path,
        np.array([shapely.to_wkb(p) for p in polygons], dtype=object),
        [np.array([np.nan if v is None else v for v in volumes])],
        fields=["volume"],
        crs=crs,
        geometry_type="Polygon",
        driver="GPKG",
    )


def test_carbon_is_distributed_by_height_and_sums_to_the_polygon(tmp_path: Path) -> None:
    heights = _chm(tmp_path / "chm.tif")
    stand = _box(2, 3, 10, 5)  # 100 m x 50 m = 0.5 ha
    bad = _box(14, 14, 3, 3)
    _write_polygons(
        tmp_path / "stands.gpkg", [stand, bad, _box(0, 0, 1, 1)], [200.0, -5.0, None], "EPSG:32633"
    )
    result = inventory_to_carbon(
        tmp_path / "stands.gpkg",
        tmp_path / "chm.tif",
        tmp_path / "carbon.tif",
        mask_path=tmp_path / "forest.tif",
    )
    # V = 200 m3/ha x 0.5 ha = 100 m3; C = 100 x 1.90 x 0.5 x 0.5 = 47.5 Mg C
    assert result.polygons_used == 1 and result.total_carbon_mg == pytest.approx(47.5)
    assert sorted(reason for _, reason in result.skipped) == [
        "missing volume",
        "negative volume -5",
    ]
    density = read_raster(tmp_path / "carbon.tif").array[0].astype(np.float64)
    inside = np.zeros((20, 20), bool)
    inside[3:8, 2:12] = True
    assert np.isnan(density[~inside]).all()
    assert (density[inside] * 0.01).sum() == pytest.approx(47.5, rel=1e-5)  # 0.01 ha pixels
    weights = heights[inside] / heights[inside].sum()
    np.testing.assert_allclose(density[inside] * 0.01, 47.5 * weights, rtol=1e-5)
    forest = read_raster(tmp_path / "forest.tif").array[0]
    assert set(np.unique(forest)) == {0, 255} and ((forest == 255) == inside).all()


def test_polygons_in_another_crs_are_reprojected(tmp_path: Path) -> None:
    _chm(tmp_path / "chm.tif")
    stand = shapely.geometry.mapping(_box(2, 3, 10, 5))
    lonlat = shapely.geometry.shape(transform_geom("EPSG:32633", "EPSG:4326", stand))
    _write_polygons(tmp_path / "stands.gpkg", [lonlat], [200.0], "EPSG:4326")
    result = inventory_to_carbon(tmp_path / "stands.gpkg", tmp_path / "chm.tif", tmp_path / "c.tif")
    assert result.total_carbon_mg == pytest.approx(47.5, rel=1e-3)


def test_clear_errors(tmp_path: Path) -> None:
    _chm(tmp_path / "chm.tif")
    _write_polygons(tmp_path / "s.gpkg", [_box(2, 3, 2, 2)], [100.0], "EPSG:32633")
    with pytest.raises(DataError, match=r"no field 'vol_ha'.*\['volume'\]"):
        inventory_to_carbon(
            tmp_path / "s.gpkg", tmp_path / "chm.tif", tmp_path / "c.tif", volume_field="vol_ha"
        )
    write_raster(
        tmp_path / "geo.tif",
        np.ones((1, 4, 4), np.float32),
        {"crs": CRS.from_epsg(4326), "transform": Affine(0.1, 0, 10, 0, -0.1, 60)},
    )
    with pytest.raises(DataError, match="projected CRS"):
        inventory_to_carbon(tmp_path / "s.gpkg", tmp_path / "geo.tif", tmp_path / "c.tif")
    with pytest.raises(DataError, match="not found"):
        inventory_to_carbon(tmp_path / "none.gpkg", tmp_path / "chm.tif", tmp_path / "c.tif")


def test_outputs_are_checked_before_either_is_written(tmp_path: Path) -> None:
    """An existing --mask file was refused only after the density map had been written (a
    partial result); a .png name held a GeoTIFF."""
    _chm(tmp_path / "chm.tif")
    _write_polygons(tmp_path / "s.gpkg", [_box(2, 3, 2, 2)], [100.0], "EPSG:32633")
    (tmp_path / "forest.tif").write_bytes(b"keep")
    args = (tmp_path / "s.gpkg", tmp_path / "chm.tif")
    with pytest.raises(DataError, match=r"forest\.tif already exists"):
        inventory_to_carbon(*args, tmp_path / "c.tif", mask_path=tmp_path / "forest.tif")
    assert not (tmp_path / "c.tif").exists()
    with pytest.raises(DataError, match=r"--mask .*forest\.png: the file is written as a GeoTIFF"):
        inventory_to_carbon(*args, tmp_path / "c.tif", mask_path=tmp_path / "forest.png")
    with pytest.raises(DataError, match=r"c\.png: the file is written as a GeoTIFF"):
        inventory_to_carbon(*args, tmp_path / "c.png")
    with pytest.raises(DataError, match="is the canopy-height raster"):
        inventory_to_carbon(*args, tmp_path / "chm.tif", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chm.tif", "forest.tif", "s.gpkg"]


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from terradiff.cli import main

    _chm(tmp_path / "chm.tif")
    _write_polygons(
        tmp_path / "s.gpkg", [_box(2, 3, 10, 5), _box(0, 0, 1, 1)], [200.0, -1.0], "EPSG:32633"
    )
    args = [
        "carbon-inventory",
        str(tmp_path / "s.gpkg"),
        str(tmp_path / "chm.tif"),
        str(tmp_path / "c.tif"),
        "--gamma",
        "0.47",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "44.6 Mg C" in out and "skipped polygon 1: negative volume" in out  # 47.5 x 0.47/0.5
    assert main(args) == 2  # exists: refused without --overwrite
