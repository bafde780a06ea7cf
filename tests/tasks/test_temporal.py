"""The temporal task on real BioMassters pairs: config errors, `terradiff train` of every method,
what a ControlNet checkpoint holds (and that it loads without its generator run), and
`terradiff evaluate`'s model-vs-persistence scores."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from terradiff.checkpoint import load_checkpoint
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.tasks import build_task, load_task
from tests.temporal_helpers import generator_config, temporal_config, train


@pytest.fixture(scope="module")
def biomassters(shared_data: Path) -> Path:
    return shared_data / "biomassters"


@pytest.fixture(scope="module")
def runs(biomassters: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 training steps of each method (and a month-conditioned generator), via the CLI."""
    root = tmp_path_factory.mktemp("temporal-runs")
    out = {"generator": train(generator_config(biomassters, root / "gen"), root / "gen.yaml")}
    sections: dict[str, dict[str, Any]] = {
        "concat": {"drop_prob": 0.2},
        "regression": {},
        "controlnet": {"generator": str(out["generator"]), "target_fields": ["month"]},
    }
    for method, section in sections.items():
        config = temporal_config(biomassters, root / method, method, **section)
        out[method] = train(config, root / f"{method}.yaml")
    return out


def _errors(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, "test.yaml")
    return str(caught.value)


def test_config_errors_name_the_key_and_the_fix(biomassters: Path, tmp_path: Path) -> None:
    base = temporal_config(biomassters, tmp_path / "run", "concat")
    assert config_from_dict(base).temporal.method == "concat"  # type: ignore[union-attr]
    wrong_kind = {**base, "data": {**base["data"], "kind": "folder"}}
    assert "data.kind 'temporal'" in _errors(wrong_kind)
    place = {**base, "temporal": {"method": "concat", "holdout": "place"}}
    assert "temporal.test_places" in _errors(place)
    stray = {**base, "temporal": {"method": "regression", "drop_prob": 0.1}}
    message = _errors(stray)
    assert "temporal.drop_prob: unknown key" in message and "controlnet" in message
    fields = {**base, "temporal": {"method": "concat", "target_fields": ["moon"]}}
    assert "temporal.target_fields" in _errors(fields)
    split = {**base, "data": {**base["data"], "split": "train"}}
    assert "temporal.holdout" in _errors(split) and "data.split" in _errors(split)
    controlnet = temporal_config(biomassters, tmp_path / "run", "controlnet")
    assert "temporal.generator is required" in _errors(controlnet)


