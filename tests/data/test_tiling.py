"""Tests of terradiff.data.tiling: tile grid, blending weights and tiled GeoTIFF prediction."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from terradiff.data.raster import read_raster
from terradiff.data.tiling import (
    TileGrid,
    axis_starts,
    blend_weights,
    blend_window,
    predict_raster,
    tile_windows,
)
from terradiff.data.tiling import source as tiling_mod
from terradiff.data.transforms import get_scaling
from terradiff.errors import DataError, DataWarning, RasterError

CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_650_000.0)


def _write(
    path: Path,
    array: np.ndarray,
    *,
    nodata: float | None = None,
    crs: CRS | None = CRS_UTM,
    transform: Affine = TRANSFORM,
) -> Path:
    """Write ``array [C, H, W]`` as a GeoTIFF with rasterio directly (no terradiff code)."""
    profile = {
        "driver": "GTiff",
        "count": array.shape[0],
        "height": array.shape[1],
        "width": array.shape[2],
        "dtype": str(array.dtype),
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
    return path


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(), {
                "crs": src.crs,
                "transform": src.transform,
                "bounds": src.bounds,
                "res": src.res,
                "nodata": src.nodata,
                "descriptions": src.descriptions,
            }


def identity(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x


def upsampler(scale: int, mode: str = "nearest") -> Callable[[torch.Tensor, torch.Tensor], Any]:
    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mode == "nearest":
            return F.interpolate(x, scale_factor=scale, mode="nearest")
        return F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)

    return fn


_BLUR = torch.outer(torch.tensor([1.0, 4, 6, 4, 1]), torch.tensor([1.0, 4, 6, 4, 1])) / 256.0


def blur5(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A fixed 5x5 binomial blur per band (reflect padding): receptive field radius 2."""
    c = x.shape[1]
    kernel = _BLUR.to(x.dtype).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


@pytest.fixture
def uint16_tif(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """3 bands, 150 x 173 (not multiples of the tile), uint16 in [1, 9999], nodata 0 tagged."""
    rng = np.random.default_rng(0)
    array = rng.integers(1, 10_000, size=(3, 150, 173), dtype=np.uint16)
    return _write(tmp_path / "in.tif", array, nodata=0), array


# --------------------------------------------------------------------------------------------
# grid and weights
# --------------------------------------------------------------------------------------------


def test_axis_starts_step_and_last_tile_shifted_inward() -> None:
    assert axis_starts(100, 32, 8) == [0, 24, 48, 68]
    assert axis_starts(88, 32, 8) == [0, 24, 48, 56]
    assert axis_starts(32, 32, 8) == [0]
    assert axis_starts(10, 32, 8) == [0]
    assert axis_starts(33, 32, 0) == [0, 1]
    for length in range(1, 200, 7):
        starts = axis_starts(length, 32, 8)
        assert starts == sorted(set(starts))
        assert starts[0] == 0
        assert starts[-1] + min(32, length) == length
        assert all(b - a <= 24 for a, b in itertools.pairwise(starts))


def test_tile_grid_covers_raster_with_full_size_tiles() -> None:
    grid = TileGrid(height=150, width=173, tile=64, overlap=16)
    wins = grid.windows()
    assert len(wins) == len(grid) == grid.shape[0] * grid.shape[1]
    covered = np.zeros((150, 173), dtype=int)
    for win in wins:
        assert (win.height, win.width) == (64, 64)
        assert win.row_off + win.height <= 150 and win.col_off + win.width <= 173
        covered[win.row_off : win.row_off + 64, win.col_off : win.col_off + 64] += 1
    assert covered.min() >= 1
    assert tile_windows(150, 173, 64, 16) == wins
    small = tile_windows(20, 30, 64, 16)
    assert small == [Window(0, 0, 30, 20)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile": 0, "overlap": 0}, "tile"),
        ({"tile": 32, "overlap": 32}, "smaller than the tile"),
        ({"tile": 32, "overlap": -1}, "overlap"),
    ],
)
def test_grid_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        TileGrid(100, 100, **kwargs)


