"""`terradiff` train, info, sample and evaluate end to end on the bundled real AID sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.data.raster import read_raster
from terradiff.metrics.feature_stats import FeatureStatistics
from terradiff.metrics.fid import evaluate_generation
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run trained through ``terradiff train`` (shared by the tests of this module)."""
    from tests.conftest import SAMPLE_DATA

    root = tmp_path_factory.mktemp("cli")
    config = tiny_config(root / "run", SAMPLE_DATA, max_steps=4, save_every=2)
    config["evaluate"] = {"batch_size": 8, "kid_subset_size": 4}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", str(path)]) == 0
    return root / "run"


def test_train_writes_checkpoints_and_metrics(trained_run: Path) -> None:
    names = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000004"]
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 4
    assert any((trained_run / "tensorboard").iterdir())


def test_info_describes_the_checkpoint(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "step         4" in out
    assert "['red', 'green', 'blue']" in out
    assert "EMA weights  yes" in out


def test_sample_writes_grid_chain_and_geotiffs(trained_run: Path, tmp_path: Path) -> None:
    args = ["sample", str(trained_run), "--n", "3", "--sampler", "ddim", "--steps", "5"]
    args += ["--out", str(tmp_path / "g.png"), "--chain", str(tmp_path / "c.png")]
    args += ["--tif-dir", str(tmp_path / "tifs")]
    assert main(args) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    assert (tmp_path / "c.png").stat().st_size > 0
    tifs = sorted((tmp_path / "tifs").glob("*.tif"))
    assert len(tifs) == 3
    raster = read_raster(tifs[0])
    assert raster.array.shape == (3, 32, 32)
    assert raster.array.dtype.name == "uint8"


def test_sample_batch_size_draws_in_parts(trained_run: Path, tmp_path: Path) -> None:
    """``--batch-size 2`` of 5 images: five GeoTIFFs and a grid; its first part is the draw of
    ``--n 2`` (one noise stream, the first batch first), and a batch size >= --n is one batch."""
    base = ["sample", str(trained_run), "--steps", "3", "--device", "cpu"]
    assert (
        main(
            [
                *base,
                "--n",
                "5",
                "--batch-size",
                "2",
                "--tif-dir",
                str(tmp_path / "parts"),
                "--out",
                str(tmp_path / "parts.png"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *base,
                "--n",
                "2",
                "--tif-dir",
                str(tmp_path / "two"),
                "--out",
                str(tmp_path / "two.png"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "parts.json").read_text())["batch_size"] == 2
    parts = sorted((tmp_path / "parts").glob("*.tif"))
    two = sorted((tmp_path / "two").glob("*.tif"))
    assert len(parts) == 5 and len(two) == 2
    for a, b in zip(parts[:2], two, strict=True):
        assert np.array_equal(read_raster(a).array, read_raster(b).array)
    assert main([*base, "--n", "2", "--batch-size", "8", "--out", str(tmp_path / "big.png")]) == 0
    assert (tmp_path / "big.png").read_bytes() == (tmp_path / "two.png").read_bytes()


def test_sample_fast_option_keeps_the_samples(trained_run: Path, tmp_path: Path) -> None:
    """``--fast`` changes how the denoiser runs, not the images: on the CPU ``graph`` and
    ``auto`` run the eager net (``sample.fast``, terradiff.nets.fast_forward)."""
    grids = {}
    for fast in ("off", "graph", "auto"):
        out = tmp_path / f"{fast}.png"
        args = ["sample", str(trained_run), "--n", "2", "--steps", "3", "--device", "cpu"]
        assert main([*args, "--fast", fast, "--out", str(out)]) == 0
        grids[fast] = out.read_bytes()
    assert grids["graph"] == grids["off"] == grids["auto"]
    with pytest.raises(SystemExit):
        main(["sample", str(trained_run), "--fast", "turbo"])


def test_sample_precision_option_is_recorded_and_changes_only_rounding(
    trained_run: Path, tmp_path: Path
) -> None:
    """``--precision bf16`` runs the net under bf16 autocast on the CPU; the settings JSON and
    the GeoTIFF tags name the format that ran."""
    images = {}
    for precision, ran in (("fp32", "fp32"), ("bf16", "bf16")):
        out = tmp_path / f"{precision}.png"
        args = ["sample", str(trained_run), "--n", "2", "--steps", "3", "--device", "cpu"]
        args += [
            "--precision",
            precision,
            "--out",
            str(out),
            "--tif-dir",
            str(tmp_path / precision),
        ]
        assert main(args) == 0
        assert json.loads(out.with_suffix(".json").read_text())["inference_precision"] == ran
        tif = sorted((tmp_path / precision).glob("*.tif"))[0]
        with rasterio.open(tif) as src:
            assert src.tags()["TERRADIFF_INFERENCE_PRECISION"] == ran
            images[precision] = src.read().astype(int)
    difference = abs(images["bf16"] - images["fp32"])
    assert 0 < difference.max() <= 64
    with pytest.raises(SystemExit) as refused:
        main(["sample", str(trained_run), "--precision", "fp64"])
    assert refused.value.code == 2


def test_evaluate_reports_fid_and_caches_reference(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERRADIFF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.json"
    args = ["evaluate", str(trained_run), "--n", "8", "--steps", "4", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_fake"] == 8 and metrics["n_real"] == 48
    assert metrics["encoder"] == "aid-cnn" and metrics["step"] == 4
    assert metrics["inference_precision"] == "fp32"  # the default
    cached = sorted((tmp_path / "cache" / "fid").glob("*.safetensors"))
    assert len(cached) == 1
    # A 4-step model draws near-noise: it must score worse than 8 real images of the reference
    # itself do at the same n (FID from 8 images is biased upward, so only a same-n comparison
    # says anything), and its KID must be clearly above zero.
    reference = FeatureStatistics.load(cached[0])
    assert reference.n == 48 and reference.features is not None
    real8 = FeatureStatistics.from_features(
        reference.features[::6], encoder=reference.encoder, fingerprint=reference.fingerprint
    )
    with pytest.warns(UserWarning, match="biased upward"):
        floor = evaluate_generation(real8, reference, kid_subset_size=4)
    print(f"FID: 4-step model {metrics['fid']:.1f}, 8 real images {floor['fid']:.1f}")
    assert metrics["fid"] > 4 * floor["fid"]  # measured 299 vs 35
    assert metrics["kid_mean"] > 2 * metrics["kid_std"] > 0
    assert main(args) == 0  # the second call reads the cached reference statistics
    assert sorted((tmp_path / "cache" / "fid").glob("*.safetensors")) == cached
    assert json.loads(out.read_text())["fid"] == pytest.approx(metrics["fid"])


def test_evaluate_inception_without_weights_names_the_file(
    trained_run: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["evaluate", str(trained_run), "--n", "2", "--encoder", "inception"])
    assert code == 2
    assert "weights" in capsys.readouterr().err


def test_unknown_config_key_exits_2_naming_the_key(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tiny_config(tmp_path / "run", sample_data)
    config["train"]["max_step"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "train.max_step" in err and "max_steps" in err


def test_missing_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_help_lists_every_verb(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("train", "sample", "evaluate", "info"):
        assert verb in out


@pytest.mark.parametrize("saved", [[1, 2], {}, {"config": {}, "bands": [3]}])
def test_info_refuses_a_broken_config_json(
    trained_run: Path, tmp_path: Path, saved: object, capsys: pytest.CaptureFixture
) -> None:
    """A hand-edited ``config.json`` gives a named error and a non-zero exit, not 'task None'."""
    import shutil

    step = tmp_path / "step_00000004"
    shutil.copytree(trained_run / "checkpoints" / "step_00000004", step)
    (step / "config.json").write_text(json.dumps(saved))
    assert main(["info", str(step)]) != 0
    assert "config.json" in capsys.readouterr().err