def test_wrong_scaling_and_generator_are_refused(
    biomassters: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    raw = temporal_config(biomassters, tmp_path / "run", "regression")
    raw["data"]["scaling"] = "uint8"
    with pytest.raises(ConfigError, match=r"data\.scaling 'uint8'.*uint16"):
        build_task(config_from_dict(raw))
    section = {"generator": str(runs["concat"]), "target_fields": ["month"]}
    raw = temporal_config(biomassters, tmp_path / "run", "controlnet", **section)
    with pytest.raises(ConfigError, match=r"temporal\.generator .* is a 'temporal' model"):
        build_task(config_from_dict(raw))
    raw["temporal"] = {**section, "method": "controlnet", "generator": str(runs["generator"])}
    raw["temporal"]["target_fields"] = ["month", "day_of_year"]
    with pytest.raises(ConfigError, match=r"target date fields .*temporal\.target_fields"):
        build_task(config_from_dict(raw))


def test_every_method_trains_and_records_its_trained_fields(runs: dict[str, Path]) -> None:
    for method in ("concat", "regression", "controlnet"):
        task, ckpt = load_task(runs[method])
        assert ckpt.step == 3 and task.method.name == method
        losses = [loss for _, loss in ckpt.trainer_meta["losses"]]
        assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
        # BioMassters months have no day of year: those embeddings are never trained
        assert "day_of_year_sin" not in (task.temporal.trained_fields or [])
        assert "month_sin" in (task.temporal.trained_fields or [])
        preview = task.preview(task.net, 2, torch.Generator().manual_seed(0))
        assert preview.shape == (6, 10, 32, 32)  # rows of before | after | forecast


def test_controlnet_checkpoint_holds_the_generator_and_loads_without_it(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    generator = load_checkpoint(runs["generator"])
    weights = generator.ema_state or generator.model_state
    ckpt = load_checkpoint(runs["controlnet"])
    record = ckpt.config["config"]["temporal"]["generator_config"]
    assert record["step"] == generator.step
    assert ckpt.config["config"]["diffusion"]["num_timesteps"] == 200  # the generator's
    moved = tmp_path / "gone"
    shutil.move(str(runs["generator"]), moved)
    try:
        task, _ = load_task(runs["controlnet"])
    finally:
        shutil.move(str(moved), runs["generator"])
    locked = task.net.locked.state_dict()
    assert all(torch.equal(locked[k], v) for k, v in weights.items())
    assert not any(p.requires_grad for p in task.net.locked.parameters())


def test_evaluate_scores_model_and_persistence(runs: dict[str, Path], tmp_path: Path) -> None:
    results = {}
    for method in ("concat", "regression"):
        out = tmp_path / f"{method}.json"
        argv = ["evaluate", str(runs[method]), "--n", "6", "--steps", "2", "--out", str(out)]
        assert main(argv) == 0
        results[method] = json.loads(out.read_text())
    for method, result in results.items():
        assert result["method"] == method and result["windows"] == 6
        assert result["visible_bands"] == ["B04", "B03", "B02"]
        for who in ("model", "persistence"):
            assert math.isfinite(result[who]["psnr_visible"])
            assert 0.0 < result[who]["ssim"] <= 1.0 or who == "model"
            assert len(result[who]["psnr_per_band"]) == 10
        diff = result["difference"]["psnr_visible"]
        assert diff["low"] <= diff["mean"] <= diff["high"]
        delta = result["model"]["psnr_visible"] - result["persistence"]["psnr_visible"]
        assert diff["mean"] == pytest.approx(delta, abs=1e-6)
    # the same test windows, so persistence scores the same under both models
    assert results["concat"]["persistence"] == results["regression"]["persistence"]
    assert results["concat"]["steps"] == 2 and results["regression"]["steps"] is None


def test_ensemble_evaluation_scores_the_mean_of_members(runs: dict[str, Path]) -> None:
    from terradiff.temporal_evaluate import evaluate_temporal

    kwargs = {"max_windows": 3, "steps": 2, "progress": False, "resamples": 50}
    one = evaluate_temporal(runs["concat"], precision="bf16", **kwargs)
    four = evaluate_temporal(runs["concat"], members=4, precision="bf16", **kwargs)
    assert one["members"] == 1 and four["members"] == 4 and one["inference_precision"] == "bf16"
    assert four["persistence"] == one["persistence"]  # the same windows
    assert four["model"]["psnr_visible"] != one["model"]["psnr_visible"]  # other forecasts
    with pytest.raises(ConfigError, match="one pass"):
        evaluate_temporal(runs["regression"], members=2, **kwargs)


def test_sample_chain_of_a_temporal_model_is_refused_before_any_file(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A forecast keeps no denoising steps: ``sample --chain`` crashed (exit 1) after writing
    the grid; now exit 2 before anything is written."""
    argv = ["sample", str(runs["concat"]), "--n", "2", "--steps", "2"]
    argv += ["--out", str(tmp_path / "g.png"), "--chain", str(tmp_path / "c.png")]
    assert main(argv) == 2
    assert "'temporal' model, whose sampling keeps no steps" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_evaluate_guidance_reaches_a_diffusion_forecast(runs: dict[str, Path]) -> None:
    """``evaluate --guidance S`` of a temporal model was ignored; it now guides the forecast
    (recorded, and other scores than without it) and is refused for a one-pass model."""
    from terradiff.temporal_evaluate import evaluate_temporal

    kwargs = {"max_windows": 2, "steps": 2, "progress": False, "resamples": 20}
    plain = evaluate_temporal(runs["concat"], **kwargs)
    guided = evaluate_temporal(runs["concat"], guidance=3.0, **kwargs)
    assert plain["guidance"] is None and guided["guidance"] == 3.0
    assert guided["model"]["psnr_visible"] != plain["model"]["psnr_visible"]
    with pytest.raises(ConfigError, match=r"--guidance 3.0 needs a diffusion model; .* one-pass"):
        evaluate_temporal(runs["regression"], guidance=3.0, **kwargs)


def test_untrained_controlnet_is_the_generator(
    biomassters: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    section = {"generator": str(runs["generator"]), "target_fields": ["month"]}
    raw = temporal_config(biomassters, tmp_path / "run", "controlnet", **section)
    task = build_task(config_from_dict(raw))
    generator, _ = load_task(runs["generator"])
    batch = next(iter(torch.utils.data.DataLoader(task.build_dataset(), batch_size=2)))
    target, branch = task.method.split_condition(task.condition(batch))
    x, t = (
        torch.randn(2, 10, 32, 32, generator=torch.Generator().manual_seed(0)),
        torch.full((2,), 50.0),
    )
    with torch.no_grad():
        steered = task.net.eval()(
            x, t, control_image=batch["before"], condition=target, branch_condition=branch
        )
        plain = generator.net(x, t, condition=target)
    assert torch.equal(steered, plain)


def test_change_target_starts_at_persistence_and_models_the_change(
    biomassters: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``temporal.target: change``: an untrained regression net (zero output layer) forecasts
    the before image itself; the concat diffusion model's x_0 is (after - before) / 2, and its
    forecast is the before image plus twice the sample, in [-1, 1]."""
    from terradiff.tasks.temporal.method import from_change, to_change

    before, after = torch.rand(2, 3, 4, 4) * 2 - 1, torch.rand(2, 3, 4, 4) * 2 - 1
    torch.testing.assert_close(from_change(before, to_change(before, after)), after)
    config = temporal_config(biomassters, tmp_path / "r", "regression", target="change")
    task = build_task(config_from_dict(config))
    item = task.dataset("test").get(0)
    batch = {k: item[k][None] for k in ("before", "metadata", "present")}
    forecast = task.method.predict(
        task.net, batch["before"], task.condition(batch), spec=None, generator=None
    )
    assert torch.equal(forecast, batch["before"].clamp(-1, 1))
    config = temporal_config(biomassters, tmp_path / "c", "concat", target="change")
    task = build_task(config_from_dict(config))
    seen: dict[str, torch.Tensor] = {}

    def spy(net: Any, schedule: Any, config: Any, x0: torch.Tensor, *_: Any, **__: Any) -> Any:
        seen["x0"] = x0
        return x0.sum() * 0

    monkeypatch.setattr("terradiff.tasks.temporal.concat.diffusion_loss", spy)
    full = {k: item[k][None] for k in ("before", "after", "valid", "metadata", "present")}
    task.training_loss(task.net, full, torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen["x0"], (full["after"] - full["before"]) / 2)
    drawn = task.method.predict(
        task.net,
        batch["before"],
        task.condition(batch),
        spec=task.sampling_spec(steps=2),
        generator=torch.Generator().manual_seed(0),
    )
    assert drawn.shape == batch["before"].shape and drawn.abs().max() <= 1.0
