"""Class- and metadata-conditional generation on real data (bundled AID, shared MNIST)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.errors import ConfigError, DataError
from terradiff.tasks import build_task, load_task
from terradiff.train import Trainer
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def conditional_config(run: Path, sample_data: Path, **condition: Any) -> dict[str, Any]:
    raw = tiny_config(run, sample_data, max_steps=3)
    raw["condition"] = {"classes": "folders", **condition}
    return raw


@pytest.fixture(scope="module")
def class_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 steps of a class-conditional UNet on the bundled AID sample (Forest, Beach, Desert)."""
    from tests.conftest import SAMPLE_DATA

    run = tmp_path_factory.mktemp("conditional") / "run"
    task = build_task(config_from_dict(conditional_config(run, SAMPLE_DATA)))
    Trainer(task, run).fit()
    AcceleratorState._reset_state(reset_partial_state=True)
    return run


def test_class_names_round_trip_through_the_checkpoint(class_run: Path) -> None:
    task, _ = load_task(class_run)
    assert task.config.condition.class_names == ["Beach", "Desert", "Forest"]
    assert task.net.config["condition_spec"]["num_classes"] == 3
    condition = task.make_condition(4, class_name="Forest")
    assert condition.labels.tolist() == [2, 2, 2, 2]


def test_wrong_class_and_unknown_metadata_list_the_valid_ones(class_run: Path) -> None:
    task, _ = load_task(class_run)
    with pytest.raises(DataError, match="Forest") as caught:
        task.make_condition(2, class_name="Forrest")
    assert "Beach" in str(caught.value) and "Desert" in str(caught.value)
    with pytest.raises(ConfigError, match="classes only"):
        task.make_condition(2, metadata={"month": 7})


def test_guidance_1_is_the_conditional_sampler_and_0_the_unconditional(class_run: Path) -> None:
    task, _ = load_task(class_run)
    forest = task.make_condition(2, class_name="Forest")
    null = forest.null_like()

    def draw(condition: Any, guidance: float | None) -> torch.Tensor:
        spec = task.sampling_spec("ddim", 4, guidance=guidance)
        gen = torch.Generator().manual_seed(0)
        return task.sample(task.net, 2, generator=gen, spec=spec, condition=condition).sample

    assert torch.equal(draw(forest, 1.0), draw(forest, None))
    assert torch.equal(draw(forest, 0.0), draw(null, None))
    assert not torch.equal(draw(forest, 3.0), draw(forest, None))


