"""Generated images back to physical units as GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from terradiff.data.band_info import BandInfo
from terradiff.data.raster import read_raster
from terradiff.sampling_io import write_samples_geotiff


def test_uint8_model_writes_0_255(tmp_path: Path) -> None:
    images = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    info = BandInfo(3, ("red", "green", "blue"), "uint8")
    paths = write_samples_geotiff(images, info, tmp_path)
    assert [p.name for p in paths] == ["sample_0000.tif", "sample_0001.tif"]
    raster = read_raster(paths[1])
    assert raster.array.dtype == np.uint8
    assert raster.array[:, 0, 0].tolist() == [0, 128, 255]
    assert list(raster.band_names) == ["red", "green", "blue"]


def test_sentinel2_model_writes_reflectance_dn(tmp_path: Path) -> None:
    images = torch.zeros(1, 13, 2, 2)  # mid-grey in model units = 0.5 in [0, 1]
    info = BandInfo(13, tuple(f"B{i}" for i in range(13)), "sentinel2")
    (path,) = write_samples_geotiff(images, info, tmp_path)
    raster = read_raster(path)
    assert raster.array.shape == (13, 2, 2)
    np.testing.assert_allclose(raster.array, 5000.0)
