"""Super-resolution evaluation with ensembles: prefixes, spread-skill, the mean of the draws."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.sr_evaluate import (
    ensemble_prefixes,
    evaluate_super_resolution,
    scene_indices,
    spread_skill,
)
from tests.helpers import tiny_config


@pytest.mark.parametrize(
    ("members", "sizes"), [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])]
)
def test_ensemble_prefixes_are_powers_of_two_then_the_whole(members: int, sizes: list[int]) -> None:
    assert ensemble_prefixes(members) == sizes


def test_ensemble_prefixes_refuse_an_empty_ensemble() -> None:
    with pytest.raises(ConfigError, match="ensemble must be >= 1"):
        ensemble_prefixes(0)


def test_spread_skill_is_one_when_the_truth_is_one_more_member() -> None:
    """Members and truth drawn from one distribution: the calibrated ratio is 1 (to sampling
    noise: 2 images x 3 bands x 96^2 pixels); a too narrow ensemble gives a ratio above 1."""
    gen = torch.Generator().manual_seed(0)
    centre = torch.randn(2, 3, 96, 96, generator=gen)
    draws = centre + 0.3 * torch.randn(5, 2, 3, 96, 96, generator=gen)  # 4 members + the truth
    members, truth = draws[:4], draws[4]
    calibrated = spread_skill(members, truth, crop_border=4)
    assert all(abs(r - 1.0) < 0.05 for r in calibrated["ratio"])
    assert all(abs(s - 0.3) < 0.02 for s in calibrated["spread"])
    expected_rmse = 0.3 * math.sqrt(1 + 1 / 4)  # the mean's error and the truth's own spread
    assert all(abs(e - expected_rmse) < 0.02 for e in calibrated["rmse"])
    narrow = centre + 0.1 * (members - centre) / 0.3
    assert all(r > 2.0 for r in spread_skill(narrow, truth)["ratio"])


def test_spread_skill_needs_two_members() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        spread_skill(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def _checkpoint(tmp_path: Path, sample_data: Path, method: str, **sr: float) -> Path:
    from terradiff.checkpoint import save_checkpoint
    from terradiff.tasks.super_resolution import SuperResolutionTask

    raw = tiny_config(tmp_path, sample_data)
    raw.update(task="super_resolution", sr={"method": method, "scale": 4, **sr})
    task = SuperResolutionTask(config_from_dict(raw))
    run = tmp_path / "ckpt"
    save_checkpoint(run, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return run


def test_an_ensemble_scores_the_mean_of_its_draws(tmp_path: Path, sample_data: Path) -> None:
    """The first draw of an ensemble is the draw of ``ensemble=1`` (same seed), the model row
    is the mean of all draws, and the curve holds 1, 2 and 3 draws."""
    run = _checkpoint(tmp_path, sample_data, "sr3")
    common = dict(num_images=3, sampler="ddim", steps=2, progress=False, device="cpu")
    single = evaluate_super_resolution(run, **common)
    three = evaluate_super_resolution(run, ensemble=3, **common)
    assert single["ensemble"] == 1 and "ensemble_curve" not in single
    assert three["ensemble"] == 3
    assert list(three["ensemble_curve"]) == ["1", "2", "3"]
    one_draw = three["ensemble_curve"]["1"]["per_image"]["psnr"]
    assert one_draw == single["per_image"]["model"]["psnr"]
    assert three["ensemble_curve"]["3"]["per_image"] == three["per_image"]["model"]
    assert three["per_image"]["model"]["psnr"] != one_draw  # the draws differ
    assert three["per_image"]["bicubic"] == single["per_image"]["bicubic"]
    calibration = three["calibration"]
    assert len(calibration["per_image"]["ratio"]) == 3
    assert calibration["mean_spread"] > 0


def test_an_ensemble_of_a_one_pass_model_is_refused(tmp_path: Path, sample_data: Path) -> None:
    run = _checkpoint(tmp_path, sample_data, "regression")
    with pytest.raises(ConfigError, match=r"one-pass 'regression' model.*drop --ensemble"):
        evaluate_super_resolution(run, num_images=2, progress=False, device="cpu", ensemble=2)


def test_evaluate_ensemble_prints_a_summary_and_writes_every_value(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """``terradiff evaluate --ensemble 2``: the terminal gets the means (no per-image lists at
    any depth), ``--out`` the whole result."""
    import json

    from terradiff.cli import main

    run = _checkpoint(tmp_path, sample_data, "sr3")
    out = tmp_path / "metrics.json"
    argv = ["evaluate", str(run), "--n", "2", "--steps", "2", "--ensemble", "2", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert '"ensemble_curve"' in printed and '"per_image"' not in printed
    written = json.loads(out.read_text())
    assert len(written["ensemble_curve"]["2"]["per_image"]["psnr"]) == 2
    assert len(written["calibration"]["per_image"]["ratio"]) == 2


def test_scene_indices_spread_evenly_and_keep_every_item_of_a_short_split() -> None:
    assert scene_indices(320, 32) == list(range(0, 320, 10))
    assert scene_indices(100, 32) == [3 * i for i in range(32)]  # stride 3: the first 96 items
    assert scene_indices(5, 32) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("scale", [float("nan"), -2.0, 0.5, 1.0])
def test_an_implicit_model_refuses_a_scale_that_is_no_upscaling(
    scale: float, tmp_path: Path, sample_data: Path
) -> None:
    """A model that takes any scale used to accept x nan, x-2 or x0.5 and fail deep inside."""
    run = _checkpoint(tmp_path, sample_data, "implicit")
    with pytest.raises(ConfigError, match=rf"x{scale:g} is not a super-resolution scale; give a"):
        evaluate_super_resolution(run, num_images=2, progress=False, device="cpu", scale=scale)


@pytest.mark.parametrize("option", [["--guidance", "3"], ["--encoder", "inception"]])
def test_evaluate_refuses_generator_options_for_a_super_resolution_model(
    option: list[str], tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """``evaluate --guidance 3`` of an SR model scored without guidance and said nothing."""
    from terradiff.cli import main

    run = _checkpoint(tmp_path, sample_data, "sr3")
    assert main(["evaluate", str(run), "--n", "2", *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} is read when evaluating generation" in err
    assert f"'super_resolution' checkpoint: drop {option[0]}" in err


def test_a_distance_the_model_was_trained_against_comes_with_a_caveat(
    tmp_path: Path, sample_data: Path
) -> None:
    """reports/perceptual_loss: a model trained with the AID distance lowers it by more than it
    adds detail, so its score carries a caveat naming the key; a plain model's has none."""
    common = {"num_images": 2, "progress": False, "device": "cpu"}
    plain = evaluate_super_resolution(
        _checkpoint(tmp_path / "a", sample_data, "regression"), **common
    )
    assert "caveats" not in plain and "aid_feature_distance" in plain["model"]
    trained = _checkpoint(tmp_path / "b", sample_data, "regression", feature_distance_weight=0.01)
    caveats = evaluate_super_resolution(trained, **common)["caveats"]
    assert len(caveats) == 1
    assert caveats[0].startswith("aid_feature_distance was part of this model's training loss")
    assert "sr.feature_distance_weight 0.01" in caveats[0]


