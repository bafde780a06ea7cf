"""The rasters of `super-resolve`, `estimate` and `sample --tif-dir` are Cloud-Optimized GeoTIFFs
(validated by rio-cogeo), with overviews, nodata, band names and tags kept; `--no-cog` writes plain
tiled GeoTIFFs with the same pixels. Inputs are windows of the bundled real NAIP scene; the models
are untrained (their values do not matter here, only the files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from accelerate.state import AcceleratorState
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from terradiff.cli import main
from terradiff.data.cog import COG_BLOCK, expected_overviews
from tests.helpers import tiny_config

NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # real NAIP, EPSG:26914, 4 bands uint8, nodata 0


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def naip_window(sample_data: Path, out: Path, height: int, width: int) -> Path:
    """A ``height x width`` window of the real NAIP scene, the top-left 16 x 16 px set to its
    nodata (0), written as a plain striped GeoTIFF."""
    with rasterio.open(sample_data / NAIP) as src:
        window = Window(100, 50, width, height)
        data = src.read(window=window)
        profile = src.profile | {"height": height, "width": width, "tiled": False}
        profile |= {"transform": src.window_transform(window)}
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    data[:, :16, :16] = 0
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def save_untrained(task: object, folder: Path) -> Path:
    from terradiff.checkpoint import save_checkpoint

    path = folder / "step_00000000"
    save_checkpoint(path, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return path


@pytest.fixture(scope="module")
def sr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained x4 regression SR checkpoint of 8-bit RGB."""
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.super_resolution import SuperResolutionTask
    from tests.conftest import SAMPLE_DATA
    from tests.tasks.test_super_resolution import sr_config

    root = tmp_path_factory.mktemp("cog_sr")
    raw = sr_config(root / "run", SAMPLE_DATA, "regression")
    bands = BandInfo(3, ("red", "green", "blue"), "uint8")
    return save_untrained(SuperResolutionTask(config_from_dict(raw), band_info=bands), root)


@pytest.fixture(scope="module")
def carbon_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained carbon regression checkpoint for 4-band 8-bit NAIP."""
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.carbon import CarbonTask
    from tests.conftest import SAMPLE_DATA
    from tests.tasks.test_carbon import carbon_config

    root = tmp_path_factory.mktemp("cog_carbon")
    raw = carbon_config(root / "run", SAMPLE_DATA / "biomassters", "regression")
    bands = BandInfo(4, ("red", "green", "blue", "nir"), "uint8")
    return save_untrained(CarbonTask(config_from_dict(raw), band_info=bands), root)


def structure(path: Path) -> dict[str, str]:
    with rasterio.open(path) as src:
        return src.tags(ns="IMAGE_STRUCTURE")


def assert_cog(path: Path, overviews: int) -> None:
    valid, errors, warnings = cog_validate(path, quiet=True)
    assert valid and not errors and not warnings, (path, errors, warnings)
    assert structure(path)["LAYOUT"] == "COG"
    with rasterio.open(path) as dst:
        assert len(dst.overviews(1)) == overviews == expected_overviews(dst.height, dst.width)
        assert dst.block_shapes[0] == (COG_BLOCK, COG_BLOCK)


def assert_plain(path: Path) -> None:
    """A tiled GeoTIFF that is no COG (no overviews: rio-cogeo's strict validation refuses it)."""
    assert "LAYOUT" not in structure(path)
    assert not cog_validate(path, strict=True, quiet=True)[0]
    with rasterio.open(path) as dst:
        assert dst.overviews(1) == [] and dst.block_shapes[0] == (256, 256)


def test_super_resolve_writes_a_cog_and_no_cog_a_plain_tiff(
    sr_checkpoint: Path, sample_data: Path, tmp_path: Path
) -> None:
    source = naip_window(sample_data, tmp_path / "lr.tif", 40, 136)  # -> 160 x 544 at x4
    out, plain = tmp_path / "out" / "sr.tif", tmp_path / "out" / "sr_plain.tif"
    argv = ["super-resolve", str(source), str(out), "--model", str(sr_checkpoint)]
    argv += ["--bands", "1,2,3", "--tile", "32", "--overlap", "8"]
    assert main(argv) == 0
    assert_cog(out, overviews=1)
    assert structure(out)["PREDICTOR"] == "2"  # uint8: horizontal differencing
    with rasterio.open(out) as dst, rasterio.open(source) as src:
        assert (dst.height, dst.width, dst.count) == (160, 544, 3)
        assert dst.nodata == 0 and list(dst.descriptions) == ["red", "green", "blue"]
        assert dst.tags()["TERRADIFF_SCALE"] == "4" and dst.crs == src.crs
        np.testing.assert_allclose(tuple(dst.bounds), tuple(src.bounds), atol=1e-6)
        pixels = dst.read()
        assert (pixels[:, :64, :64] == 0).all() and (pixels[:, 64:, 64:] > 0).all()
    argv[2] = str(plain)
    assert main([*argv, "--no-cog"]) == 0
    assert_plain(plain)
    with rasterio.open(plain) as dst:
        assert dst.nodata == 0 and list(dst.descriptions) == ["red", "green", "blue"]
        np.testing.assert_array_equal(dst.read(), pixels)  # the conversion is lossless
    left = sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".stac.json"))
    assert left == ["sr.tif", "sr_plain.tif"]  # no temporaries (each raster's STAC Item aside)


