"""``--nodata`` of super-resolve and estimate: a fill value the file does not declare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terradiff.cli import main
from tests.conftest import SAMPLE_DATA
from tests.test_cog_outputs import save_untrained

NAIP = SAMPLE_DATA / "naip" / "m_4709963_se_14_1_20190904.tif"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x64 window of the bundled real NAIP tile (4 bands, its CRS) whose top-left 16x16
    pixels are 0 in every band, with no nodata declared (the tile itself declares 0)."""
    path = tmp_path_factory.mktemp("nodata") / "filled.tif"
    with rasterio.open(NAIP) as src:
        window = Window(0, 0, 64, 64)
        array = src.read(window=window)
        profile = {
            "driver": "GTiff",
            "width": 64,
            "height": 64,
            "count": src.count,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.window_transform(window),
            "photometric": "MINISBLACK",  # GDAL would make a 4th byte band an alpha band
        }
    array[:, :16, :16] = 0
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained x4 regression SR (RGB) and carbon regression (4-band NAIP) checkpoints."""
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.carbon import CarbonTask
    from terradiff.tasks.super_resolution import SuperResolutionTask
    from tests.tasks.test_carbon import carbon_config
    from tests.tasks.test_super_resolution import sr_config

    root = tmp_path_factory.mktemp("nodata_models")
    sr = SuperResolutionTask(
        config_from_dict(sr_config(root / "sr", SAMPLE_DATA, "regression")),
        band_info=BandInfo(3, ("red", "green", "blue"), "uint8"),
    )
    carbon = CarbonTask(
        config_from_dict(carbon_config(root / "c", SAMPLE_DATA / "biomassters", "regression")),
        band_info=BandInfo(4, ("red", "green", "blue", "nir"), "uint8"),
    )
    return {
        "super-resolve": save_untrained(sr, root / "sr"),
        "estimate": save_untrained(carbon, root / "carbon"),
    }


def run_verb(verb: str, model: Path, image: Path, out: Path, *extra: str) -> np.ma.MaskedArray:
    """``terradiff VERB`` on ``image``; the written map, masked where it is nodata."""
    if verb == "super-resolve":
        argv = [verb, "--model", str(model), str(image), str(out), "--bands", "1,2,3"]
    else:
        argv = [verb, "--model", str(model), "--image", str(image), "--out", str(out)]
    assert main([*argv, "--tile", "32", "--overlap", "8", "--no-cog", *extra]) == 0
    with rasterio.open(out) as dst:
        return dst.read(masked=True)


@pytest.mark.parametrize("verb", ["super-resolve", "estimate"])
def test_nodata_option_leaves_the_undeclared_fill_out(
    verb: str, filled: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    scale = 4 if verb == "super-resolve" else 1
    corner = np.s_[:, : 16 * scale, : 16 * scale]
    rest = np.s_[:, 16 * scale :, 16 * scale :]
    plain = run_verb(verb, models[verb], filled, tmp_path / "plain.tif")
    assert not np.ma.getmaskarray(plain).any()  # without the option the fill is mapped
    declared = run_verb(verb, models[verb], filled, tmp_path / "declared.tif", "--nodata", "0")
    mask = np.ma.getmaskarray(declared)
    assert mask[corner].all() and not mask[rest].any()
