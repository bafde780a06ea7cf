"""terradiff.api: DataArray in, DataArray out, equal to the file-based path, on real rasters.

Models are built untrained (random initial weights, saved as a checkpoint) so that no test waits
for training: the comparisons are between two paths through the same model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terradiff import api
from terradiff.checkpoint import save_checkpoint
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import MissingExtraError
from terradiff.mapping import estimate_raster
from terradiff.sr_mapping import super_resolve_raster
from terradiff.tasks import build_task
from tests.helpers import tiny_config

pytest.importorskip("rioxarray", reason="the xarray extra is not installed")

NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # bundled copy of a real NAIP tile (EPSG:26914)
S2_10 = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained x4 regression super-resolution run on RGB uint8 bands."""
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


@pytest.fixture()
def naip_window(sample_data: Path, tmp_path: Path) -> Path:
    """A 40x52 window of the real NAIP scene, written as its own GeoTIFF."""
    with rasterio.open(sample_data / NAIP) as src:
        window = Window(400, 300, 52, 40)
        profile = src.profile | {
            "height": 40,
            "width": 52,
            "transform": src.window_transform(window),
        }
        data = src.read(window=window)
    out = tmp_path / "naip.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


SR_OPTIONS = {"bands": [1, 2, 3], "tile": 16, "overlap": 4, "seed": 3, "device": "cpu"}


def test_super_resolve_equals_the_file_path_and_keeps_georeferencing(
    sr_run: Path, naip_window: Path, sample_data: Path, tmp_path: Path
) -> None:
    by_file = tmp_path / "by_file.tif"
    super_resolve_raster(sr_run, naip_window, by_file, progress=False, **SR_OPTIONS)
    expected = api.open_raster(by_file, lazy=False)
    with rasterio.open(by_file) as src:
        assert src.tags()["TERRADIFF_INFERENCE_PRECISION"] == "fp32"  # sample.precision's default
    # a lazy window of the whole real scene, as a notebook would cut it
    scene = api.open_raster(sample_data / NAIP)
    da = scene.isel(x=slice(400, 452), y=slice(300, 340))
    assert da.chunks is not None  # dask-backed: written window by window
    out = api.super_resolve(da, sr_run, **SR_OPTIONS)
    assert out.dims == ("band", "y", "x") and out.shape == (3, 160, 208)
    np.testing.assert_array_equal(out.values, expected.values)
    assert out.rio.crs == da.rio.crs == expected.rio.crs
    np.testing.assert_array_equal(out.x.values, expected.x.values)
    np.testing.assert_array_equal(out.y.values, expected.y.values)
    np.testing.assert_allclose(out.rio.bounds(), da.rio.bounds(), atol=1e-6)
    assert out.rio.resolution() == pytest.approx(tuple(r / 4 for r in da.rio.resolution()))
    assert out.attrs["long_name"] == ("red", "green", "blue")
    assert out.attrs["terradiff_scale"] == 4


def test_workdir_keeps_files_and_returns_a_lazy_result(
    sr_run: Path, naip_window: Path, tmp_path: Path
) -> None:
    da = api.open_raster(naip_window, lazy=False)
    eager = api.super_resolve(da, sr_run, **SR_OPTIONS)
    lazy = api.super_resolve(da, sr_run, workdir=tmp_path / "work", **SR_OPTIONS)
    assert lazy.chunks is not None
    assert (tmp_path / "work" / "output.tif").is_file()
    np.testing.assert_array_equal(lazy.values, eager.values)
    # a 2-D input is one band; the model needs three
    with pytest.raises(Exception, match="bands"):
        api.super_resolve(da.isel(band=0), sr_run, tile=16, device="cpu")


@pytest.fixture(scope="module")
def carbon_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained carbon regression run on the real BioMassters chips' 10 bands."""
    from terradiff.cli import main
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


def test_estimate_carbon_equals_the_file_path_on_the_input_grid(
    carbon_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    source = sorted((shared_data / "eurosat-ms" / "test" / "Forest").glob("*.tif"))[0]
    data = read_raster(source, bands=S2_10, band_names="eurosat")
    scene = tmp_path / "scene.tif"
    write_raster(scene, data.array.astype(np.float32) / 10_000.0, data.profile, band_names=S2_10)
    options = {"tile": 32, "overlap": 8, "device": "cpu"}
    summary = estimate_raster(carbon_run, scene, tmp_path / "map.tif", progress=False, **options)
    expected = api.open_raster(tmp_path / "map.tif", lazy=False)
    da = api.open_raster(scene)
    out = api.estimate_carbon(da, carbon_run, **options)
    np.testing.assert_array_equal(out.values, expected.values)
    assert out.rio.crs == da.rio.crs
    # rioxarray derives the transform from the coordinates: equal to float64 rounding
    np.testing.assert_allclose(out.rio.transform()[:6], da.rio.transform()[:6], rtol=1e-12)
    np.testing.assert_array_equal(out.x.values, da.x.values)  # the input's very coordinates
    np.testing.assert_array_equal(out.y.values, da.y.values)
    assert out.attrs["total_carbon_MgC"] == pytest.approx(summary.total_carbon_mg)
    assert out.attrs["units"] == "Mg C/ha"


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rioxarray", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'terradiff\[xarray\]'"):
        api.open_raster("any.tif")


def test_input_without_crs_is_refused(sr_run: Path, naip_window: Path) -> None:
    da = api.open_raster(naip_window, lazy=False)
    bare = da.drop_vars("spatial_ref")
    bare.attrs.pop("crs", None)
    with pytest.raises(Exception, match="write_crs"):
        api.super_resolve(bare, sr_run)


def test_lazy_chunks_are_whole_blocks_of_one_band(sample_data: Path) -> None:
    """``open_raster`` chunks the real NAIP tile along its internal blocks, one band a chunk,
    without rioxarray's deprecation warning of its tuple chunks (``chunks=True``)."""
    import warnings

    path = sample_data / NAIP
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        scene = api.open_raster(path)
    with rasterio.open(path) as src:
        block_rows, block_cols = src.block_shapes[0]
        size = (src.count, src.height, src.width)
    bands, rows, cols = scene.chunks
    assert set(bands) == {1} and scene.shape == size
    assert all(r % block_rows == 0 for r in rows[:-1]) and sum(rows) == size[1]
    assert all(c % block_cols == 0 for c in cols[:-1]) and sum(cols) == size[2]
    np.testing.assert_array_equal(
        scene[:, :7, :9].values, api.open_raster(path, lazy=False)[:, :7, :9].values
    )
