"""A run's relative data paths are found again from other folders (terradiff.run_paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terradiff.cli import main
from terradiff.run_paths import WORKING_DIR_KEY, rebase_relative_paths, training_folder
from tests.conftest import SAMPLE_DATA


def step_folder(root: Path, output_dir: str) -> Path:
    """``root/<output_dir>/checkpoints/step_00000001`` (created)."""
    path = root / output_dir / "checkpoints" / "step_00000001"
    path.mkdir(parents=True)
    return path


def test_training_folder_prefers_the_recorded_working_dir(tmp_path: Path) -> None:
    step = step_folder(tmp_path, "outputs/run")
    saved = {WORKING_DIR_KEY: "/somewhere/else", "config": {"output_dir": "outputs/run"}}
    assert training_folder(step, saved) == Path("/somewhere/else")


@pytest.mark.parametrize("output_dir", ["outputs/run", "./outputs/run"])
def test_training_folder_is_recovered_from_the_relative_output_dir(
    tmp_path: Path, output_dir: str
) -> None:
    step = step_folder(tmp_path, "outputs/run")
    assert training_folder(step, {"config": {"output_dir": output_dir}}) == tmp_path.resolve()


@pytest.mark.parametrize("output_dir", ["elsewhere/run", "/abs/outputs/run", "../outputs/run", ""])
def test_training_folder_is_unknown_when_the_run_folder_does_not_match(
    tmp_path: Path, output_dir: str
) -> None:
    step = step_folder(tmp_path, "outputs/run")
    assert training_folder(step, {"config": {"output_dir": output_dir}}) is None


def test_only_missing_relative_paths_that_exist_in_the_training_folder_are_rebased(
    tmp_path: Path,
) -> None:
    base, here = tmp_path / "project", tmp_path / "here"
    for folder in (base / "data/aid", base / "data/both", here / "data/both"):
        folder.mkdir(parents=True)
    (base / "labels.csv").write_text("path,class\n")
    raw = {
        "data": {"root": "data/aid"},
        "condition": {"classes": "labels.csv", "metadata_sidecar": "missing.json"},
        "evaluate": {"encoder": "aid-cnn", "encoder_weights": str(base / "data/aid")},
    }
    notes = rebase_relative_paths(raw, base, cwd=here)
    assert raw["data"]["root"] == str(base / "data/aid")
    assert raw["condition"]["classes"] == str(base / "labels.csv")
    assert raw["condition"]["metadata_sidecar"] == "missing.json"  # nowhere: left for the error
    assert raw["evaluate"]["encoder"] == "aid-cnn"  # a built-in name, not a path
    assert len(notes) == 2 and "data.root data/aid ->" in notes[0]
    both = {"data": {"root": "data/both"}, "condition": {"classes": "folders"}}
    assert rebase_relative_paths(both, base, cwd=here) == []  # resolves where the user stands
    assert both == {"data": {"root": "data/both"}, "condition": {"classes": "folders"}}
    assert rebase_relative_paths({"data": {"root": "data/aid"}}, None, cwd=here) == []


@pytest.fixture
def project_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An untrained x4 SR checkpoint saved from ``tmp_path/project`` whose ``data.root`` is the
    relative ``data/aid`` (a link to the bundled real AID sample); returns the run folder."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.super_resolution import SuperResolutionTask
    from tests.tasks.test_super_resolution import sr_config

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data/aid").symlink_to(SAMPLE_DATA / "aid")
    monkeypatch.chdir(project)
    raw = sr_config(Path("outputs/run"), SAMPLE_DATA, "regression")
    raw["data"]["root"] = "data/aid"
    task = SuperResolutionTask(config_from_dict(raw), BandInfo(3, ("r", "g", "b"), "uint8"))
    run = project / "outputs/run"
    step = run / "checkpoints/step_00000001"
    save_checkpoint(step, config=task.checkpoint_config(), model_state=task.net.state_dict())
    assert json.loads((step / "config.json").read_text())[WORKING_DIR_KEY] == str(project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return run


@pytest.mark.parametrize("recorded", [True, False], ids=["working_dir", "from_output_dir"])
def test_sample_from_another_folder_finds_the_runs_data(
    project_run: Path, tmp_path: Path, recorded: bool
) -> None:
    step = project_run / "checkpoints/step_00000001"
    if not recorded:  # a checkpoint written before working_dir was recorded
        saved = json.loads((step / "config.json").read_text())
        del saved[WORKING_DIR_KEY]
        (step / "config.json").write_text(json.dumps(saved))
    assert main(["sample", str(project_run), "--n", "2", "--out", "grid.png"]) == 0
    record = json.loads(Path("grid.json").read_text())
    assert record["data_root"] == str(tmp_path / "project/data/aid")


def test_sample_data_option_replaces_the_runs_data(
    project_run: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["sample", str(project_run), "--n", "2", "--out", "grid.png"]
    assert main([*argv, "--data", str(SAMPLE_DATA / "aid")]) == 0
    assert json.loads(Path("grid.json").read_text())["data_root"] == str(SAMPLE_DATA / "aid")
    capsys.readouterr()
    assert main([*argv, "--overwrite", "--data", "no/such/folder"]) == 2
    assert "dataset folder not found: no/such/folder" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["sample", "evaluate"])
def test_data_of_other_bands_is_refused_by_band_count(
    project_run: Path, shared_data: Path, verb: str, capsys: pytest.CaptureFixture
) -> None:
    """13-band EuroSAT chips given to an RGB super-resolution model failed with 'got a tensor
    of shape (2, 13, 16, 16)'."""
    chips = project_run.parent.parent / "eurosat"  # the run's classes, filled with EuroSAT
    for name, source in (("Forest", "Forest"), ("Beach", "SeaLake"), ("Desert", "AnnualCrop")):
        if not (chips / name).exists():
            chips.mkdir(exist_ok=True)
            (chips / name).symlink_to(shared_data / "eurosat-ms" / "train" / source)
    argv = [verb, str(project_run), "--n", "2", "--data", str(chips)]
    assert main([*argv, "--out", "x.png" if verb == "sample" else "x.json"]) == 2
    err = capsys.readouterr().err
    assert f"images under {chips} have 13 bands, the model reads 3 bands" in err
    assert not Path("x.png").exists() and not Path("x.json").exists()