def test_estimate_writes_a_float_cog_with_nan_nodata(
    carbon_checkpoint: Path, sample_data: Path, tmp_path: Path
) -> None:
    image = naip_window(sample_data, tmp_path / "naip.tif", 520, 600)
    out = tmp_path / "carbon.tif"
    argv = ["estimate", "--model", str(carbon_checkpoint), "--image", str(image)]
    argv += ["--tile", "128", "--overlap", "32", "--out", str(out)]
    assert main(argv) == 0
    assert_cog(out, overviews=1)
    assert structure(out)["PREDICTOR"] == "3"  # float32: floating-point predictor
    with rasterio.open(out) as dst:
        assert np.isnan(dst.nodata) and list(dst.descriptions) == ["carbon_MgC_per_ha"]
        density = dst.read(1)
        assert np.isnan(density[:16, :16]).all() and np.isfinite(density[16:, 16:]).all()
        overview = dst.read(1, out_shape=(260, 300))  # read from the overview
        assert np.isfinite(overview[8:, 8:]).all()
    plain = tmp_path / "carbon_plain.tif"
    argv[-1] = str(plain)
    assert main([*argv, "--no-cog"]) == 0
    assert_plain(plain)
    with rasterio.open(plain) as dst:
        np.testing.assert_array_equal(dst.read(1), density)


def test_sample_tif_dir_writes_cogs(sample_data: Path, tmp_path: Path) -> None:
    from terradiff.config import config_from_dict
    from terradiff.tasks.generation import GenerationTask

    task = GenerationTask(config_from_dict(tiny_config(tmp_path / "run", sample_data)))
    checkpoint = save_untrained(task, tmp_path)
    argv = ["sample", str(checkpoint), "--n", "2", "--sampler", "ddim", "--steps", "2"]
    argv += ["--out", str(tmp_path / "grid.png")]
    assert main([*argv, "--tif-dir", str(tmp_path / "cog")]) == 0
    assert main([*argv, "--overwrite", "--no-cog", "--tif-dir", str(tmp_path / "plain")]) == 0
    for path in sorted((tmp_path / "cog").glob("*.tif")):
        assert cog_validate(path, quiet=True)[0] and structure(path)["LAYOUT"] == "COG"
        with rasterio.open(path) as dst:
            assert list(dst.descriptions) == ["red", "green", "blue"]
            assert dst.tags()["TERRADIFF_SAMPLER"] == "ddim"
            plain = tmp_path / "plain" / path.name
            with rasterio.open(plain) as other:
                np.testing.assert_array_equal(dst.read(), other.read())
        assert "LAYOUT" not in structure(plain)
    assert len(list((tmp_path / "cog").iterdir())) == 2