def test_a_distance_scored_in_another_encoder_has_no_caveat(
    tmp_path: Path, sample_data: Path
) -> None:
    """``distance_encoder``: a copy of the encoder trained against is that encoder (caveat
    kept); an encoder with other weights scores the model independently (no caveat, another
    value); a missing file is a ConfigError naming it."""
    from safetensors.torch import load_file, save_file

    from terradiff.metrics.aid_encoder import AID_ENCODER_WEIGHTS

    common = {"num_images": 2, "progress": False, "device": "cpu"}
    trained = _checkpoint(tmp_path / "b", sample_data, "regression", feature_distance_weight=0.01)
    copy, other = tmp_path / "copy.safetensors", tmp_path / "other.safetensors"
    shutil.copy(AID_ENCODER_WEIGHTS, copy)
    generator = torch.Generator().manual_seed(0)
    state = load_file(str(AID_ENCODER_WEIGHTS))
    save_file(
        {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in state.items()},
        str(other),
    )
    for weights in (copy, other):
        shutil.copy(AID_ENCODER_WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    same = evaluate_super_resolution(trained, distance_encoder=copy, **common)
    assert len(same["caveats"]) == 1 and same["distance_encoder"] == str(copy)
    apart = evaluate_super_resolution(trained, distance_encoder=other, **common)
    assert "caveats" not in apart and apart["distance_encoder"] == str(other)
    distance = "aid_feature_distance"
    assert apart["model"][distance] != pytest.approx(same["model"][distance])
    assert apart["model"]["psnr"] == same["model"]["psnr"]  # only the distance changes
    with pytest.raises(ConfigError, match=r"--distance-encoder .*missing\.safetensors"):
        evaluate_super_resolution(
            trained, distance_encoder=tmp_path / "missing.safetensors", **common
        )


def test_the_cli_refuses_a_missing_distance_encoder_in_one_line(
    tmp_path: Path, sample_data: Path, capsys: pytest.CaptureFixture
) -> None:
    from terradiff.cli import main

    run = _checkpoint(tmp_path, sample_data, "regression")
    missing = tmp_path / "nowhere.safetensors"
    argv = ["evaluate", str(run), "--n", "2", "--device", "cpu", "--distance-encoder", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--distance-encoder" in err and "nowhere.safetensors" in err
    assert "Traceback" not in err