def test_info_says_where_the_data_is_found(
    project_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["info", str(project_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    data = str(tmp_path / "project/data/aid")
    assert f"data         data/aid -> {data} (relative to the training folder)" in lines
    assert f"trained in   {tmp_path / 'project'}" in lines
    (tmp_path / "project/data/aid").unlink()  # the data is gone: info names the fix
    assert main(["info", str(project_run)]) == 0
    out = capsys.readouterr().out
    assert "data         data/aid (not found from here: give sample/evaluate --data DIR)" in out


def test_config_file_bases_are_its_folder_then_each_folder_above(tmp_path: Path) -> None:
    from terradiff.run_paths import config_file_bases

    config = tmp_path / "project/configs/schedules/cosine.yaml"
    bases = config_file_bases(config)
    assert bases[:3] == [config.parent, config.parent.parent, tmp_path / "project"]
    assert Path("/") not in bases and bases[-1].parent == Path("/")


def test_train_from_another_folder_finds_the_configs_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``cd elsewhere && terradiff train project/configs/c.yaml`` with ``data.root: data/aid``
    written for the project folder failed with 'dataset folder not found'; the data is now found
    above the config file, the run goes where the user stands, and the run records the absolute
    data folder."""
    import yaml

    from tests.helpers import tiny_config

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    (project / "data/aid").symlink_to(SAMPLE_DATA / "aid")
    (project / "configs").mkdir()
    elsewhere.mkdir()
    raw = tiny_config(Path("outputs/run"), SAMPLE_DATA, max_steps=2, save_every=2)
    raw["data"]["root"] = "data/aid"
    (project / "configs/c.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(elsewhere)
    with caplog.at_level("INFO", logger="terradiff.config_loading"):
        assert main(["train", str(project / "configs/c.yaml")]) == 0
    data = str(project / "data/aid")
    assert f"data.root data/aid -> {data} (not found from {elsewhere}" in caplog.text
    saved = json.loads(
        next((elsewhere / "outputs/run/checkpoints").glob("*/config.json")).read_text()
    )
    assert saved["config"]["data"]["root"] == data
    assert saved[WORKING_DIR_KEY] == str(elsewhere)


def test_a_path_that_resolves_from_the_current_folder_wins_over_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from terradiff.config_loading import load_config

    for folder in (tmp_path / "project/data/x", tmp_path / "here/data/x"):
        folder.mkdir(parents=True)
    (tmp_path / "project/c.yaml").write_text("data: {root: data/x}\n")
    monkeypatch.chdir(tmp_path / "here")
    assert load_config(tmp_path / "project/c.yaml").data.root == "data/x"
    assert load_config(tmp_path / "project/c.yaml", ["data.root=data/y"]).data.root == "data/y"
