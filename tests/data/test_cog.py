"""Cloud-Optimized GeoTIFF writing (:mod:`terradiff.data.cog`) on the bundled real NAIP scene:
validity (rio-cogeo's validator), overviews, predictor, nodata, mask, names, tags, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from terradiff.data import cog
from terradiff.data.raster import read_raster, write_raster
from terradiff.errors import RasterError

NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # 934 x 723 px, 4 bands, uint8, nodata 0


def layout(path: Path) -> dict[str, str]:
    """GDAL's IMAGE_STRUCTURE metadata of ``path`` (LAYOUT=COG for a COG, PREDICTOR, ...)."""
    with rasterio.open(path) as src:
        return src.tags(ns="IMAGE_STRUCTURE")


def test_predictor_and_options_follow_the_data_type() -> None:
    assert cog.predictor_for("uint8", "deflate") == 2
    assert cog.predictor_for(np.int16, "zstd") == 2
    assert cog.predictor_for("float32", "DEFLATE") == 3
    assert cog.predictor_for("float32", "packbits") is None
    assert cog.compression_options("uint16", "zstd") == {"compress": "zstd", "predictor": "2"}
    assert cog.compression_options("float32", "none") == {}
    options = cog.cog_creation_options("float64", "lzw")
    assert options["PREDICTOR"] == "FLOATING_POINT" and options["COMPRESS"] == "LZW"
    assert options["BLOCKSIZE"] == str(cog.COG_BLOCK) and options["OVERVIEWS"] == "AUTO"
    assert cog.cog_cache_bytes(10_000, 1, 4) == cog.COG_CACHE[0]  # 64 MiB at least
    assert cog.cog_cache_bytes(10_000, 4, 4) == 2 * 10_000 * cog.COG_BLOCK * 16
    assert cog.cog_cache_bytes(10**6, 4, 8) == cog.COG_CACHE[1]  # 1 GiB at most
    assert [cog.expected_overviews(h, 100) for h in (512, 513, 1024, 1025, 10_000)] == [
        0,
        1,
        1,
        2,
        5,
    ]


@pytest.mark.parametrize("codec", ["deflate", "zstd"])
def test_a_real_scene_written_as_a_cog(sample_data: Path, tmp_path: Path, codec: str) -> None:
    scene = read_raster(sample_data / NAIP)
    names = ["red", "green", "blue", "nir"]
    out = tmp_path / "naip_cog.tif"
    write_raster(
        out, scene.array, scene.profile, band_names=names, tags={"A": "b"}, compress=codec, cog=True
    )
    valid, errors, warnings = cog_validate(out, quiet=True)
    assert valid and not errors and not warnings, (errors, warnings)
    structure = layout(out)
    assert structure["LAYOUT"] == "COG" and structure["PREDICTOR"] == "2"
    assert structure["COMPRESSION"] == codec.upper()
    with rasterio.open(out) as dst, rasterio.open(sample_data / NAIP) as src:
        assert dst.overviews(1) == [2] and cog.expected_overviews(dst.height, dst.width) == 1
        assert dst.block_shapes[0] == (cog.COG_BLOCK, cog.COG_BLOCK)
        assert dst.nodata == src.nodata == 0
        assert list(dst.descriptions) == names and dst.tags()["A"] == "b"
        assert dst.crs == src.crs and dst.transform == src.transform
        np.testing.assert_array_equal(dst.read(), src.read())  # lossless
    assert sorted(p.name for p in tmp_path.iterdir()) == ["naip_cog.tif"]  # no temporaries


def test_a_mask_band_is_kept_and_the_default_stays_plain(sample_data: Path, tmp_path: Path) -> None:
    scene = read_raster(sample_data / NAIP, bands=[1, 2, 3])
    valid = np.ones(scene.array.shape[1:], bool)
    valid[:100, :200] = False
    profile = {k: v for k, v in scene.profile.items() if k != "nodata"}
    out = write_raster(tmp_path / "masked.tif", scene.array, profile, valid_mask=valid, cog=True)
    assert cog_validate(out, quiet=True)[0]
    back = read_raster(out)
    assert back.valid_mask is not None
    np.testing.assert_array_equal(back.valid_mask, valid)
    plain = write_raster(tmp_path / "plain.tif", scene.array, scene.profile)
    assert "LAYOUT" not in layout(plain)  # write_raster's default: a plain GeoTIFF
    with rasterio.open(plain) as dst:
        assert dst.overviews(1) == []


def test_a_failed_conversion_leaves_nothing(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = read_raster(sample_data / NAIP, bands=[1])
    out = tmp_path / "map.tif"
    out.write_bytes(b"previous")

    def broken(src: Path, dst: Path, dtype: object, codec: str) -> None:
        dst.write_bytes(b"half a COG")
        raise OSError("disk full")

    monkeypatch.setattr(cog, "convert_to_cog", broken)
    with pytest.raises(RasterError, match="Cloud-Optimized GeoTIFF: disk full"):
        write_raster(out, scene.array, scene.profile, overwrite=True, cog=True)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]
