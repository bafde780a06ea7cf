"""`terradiff super-resolve` on a real georeferenced NAIP window: georeferencing, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terradiff.cli import main
from terradiff.data.raster import read_raster
from tests.helpers import train_tiny_sr

NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # bundled copy of a real NAIP tile


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x4 regression SR model trained 2 steps through the CLI on the bundled AID sample."""
    return train_tiny_sr(tmp_path_factory.mktemp("sr"), "regression")


@pytest.fixture()
def naip_window(sample_data: Path, tmp_path: Path) -> Path:
    """A 40x52 window of a real 4-band NAIP scene (EPSG:26914), written as its own GeoTIFF."""
    source = sample_data / NAIP
    out = tmp_path / "naip.tif"
    with rasterio.open(source) as src:
        window = Window(400, 300, 52, 40)
        profile = src.profile | {
            "height": 40,
            "width": 52,
            "transform": src.window_transform(window),
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data = src.read(window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def test_super_resolve_keeps_georeferencing(
    sr_run: Path, naip_window: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sr.tif"
    args = ["super-resolve", str(naip_window), str(out), "--model", str(sr_run)]
    args += ["--bands", "1,2,3", "--tile", "16", "--overlap", "4", "--scale", "4"]
    assert main([*args, "--summary", str(tmp_path / "summary.json")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["height"], summary["width"], summary["scale"]) == (160, 208, 4)
    assert summary["tiles"] == 12 and summary["path"] == str(out)  # 3 x 4 tiles of 16 px
    with rasterio.open(naip_window) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert (dst.width, dst.height) == (src.width * 4, src.height * 4)
        np.testing.assert_allclose(tuple(dst.bounds), tuple(src.bounds), atol=1e-6)
        assert dst.transform.a == pytest.approx(src.transform.a / 4)
        assert dst.transform.e == pytest.approx(src.transform.e / 4)
        assert dst.count == 3 and dst.dtypes[0] == "uint8"
    result = read_raster(out).array.astype(float)
    source = read_raster(naip_window, bands=[1, 2, 3]).array.astype(float)
    # a 2-step model is close to bicubic: the block means must follow the source pixels
    block_means = result.reshape(3, 40, 4, 52, 4).mean(axis=(2, 4))
    assert np.abs(block_means - source).mean() < 25


def test_super_resolve_fast_option_keeps_the_raster(
    sr_run: Path, naip_window: Path, tmp_path: Path
) -> None:
    """``--fast auto`` (the eager net on the CPU) writes the same raster as the default."""
    args = [str(naip_window), "--model", str(sr_run), "--bands", "1,2,3", "--tile", "16"]
    args += ["--overlap", "4", "--no-cog"]
    assert main(["super-resolve", *args[:1], str(tmp_path / "a.tif"), *args[1:]]) == 0
    fast = ["super-resolve", *args[:1], str(tmp_path / "b.tif"), *args[1:], "--fast", "auto"]
    assert main(fast) == 0
    a, b = read_raster(tmp_path / "a.tif").array, read_raster(tmp_path / "b.tif").array
    assert np.array_equal(a, b)


def test_refusals_name_the_fix(
    sr_run: Path, naip_window: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sr.tif"
    base = ["super-resolve", str(naip_window), str(out), "--model", str(sr_run)]
    base += ["--tile", "16", "--overlap", "4"]
    assert main(base) == 2  # 4 bands, the model takes 3
    err = capsys.readouterr().err
    assert "4 bands" in err and "--bands" in err and "red" in err
    assert main([*base, "--bands", "1,2,3", "--scale", "2"]) == 2
    assert "x4" in capsys.readouterr().err
    out.write_bytes(b"")
    assert main([*base, "--bands", "1,2,3"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b""


def test_estimate_refuses_a_super_resolution_model(
    sr_run: Path, naip_window: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from terradiff.errors import WrongCheckpointError
    from terradiff.mapping import estimate_raster

    with pytest.raises(WrongCheckpointError, match="'super_resolution' checkpoint; estimate needs"):
        estimate_raster(sr_run, naip_window, tmp_path / "c.tif", progress=False)
    args = ["estimate", "--model", str(sr_run), "--image", str(naip_window)]
    assert main([*args, "--out", str(tmp_path / "c.tif")]) == 2
    assert "estimate needs a 'carbon' one" in capsys.readouterr().err
    assert not (tmp_path / "c.tif").exists()


def test_evaluate_super_resolution_reports_model_and_bicubic(sr_run: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "m.json"
    assert main(["evaluate", str(sr_run), "--n", "6", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 6 and metrics["scale"] == 4 and metrics["method"] == "regression"
    model, bicubic = metrics["model"], metrics["bicubic"]
    for row in (model, bicubic):
        assert {"psnr", "ssim", "mae", "psnr_y", "ssim_y", "aid_feature_distance"} <= set(row)
        assert len(row["psnr_per_band"]) == len(metrics["band_names"]) == 3
        # the overall PSNR and the per-band ones are means over the same images and pixels
        assert abs(row["psnr"] - sum(row["psnr_per_band"]) / 3) < 0.5
    # Bicubic x4 of the bundled 32 px AID crops measures 32.6 dB (forest, beach, desert: smooth).
    assert 30 < bicubic["psnr"] < 35 and 0.6 < bicubic["ssim"] < 0.8
    # The regression net predicts a residual on bicubic from a zero-initialised output layer and
    # was trained 2 steps: it is still bicubic to within 1 dB and 0.05 SSIM (0.47 dB measured).
    assert abs(model["psnr"] - bicubic["psnr"]) < 1.0
    assert abs(model["ssim"] - bicubic["ssim"]) < 0.05


def test_evaluate_super_resolution_scale_and_crop_options(
    sr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "m.json"
    args = ["evaluate", str(sr_run), "--n", "2", "--image-size", "48", "--out", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text())["image_size"] == 48
    assert main(["evaluate", str(sr_run), "--n", "2", "--scale", "3"]) == 2
    assert "implicit" in capsys.readouterr().err
    assert main(["evaluate", str(sr_run), "--n", "2", "--image-size", "50"]) == 2
    assert "not divisible" in capsys.readouterr().err


def test_evaluate_prints_the_summary_and_writes_per_image_values_to_out(
    sr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    assert main(["evaluate", str(sr_run), "--n", "2", "--image-size", "48"]) == 0
    printed = capsys.readouterr().out
    assert '"per_image"' not in printed and "per_image values not shown" in printed
    out = tmp_path / "m.json"
    assert main(["evaluate", str(sr_run), "--n", "2", "--image-size", "48", "--out", str(out)]) == 0
    assert "(with per_image)" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["per_image"]["model"]["psnr"]) == 2


def test_evaluate_super_resolution_keeps_per_image_values_in_one_order(sr_run: Path) -> None:
    from terradiff.report_format import paired_bootstrap
    from terradiff.sr_evaluate import evaluate_super_resolution

    result = evaluate_super_resolution(sr_run, num_images=6, progress=False, device="cpu")
    per_image = result["per_image"]
    images = per_image["image"]
    assert len(images) == len(set(images)) == result["n"] == 6
    assert all((Path(result["real_images"]) / name).is_file() for name in images)
    for side in ("model", "bicubic"):
        values = per_image[side]
        spectral = {"hf_power_db", "lsd_hf_db"}  # the detail above the LR Nyquist frequency
        perceptual = {"aid_feature_distance"}  # offline: terradiff's shipped AID encoder
        assert (
            set(values)
            == {"psnr", "ssim", "psnr_y", "ssim_y", "mae", "rmse"} | spectral | perceptual
        )
        assert all(len(v) == 6 for v in values.values())
        # the aggregates are the means of the per-image values (PSNR: of per-image PSNRs)
        for key, v in values.items():
            assert sum(v) / 6 == pytest.approx(result[side][key], rel=1e-5), (side, key)
    # bicubic up-sampling holds far less of the real scenes' fine detail than they do
    assert all(v < -5.0 for v in per_image["bicubic"]["hf_power_db"])  # -7 to -23 dB here
    # a second evaluation sees the same images in the same order (the bicubic values match)
    again = evaluate_super_resolution(sr_run, num_images=6, progress=False, device="cpu")
    assert again["per_image"]["image"] == images
    assert again["per_image"]["bicubic"] == per_image["bicubic"]
    diff = paired_bootstrap(per_image["model"]["psnr"], per_image["bicubic"]["psnr"])
    gap = result["model"]["psnr"] - result["bicubic"]["psnr"]
    assert diff["n"] == 6 and diff["mean"] == pytest.approx(gap, abs=1e-4)
    assert diff["low"] <= diff["mean"] <= diff["high"]
