"""`terradiff change` on real LEVIR-CD pairs: mask size and values, georeferencing kept from a
GeoTIFF input, the PNG and probability outputs, and the refusals (sizes, grids, input = output)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from terradiff.change_mapping import read_pair
from terradiff.cli import main
from terradiff.errors import DataError
from tests.change_helpers import change_config, levir_copy, train

TILE = "test_2_0000_0000"  # a LEVIR-CD test tile with building changes
TRANSFORM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_200_000.0)  # a fake 0.5 m UTM grid


@pytest.fixture(scope="module")
def run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supervised change U-Net trained 2 steps through `terradiff train`."""
    root = tmp_path_factory.mktemp("change-map")
    levir = levir_copy(shared_data / "levir-cd", root)
    config = change_config(levir, root / "run", "supervised_unet", steps=2)
    return train(config, root / "config.yaml")


@pytest.fixture(scope="module")
def pngs(shared_data: Path) -> tuple[Path, Path]:
    levir = shared_data / "levir-cd"
    return levir / "A" / f"{TILE}.png", levir / "B" / f"{TILE}.png"


def as_geotiff(png: Path, out: Path, rows: int | None = None, transform=TRANSFORM) -> Path:
    """The PNG's pixels (or its first ``rows`` rows) as a GeoTIFF with a fake CRS/transform."""
    array = np.asarray(Image.open(png)).transpose(2, 0, 1)[:, :rows]
    profile = {
        "driver": "GTiff",
        "count": 3,
        "height": array.shape[1],
        "width": array.shape[2],
        "dtype": "uint8",
        "crs": CRS.from_epsg(32615),
        "transform": transform,
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(array)
    return out


def test_png_inputs_give_a_mask_of_their_size(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "mask.tif", tmp_path / "mask.png"
    before, after = map(str, pngs)
    args = ["change", "--model", str(run), "--before", before, "--after", after]
    assert main([*args, "--out", str(out), "--png", str(png), "--probability"]) == 0
    assert f"wrote {out}: 256x256 px" in capsys.readouterr().out
    with rasterio.open(out) as src:
        assert (src.width, src.height, src.count) == (256, 256, 2)
        assert src.dtypes == ("uint8", "uint8") and src.crs is None and src.nodata == 255
        assert src.descriptions == ("change", "change_probability_x255")
        mask, probability = src.read()
        assert src.tags()["TERRADIFF_METHOD"] == "supervised_unet"
    assert set(np.unique(mask).tolist()) <= {0, 1}
    assert np.array_equal(mask == 1, probability > 127.5)  # threshold 0.5 on the same map
    shown = np.asarray(Image.open(png))
    assert shown.shape == (256, 256) and np.array_equal(shown == 255, mask == 1)
    assert main([*args, "--out", str(out)]) == 2  # exists: --overwrite needed
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--overwrite", "--threshold", "0.99"]) == 0
    with rasterio.open(out) as src:
        assert src.count == 1 and int(src.read(1).sum()) <= int(mask.sum())


def test_precision_option_runs_the_net_in_bf16_and_is_recorded(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``--precision bf16``: the one-pass change net runs under bf16 autocast (the map stays
    float32) and the mask's tags name the format."""
    from terradiff.tasks import load_task

    before, after = map(str, pngs)
    out = tmp_path / "mask.tif"
    args = ["change", "--model", str(run), "--before", before, "--after", after, "--out", str(out)]
    assert main([*args, "--precision", "bf16"]) == 0
    with rasterio.open(out) as src:
        assert src.tags()["TERRADIFF_INFERENCE_PRECISION"] == "bf16"
    task, _ = load_task(run, use_ema=True, device="cpu")
    pair = [torch.rand(1, 3, 32, 32) * 2 - 1 for _ in range(2)]
    maps = {}
    for precision in ("fp32", "bf16"):
        task.use_precision(precision)
        maps[precision] = task.change_probability(task.net, *pair)
    assert maps["bf16"].dtype == torch.float32
    assert 0 < (maps["bf16"] - maps["fp32"]).abs().max() < 0.05


def test_geotiff_inputs_keep_their_georeferencing(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path
) -> None:
    before = as_geotiff(pngs[0], tmp_path / "before.tif")
    after = as_geotiff(pngs[1], tmp_path / "after.tif")
    out = tmp_path / "mask.tif"
    args = ["change", "--model", str(run), "--before", str(before), "--after", str(after)]
    # tiles of 96 px with 32 px overlap: the blended, tiled path
    assert main([*args, "--out", str(out), "--tile", "96", "--overlap", "32"]) == 0
    with rasterio.open(out) as src:
        assert (src.width, src.height) == (256, 256)
        assert src.crs == CRS.from_epsg(32615) and src.transform == TRANSFORM
        assert src.nodata == 255 and src.descriptions == ("change",)
        tiled = src.read(1)
    assert cog_validate(out, strict=True, quiet=True)[0]
    whole = tmp_path / "whole.tif"
    assert main([*args, "--out", str(whole), "--no-cog"]) == 0
    assert not cog_validate(whole, strict=True, quiet=True)[0]
    with rasterio.open(whole) as src:
        assert src.crs == CRS.from_epsg(32615) and src.transform == TRANSFORM
        agree = float((src.read(1) == tiled).mean())
    assert agree > 0.9, agree  # tiles see less context, but blend into nearly the same map


def test_refusals_name_the_files(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = as_geotiff(pngs[0], tmp_path / "before.tif")
    short = as_geotiff(pngs[1], tmp_path / "short.tif", rows=200)
    args = ["change", "--model", str(run), "--before", str(before)]
    out = tmp_path / "mask.tif"
    assert main([*args, "--after", str(short), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{before} is 256x256 px" in err and f"{short} is 256x200 px" in err
    moved = Affine(0.5, 0.0, 500_100.0, 0.0, -0.5, 4_200_000.0)
    shifted = as_geotiff(pngs[1], tmp_path / "shifted.tif", transform=moved)
    assert main([*args, "--after", str(shifted), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not on one grid" in err and str(before) in err and str(shifted) in err
    after = as_geotiff(pngs[1], tmp_path / "after.tif")
    assert main([*args, "--after", str(after), "--out", str(before), "--overwrite"]) == 2
    assert "is the before image" in capsys.readouterr().err
    assert main([*args, "--after", str(after), "--out", str(tmp_path / "m.png")]) == 2
    assert "--png" in capsys.readouterr().err
    assert (
        main([*args, "--after", str(after), "--out", str(out), "--png", str(tmp_path / "m.jpg")])
        == 2
    )
    assert (
        "--png" in (err := capsys.readouterr().err)
        and "written as a PNG, but its name ends .jpg" in err
    )
    assert main([*args, "--after", str(after), "--out", str(tmp_path / "mask")]) == 2
    assert "written as a GeoTIFF, but its name has no ending" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "mask").exists()


def test_values_outside_the_training_range_are_refused(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The after image as reflectance in [0, 1] (the LEVIR model reads 0-255) was mapped to a
    mask of 97 % change without a word; the super-resolve and estimate value check now runs."""
    scaled = tmp_path / "scaled.tif"
    array = np.asarray(Image.open(pngs[1])).transpose(2, 0, 1).astype(np.float32) / 255.0
    profile = {"driver": "GTiff", "width": 256, "height": 256, "count": 3, "dtype": "float32"}
    with rasterio.open(scaled, "w", **profile) as dst:
        dst.write(array)
    args = ["change", "--model", str(run), "--before", str(pngs[0]), "--after", str(scaled)]
    assert main([*args, "--out", str(tmp_path / "m.tif")]) == 2
    err = capsys.readouterr().err
    assert f"{scaled}: band 1" in err and "every valid value lies in [0, 1]" in err
    assert "--input-scaling" in err and not (tmp_path / "m.tif").exists()


def test_input_scaling_reads_images_in_other_units(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both images as reflectance in [0, 1] with ``--input-scaling none`` give the mask of the
    0-255 PNGs (it was refused, with no option to say the units) and record the scaling; an
    unknown preset or bad JSON is refused before any file."""
    scaled = []
    for png in pngs:
        path = tmp_path / f"{png.parent.name}.tif"
        array = np.asarray(Image.open(png)).transpose(2, 0, 1).astype(np.float32) / 255.0
        profile = {"driver": "GTiff", "width": 256, "height": 256, "count": 3}
        with rasterio.open(path, "w", dtype="float32", **profile) as dst:
            dst.write(array)
        scaled.append(path)
    plain, rescaled = tmp_path / "plain.tif", tmp_path / "rescaled.tif"
    args = ["change", "--model", str(run), "--probability"]
    assert (
        main([*args, "--before", str(pngs[0]), "--after", str(pngs[1]), "--out", str(plain)]) == 0
    )
    before, after = (str(path) for path in scaled)
    assert (
        main(
            [
                *args,
                "--before",
                before,
                "--after",
                after,
                "--out",
                str(rescaled),
                "--input-scaling",
                "none",
            ]
        )
        == 0
    )
    bad = [*args, "--before", before, "--after", after, "--out", str(tmp_path / "bad.tif")]
    assert main([*bad, "--input-scaling", "kelvin"]) == 2
    assert "unknown scaling 'kelvin'" in capsys.readouterr().err
    assert main([*bad, "--input-scaling", "{divisor: 1}"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "bad.tif").exists()
    with rasterio.open(plain) as a, rasterio.open(rescaled) as b:
        assert np.abs(a.read(2).astype(int) - b.read(2).astype(int)).max() <= 1
        assert json.loads(b.tags()["TERRADIFF_INPUT_SCALING"])["name"] == "none"
        assert json.loads(a.tags()["TERRADIFF_INPUT_SCALING"])["name"] == "uint8"


def test_a_four_band_image_is_refused(pngs: tuple[Path, Path], tmp_path: Path) -> None:
    rgba = tmp_path / "rgba.png"
    Image.open(pngs[1]).convert("RGBA").save(rgba)
    with pytest.raises(DataError, match=f"the after image {rgba} has 4 bands; the model reads 3"):
        read_pair(pngs[0], rgba, 3)


def _dated_item(image: Path, when: str, bands: list[str]) -> Path:
    """A STAC 1.1 Item describing one 3-band GeoTIFF of the pair, dated ``when``."""
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": image.stem,
        "geometry": None,
        "properties": {"datetime": when},
        "links": [],
        "assets": {
            "visual": {
                "href": f"./{image.name}",
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "bands": [{"name": name} for name in bands],
            }
        },
    }
    path = image.with_suffix(".json")
    path.write_text(json.dumps(item))
    return path


def test_a_georeferenced_mask_gets_a_stac_item_with_the_period_of_dated_items(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pystac = pytest.importorskip("pystac", reason="the stac extra is not installed")
    from terradiff.interop.stac import model_band_names, stac_item_path
    from tests.helpers import validate_stac_core

    before = as_geotiff(pngs[0], tmp_path / "before.tif")
    after = as_geotiff(pngs[1], tmp_path / "after.tif")
    args = ["change", "--model", str(run), "--tile", "128", "--overlap", "16"]
    plain = tmp_path / "plain.tif"
    assert main([*args, "--before", str(before), "--after", str(after), "--out", str(plain)]) == 0
    assert "(STAC Item plain.stac.json)" in capsys.readouterr().out
    item = pystac.Item.from_dict(validate_stac_core(stac_item_path(plain)))
    assert "start_datetime" not in item.properties  # plain GeoTIFFs carry no dates
    assert 0.0 <= item.properties["terradiff:change_fraction"] <= 1.0
    assert item.properties["terradiff:threshold"] == 0.5
    assert not [link for link in item.links if link.rel == "derived_from"]
    # the same pair as two dated STAC Items: the mask's Item spans before -> after
    names = model_band_names(run)
    first = _dated_item(before, "2012-05-01T00:00:00Z", names)
    second = _dated_item(after, "2017-08-15T00:00:00Z", names)
    dated = tmp_path / "dated.tif"
    assert main([*args, "--before", str(first), "--after", str(second), "--out", str(dated)]) == 0
    with rasterio.open(plain) as a, rasterio.open(dated) as b:
        assert np.array_equal(a.read(), b.read()) and b.crs == a.crs  # same pixels, same grid
    item = pystac.Item.from_dict(validate_stac_core(stac_item_path(dated)))
    assert item.properties["start_datetime"] == "2012-05-01T00:00:00Z"
    assert item.properties["end_datetime"] == "2017-08-15T00:00:00Z"
    assert item.datetime.isoformat() == "2017-08-15T00:00:00+00:00"  # the after image's
    assert sorted(link.href for link in item.links if link.rel == "derived_from") == sorted(
        [str(first.resolve()), str(second.resolve())]
    )
    # PNG inputs (no CRS): the mask is written, no Item beside it
    png_out = tmp_path / "png.tif"
    pair = ["--before", str(pngs[0]), "--after", str(pngs[1])]
    assert main([*args, *pair, "--out", str(png_out)]) == 0
    assert png_out.is_file() and not stac_item_path(png_out).exists()


def test_a_stac_item_and_a_raster_together_are_refused(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pystac", reason="the stac extra is not installed")
    before = as_geotiff(pngs[0], tmp_path / "before.tif")
    item = _dated_item(before, "2012-05-01T00:00:00Z", ["red", "green", "blue"])
    out = tmp_path / "mask.tif"
    args = ["change", "--model", str(run), "--before", str(item), "--after", str(pngs[1])]
    assert main([*args, "--out", str(out)]) == 2
    assert "either STAC Items or rasters" in capsys.readouterr().err and not out.exists()


def test_a_size_mismatch_of_stac_items_names_the_items(
    run: Path, pngs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Items are read through temporary VRTs; the error names the Items, not the VRTs."""
    pytest.importorskip("pystac", reason="the stac extra is not installed")
    from terradiff.interop.stac import model_band_names

    names = model_band_names(run)
    before = as_geotiff(pngs[0], tmp_path / "before.tif")
    short = as_geotiff(pngs[1], tmp_path / "short.tif", rows=200)
    first = _dated_item(before, "2012-05-01T00:00:00Z", names)
    second = _dated_item(short, "2017-08-15T00:00:00Z", names)
    out = tmp_path / "mask.tif"
    args = ["change", "--model", str(run), "--before", str(first), "--after", str(second)]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"STAC Item {first} is 256x256 px" in err
    assert f"STAC Item {second} is 256x200 px" in err
    assert ".vrt" not in err and not out.exists()
