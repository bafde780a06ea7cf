"""`terradiff carbon-prepare` and `terradiff estimate` end to end on real data.

The carbon model is trained (2 steps) on the real BioMassters chips; the map is made of a real,
georeferenced Sentinel-2 scene (a EuroSAT chip's 10 matching bands as reflectance), so the
georeferencing and the totals can be checked numerically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.data.raster import read_raster, write_raster
from tests.tasks.test_carbon import carbon_config

S2_10 = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


@pytest.fixture(scope="module")
def carbon_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("carbon")
    assert main(["carbon-prepare", str(shared_data / "biomassters"), str(root / "chips")]) == 0
    config = carbon_config(root / "run", root / "chips", "regression", max_steps=2)
    (root / "c.yaml").write_text(yaml.safe_dump(config))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", str(root / "c.yaml")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def scene(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real EuroSAT chip (UTM, 10 m) as 10-band surface-reflectance-like values (DN / 10000)."""
    source = sorted((shared_data / "eurosat-ms" / "test" / "Forest").glob("*.tif"))[0]
    data = read_raster(source, bands=S2_10, band_names="eurosat")
    out = tmp_path_factory.mktemp("scene") / "scene.tif"
    write_raster(out, data.array.astype(np.float32) / 10_000.0, data.profile, band_names=S2_10)
    return out


def test_map_keeps_georeferencing_and_reports_totals(
    carbon_run: Path, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "carbon.tif"
    summary = tmp_path / "s.json"
    args = ["estimate", "--model", str(carbon_run), "--image", str(scene), "--out", str(out)]
    assert main([*args, "--tile", "32", "--overlap", "8", "--summary", str(summary)]) == 0
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height, dst.count) == (src.width, src.height, 1)
        assert dst.tags()["TERRADIFF_INFERENCE_PRECISION"] == "fp32"  # sample.precision's default
        density = dst.read(1)
        pixel_ha = abs(dst.transform.a * dst.transform.e) / 1e4
    assert np.isfinite(density).all() and density.min() >= 0 and density.max() <= 150
    record = json.loads(summary.read_text())[str(scene)]
    # ~10 m pixels (~0.01 ha): the total is the sum of densities x the pixel area
    assert record["pixel_area_ha"] == pytest.approx(pixel_ha) and 0.0099 < pixel_ha < 0.0101
    assert record["total_carbon_MgC"] == pytest.approx(density.astype(float).sum() * pixel_ha)
    assert record["mean_density_MgC_per_ha"] == pytest.approx(density.mean(), rel=1e-5)
    assert "total carbon" in capsys.readouterr().out