def test_blend_window_positive_complementary_and_flat_at_raster_edge() -> None:
    overlap, margin = 16, 4
    left = blend_window(64, overlap, margin=margin, ramp_start=False, ramp_end=True)
    right = blend_window(64, overlap, margin=margin, ramp_start=True, ramp_end=False)
    assert left.min() > 0 and right.min() > 0
    np.testing.assert_array_equal(left[:48], 1.0)  # raster-edge side and middle: full weight
    np.testing.assert_allclose(left[-overlap:] + right[:overlap], 1.0, atol=2e-6)
    assert right[:margin].max() <= 1e-6  # tile-edge pixels practically discarded
    assert np.all(np.diff(right[:overlap]) >= 0)
    both = blend_weights(64, 64, overlap, margin=margin)
    assert both.shape == (64, 64) and both.min() > 0
    np.testing.assert_array_equal(blend_weights(8, 8, 16, margin=4, top=False, bottom=False,
                                                left=False, right=False), 1.0)  # fmt: skip
    with pytest.raises(DataError, match="half the overlap"):
        blend_window(64, 16, margin=9)


# --------------------------------------------------------------------------------------------
# predict_raster
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3])
def test_identity_scale1_output_equals_input_exactly(
    uint16_tif: tuple[Path, np.ndarray], tmp_path: Path, batch_size: int
) -> None:
    path, array = uint16_tif
    out = tmp_path / "out.tif"
    summary = predict_raster(
        path,
        out,
        identity,
        scaling="sentinel2",
        tile=64,
        overlap=16,
        out_dtype="uint16",
        batch_size=batch_size,
        progress=False,
    )
    result, meta = _read(out)
    np.testing.assert_array_equal(result, array)
    assert meta["transform"] == TRANSFORM and meta["crs"] == CRS_UTM
    assert summary.tiles == len(TileGrid(150, 173, 64, 16)) == 12
    assert (summary.height, summary.width, summary.count, summary.scale) == (150, 173, 3, 1)
    assert summary.nodata == 0


