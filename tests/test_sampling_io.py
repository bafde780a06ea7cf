"""Generated images back to physical units as GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


def test_an_existing_tif_is_refused_before_any_is_written(tmp_path: Path) -> None:
    from terradiff.errors import DataError

    images = torch.zeros(3, 3, 4, 4)
    info = BandInfo(3, ("red", "green", "blue"), "uint8")
    (tmp_path / "sample_0002.tif").write_bytes(b"keep")
    with pytest.raises(DataError, match=r"sample_0002\.tif already exists; pass --overwrite"):
        write_samples_geotiff(images, info, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["sample_0002.tif"]
    assert (tmp_path / "sample_0002.tif").read_bytes() == b"keep"
    paths = write_samples_geotiff(images, info, tmp_path, overwrite=True)
    assert len(paths) == 3 and read_raster(paths[2]).array.shape == (3, 4, 4)


def test_sample_outputs_are_checked_together(tmp_path: Path) -> None:
    from terradiff.errors import DataError
    from terradiff.sampling_io import check_sample_outputs

    grid, tifs = tmp_path / "g.png", tmp_path / "tifs"
    paths = check_sample_outputs(2, grid, chain=tmp_path / "c.png", tif_dir=tifs)
    record = tmp_path / "g.json"  # the settings of the run, beside the grid
    expected = [grid, record, tmp_path / "c.png"] + [tifs / f"sample_000{i}.tif" for i in (0, 1)]
    assert paths == expected
    with pytest.raises(DataError, match="given for two outputs"):
        check_sample_outputs(1, grid, chain=tmp_path / "." / "g.png")
    grid.write_bytes(b"")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        check_sample_outputs(1, grid)
    assert check_sample_outputs(1, grid, overwrite=True) == [grid, record]
    with pytest.raises(DataError, match=r"--tif-dir .* is a file"):
        check_sample_outputs(1, tmp_path / "h.png", tif_dir=grid)
    # a grid or chain named otherwise held PNG bytes under a .jpg or bare name
    with pytest.raises(DataError, match=r"--out .*g\.jpg: the file is written as a PNG, but its"):
        check_sample_outputs(1, tmp_path / "g.jpg")
    with pytest.raises(
        DataError, match=r"--chain .*/c: .* its name has no ending .* e\.g\. c\.png"
    ):
        check_sample_outputs(1, tmp_path / "h.png", chain=tmp_path / "c")
    assert check_sample_outputs(1, tmp_path / "UPPER.PNG")[0].name == "UPPER.PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]  # nothing was created
