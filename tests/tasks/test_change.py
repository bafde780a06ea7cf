"""The change task on real LEVIR-CD pairs: config errors, `terradiff train` of both methods,
what a DDPM-CD checkpoint holds (and that it loads without its generator run), and
`terradiff evaluate`'s change metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from terradiff.checkpoint import list_checkpoints, load_checkpoint
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.errors import ConfigError
from terradiff.metrics.change import (
    ChangeScoreHistogram,
    average_precision_of,
    f1_optimal_threshold,
)
from terradiff.tasks import build_task, load_task
from tests.change_helpers import (
    TEST_TILES,
    change_config,
    generator_config,
    levir_copy,
    train,
)

METRICS = ("f1", "iou", "precision", "recall", "overall_accuracy")


@pytest.fixture(scope="module")
def levir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return levir_copy(shared_data / "levir-cd", tmp_path_factory.mktemp("levir"))


@pytest.fixture(scope="module")
def runs(levir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny generator, then 3 steps of each change method, all through `terradiff train`."""
    root = tmp_path_factory.mktemp("change-runs")
    generator = train(generator_config(levir, root / "generator"), root / "generator.yaml")
    ddpm = change_config(
        levir,
        root / "ddpm_cd",
        "ddpm_cd",
        generator=str(generator),
        timesteps=[10, 100],
        hidden=8,
        num_groups=4,
        pos_weight=3.0,
    )
    supervised = change_config(levir, root / "supervised_unet", "supervised_unet")
    return {
        "generator": generator,
        "ddpm_cd": train(ddpm, root / "ddpm_cd.yaml"),
        "supervised_unet": train(supervised, root / "supervised_unet.yaml"),
    }