def test_mask_uncertainty_several_dates_and_refusals(
    carbon_run: Path, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with rasterio.open(scene) as src:
        profile = src.profile
    half = np.zeros((1, 64, 64), np.uint8)
    half[:, :, :32] = 255
    write_raster(tmp_path / "mask.tif", half, profile)
    base = ["estimate", "--model", str(carbon_run), "--tile", "32", "--overlap", "8"]
    summary = tmp_path / "s.json"
    same = [*base, "--image", str(scene), "--image", str(scene), "--out", str(tmp_path / "m")]
    assert main(same) == 2
    assert "same name" in capsys.readouterr().err
    second = tmp_path / "scene_b.tif"
    second.write_bytes(scene.read_bytes())  # a second date of the same area
    args = [
        *base,
        "--image",
        str(scene),
        "--image",
        str(second),
        "--out",
        str(tmp_path / "maps"),
        "--mask",
        str(tmp_path / "mask.tif"),
        "--uncertainty",
        "--summary",
        str(summary),
    ]
    assert main(args) == 0
    maps = sorted((tmp_path / "maps").glob("*.tif"))
    assert [m.name for m in maps] == ["scene_b_carbon.tif", "scene_carbon.tif"]
    assert (tmp_path / "maps" / "panel.png").is_file()
    with rasterio.open(maps[0]) as dst:
        assert dst.count == 2 and dst.descriptions[1] == "carbon_std_MgC_per_ha"
        assert np.allclose(dst.read(2), 0.0)  # a regression model has no spread
    record = next(iter(json.loads(summary.read_text()).values()))
    assert record["counted_pixels"] == 64 * 32  # forest half only
    # wrong bands: the error lists what the model expects
    assert (
        main([*base, "--image", str(scene), "--out", str(tmp_path / "x.tif"), "--bands", "1,2,3"])
        == 2
    )
    assert "expects 10" in capsys.readouterr().err
    # existing output refused without --overwrite; nothing half-written
    out = tmp_path / "exists.tif"
    out.write_bytes(b"keep")
    assert main([*base, "--image", str(scene), "--out", str(out)]) == 2
    assert out.read_bytes() == b"keep"


def test_several_dates_as_a_function_and_a_carbon_model_refused_by_super_resolve(
    carbon_run: Path, scene: Path, tmp_path: Path
) -> None:
    from terradiff.errors import WrongCheckpointError
    from terradiff.mapping import estimate_carbon_maps
    from terradiff.sr_mapping import super_resolve_raster

    second = tmp_path / "scene_b.tif"
    second.write_bytes(scene.read_bytes())
    seen = []
    result = estimate_carbon_maps(
        carbon_run,
        [scene, second],
        tmp_path / "maps",
        summary_path=tmp_path / "s.json",
        on_map=seen.append,
        tile=32,
        overlap=8,
        progress=False,
    )
    assert seen == result.maps
    assert [m.path.name for m in seen] == ["scene_carbon.tif", "scene_b_carbon.tif"]
    assert result.panel == tmp_path / "maps" / "panel.png" and result.panel.is_file()
    assert json.loads((tmp_path / "s.json").read_text()) == result.records()
    first = seen[0]
    assert first.describe().startswith(f"wrote {first.path}: {first.summary.tiling.tiles} tiles")
    assert "valid pixels" in first.describe()
    with pytest.raises(WrongCheckpointError, match="'carbon' checkpoint; super-resolve needs"):
        super_resolve_raster(carbon_run, scene, tmp_path / "sr.tif", progress=False)


def test_every_output_is_checked_before_the_first_map_is_written(
    carbon_run: Path, scene: Path, tmp_path: Path
) -> None:
    from terradiff.errors import DataError
    from terradiff.mapping import estimate_carbon_maps

    second = tmp_path / "scene_b.tif"
    second.write_bytes(scene.read_bytes())
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "scene_b_carbon.tif").write_bytes(b"keep")
    options = {"tile": 32, "overlap": 8, "progress": False}
    with pytest.raises(DataError, match=r"scene_b_carbon\.tif already exists; pass --overwrite"):
        estimate_carbon_maps(carbon_run, [scene, second], maps, **options)
    (maps / "scene_b_carbon.tif").unlink()
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(DataError, match=r"s\.json already exists"):
        estimate_carbon_maps(
            carbon_run, [scene, second], maps, summary_path=tmp_path / "s.json", **options
        )
    assert list(maps.iterdir()) == []  # not the first map, not the panel
    with pytest.raises(DataError, match="is the input image"):
        estimate_carbon_maps(carbon_run, [scene], scene, overwrite=True, **options)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_single_process_raster(
    shared_data: Path, scene: Path, tmp_path: Path
) -> None:
    """A diffusion model (noise seeded per tile): 2 Dask workers write the same raster."""
    root = tmp_path
    assert main(["carbon-prepare", str(shared_data / "biomassters"), str(root / "chips")]) == 0
    config = carbon_config(root / "run", root / "chips", "idm", max_steps=2)
    (root / "c.yaml").write_text(yaml.safe_dump(config))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", str(root / "c.yaml")]) == 0
    base = [
        "estimate",
        "--model",
        str(root / "run"),
        "--image",
        str(scene),
        "--tile",
        "32",
        "--overlap",
        "8",
        "--steps",
        "2",
        "--ensemble",
        "2",
        "--precision",  # fp32: bf16 rounding depends on the batching, here up to 0.03 Mg C/ha
        "fp32",
    ]
    assert main([*base, "--out", str(root / "local.tif")]) == 0
    assert (
        main(
            [*base, "--out", str(root / "dask.tif"), "--dask", "--workers", "2", "--dask-rows", "1"]
        )
        == 0
    )
    local = read_raster(root / "local.tif").array
    distributed = read_raster(root / "dask.tif").array
    assert local.shape == (2, 64, 64)  # mean and std of the 2-member ensemble
    assert local[1].mean() > 0  # a real diffusion ensemble: the members differ
    # the same tiles and per-tile noise; only floating-point rounding may differ (the workers'
    # torch may use another thread count, hence another summation order in its kernels)
    np.testing.assert_allclose(local, distributed, rtol=1e-5, atol=1e-4)
    with rasterio.open(root / "local.tif") as a, rasterio.open(root / "dask.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
