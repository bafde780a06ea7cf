"""Preparing real BioMassters chips as paired rasters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from terradiff.carbon.biomassters import composite_chip, read_carbon_target
from terradiff.carbon.prepare import prepare_biomassters
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import DataError, RasterError


def test_prepare_writes_image_target_mask_and_manifest(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "biomassters"
    chips = prepare_biomassters(root, tmp_path, chips=["000aa810"])
    assert [c.chip for c in chips] == ["000aa810"]
    image, target, mask = (read_raster(p) for p in (chips[0].image, chips[0].target, chips[0].mask))
    assert image.band_names[:3] == ["B2", "B3", "B4"] and image.array.shape == (10, 256, 256)
    expected = composite_chip(root / "000aa810")
    np.testing.assert_allclose(
        image.array[:, expected.valid], expected.reflectance[:, expected.valid]
    )
    assert (image.valid_mask == expected.valid).all()
    truth = read_carbon_target(root / "000aa810")
    np.testing.assert_allclose(target.array[0], truth.carbon)
    assert set(np.unique(mask.array)) <= {0, 255}
    assert ((mask.array[0] == 255) == truth.forest).all()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["chips"]["000aa810"]
    assert 9 not in entry["months"] and entry["clear_fraction"]["09 (Jun)"] < 0.01
    assert 0 < entry["forest_fraction"] < 1
    with pytest.raises(RasterError, match="exists"):
        prepare_biomassters(root, tmp_path, chips=["000aa810"])


def test_cloudy_chips_are_skipped_and_all_cloudy_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "chips"
    for chip, cloud in (("clear", 5), ("cloudy", 95)):
        (root / chip).mkdir(parents=True)
        stack = np.full((11, 8, 8), 800, np.uint16)
        stack[10] = cloud
        write_raster(root / chip / f"{chip}_S2_00.tif", stack)
        write_raster(root / chip / f"{chip}_agbm.tif", np.full((1, 8, 8), 40.0, np.float32))
    chips = prepare_biomassters(root, tmp_path / "out")
    assert [c.chip for c in chips] == ["clear"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "cloudy" in manifest["skipped"]
    assert read_raster(chips[0].target).array.max() == pytest.approx(20.0)
    with pytest.raises(DataError, match=r"no chip .* could be prepared: chip cloudy"):
        prepare_biomassters(root, tmp_path / "out2", chips=["cloudy"])


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"cloud_threshold": 150.0}, r"--cloud-threshold 150.0 .* from 0 to 100"),
        ({"cloud_threshold": float("nan")}, r"--cloud-threshold nan .* from 0 to 100"),
        ({"min_clear_fraction": 2.0}, r"--min-clear 2.0 .* a fraction from 0 to 1"),
    ],
)
def test_thresholds_out_of_range_are_refused_before_any_chip(
    option: dict, match: str, shared_data: Path, tmp_path: Path
) -> None:
    """A cloud probability of 150 % called every pixel clear and prepared the chips; a clear
    fraction of 2 failed only after every chip was read, as '200% clear pixels'."""
    from terradiff.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        prepare_biomassters(shared_data / "biomassters", tmp_path / "out", **option)
    assert not (tmp_path / "out").exists()
