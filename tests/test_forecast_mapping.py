"""`terradiff forecast` on a real BioMassters image given a CRS: georeferencing and nodata kept,
ensemble std bands, refusals (input = output, no source date, bad dates), dates and years."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from terradiff.cli import main
from terradiff.errors import ConfigError, DataError
from terradiff.forecast_mapping import (
    forecast_raster,
    parse_forecast_date,
    source_date_of,
    years_between,
)
from tests.helpers import validate_stac_core
from tests.temporal_helpers import temporal_config, train

TRANSFORM = from_origin(500_000.0, 6_000_000.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forecast-runs")
    biomassters = shared_data / "biomassters"
    return {
        method: train(temporal_config(biomassters, root / method, method), root / f"{method}.yaml")
        for method in ("concat", "regression")
    }


@pytest.fixture(scope="module")
def before(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40x56 crop of a real BioMassters month (its 10 reflectance bands) with a UTM CRS, a
    transform, nodata 0 in a corner and the acquisition date as a tag."""
    source = shared_data / "biomassters" / "0060c0a5" / "0060c0a5_S2_02.tif"
    with rasterio.open(source) as src:
        array = src.read(list(range(1, 11)), window=((10, 50), (20, 76)))
    array[:, :3, :5] = 0
    path = tmp_path_factory.mktemp("forecast") / "before.tif"
    profile = {
        "driver": "GTiff",
        "width": 56,
        "height": 40,
        "count": 10,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": TRANSFORM,
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        dst.update_tags(ACQUISITIONDATE="2019-11-10")
    return path


def _forecast(model: Path, image: Path, out: Path, *extra: str) -> None:
    argv = ["forecast", "--model", str(model), "--image", str(image), "--date", "2020-03"]
    argv += ["--out", str(out), "--tile", "32", "--overlap", "8", "--steps", "2", *extra]
    assert main(argv) == 0


def test_forecast_keeps_crs_transform_and_nodata(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    for method, model in runs.items():
        out = tmp_path / f"{method}.tif"
        _forecast(model, before, out)
        with rasterio.open(before) as src, rasterio.open(out) as dst:
            assert dst.crs == src.crs and dst.transform == src.transform
            assert (dst.width, dst.height, dst.count) == (56, 40, 10)
            assert dst.descriptions[:3] == ("B02", "B03", "B04")
            got, given = dst.read(masked=True), src.read(masked=True)
            assert np.array_equal(got.mask.any(axis=0), given.mask.any(axis=0))
            assert got.mask[:, :3, :5].all() and not got.mask[:, 3:, 5:].any()
            assert np.isfinite(got.compressed()).all()
        assert cog_validate(out, strict=True, quiet=True)[0] and _layout(out) == "COG"
    plain = tmp_path / "plain.tif"
    _forecast(runs["regression"], before, plain, "--no-cog")
    assert _layout(plain) is None  # GDAL's COG driver marks its files; a plain GeoTIFF is not


def test_nodata_option_declares_an_undeclared_fill(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    """``--nodata 0`` on a copy of the before image that does not declare its zero fill: the
    corner is nodata in the forecast as with the declared file, and without the option it is
    forecast like any pixel."""
    undeclared = tmp_path / "undeclared.tif"
    with rasterio.open(before) as src:
        profile = {**src.profile, "nodata": None}
        with rasterio.open(undeclared, "w", **profile) as dst:
            dst.write(src.read())
            dst.update_tags(**src.tags())
    for extra, corner_masked in ((["--nodata", "0"], True), ([], False)):
        out = tmp_path / f"out{len(extra)}.tif"
        _forecast(runs["regression"], undeclared, out, "--no-cog", *extra)
        with rasterio.open(out) as dst:
            got = dst.read(masked=True)
        assert bool(got.mask[:, :3, :5].all()) is corner_masked
        assert not got.mask[:, 3:, 5:].any()


def test_precision_option_reaches_a_one_pass_model(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    """``--precision``: the one-pass regression forecast runs at fp32 and bf16 (rounding apart)."""
    maps = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.tif"
        _forecast(runs["regression"], before, out, "--precision", precision, "--no-cog")
        with rasterio.open(out) as dst:
            maps[precision] = dst.read(masked=True).astype(np.float64)
            assert dst.tags()["TERRADIFF_INFERENCE_PRECISION"] == precision
    difference = np.abs(maps["bf16"] - maps["fp32"])
    scale = np.abs(maps["fp32"]).max()
    assert 0 < difference.max() < 0.05 * scale


def _layout(path: Path) -> str | None:
    with rasterio.open(path) as src:
        return src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")


def test_ensemble_writes_mean_and_std_bands(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ensemble.tif"
    _forecast(runs["concat"], before, out, "--ensemble", "2", "--seed", "3")
    with rasterio.open(out) as dst:
        assert dst.count == 20 and dst.crs is not None
        assert dst.descriptions[10:12] == ("B02_std", "B03_std")
        std = dst.read(list(range(11, 21)), masked=True)
    assert float(std.min()) >= 0.0 and float(std.max()) > 0.0
    with pytest.raises(ConfigError, match="--ensemble 2 needs a diffusion model"):
        forecast_raster(runs["regression"], before, tmp_path / "r.tif", date="2020-03", ensemble=2)


def test_refusals_name_the_file_and_the_fix(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="would replace the input"):
        forecast_raster(runs["regression"], before, before, date="2020-03", overwrite=True)
    undated = tmp_path / "scene.tif"
    with rasterio.open(before) as src:
        profile, array = src.profile, src.read()
    with rasterio.open(undated, "w", **profile) as dst:
        dst.write(array)
    with pytest.raises(DataError, match=r"scene\.tif: no acquisition date.*--source-date"):
        forecast_raster(runs["regression"], undated, tmp_path / "a.tif", date="2020-03")
    summary = forecast_raster(
        runs["regression"],
        undated,
        tmp_path / "b.tif",
        date="2020-03",
        source_date="2019-11",
        tile=32,
        overlap=8,
        progress=False,
    )
    assert summary.source_from == "--source-date" and summary.years_apart == pytest.approx(4 / 12)
    with pytest.raises(ConfigError, match="--date '2020-13' is no valid date"):
        forecast_raster(runs["regression"], before, tmp_path / "c.tif", date="2020-13")
    # a GeoTIFF under a .png name: viewers that go by the name refused the file
    with pytest.raises(DataError, match=r"d\.png: the file is written as a GeoTIFF, but its name"):
        forecast_raster(runs["regression"], before, tmp_path / "d.png", date="2020-03")
    assert not (tmp_path / "d.png").exists()


def _tiny(path: Path) -> Path:
    """A 1x1 GeoTIFF without tags (its date can only come from its name)."""
    profile = {"driver": "GTiff", "width": 1, "height": 1, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", transform=TRANSFORM, **profile) as dst:
        dst.write(np.zeros((1, 1, 1), np.uint8))
    return path


def test_dates_and_years_apart(tmp_path: Path) -> None:
    assert parse_forecast_date("2019-07") == {"year": 2019, "month": 7}
    assert parse_forecast_date("2019-07-15") == {"year": 2019, "month": 7, "day_of_year": 196}
    with pytest.raises(ConfigError, match="YYYY-MM"):
        parse_forecast_date("July")
    chip = _tiny(tmp_path / "0060c0a5_S2_02.tif")  # BioMassters month 02 = November
    assert source_date_of(chip) == ({"month": 11}, "file name (BioMassters month)")
    naip = _tiny(tmp_path / "m_4709963_se_14_1_20190904.tif")
    assert source_date_of(naip)[0] == {"year": 2019, "month": 9, "day_of_year": 247}
    assert source_date_of(naip, "2018-05") == ({"year": 2018, "month": 5}, "--source-date")
    assert years_between({"month": 11}, {"year": 2020, "month": 3}) == pytest.approx(4 / 12)
    assert years_between({"year": 2018}, {"year": 2020, "month": 1}) == pytest.approx(2.0)
    assert years_between({"year": 2018}, {"month": 3}) is None


def test_forecast_reads_a_stac_item_and_writes_one(
    runs: dict[str, Path], before: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A STAC Item as --image: its bands by name, its datetime as the source date (over the
    file's tag), and an Item beside the output linking back to it."""
    pytest.importorskip("pystac", reason="the stac extra is not installed")
    from terradiff.interop.stac import model_band_names, stac_item_path

    names = model_band_names(runs["regression"])
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "biomassters-0060c0a5-crop",
        "geometry": None,
        "properties": {"datetime": "2019-07-04T10:30:00Z", "gsd": 10},
        "links": [],
        "assets": {
            "image": {"href": str(before), "roles": ["data"], "bands": [{"name": n} for n in names]}
        },
    }
    item_path = tmp_path / "before.json"
    item_path.write_text(json.dumps(item))
    out = tmp_path / "after.tif"
    _forecast(runs["regression"], item_path, out)
    printed = capsys.readouterr().out
    assert "2019-07-04 (STAC Item before.json datetime) -> 2020-03" in printed
    with rasterio.open(before) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.count == 10
    written = validate_stac_core(stac_item_path(out))
    assert written["properties"]["gsd"] == 10
    assert written["properties"]["datetime"].startswith("2019-07-04")
    assert any(link["rel"] == "derived_from" for link in written["links"])


def test_guidance_steers_a_diffusion_forecast_and_is_refused_for_regression(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    plain, guided = tmp_path / "plain.tif", tmp_path / "guided.tif"
    _forecast(runs["concat"], before, plain, "--seed", "1")
    _forecast(runs["concat"], before, guided, "--seed", "1", "--guidance", "4")
    with rasterio.open(plain) as a, rasterio.open(guided) as b:
        assert not np.array_equal(a.read(), b.read())  # the same noise, another guidance
    with pytest.raises(ConfigError, match=r"--guidance 2\.5 needs a diffusion model"):
        forecast_raster(runs["regression"], before, tmp_path / "r.tif", date="2020", guidance=2.5)


def test_bands_select_the_model_bands_of_a_raw_biomassters_file(
    runs: dict[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    """A BioMassters S2 file holds 11 bands (the 10 reflectances, then cloud probability):
    without --bands it is refused naming the fix; with it, its month is read from its name."""
    raw = shared_data / "biomassters" / "0060c0a5" / "0060c0a5_S2_02.tif"
    with pytest.raises(DataError, match=r"has 11 bands.*select them with --bands"):
        forecast_raster(runs["regression"], raw, tmp_path / "x.tif", date="2020-03")
    out = tmp_path / "after.tif"
    _forecast(runs["regression"], raw, out, "--bands", ",".join(map(str, range(1, 11))))
    with rasterio.open(out) as dst:
        assert (dst.count, dst.width, dst.height) == (10, 256, 256)


def test_input_scaling_reads_and_writes_other_units(
    runs: dict[str, Path], before: Path, tmp_path: Path
) -> None:
    """The before image as reflectance (DN / 10000, float) with ``--input-scaling`` gives the
    DN forecast / 10000: read in the given units and written back in them."""
    reflectance = tmp_path / "reflectance.tif"
    with rasterio.open(before) as src:
        profile = {**src.profile, "dtype": "float32"}
        with rasterio.open(reflectance, "w", **profile) as dst:
            dst.write(src.read().astype(np.float32) / 10_000.0)
            dst.update_tags(**src.tags())
    dn_out, unit_out = tmp_path / "dn.tif", tmp_path / "unit.tif"
    _forecast(runs["regression"], before, dn_out)
    unit = json.dumps({"name": "reflectance", "divisor": 1.0, "clip": True})
    _forecast(runs["regression"], reflectance, unit_out, "--input-scaling", unit)
    with rasterio.open(dn_out) as dn, rasterio.open(unit_out) as scaled:
        expected, got = dn.read(masked=True), scaled.read(masked=True)
    assert np.array_equal(expected.mask, got.mask)
    np.testing.assert_allclose(got.compressed() * 10_000.0, expected.compressed(), atol=2.0)
    assert float(got.max()) <= 1.0