def _errors(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    return str(caught.value)


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    levir, run = tmp_path / "levir", tmp_path / "run"
    text = _errors(change_config(levir, run, "ddpm_cd"))
    assert "change.generator is required by method 'ddpm_cd'" in text
    assert "configs/change/levir_generator.yaml" in text
    raw = change_config(levir, run, "supervised_unet")
    raw["data"]["crop_size"] = 32
    assert "data.crop_size is written data.image_size" in _errors(raw)
    raw = change_config(levir, run, "supervised_unet", timesteps=[50])
    assert "It is a key of method ddpm_cd, not 'supervised_unet'" in _errors(raw)
    raw = change_config(levir, run, "ddpm_cd", generator="g", hidden=10, num_groups=4)
    assert "change.num_groups=4 must divide change.hidden=10" in _errors(raw)
    raw = change_config(levir, run, "supervised_unet")
    raw["data"]["kind"] = "folder"
    assert "task 'change' reads before/after/label pairs" in _errors(raw)
    raw = change_config(levir, run, "supervised_unet")
    raw["task"] = "generation"
    del raw["change"]
    assert "use data.kind 'levir_cd' with it (and only with it)" in _errors(raw)
    raw["data"] = {"kind": "folder", "root": str(levir), "rule": "order"}
    assert "data.rule chooses the split of data.kind 'levir_cd'" in _errors(raw)
    raw = change_config(levir, run, "supervised_unet")
    raw["data"]["split"] = "train"
    assert "data.split is not read for data.kind 'levir_cd'" in _errors(raw)
    section = config_from_dict(change_config(levir, run, "supervised_unet")).change
    assert section is not None and section.threshold == 0.5 and section.pos_weight is None


def test_a_missing_or_wrong_generator_is_a_clear_error(
    levir: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    def build(**section: Any) -> str:
        raw = change_config(levir, tmp_path / "run", "ddpm_cd", **section)
        with pytest.raises(ConfigError) as caught:
            build_task(config_from_dict(raw))
        return str(caught.value)

    missing = build(generator=str(tmp_path / "no-such-run"))
    assert f"change.generator {tmp_path / 'no-such-run'}" in missing
    assert "not found" in missing and "levir_generator.yaml" in missing
    wrong = build(generator=str(runs["supervised_unet"]))
    assert "is a 'change' model" in wrong and "'generation' model" in wrong
    late = build(generator=str(runs["generator"]), timesteps=[10, 500])
    assert "change.timesteps" in late and "[0, 500)" in late


def test_both_methods_train_through_the_cli(runs: dict[str, Path]) -> None:
    for method in ("ddpm_cd", "supervised_unet"):
        lines = (runs[method] / "metrics.jsonl").read_text().splitlines()
        losses = [json.loads(line)["loss"] for line in lines]
        assert len(losses) == 3 and all(0 < v < 5 for v in losses), (method, losses)
        assert list_checkpoints(runs[method])[-1].name == "step_00000003"
        card = (runs[method] / "README.md").read_text()
        assert "terradiff evaluate RUN --split train" in card  # how to choose the threshold
    saved = json.loads((runs["ddpm_cd"] / "config.json").read_text())
    record = saved["config"]["change"]["generator_config"]
    generator = load_checkpoint(runs["generator"])
    assert record["checkpoint"] == str(generator.path.resolve()) and record["step"] == 2
    assert record["config"]["task"] == "generation"
    # only the head trained: the frozen generator's weights are the generator run's EMA weights
    trained = load_checkpoint(runs["ddpm_cd"]).model_state
    assert generator.ema_state is not None
    for key, value in generator.ema_state.items():
        assert torch.equal(trained[f"features.unet.{key}"], value), key
    heads = [k for k in trained if k.startswith("head.")]
    assert heads and all(k.startswith(("head.", "features.unet.")) for k in trained)


def test_a_ddpm_cd_checkpoint_loads_without_its_generator_run(
    runs: dict[str, Path], levir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["ddpm_cd"], copy)
    step = list_checkpoints(copy)[-1]
    saved = json.loads((step / "config.json").read_text())
    saved["config"]["change"]["generator"] = str(tmp_path / "deleted-generator")
    (step / "config.json").write_text(json.dumps(saved))
    original, _ = load_task(runs["ddpm_cd"])
    loaded, _ = load_task(copy)
    item = original.dataset("test").get(0)
    before, after = item["before"][None, :, :40, :48], item["after"][None, :, :40, :48]
    expected = original.change_probability(original.net, before, after)
    got = loaded.change_probability(loaded.net, before, after)
    assert got.shape == (1, 1, 40, 48) and torch.equal(got, expected)
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


@pytest.mark.parametrize("method", ["ddpm_cd", "supervised_unet"])
def test_evaluate_reports_change_metrics_on_whole_test_tiles(
    method: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "metrics.json"
    argv = ["evaluate", str(runs[method]), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--precision", "fp32"]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == method and result["step"] == 3
    assert result["inference_precision"] == "fp32"
    assert result["tiles"] == sorted(TEST_TILES) and result["windows"] == len(TEST_TILES)
    assert result["pixels"] == len(TEST_TILES) * 256 * 256  # whole tiles, not crops
    tp, fp, fn, tn = (result[k] for k in ("tp", "fp", "fn", "tn"))
    assert tp + fp + fn + tn == result["pixels"] and tp + fn > 0
    assert all(0.0 <= result[k] <= 1.0 for k in METRICS)
    if 2 * tp + fp + fn:
        assert result["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert result["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert result["overall_accuracy"] == pytest.approx((tp + tn) / result["pixels"])
    # the threshold-free score: per-tile probability histograms that add up to the pixels,
    # whose changed-pixel counts are the labels' (tp + fn), and whose AP the result states
    scores = result["per_window_scores"]
    assert len(scores) == len(TEST_TILES)
    assert sum(sum(w["changed"]) for w in scores) == tp + fn
    assert sum(sum(w["changed"]) + sum(w["unchanged"]) for w in scores) == result["pixels"]
    changed = [sum(column) for column in zip(*(w["changed"] for w in scores), strict=True)]
    unchanged = [sum(column) for column in zip(*(w["unchanged"] for w in scores), strict=True)]
    assert result["average_precision"] == pytest.approx(average_precision_of(changed, unchanged))
    assert 0.0 < result["average_precision"] <= 1.0
    printed = capsys.readouterr().out
    assert '"f1"' in printed and '"average_precision"' in printed
    assert '"per_window_scores"' not in printed  # the long lists go to --out only


def test_evaluate_on_the_training_tiles_gives_a_threshold_to_map_with(
    runs: dict[str, Path], levir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--split train`` scores the 4 labelled training tiles whole; its F1-optimal threshold is
    the one the histograms give, and scoring at it reproduces that F1 (to the pixels exactly on
    a bin edge)."""
    out = tmp_path / "train.json"
    run = str(runs["supervised_unet"])
    assert main(["evaluate", run, "--split", "train", "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    training_tiles = sorted(p.stem for p in (levir / "A").iterdir() if p.stem[:4] != "test")
    assert result["split"] == "train" and result["tiles"] == training_tiles
    assert result["pixels"] == len(training_tiles) * 256 * 256
    histogram = sum(
        (ChangeScoreHistogram.from_dict(w) for w in result["per_window_scores"]),
        ChangeScoreHistogram.empty(),
    )
    best, best_f1 = f1_optimal_threshold(histogram)
    assert (result["f1_optimal_threshold"], result["f1_at_optimal_threshold"]) == (best, best_f1)
    assert best_f1 >= histogram.confusion_at(0.5).f1
    printed = capsys.readouterr().out
    assert f"--threshold {best:g}" in printed
    again = tmp_path / "again.json"
    argv = ["evaluate", run, "--split", "train", "--threshold", f"{best:g}", "--out", str(again)]
    assert main([*argv, "--device", "cpu"]) == 0
    rescored = json.loads(again.read_text())
    assert rescored["threshold"] == best
    assert rescored["f1"] == pytest.approx(best_f1, abs=1e-3)
    assert "an upper bound, not a result" not in capsys.readouterr().out
    # on the test tiles the same number is labelled an oracle
    assert main(["evaluate", run, "--device", "cpu"]) == 0
    assert "an upper bound, not a result" in capsys.readouterr().out


@pytest.mark.parametrize("threshold", ["0", "1.5"])
def test_evaluate_refuses_a_threshold_outside_0_1(
    threshold: str, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", str(runs["supervised_unet"]), "--threshold", threshold]
    assert main(argv) == 2
    assert f"--threshold must be a probability in (0, 1), got {float(threshold)}" in (
        capsys.readouterr().err
    )


def test_sample_refuses_a_change_model(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", str(runs["supervised_unet"])]) == 2
    assert "terradiff change --model RUN" in capsys.readouterr().err


def test_the_threshold_hint_says_what_the_threshold_may_be_used_for() -> None:
    from terradiff.commands import threshold_hint

    train = {"f1_optimal_threshold": 0.23, "f1_at_optimal_threshold": 0.8, "split": "train"}
    assert threshold_hint(train).endswith("terradiff change ... --threshold 0.23")
    assert "an upper bound, not a result" in threshold_hint({**train, "split": "test"})
    nothing = {**train, "f1_optimal_threshold": float("nan")}
    assert threshold_hint(nothing).startswith("no changed pixel on these tiles")