def test_identity_float_output_within_rounding(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    array = rng.normal(100.0, 30.0, size=(2, 97, 130)).astype(np.float32)
    path = _write(tmp_path / "f.tif", array)
    out = tmp_path / "out.tif"
    predict_raster(path, out, identity, scaling="none", tile=40, overlap=12, progress=False)
    result, meta = _read(out)
    assert result.dtype == np.float32 and np.isnan(meta["nodata"])
    np.testing.assert_allclose(result, array, rtol=1e-6, atol=1e-4)


def _seam_errors(
    tmp_path: Path, predict_fn: Callable, scale: int, margin: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Tiled vs single-pass prediction: the error map and a mask of pixels near tile seams."""
    rng = np.random.default_rng(2)
    height, width, tile, overlap = 150, 170, 48, 16
    array = rng.random((2, height, width), dtype=np.float32)
    path = _write(tmp_path / f"seam_{scale}_{margin}.tif", array)
    out = tmp_path / f"seam_{scale}_{margin}_out.tif"
    predict_raster(
        path,
        out,
        predict_fn,
        scaling="none",
        scale=scale,
        tile=tile,
        overlap=overlap,
        blend_margin=margin,
        progress=False,
    )
    tiled, _ = _read(out)
    scaling = get_scaling("none")
    whole = predict_fn(torch.from_numpy(scaling.to_model(array))[None], torch.ones(1))
    reference = scaling.from_model(whole[0].numpy())
    error = np.abs(tiled - reference).max(axis=0)
    grid = TileGrid(height, width, tile, overlap)
    near = np.zeros((height * scale, width * scale), dtype=bool)
    band = 3 * scale
    for start in grid.row_starts:
        for edge in (start, start + tile):
            if 0 < edge < height:
                near[max(edge * scale - band, 0) : edge * scale + band] = True
    for start in grid.col_starts:
        for edge in (start, start + tile):
            if 0 < edge < width:
                near[:, max(edge * scale - band, 0) : edge * scale + band] = True
    return error, near


@pytest.mark.parametrize(
    ("name", "predict_fn", "scale"),
    [("blur5", blur5, 1), ("bilinear_x2", upsampler(2, "bilinear"), 2)],
)
def test_no_seams_tiled_equals_single_pass(
    tmp_path: Path, name: str, predict_fn: Callable, scale: int
) -> None:
    error, near = _seam_errors(tmp_path, predict_fn, scale, margin=None)
    # The whole raster, raster borders included (tiles at the raster's edge see the same
    # reflect padding as the single pass), matches within float32 rounding.
    assert error.max() < 1e-5, f"{name}: max abs diff {error.max():.2e}"
    # No seam: the error next to tile boundaries is not larger than elsewhere (both at rounding).
    assert error[near].max() <= max(2.0 * error[~near].max(), 1e-6)


def test_seam_check_is_sensitive_without_margin(tmp_path: Path) -> None:
    """With margin 0 the tile-edge pixels of the blur (wrong near tile edges) leak into the
    blend: the seam test above would see them, so it is not vacuous."""
    error_margin, _ = _seam_errors(tmp_path, blur5, 1, margin=None)
    error_plain, near = _seam_errors(tmp_path, blur5, 1, margin=0)
    assert error_plain[near].max() > 1e-4
    assert error_plain[near].max() > 100 * error_margin.max()
    assert error_plain[~near].max() < 1e-5  # only the seams are affected


@pytest.mark.parametrize("scale", [2, 4])
def test_georeferencing_kept_for_scale(tmp_path: Path, scale: int) -> None:
    rng = np.random.default_rng(3)
    array = rng.integers(1, 255, size=(2, 45, 61), dtype=np.uint8)
    transform = Affine(30.0, 0.0, 694_005.0, 0.0, -30.0, -2_766_615.0)
    path = _write(tmp_path / "in.tif", array, crs=CRS.from_epsg(32621), transform=transform)
    out = tmp_path / f"x{scale}.tif"
    summary = predict_raster(
        path,
        out,
        upsampler(scale),
        scaling="uint8",
        scale=scale,
        tile=32,
        overlap=8,
        out_dtype="uint8",
        progress=False,
    )
    result, meta = _read(out)
    with rasterio.open(path) as src:
        bounds, res = src.bounds, src.res
    assert meta["crs"] == CRS.from_epsg(32621)
    np.testing.assert_allclose(tuple(meta["bounds"]), tuple(bounds), atol=1e-6, rtol=0)
    np.testing.assert_allclose(meta["res"], (res[0] / scale, res[1] / scale), rtol=1e-12)
    assert result.shape == (2, 45 * scale, 61 * scale)
    assert (summary.height, summary.width) == (45 * scale, 61 * scale)
    np.testing.assert_array_equal(result, array.repeat(scale, axis=1).repeat(scale, axis=2))


@pytest.mark.parametrize("scale", [1, 2])
def test_raster_smaller_than_tile_is_padded(tmp_path: Path, scale: int) -> None:
    rng = np.random.default_rng(4)
    array = rng.integers(1, 255, size=(3, 20, 30), dtype=np.uint8)
    path = _write(tmp_path / "small.tif", array)
    seen: list[tuple[tuple[int, ...], int]] = []

    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(x.shape), int(mask.sum())))
        assert mask[0, 0, :20, :30].all() and not mask[0, 0, 20:].any()
        assert not mask[0, 0, :, 30:].any()
        return upsampler(scale)(x, mask)

    out = tmp_path / "small_out.tif"
    predict_raster(
        path, out, fn, scaling="uint8", scale=scale, tile=64, overlap=16, out_dtype="uint8",
        progress=False,
    )  # fmt: skip
    assert seen == [((1, 3, 64, 64), 20 * 30)]
    result, meta = _read(out)
    np.testing.assert_array_equal(result, array.repeat(scale, axis=1).repeat(scale, axis=2))
    assert meta["res"] == (10.0 / scale, 10.0 / scale)


def test_nodata_pixels_stay_nodata(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    array = rng.integers(1, 10_000, size=(2, 70, 90), dtype=np.uint16)
    array[:, 10:14, 20:25] = 0  # nodata in every band
    array[1, 50, 60] = 0  # in one band only: the pixel is invalid
    path = _write(tmp_path / "nd.tif", array, nodata=0)
    invalid = (array == 0).any(axis=0)
    fed: list[float] = []

    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fed.append(float(x.masked_select(~mask.expand_as(x)).abs().max()) if (~mask).any() else 0)
        return upsampler(2)(x, mask)

    expected_invalid = invalid.repeat(2, axis=0).repeat(2, axis=1)
    out_f = tmp_path / "nd_float.tif"
    summary = predict_raster(
        path, out_f, fn, scaling="sentinel2", scale=2, tile=32, overlap=8, progress=False
    )
    result, meta = _read(out_f)
    assert np.isnan(meta["nodata"]) and np.isnan(summary.nodata)
    np.testing.assert_array_equal(np.isnan(result).any(axis=0), expected_invalid)
    np.testing.assert_array_equal(np.isnan(result).all(axis=0), expected_invalid)
    assert max(fed) == 0.0  # invalid pixels reach the model as 0
    up = array.repeat(2, axis=1).repeat(2, axis=2).astype(np.float32)
    # float32 in model space: ~1e-7 of the 10000 range, so ~1e-3 in digital numbers
    np.testing.assert_allclose(result[:, ~expected_invalid], up[:, ~expected_invalid], atol=2e-3)

    out_i = tmp_path / "nd_uint16.tif"
    predict_raster(
        path, out_i, fn, scaling="sentinel2", scale=2, tile=32, overlap=8, out_dtype="uint16",
        progress=False,
    )  # fmt: skip
    result_i, meta_i = _read(out_i)
    assert meta_i["nodata"] == 0
    np.testing.assert_array_equal((result_i == 0).any(axis=0), expected_invalid)
    np.testing.assert_array_equal(read_raster(out_i).valid_mask, ~expected_invalid)


def test_nan_input_without_nodata_to_integer_output_uses_mask_band(tmp_path: Path) -> None:
    array = np.full((1, 40, 40), 0.5, dtype=np.float32)
    array[0, 5:9, 5:9] = np.nan
    path = _write(tmp_path / "nan.tif", array)
    out = tmp_path / "nan_out.tif"
    summary = predict_raster(
        path, out, identity, scaling="none", tile=16, overlap=4, out_dtype="uint8",
        progress=False,
    )  # fmt: skip
    assert summary.nodata is None
    data = read_raster(out)
    np.testing.assert_array_equal(data.valid_mask, ~np.isnan(array[0]))
    assert np.all(data.array[0][data.valid_mask] == 0)  # 0.5 rounds to 0 (half to even)


def test_valid_integer_pixel_never_equals_nodata_and_custom_out_nodata(tmp_path: Path) -> None:
    array = np.full((1, 30, 30), 7, dtype=np.uint8)
    array[0, :3, :3] = 0
    path = _write(tmp_path / "u8.tif", array, nodata=0)

    def black(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, -1.0)  # physical 0 == the nodata value

    out = tmp_path / "black.tif"
    predict_raster(
        path, out, black, scaling="uint8", tile=16, overlap=4, out_dtype="uint8", progress=False
    )
    result, meta = _read(out)
    assert meta["nodata"] == 0
    assert np.all(result[0, :3, :3] == 0)
    result[0, :3, :3] = 1
    assert np.all(result == 1)  # moved one step away from nodata, so still valid
    out_f = tmp_path / "custom.tif"
    predict_raster(
        path, out_f, identity, scaling="uint8", tile=16, overlap=4, out_nodata=-9999,
        progress=False,
    )  # fmt: skip
    result_f, meta_f = _read(out_f)
    assert meta_f["nodata"] == -9999
    assert np.all(result_f[0, :3, :3] == -9999)
    np.testing.assert_allclose(result_f[0, 3:], 7.0, atol=1e-4)
    with pytest.raises(RasterError, match="does not fit"):
        predict_raster(
            path, tmp_path / "x.tif", identity, scaling="uint8", out_dtype="uint8",
            out_nodata=-1, progress=False,
        )  # fmt: skip


def test_existing_output_refused_without_overwrite(
    uint16_tif: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, array = uint16_tif
    out = tmp_path / "exists.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(RasterError, match="overwrite=True"):
        predict_raster(path, out, identity, scaling="sentinel2", progress=False)
    assert out.read_bytes() == b"keep me"
    predict_raster(
        path, out, identity, scaling="sentinel2", tile=64, overlap=16, out_dtype="uint16",
        overwrite=True, progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(_read(out)[0], array)


@pytest.mark.parametrize("error", [RuntimeError("model exploded"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_run_leaves_no_output_and_no_temp_file(
    uint16_tif: tuple[Path, np.ndarray], tmp_path: Path, error: BaseException, existing: bool
) -> None:
    path, _ = uint16_tif
    out = tmp_path / "fail.tif"
    if existing:
        out.write_bytes(b"old")
    calls = []

    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:  # after the first strip of rows has been written
            raise error
        return x

    before = set(tmp_path.iterdir())
    with pytest.raises(type(error)):
        predict_raster(
            path, out, fn, scaling="sentinel2", tile=64, overlap=16, batch_size=1,
            overwrite=True, progress=False,
        )  # fmt: skip
    assert len(calls) == 5
    assert set(tmp_path.iterdir()) == before  # no temporary file left
    if existing:
        assert out.read_bytes() == b"old"
    else:
        assert not out.exists()


def test_wrong_output_shape_and_bad_arguments_raise(
    uint16_tif: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, _ = uint16_tif
    out = tmp_path / "bad.tif"
    with pytest.raises(DataError, match="tile \\* scale"):
        predict_raster(path, out, identity, scaling="sentinel2", scale=2, tile=64, progress=False)
    with pytest.raises(DataError, match="positive integer"):
        predict_raster(path, out, identity, scaling="sentinel2", scale=1.5, progress=False)
    with pytest.raises(DataError, match="out_bands"):
        predict_raster(
            path, out, identity, scaling="sentinel2", tile=64, out_bands=1, progress=False
        )
    with pytest.raises(RasterError, match="no band named"):
        predict_raster(path, out, identity, scaling="sentinel2", bands=["B99"], progress=False)
    assert list(tmp_path.iterdir()) == [path]


def test_no_crs_warns_and_writes_pixel_grid(tmp_path: Path) -> None:
    array = np.arange(1, 1 + 30 * 40, dtype=np.uint16).reshape(1, 30, 40)
    path = _write(tmp_path / "nocrs.tif", array, crs=None, transform=Affine.identity())
    out = tmp_path / "nocrs_out.tif"
    with pytest.warns(DataWarning, match="no CRS"):
        predict_raster(
            path, out, upsampler(2), scaling="none", scale=2, tile=16, overlap=4,
            out_dtype="uint16", progress=False,
        )  # fmt: skip
    result, meta = _read(out)
    assert meta["crs"] is None
    assert meta["res"] == (0.5, 0.5)
    np.testing.assert_array_equal(result, array.repeat(2, axis=1).repeat(2, axis=2))


def test_memory_is_bounded_by_a_strip_and_reads_are_windowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    width, tile, overlap = 80, 32, 8
    reads: list[Window] = []
    real_read = tiling_mod.read_block

    def spy(src, indices, window, *args):  # type: ignore[no-untyped-def]
        reads.append(window)
        return real_read(src, indices, window, *args)

    monkeypatch.setattr(tiling_mod, "read_block", spy)
    peaks = []
    for height in (300, 1200):
        reads.clear()
        array = np.random.default_rng(6).integers(1, 255, size=(1, height, width), dtype=np.uint8)
        path = _write(tmp_path / f"tall{height}.tif", array)
        out = tmp_path / f"tall{height}_out.tif"
        summary = predict_raster(
            path, out, upsampler(2), scaling="uint8", scale=2, tile=tile, overlap=overlap,
            out_dtype="uint8", progress=False,
        )  # fmt: skip
        np.testing.assert_array_equal(_read(out)[0], array.repeat(2, axis=1).repeat(2, axis=2))
        assert all(win.height <= tile for win in reads)  # strips of one row of tiles, never more
        assert len(reads) == len(TileGrid(height, width, tile, overlap).row_starts)
        peaks.append(summary.peak_buffer_bytes)
    assert peaks[0] == peaks[1]  # independent of the raster's height
    whole_output_float = 4 * 1200 * 2 * width * 2  # one float32 band of the whole output
    assert peaks[1] < whole_output_float / 4
    with pytest.raises(DataError, match="max_memory_mb"):
        predict_raster(
            path, tmp_path / "tiny.tif", upsampler(2), scaling="uint8", scale=2, tile=tile,
            overlap=overlap, max_memory_mb=0.01, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "tiny.tif").exists()


def test_real_naip_crop_scale2_nearest(shared_data: Path, tmp_path: Path) -> None:
    """A 300 x 300 window of a real NAIP scene (EPSG:26914, 5 m, 4 bands, nodata 0), x2."""
    scene = shared_data / "scenes" / "opengeos-naip" / "m_4709963_se_14_1_20190904.tif"
    if not scene.exists():
        pytest.skip(f"{scene} not found")
    crop = tmp_path / "naip_crop.tif"
    window = Window(400, 200, 300, 300)
    with rasterio.open(scene) as src:
        array = src.read(window=window)
        profile = {
            "driver": "GTiff",
            "count": src.count,
            "height": 300,
            "width": 300,
            "dtype": src.dtypes[0],
            "crs": src.crs,
            "transform": src.transform @ Affine.translation(400, 200),
            "nodata": src.nodata,
        }
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(array)
    out = tmp_path / "naip_x2.tif"
    summary = predict_raster(
        crop, out, upsampler(2), scaling="uint8", scale=2, tile=128, overlap=16,
        out_dtype="uint8", batch_size=2, progress=False,
    )  # fmt: skip
    result, meta = _read(out)
    assert meta["crs"] == profile["crs"] and meta["crs"].to_epsg() == 26914
    with rasterio.open(crop) as src:
        bounds = src.bounds
    np.testing.assert_allclose(tuple(meta["bounds"]), tuple(bounds), atol=1e-6, rtol=0)
    assert meta["res"] == (2.5, 2.5)
    expected = array.repeat(2, axis=1).repeat(2, axis=2)
    valid = (array != 0).all(axis=0).repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(result[:, valid], expected[:, valid])
    assert np.all(result[:, ~valid] == 0)
    assert summary.tiles == 9 and summary.count == 4


# --------------------------------------------------------------------------------------------
# column blocks and the memory bound (issue 13)
# --------------------------------------------------------------------------------------------


def tile_noise(scale: int) -> Callable[..., torch.Tensor]:
    """x -> tanh(x) upsampled plus noise seeded by each tile's corner: every tile predicts a
    different value at a shared pixel, so the blend (and its summation order) shows."""

    def fn(x: torch.Tensor, mask: torch.Tensor, origins: list[tuple[int, int]]) -> torch.Tensor:
        base = torch.tanh(1.3 * x.repeat_interleave(scale, -2).repeat_interleave(scale, -1))
        noise = [
            torch.rand(base.shape[1:], generator=torch.Generator().manual_seed(r * 7919 + c))
            for r, c in origins
        ]
        return 0.9 * base + 0.05 * torch.stack(noise)

    return fn


def _whole_raster_blend(array: np.ndarray, scale: int, tile: int, overlap: int) -> np.ndarray:
    """The blended model values of :func:`tile_noise` with one buffer over the whole raster,
    tiles added in row-major order (the definition of the output, written out directly; tiles
    padded by reflection where the raster is smaller than a tile)."""
    grid = TileGrid(array.shape[1], array.shape[2], tile, overlap)
    h, w, s = grid.tile_height, grid.tile_width, scale
    x = get_scaling("uint8").to_model(array).astype(np.float32)
    num = np.zeros((array.shape[0], array.shape[1] * s, array.shape[2] * s), dtype=np.float32)
    den = np.zeros(num.shape[1:], dtype=np.float32)
    fn = tile_noise(scale)
    rows, cols = grid.row_starts, grid.col_starts
    for ri, row in enumerate(rows):
        for ci, col in enumerate(cols):
            pad = ((0, 0), (0, tile - h), (0, tile - w))
            part = np.pad(x[:, row : row + h, col : col + w], pad, mode="reflect")
            pred = fn(torch.from_numpy(part[None]), torch.ones(1), [(row, col)])[0].numpy()
            pred = pred[:, : h * s, : w * s]
            wy = blend_window(h * s, overlap * s, margin=overlap // 4 * s, ramp_start=ri > 0,
                              ramp_end=ri < len(rows) - 1)  # fmt: skip
            wx = blend_window(w * s, overlap * s, margin=overlap // 4 * s, ramp_start=ci > 0,
                              ramp_end=ci < len(cols) - 1)  # fmt: skip
            weight = np.outer(wy, wx)
            num[:, row * s : (row + h) * s, col * s : (col + w) * s] += pred * weight
            den[row * s : (row + h) * s, col * s : (col + w) * s] += weight
    return num / np.maximum(den, np.float32(1e-12))


@pytest.mark.parametrize(
    ("height", "width", "overlap", "scale", "batch_size"),
    [
        (97, 230, 8, 1, 1),  # last tile row and column shifted inward (a pass of two rows)
        (88, 230, 8, 2, 3),  # rows that fit exactly, batches of 3 tiles
        (61, 173, 20, 1, 1),  # overlap above half a tile: tiles reach two blocks ahead
        (20, 140, 8, 2, 2),  # a raster lower than a tile (padded), one row of tiles
    ],
)
def test_column_blocks_give_the_raster_of_one_block(
    tmp_path: Path, height: int, width: int, overlap: int, scale: int, batch_size: int
) -> None:
    """A raster many column blocks wide comes out bit-identical to one block over its whole
    width, and to the definition of the blend (one buffer, tiles in row-major order)."""
    tile = 32
    array = np.random.default_rng(3).integers(1, 255, size=(2, height, width), dtype=np.uint8)
    path = _write(tmp_path / "wide.tif", array)
    options = {
        "scaling": "uint8", "out_scaling": {"name": "raw", "divisor": 1.0, "clip": False},
        "scale": scale, "tile": tile, "overlap": overlap, "batch_size": batch_size,
        "progress": False,
    }  # fmt: skip
    results = {}
    for block_tiles in (1, 10**6):
        out = tmp_path / f"blocks{block_tiles}.tif"
        summary = predict_raster(path, out, tile_noise(scale), block_tiles=block_tiles, **options)
        results[block_tiles] = _read(out)[0]
        assert summary.tiles == len(TileGrid(height, width, tile, overlap))
    assert len(TileGrid(height, width, tile, overlap).col_starts) > 2 * batch_size
    assert results[1].tobytes() == results[10**6].tobytes()
    expected = get_scaling({"name": "raw", "divisor": 1.0, "clip": False}).from_model(
        _whole_raster_blend(array, scale, tile, overlap)
    )
    assert results[1].tobytes() == expected.astype(np.float32).tobytes()


def _memory(height: int, width: int, **kw: Any) -> Any:
    from terradiff.data.tiling.memory import RunMemory

    args = {"scale": 4, "in_bands": 3, "in_itemsize": 1, "out_itemsize": 1, "block_tiles": None}
    return RunMemory(TileGrid(height, width, 128, 16), **(args | {"cpu": True} | kw))


def test_buffer_estimate_independent_of_height_and_bounded_in_width() -> None:
    """The run's estimate (the arrays it allocates) does not grow with the raster's height and
    grows with its width only by the row carry: ``overlap`` rows, not a strip of ``tile``."""
    c_out, batch, s, overlap, tile = 3, 4, 4, 16, 128
    # heights whose last tile row is shifted inward (it joins the pass above): the most a run
    # holds; a height that the tiles fit exactly (8,192 = 128 + 72 x 112) holds less
    by_height = {h: _memory(h, 2048).estimate(c_out, batch) for h in (300, 2048, 10_000, 10**6)}
    assert len(set(by_height.values())) == 1, by_height
    assert _memory(8192, 2048).estimate(c_out, batch) < by_height[2048]
    widths = (2048, 8192, 100_000)
    by_width = [_memory(2048, w).estimate(c_out, batch) for w in widths]
    carry_per_column = (c_out + 1) * 4 * overlap * s * s  # sum(w * pred) and sum(w), float32
    for (w1, e1), (w2, e2) in itertools.pairwise(zip(widths, by_width, strict=True)):
        assert e2 - e1 == carry_per_column * (w2 - w1)
    strip_per_column = (c_out + 1) * 4 * tile * s * s  # a buffer of one tile row, whole width
    assert carry_per_column * 8 == strip_per_column
    # 100,000 px wide at x4 (400,000 output columns): under 1/5 of one full-width strip
    assert by_width[-1] < strip_per_column * 100_000 / 5
    # the activations a predict_fn reports count once per tile of the batch (on the CPU)
    act, memory = 300 * 2**20, _memory(2048, 2048)
    assert memory.batch_bytes(c_out, 2, act) - memory.batch_bytes(c_out, 2) == 2 * act
    assert memory.estimate(c_out, 2, act) - memory.estimate(c_out, 2) == 2 * act
    assert _memory(2048, 2048, cpu=False).batch_bytes(c_out, 2, act) == memory.batch_bytes(c_out, 2)


def test_measured_buffers_grow_with_width_only_by_the_row_carry(tmp_path: Path) -> None:
    """``peak_buffer_bytes`` (the arrays a run held) of runs 2 and 4 column blocks wide differ
    by the row carry of the extra columns; the same for any height. (Widths that the tiles fit
    exactly: a last tile column shifted inward adds a bounded column carry, at most a tile.)"""
    tile, overlap, scale = 32, 8, 2
    peaks = {}
    for height, width in ((100, 200), (100, 392), (340, 392)):
        array = np.random.default_rng(1).integers(1, 255, size=(1, height, width), dtype=np.uint8)
        path = _write(tmp_path / f"in{height}x{width}.tif", array)
        summary = predict_raster(
            path, tmp_path / f"out{height}x{width}.tif", upsampler(scale), scaling="uint8",
            scale=scale, tile=tile, overlap=overlap, out_dtype="uint8", batch_size=2,
            block_tiles=4, progress=False,
        )  # fmt: skip
        peaks[(height, width)] = summary.peak_buffer_bytes
    carry = (1 + 1) * 4 * overlap * scale * (392 - 200) * scale
    assert peaks[(100, 392)] - peaks[(100, 200)] == carry
    assert peaks[(340, 392)] == peaks[(100, 392)]  # same shift of the last tile row


def test_batch_lowered_for_the_activations_a_predict_fn_reports(tmp_path: Path) -> None:
    array = np.random.default_rng(2).integers(1, 255, size=(1, 40, 200), dtype=np.uint8)
    path = _write(tmp_path / "in.tif", array)
    calls: list[int] = []

    def fn(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x

    options = {"scaling": "uint8", "tile": 32, "overlap": 8, "batch_size": 4, "progress": False}
    for tile_bytes, expected in ((1_000, 4), (200 * 2**20, 2), (400 * 2**20, 1)):
        fn.tile_bytes = lambda h, w, b=tile_bytes: b  # type: ignore[attr-defined]
        calls.clear()
        predict_raster(path, tmp_path / "out.tif", fn, overwrite=True, **options)
        assert max(calls) == expected
    calls.clear()  # no ceiling: the batch asked for
    predict_raster(path, tmp_path / "out.tif", fn, overwrite=True, batch_memory_mb=None, **options)
    assert max(calls) == 4
    with pytest.raises(DataError, match="activations per tile"):
        predict_raster(
            path, tmp_path / "out2.tif", fn, max_memory_mb=100, batch_memory_mb=None, **options
        )
    assert not (tmp_path / "out2.tif").exists()


def test_probe_counts_the_peak_of_live_tensors_and_scales_with_pixels() -> None:
    from terradiff.data.tiling.probe import TileMemoryProbe, peak_tensor_bytes

    def fn() -> torch.Tensor:
        a = torch.ones(1000)  # 4,000 bytes
        b = torch.ones(2000)  # 8,000 bytes, both alive: 12,000
        del a
        c = torch.ones(500)  # 2,000 bytes: 10,000 alive
        return b[:10] + c[:10]

    assert 12_000 <= peak_tensor_bytes(fn) < 12_200

    conv = torch.nn.Conv2d(2, 8, 3, padding=1)
    probe = TileMemoryProbe(lambda x: torch.relu(conv(x)), 2, side=16)
    small, large = probe(16, 16), probe(64, 64)
    assert list(probe.measured) == [(16, 16)]  # measured once, on the small tile
    assert small >= 8 * 16 * 16 * 4  # at least the conv's output
    assert large == 16 * small