def test_guided_samples_through_a_cuda_graph_path_equal_eager(
    class_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--fast graph`` on a conditional model: the guided DDIM-4 run ([condition; null] in one
    batch) is captured once and replayed 4 times, and its samples are the eager ones (the
    capture backend here calls the net on the static inputs, as a graph replay would)."""
    import functools

    import terradiff.tasks.base as task_base
    from terradiff.nets.fast_forward import EagerCaptureBackend, fast_forward

    task, _ = load_task(class_run)
    forest = task.make_condition(2, class_name="Forest")
    spec = task.sampling_spec("ddim", 4, guidance=3.0)
    eager = task.sample(
        task.net, 2, generator=torch.Generator().manual_seed(0), spec=spec, condition=forest
    ).sample
    backend = EagerCaptureBackend()
    monkeypatch.setattr(task_base, "fast_forward", functools.partial(fast_forward, backend=backend))
    task.use_fast("graph")
    graphed = task.sample(
        task.net, 2, generator=torch.Generator().manual_seed(0), spec=spec, condition=forest
    ).sample
    torch.testing.assert_close(graphed, eager, rtol=0, atol=0)
    assert len(backend.captures) == 1 and backend.replays == 4


def test_conditioning_reaches_the_network(class_run: Path) -> None:
    """A probe: the trained net's prediction differs between classes for the same input."""
    task, _ = load_task(class_run)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([100.0])
    outs = [
        task.net(x, t, condition=task.make_condition(1, class_name=c)) for c in task.class_index
    ]
    assert (outs[0] - outs[2]).abs().max() > 0


def test_cli_sample_with_class_and_guidance_records_the_condition(
    class_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "forest.png"
    argv = ["sample", str(class_run), "--n", "2", "--steps", "3", "--class", "Forest"]
    tifs = tmp_path / "tifs"
    assert main([*argv, "--guidance", "2", "--out", str(out), "--tif-dir", str(tifs)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["condition"]["class"] == "Forest"
    assert record["sampling"]["guidance"] == 2.0
    import rasterio

    with rasterio.open(tifs / "sample_0001.tif") as src:  # each GeoTIFF says how it was drawn
        tags = src.tags()
    assert tags["TERRADIFF_CLASS"] == "Forest" and float(tags["TERRADIFF_GUIDANCE"]) == 2.0
    assert (tags["TERRADIFF_STEPS"], tags["TERRADIFF_CHECKPOINT"]) == ("3", str(class_run))
    assert "TERRADIFF_METADATA" not in tags
    from PIL import Image

    with Image.open(out) as grid:  # and so does the PNG grid
        assert grid.text["TERRADIFF_CLASS"] == "Forest" and grid.text["TERRADIFF_SEED"] == "0"
    assert main([*argv, "--class", "Forrest", "--out", str(tmp_path / "x.png")]) == 2


def test_an_unconditional_model_refuses_guidance(tmp_path: Path, sample_data: Path) -> None:
    task = build_task(config_from_dict(tiny_config(tmp_path / "run", sample_data)))
    with pytest.raises(ConfigError, match="unconditional"):
        task.make_condition(2, class_name="Forest")
    with pytest.raises(ConfigError, match="unconditional"):
        task.sample(task.net, 1, spec=task.sampling_spec("ddim", 2, guidance=2.0))


def test_mnist_digits_condition_a_model(tmp_path: Path, shared_data: Path) -> None:
    """data.kind mnist: the 8,000 training digits with their labels as classes."""
    raw = tiny_config(tmp_path / "run", shared_data, max_steps=2)
    raw["data"] = {"kind": "mnist", "root": str(shared_data / "mnist"), "image_size": 32}
    raw["data"]["split"] = "train"
    raw["data"]["scaling"] = "uint8"
    raw["condition"] = {"classes": "folders", "drop_prob": 0.2}
    task = build_task(config_from_dict(raw))
    assert len(task.build_dataset()) == 8000
    assert task.config.condition.class_names == [str(d) for d in range(10)]
    Trainer(task, tmp_path / "run").fit()
    loaded, _ = load_task(tmp_path / "run")
    assert loaded.make_condition(3, class_name="7").labels.tolist() == [7, 7, 7]


def test_metadata_conditioning_with_missing_fields(tmp_path: Path, sample_data: Path) -> None:
    """Metadata from a sidecar, one file without values: its fields use the learned nulls."""
    root = sample_data / "aid"
    files = sorted((root / "Forest").glob("*"))[:2]
    sidecar = tmp_path / "meta.csv"
    lines = ["path,gsd,month", f"{files[0]},0.6,7", f"{files[1]},0.6,"]
    sidecar.write_text("\n".join(lines) + "\n")
    raw = tiny_config(tmp_path / "run", sample_data, max_steps=2)
    raw["data"]["classes"] = ["Forest"]
    raw["condition"] = {"metadata": ["gsd", "month"], "metadata_sidecar": str(sidecar)}
    task = build_task(config_from_dict(raw))
    item = task.build_dataset()[0]
    assert item["present"].shape == item["metadata"].shape
    Trainer(task, tmp_path / "run").fit()
    loaded, _ = load_task(tmp_path / "run")
    condition = loaded.make_condition(2, metadata={"month": 7})  # gsd missing -> its null
    assert condition.present.tolist()[0] == [False, True, True]
    with pytest.raises(DataError, match="gsd"):
        loaded.make_condition(2, metadata={"altitude": 3})


def test_synthesize_writes_a_labelled_folder_a_dataset_reads(
    class_run: Path, tmp_path: Path
) -> None:
    from terradiff.data import ImageFolderDataset

    out = tmp_path / "synth"
    argv = ["synthesize", str(class_run), "--per-class", "3", "--steps", "2", "--out", str(out)]
    options = ["--classes", "Forest,Desert", "--batch-size", "2", "--precision", "bf16"]
    assert main([*argv, *options]) == 0
    dataset = ImageFolderDataset(out, image_size=32, crop="center")
    assert dataset.classes == ["Desert", "Forest"] and len(dataset) == 6
    import rasterio

    with rasterio.open(out / "Desert" / "Desert_0002.tif") as src:
        assert src.tags()["TERRADIFF_CLASS"] == "Desert"
        assert src.tags()["TERRADIFF_INFERENCE_PRECISION"] == "bf16"
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*.tif"))
    assert main([*argv, "--classes", "Forest"]) == 2  # exists: refused without --overwrite
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*.tif")) == before
    # a class named twice, or after a space, is one class (Forest,Forest wrote Forest/ and then
    # refused its own first file)
    again = tmp_path / "again"
    argv = ["synthesize", str(class_run), "--per-class", "1", "--steps", "2", "--out", str(again)]
    assert main([*argv, "--classes", "Forest, Forest,Desert,"]) == 0
    assert sorted(p.name for p in again.rglob("*.tif")) == ["Desert_0000.tif", "Forest_0000.tif"]


def test_evaluate_reports_the_classifiers_accuracy_on_requested_classes(
    class_run: Path, tmp_path: Path
) -> None:
    """The shipped aid-cnn knows the AID classes: it scores the samples of each asked class."""
    from terradiff.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        class_run, num_samples=6, steps=2, guidance=2.0, cache_dir=tmp_path, progress=False
    )
    assert 0.0 <= result["conditional_accuracy"] <= 1.0 and result["chance"] == 1 / 3
    low, high = result["conditional_accuracy_ci95"]
    assert low <= result["conditional_accuracy"] <= high
    assert result["guidance"] == 2.0 and result["classifier"] == "aid-cnn"
