"""``terradiff evaluate`` of carbon models: whole real chips scored beside the naive maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from accelerate.state import AcceleratorState

from terradiff.carbon.metrics import carbon_metrics
from terradiff.carbon_evaluate import evaluate_carbon
from terradiff.checkpoint import save_checkpoint
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.data.raster import read_raster
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.tasks import load_task
from terradiff.tasks.carbon import CarbonTask
from terradiff.tasks.generation import GenerationTask
from terradiff.train import Trainer
from tests.helpers import tiny_config
from tests.tasks.test_carbon import carbon_config

SPLITS = {"train_chips": ["0060c0a5"], "val_chips": ["288afc34"], "test_chips": ["000aa810"]}


def _train(root: Path, run: Path, method: str) -> Path:
    AcceleratorState._reset_state(reset_partial_state=True)
    raw = carbon_config(run, root, method, max_steps=2)
    raw["carbon"].update(SPLITS)
    Trainer(CarbonTask(config_from_dict(raw)), run).fit()
    return run


@pytest.fixture(scope="module")
def runs(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = sample_data / "biomassters"
    base = tmp_path_factory.mktemp("carbon_eval")
    return {m: _train(root, base / m, m) for m in ("regression", "iidm")}


def test_scores_match_the_map_and_the_naive_maps_come_from_the_training_chip(
    runs: dict[str, Path], sample_data: Path
) -> None:
    result = evaluate_carbon(runs["regression"], split="val", resamples=200, progress=False)
    assert result["chips"] == ["288afc34"] and result["split"] == "val"
    assert result["method"] == "regression" and result["sampler"] is None
    # the constant is the training chip's mean over its valid pixels, read independently
    chips = sample_data / "biomassters"
    train_image = read_raster(chips / "0060c0a5" / "image.tif")
    train_target = read_raster(chips / "0060c0a5" / "target.tif")
    valid = train_image.valid_mask & train_target.valid_mask
    assert result["training_means"]["constant"] == pytest.approx(
        train_target.array[0][valid].mean(), rel=1e-6
    )
    # the model's point value is carbon_metrics of its own map of the chip
    task, _ = load_task(runs["regression"], use_ema=True)
    item = task.dataset("val").get(0)
    estimate = task.estimate(task.net, item["image"][None])
    prediction = task.to_physical(estimate.mean)[0, 0].numpy()
    truth = read_raster(chips / "288afc34" / "target.tif").array[0]
    forest = ((item["mask"][0] > 0) & (item["valid"][0] > 0)).numpy()
    expected = carbon_metrics(prediction, truth, forest, task.carbon.max_density)
    assert result["forest_pixels"] == int(forest.sum())
    for key in ("rmse", "mae", "bias", "r2"):
        assert result["model"][key]["mean"] == pytest.approx(expected[key], rel=1e-5)
        assert result["model"][key]["low"] <= result["model"][key]["high"]
    diff = result["model_minus_constant"]["rmse"]
    assert diff["mean"] == pytest.approx(
        result["model"]["rmse"]["mean"] - result["constant"]["rmse"]["mean"]
    )
    assert diff["low"] <= diff["mean"] <= diff["high"]
    assert set(result["reading"]) == {"rmse_vs_constant", "rmse_vs_forest_mean"}
    assert "block_stats" not in result
    kept = evaluate_carbon(
        runs["regression"], split="val", resamples=10, keep_blocks=True, progress=False
    )
    blocks = np.asarray(kept["block_stats"]["model"][0])  # one chip, [blocks, 6]
    assert blocks.shape == (64, 6) and blocks[:, 0].sum() == result["forest_pixels"]
    assert set(kept["block_stats"]) == {"model", "constant", "forest_mean"}


def test_a_diffusion_model_is_sampled_as_asked_and_seeded(runs: dict[str, Path]) -> None:
    kwargs = {"split": "test", "steps": 1, "resamples": 50, "progress": False}
    one = evaluate_carbon(runs["iidm"], seed=1, **kwargs)
    again = evaluate_carbon(runs["iidm"], seed=1, **kwargs)
    other = evaluate_carbon(runs["iidm"], ensemble=2, seed=2, **kwargs)
    assert one["sampler"] == "ddim" and one["steps"] == 1 and one["ensemble"] == 1
    assert one["model"]["rmse"] == again["model"]["rmse"]
    assert other["ensemble"] == 2
    assert one["model"]["rmse"]["mean"] != other["model"]["rmse"]["mean"]
    assert np.isfinite(other["model"]["rmse"]["mean"])


def test_bad_requests_are_named(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'all'.*'val'"):
        evaluate_carbon(runs["regression"], split="all", progress=False)
    with pytest.raises(ConfigError, match=r"--steps.*one pass"):
        evaluate_carbon(runs["regression"], split="val", steps=5, progress=False)
    with pytest.raises(ConfigError, match="--ensemble"):
        evaluate_carbon(runs["regression"], split="val", ensemble=4, progress=False)
    with pytest.raises(ConfigError, match="block 1"):
        evaluate_carbon(runs["regression"], split="val", block=1, progress=False)
    no_val = tmp_path / "no_val"
    AcceleratorState._reset_state(reset_partial_state=True)
    task, _ = load_task(runs["regression"])
    raw = task.config.to_dict()
    raw["carbon"]["val_chips"] = None
    raw["output_dir"] = str(no_val)
    Trainer(CarbonTask(config_from_dict(raw)), no_val).fit()
    with pytest.raises(DataError, match="val split has no chips"):
        evaluate_carbon(no_val, split="val", progress=False)


def test_chips_without_forest_are_named(
    runs: dict[str, Path], sample_data: Path, tmp_path: Path
) -> None:
    import rasterio

    chips = tmp_path / "chips"
    shutil.copytree(sample_data / "biomassters", chips)
    mask = chips / "288afc34" / "mask.tif"
    with rasterio.open(mask) as src:
        profile, zeros = src.profile, np.zeros_like(src.read())
    with rasterio.open(mask, "w", **profile) as dst:
        dst.write(zeros)
    with pytest.raises(DataError, match=r"\['288afc34'\] hold no forest pixel.*mask\.tif"):
        evaluate_carbon(runs["regression"], split="val", data_root=chips, progress=False)


def test_other_checkpoints_are_refused(sample_data: Path, tmp_path: Path) -> None:
    task = GenerationTask(config_from_dict(tiny_config(tmp_path / "gen", sample_data)))
    state = task.net.state_dict()
    save_checkpoint(tmp_path / "gen", config=task.checkpoint_config(), model_state=state)
    with pytest.raises(WrongCheckpointError, match="needs a carbon one"):
        evaluate_carbon(tmp_path / "gen", progress=False)


def test_cli_scores_a_carbon_run_and_refuses_options_it_would_ignore(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "val.json"
    assert main(["evaluate", str(runs["regression"]), "--split", "val", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "minus the constant map" in printed and "1 val chip(s)" in printed
    assert json.loads(out.read_text())["split"] == "val"
    main(["evaluate", str(runs["regression"])])
    assert "choose checkpoints and settings with --split val" in capsys.readouterr().out
    for extra in (["--threshold", "0.3"], ["--split", "all"], ["--steps", "4"]):
        assert main(["evaluate", str(runs["regression"]), *extra]) == 2, extra
    err = capsys.readouterr().err
    assert "drop --threshold" in err and "'all'" in err and "one pass" in err
