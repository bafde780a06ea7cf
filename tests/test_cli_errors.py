"""Every user error of a `terradiff` verb: exit code 2, one stderr line naming the problem and the
fix, no traceback, and nothing written or lost (the outputs are unchanged or absent)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

from terradiff.cli import main
from terradiff.errors import ConfigError
from terradiff.tasks import resolve_device
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (folders as ``<dir>``)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        )
        for p in sorted(folder.rglob("*"))
    }


def refused(argv: list[str], capsys: pytest.CaptureFixture, *parts: str) -> str:
    """Run ``terradiff argv``: exit 2, no traceback, and a stderr line holding all ``parts``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.startswith(f"terradiff {argv[0]}: error: "), err
    lines = [line for line in err.splitlines() if all(part in line for part in parts)]
    assert lines, f"no line of stderr holds {parts}:\n{err}"
    return lines[0]


# --- config and train ---


@pytest.fixture
def tiny_yaml(tmp_path: Path, sample_data: Path) -> Path:
    """A valid tiny config (2 steps into ``tmp_path/run``)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "run", sample_data, max_steps=2)))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run trained through ``terradiff train`` (only read by the tests using it)."""
    from tests.conftest import SAMPLE_DATA

    root = tmp_path_factory.mktemp("errors")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root / "run", SAMPLE_DATA, max_steps=2)))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", str(path)]) == 0
    return root / "run"


BAD_CONFIGS = {
    "non-utf8": (b"data: {root: x}\nname: caf\xe9\n", [], ["not UTF-8", "line 2", "save it as"]),
    "empty": (b"", [], ["is empty", "data: {root: FOLDER}"]),
    "comments-only": (b"# nothing\n", [], ["is empty", "data: {root: FOLDER}"]),
    "top-level-list": (b"- data\n- x\n", ["--output-dir", "{out}"], ["holds a list", "mapping"]),
    "top-level-scalar": (b"hello\n", [], ["single value ('hello')", "mapping of keys to values"]),
    "bad-yaml": (b"data: [unclosed\n", [], ["not valid YAML", "line 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_file_errors_name_the_file(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    content, extra, parts = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    argv = ["train", str(path), *(a.format(out=out) for a in extra)]
    refused(argv, capsys, str(path), *parts)
    assert snapshot(tmp_path) == before and not out.exists()


@pytest.mark.parametrize(
    ("item", "parts"),
    [
        ("train.lr=[", ["--set 'train.lr=['", "not valid YAML", "quote it"]),
        ("train.lr={a: 1", ["--set 'train.lr={a: 1'", "not valid YAML"]),
        ("trainlr", ["--set 'trainlr'", "expected KEY=VALUE", "--set train.max_steps=500"]),
        ("train..lr=1", ["--set 'train..lr=1'", "empty part", "KEY=VALUE"]),
        ("train.lr.x=1", ["--set 'train.lr.x=1'", "'train.lr' is a value", "--set train.lr="]),
    ],
)
def test_bad_set_items_are_named(
    item: str, parts: list[str], tiny_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(tmp_path)
    refused(["train", str(tiny_yaml), "--set", item], capsys, *parts)
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


DEMO_ON_SAMPLE = [  # the README demo's config on the bundled sample (3-band RGB AID scenes)
    "--set",
    f"data.root={REPO / 'data' / 'samples' / 'aid'}",
    "--set",
    "data.max_images=32",
]


@pytest.mark.parametrize(
    ("item", "parts"),
    [  # each passed validation before, then failed after the run folder was made (or later)
        ("data.rgb_bands=[7,8,9]", ["data.rgb_bands [7, 8, 9]", "3 bands", "data.rgb_bands=[0,"]),
        ("data.rgb_bands=[0,1]", ["data.rgb_bands", "3 band indices", "[0, 1, 2]"]),
        ("data.image_size=33", ["data.image_size=33", "multiple of 4", "data.image_size=32 or 36"]),
        (
            "model.channel_mults=[1,2,2,2,2,2,2]",
            ["data.image_size=32", "7 levels", "model.channel_mults=[1, 2, 2, 2, 2, 2]"],
        ),
        (
            "model.attention_resolutions=[5,8]",
            ["model.attention_resolutions [5]", "32, 16, 8 pixels", "attention_resolutions=[8]"],
        ),
        ("train.batch_size=64", ["32 training items", "lower train.batch_size to at most 32"]),
    ],
)
def test_settings_that_do_not_fit_are_refused_before_the_run_folder(
    item: str, parts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "out" / "run"
    argv = ["train", str(REPO / "configs" / "demo_aid.yaml"), "--output-dir", str(run)]
    refused([*argv, *DEMO_ON_SAMPLE, "--set", item], capsys, *parts)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("marker", ["checkpoints", "metrics.jsonl", "config.json"])
def test_a_previous_run_is_not_overwritten_without_overwrite(
    marker: str, tiny_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if marker == "checkpoints":
        (run / "checkpoints" / "step_00000002").mkdir(parents=True)
    else:
        (run / marker).write_text('{"step": 2, "loss": 0.5}\n')
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events").write_bytes(b"old")
    before = snapshot(tmp_path)
    parts = [f"{run} (output_dir / --output-dir) already holds a run", "--overwrite", marker]
    line = refused(["train", str(tiny_yaml), "--output-dir", str(run)], capsys, *parts)
    assert "--resume latest" in line
    assert snapshot(tmp_path) == before


def test_an_ensemble_of_a_generator_is_refused(
    trained_run: Path, capsys: pytest.CaptureFixture
) -> None:
    """``evaluate --ensemble`` scores super-resolution models only: exit 2, naming the run."""
    argv = ["evaluate", str(trained_run), "--ensemble", "2"]
    refused(argv, capsys, "--ensemble", str(trained_run), "'generation'", "drop --ensemble")


@pytest.mark.parametrize(
    ("option", "readers"),
    [
        (["--scale", "2"], "super_resolution models"),
        (["--image-size", "64"], "super_resolution models"),
        (["--lpips-weights", "w.safetensors"], "super_resolution models"),
        (["--distance-encoder", "e.safetensors"], "super_resolution models"),
        (["--split", "train"], "change and carbon models"),
        (["--threshold", "0.3"], "change models"),
    ],
)
def test_evaluate_refuses_options_a_generator_would_ignore(
    option: list[str], readers: str, trained_run: Path, capsys: pytest.CaptureFixture
) -> None:
    """Dropped without a word, such an option let the user believe the scores used it."""
    argv = ["evaluate", str(trained_run), *option]
    refused(argv, capsys, f"{option[0]} is read when evaluating {readers}", "drop " + option[0])


def test_a_trained_run_names_its_last_checkpoint_for_resume(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(trained_run)
    config = trained_run.parent / "tiny.yaml"
    parts = ["--resume latest to continue it (from step_00000002)", "--overwrite"]
    refused(["train", str(config)], capsys, *parts)
    assert snapshot(trained_run) == before


@pytest.mark.parametrize(
    ("setup", "extra", "parts"),
    [
        ("foreign", ["--overwrite"], ["--overwrite", "also holds ['notes.txt']", "move them"]),
        ("run", ["--overwrite", "--resume", "latest"], ["--resume latest", "only one of them"]),
        ("file", [], ["is a file", "choose a folder"]),
    ],
)
def test_overwrite_refuses_what_is_not_a_run(
    setup: str,
    extra: list[str],
    parts: list[str],
    tiny_yaml: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    run = tmp_path / "run"
    if setup == "file":
        run.write_text("not a folder")
    else:
        (run / "checkpoints").mkdir(parents=True)
        (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
        if setup == "foreign":
            (run / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(["train", str(tiny_yaml), "--output-dir", str(run), *extra], capsys, *parts)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_the_previous_run(tiny_yaml: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml)]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    argv = ["train", str(tiny_yaml), "--overwrite", "--set", "train.max_steps=3"]
    assert main([*argv, "--set", "train.save_every=3"]) == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000003"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the old run's lines are gone, not mixed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]  # none left aside


def test_an_overwrite_killed_midway_gives_the_previous_run_back(
    tiny_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``kill -9`` after ``--overwrite`` moved the old run aside, before the new run began: the
    next ``train`` there puts the old run back (and so refuses to start over it)."""
    import subprocess

    from terradiff.io import host_tag

    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml)]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    before = snapshot(run)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    os.replace(run, tmp_path / f".run.old-{gone.pid}-{host_tag()}-0badc0de")
    refused(["train", str(tiny_yaml)], capsys, f"the run folder {run}", "already holds a run")
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]


@pytest.mark.parametrize("device", ["foo", "cuda", "cuda:1", "meta"])
@pytest.mark.parametrize("verb", ["sample", "evaluate"])
def test_unusable_device_is_named_with_the_choices(
    verb: str,
    device: str,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.png"
    before = snapshot(trained_run)
    argv = [verb, str(trained_run), "--n", "2", "--device", device, "--out", str(out)]
    line = refused(argv, capsys, f"--device {device}", "CUDA is not available", "cpu")
    assert "cuda:N, mps or auto" in line
    assert not out.exists() and snapshot(trained_run) == before


def test_missing_gpu_index_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    expected = r"--device cuda:3: this machine has 1 GPU; choose cuda:0"
    with pytest.raises(ConfigError, match=expected):
        resolve_device("cuda:3")
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda")


# --- outputs and inference verbs ---
# Outputs are never destroyed (an input is never an output, an existing file needs --overwrite,
# every output of a run is checked before the first is written) and the output-writing verbs
# (sample, evaluate, super-resolve, estimate) fail with one named line. The checks run before a
# model is loaded, so untrained checkpoints (saved in a blink) stand in for trained ones.


def argparse_refused(argv: list[str], capsys: pytest.CaptureFixture, *parts: str) -> str:
    """Like :func:`refused` for what argparse refuses itself (usage, then one error line)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if all(part in line for part in parts)]
    assert lines and lines[0].startswith(f"terradiff {argv[0]}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def generator_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained generation checkpoint of the tiny config (T = 200) on the bundled AID sample."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.tasks.generation import GenerationTask
    from tests.conftest import SAMPLE_DATA

    root = tmp_path_factory.mktemp("outputs_generation")
    task = GenerationTask(config_from_dict(tiny_config(root / "run", SAMPLE_DATA)))
    path = root / "step_00000000"
    save_checkpoint(path, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return path


@pytest.fixture(scope="module")
def carbon_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 10-band carbon (regression) checkpoint."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.carbon import CarbonTask
    from tests.conftest import SAMPLE_DATA
    from tests.tasks.test_carbon import carbon_config

    root = tmp_path_factory.mktemp("outputs_carbon")
    raw = carbon_config(root / "run", SAMPLE_DATA / "biomassters", "regression")
    bands = BandInfo(10, tuple(f"B{i}" for i in range(10)), "none")
    task = CarbonTask(config_from_dict(raw), band_info=bands)
    path = root / "step_00000000"
    save_checkpoint(path, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return path


@pytest.fixture()
def naip(sample_data: Path, tmp_path: Path) -> Path:
    """A 40x52 window of the bundled real NAIP scene as its own GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    out = tmp_path / "naip.tif"
    with rasterio.open(sample_data / "naip" / "m_4709963_se_14_1_20190904.tif") as src:
        window = Window(400, 300, 52, 40)
        profile = src.profile | {"height": 40, "width": 52, "tiled": False}
        profile |= {"transform": src.window_transform(window)}
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return out


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink"])
def test_super_resolve_refuses_its_input_as_output_even_with_overwrite(
    spelling: str,
    naip: Path,
    generator_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = naip
    if spelling == "symlink":
        out = tmp_path / "link.tif"
        out.symlink_to(naip.name)
    elif spelling == "hardlink":
        out = tmp_path / "hard.tif"
        out.hardlink_to(naip)
    before = snapshot(tmp_path)
    argv = ["super-resolve", str(naip), str(out), "--model", str(generator_checkpoint)]
    parts = [f"the output {out} is the input {naip}", "even with --overwrite", "another output"]
    refused([*argv, "--overwrite"], capsys, *parts)
    # nor may the --summary JSON be the input
    argv[2] = str(tmp_path / "sr.tif")
    refused([*argv, "--summary", str(out)], capsys, f"the output {out} is the input {naip}")
    assert snapshot(tmp_path) == before


def test_estimate_refuses_the_image_or_the_mask_as_output(
    naip: Path, carbon_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mask, image, maps = tmp_path / "mask.tif", tmp_path / "image.tif", tmp_path / "maps"
    mask.write_bytes(naip.read_bytes())
    image.write_bytes(naip.read_bytes())
    (tmp_path / "hard.tif").hardlink_to(mask)
    maps.mkdir()
    second = maps / "naip_carbon.tif"  # where the map of naip.tif would go in --out maps
    second.write_bytes(naip.read_bytes())
    before = snapshot(tmp_path)
    base = ["estimate", "--model", str(carbon_checkpoint), "--overwrite"]
    parts = [f"the output {naip} is the input image {naip}", "even with --overwrite"]
    refused([*base, "--image", str(naip), "--out", str(naip)], capsys, *parts)
    argv = [*base, "--image", str(naip), "--mask", str(mask), "--out", str(tmp_path / "hard.tif")]
    refused(argv, capsys, f"is the mask {mask}", "give another output path")
    argv = [*base, "--image", str(naip), "--image", str(second), "--out", str(maps)]
    refused(argv, capsys, f"the output {second} is the input image {second}")
    argv = [*base, "--image", str(image), "--out", str(maps / "x.tif"), "--summary", str(image)]
    refused(argv, capsys, f"the output {image} is the input image {image}")
    assert snapshot(tmp_path) == before


def test_an_existing_output_names_the_overwrite_flag(
    naip: Path,
    generator_checkpoint: Path,
    carbon_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "exists.tif"
    out.write_bytes(b"keep")
    before = snapshot(tmp_path)
    parts = [f"{out} already exists; pass --overwrite", "to replace it"]
    refused(
        ["super-resolve", str(naip), str(out), "--model", str(generator_checkpoint)], capsys, *parts
    )
    argv = ["estimate", "--model", str(carbon_checkpoint), "--image", str(naip)]
    refused([*argv, "--out", str(out)], capsys, *parts)
    assert snapshot(tmp_path) == before


def test_sample_checks_every_output_before_writing_any(
    generator_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    grid, chain, tifs = tmp_path / "grid.png", tmp_path / "chain.png", tmp_path / "tifs"
    argv = ["sample", str(generator_checkpoint), "--n", "2", "--steps", "2"]
    argv += ["--out", str(grid), "--chain", str(chain), "--tif-dir", str(tifs)]
    grid.write_bytes(b"old grid")
    before = snapshot(tmp_path)
    refused(argv, capsys, f"{grid} already exists; pass --overwrite")
    assert snapshot(tmp_path) == before
    grid.unlink()
    tifs.mkdir()
    (tifs / "sample_0001.tif").write_bytes(b"old tif")
    before = snapshot(tmp_path)
    refused(argv, capsys, f"{tifs / 'sample_0001.tif'} already exists; pass --overwrite")
    assert snapshot(tmp_path) == before  # no grid, no chain, no sample_0000.tif
    refused([*argv[:-4], "--chain", str(grid)], capsys, f"{grid} is given for two outputs")
    assert snapshot(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert grid.stat().st_size > 0 and chain.stat().st_size > 0
    assert sorted(p.name for p in tifs.iterdir()) == ["sample_0000.tif", "sample_0001.tif"]
    assert (tifs / "sample_0001.tif").read_bytes() != b"old tif"


def test_several_images_need_a_folder_out(
    naip: Path, carbon_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    second = tmp_path / "second.tif"
    second.write_bytes(naip.read_bytes())
    out = tmp_path / "maps.tif"
    out.write_bytes(b"a file")
    before = snapshot(tmp_path)
    argv = ["estimate", "--model", str(carbon_checkpoint), "--overwrite"]
    argv += ["--image", str(naip), "--image", str(second), "--out", str(out)]
    parts = [f"--out {out} is a file", "with several --image, --out is the folder", "give a folder"]
    refused(argv, capsys, *parts)
    assert snapshot(tmp_path) == before
    out.unlink()  # not there yet: a folder named maps.tif was made for the maps
    refused(argv, capsys, f"--out {out} names a .tif file", "give a folder path")
    assert not out.exists()


def test_an_output_below_a_file_is_one_line_and_leaves_nothing(
    naip: Path, generator_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    before = snapshot(tmp_path)
    parts = [f"{blocker} is a file, not a folder", "choose another output path"]
    argv = ["super-resolve", str(naip), str(blocker / "x.tif"), "--model"]
    refused([*argv, str(generator_checkpoint)], capsys, *parts)
    refused(["sample", str(generator_checkpoint), "--out", str(blocker / "x.png")], capsys, *parts)
    argv = ["sample", str(generator_checkpoint), "--out", str(tmp_path / "g.png")]
    refused([*argv, "--tif-dir", str(blocker)], capsys, f"--tif-dir {blocker} is a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("option", "parts"),
    [
        (["--n", "0"], ["argument --n: must be >= 1, got 0"]),
        (["--n", "-3"], ["argument --n: must be >= 1, got -3"]),
        (["--steps", "5000"], ["--steps 5000", "more than the 200 timesteps", "between 1 and 200"]),
        (["--steps", "0"], ["argument --steps: must be >= 1, got 0"]),
        (["--sampler", "ddpm", "--steps", "5000"], ["--steps 5000", "between 1 and 200"]),
    ],
)
def test_sample_refuses_bad_counts_and_steps(
    option: list[str],
    parts: list[str],
    generator_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    argv = ["sample", str(generator_checkpoint), *option, "--out", str(tmp_path / "grid.png")]
    if parts[0].startswith("argument"):
        argparse_refused(argv, capsys, *parts)
    else:
        refused(argv, capsys, *parts)
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("verb", ["sample", "synthesize", "evaluate"])
def test_sampling_verbs_refuse_steps_below_one(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--steps -2`` of a one-pass model was ignored; argparse now refuses it before any load."""
    argv = [verb, str(tmp_path / "run"), "--steps", "-2", "--out", str(tmp_path / "o")]
    if verb == "synthesize":
        argv += ["--per-class", "1"]
    argparse_refused(argv, capsys, "argument --steps: must be >= 1, got -2")
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--basis-epochs", "0"], "argument --basis-epochs: must be >= 1, got 0"),
        (["--part", "unet", "--encoder-steps", "-5"], "argument --encoder-steps: must be >= 0"),
        (["--block-steps", "-1"], "argument --block-steps: must be >= 0, got -1"),
        (["--chain-steps", "x"], "argument --chain-steps: expected a whole number >= 0, got 'x'"),
    ],
)
def test_compress_refuses_negative_counts(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Negative step counts were taken as 0 without a word (and a run was still written)."""
    argparse_refused(
        ["compress", str(tmp_path), "--out", str(tmp_path / "kd"), *option], capsys, message
    )
    assert snapshot(tmp_path) == {}


def test_the_library_compress_refuses_negative_counts(tmp_path: Path) -> None:
    from terradiff.compress import compress_carbon_unet, compress_carbon_vgg

    with pytest.raises(ConfigError, match=r"--basis-epochs 0 .*pass --basis-epochs 1 or more"):
        compress_carbon_vgg(tmp_path, tmp_path / "kd", basis_epochs=0)
    with pytest.raises(ConfigError, match=r"--decoder-steps -1 \(decoder_steps from Python\)"):
        compress_carbon_unet(tmp_path, tmp_path / "kd", decoder_steps=-1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--steps", "--workers", "--dask-rows"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_whole_raster_counts_must_be_positive(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--workers 0 --dask`` used to start a Dask cluster with no worker and wait forever;
    ``--steps`` below 1 was ignored by a one-pass model."""
    naip = REPO / "data/samples/naip/m_4709963_se_14_1_20190904.tif"
    argv = ["super-resolve", str(naip), str(tmp_path / "x.tif"), "--model", str(tmp_path)]
    argparse_refused([*argv, "--dask", option, value], capsys, f"argument {option}: must be >= 1")
    assert list(tmp_path.iterdir()) == []


def test_the_library_resolves_steps_with_the_same_errors(generator_checkpoint: Path) -> None:
    from terradiff.tasks import load_task

    task, _ = load_task(generator_checkpoint)
    with pytest.raises(ConfigError, match=r"--steps 5000 .* pass --steps between 1 and 200"):
        task.sampling_spec("ddim", 5000)
    with pytest.raises(ConfigError, match="at least 1 step"):
        task.sampling_spec("dpm_solver", 0)
    spec = task.sampling_spec("ddpm", 7)
    assert spec is not None and spec.steps == 200  # ddpm runs the whole chain


def test_evaluate_needs_two_images(
    generator_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "m.json"
    argv = ["evaluate", str(generator_checkpoint), "--out", str(out), "--n"]
    refused([*argv, "1"], capsys, "--n 1", "need at least 2 generated images", "pass --n 2")
    argparse_refused([*argv, "0"], capsys, "argument --n: must be >= 1, got 0")
    assert snapshot(tmp_path) == {}


def test_sample_refuses_a_carbon_checkpoint(
    carbon_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """(``evaluate`` scores carbon checkpoints: tests/test_carbon_evaluate.py.)"""
    argv = ["sample", str(carbon_checkpoint), "--out", str(tmp_path / "out.png")]
    takes = "sample draws images from 'generation'"
    refused(argv, capsys, "is a 'carbon' checkpoint", takes, "terradiff estimate")
    assert snapshot(tmp_path) == {}


def test_build_dataset_of_carbon_data_names_the_way(sample_data: Path, tmp_path: Path) -> None:
    from terradiff.config import config_from_dict
    from terradiff.errors import DataError
    from terradiff.tasks.base import build_dataset
    from tests.tasks.test_carbon import carbon_config

    config = config_from_dict(carbon_config(tmp_path, sample_data / "biomassters", "regression"))
    with pytest.raises(DataError, match=r"CarbonTask\.dataset\(split\).*`terradiff estimate`"):
        build_dataset(config)


# --- input values against the model's scaling ---
@pytest.fixture(scope="module")
def sr_uint8_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained x4 regression SR checkpoint of 8-bit RGB (scaling uint8)."""
    from terradiff.checkpoint import save_checkpoint
    from terradiff.config import config_from_dict
    from terradiff.data.band_info import BandInfo
    from terradiff.tasks.super_resolution import SuperResolutionTask
    from tests.conftest import SAMPLE_DATA
    from tests.tasks.test_super_resolution import sr_config

    root = tmp_path_factory.mktemp("outputs_sr")
    raw = sr_config(root / "run", SAMPLE_DATA, "regression")
    bands = BandInfo(3, ("red", "green", "blue"), "uint8")
    task = SuperResolutionTask(config_from_dict(raw), band_info=bands)
    path = root / "step_00000000"
    save_checkpoint(path, config=task.checkpoint_config(), model_state=task.net.state_dict())
    return path


def test_digital_numbers_for_an_8_bit_model_are_refused_then_mapped(
    sr_uint8_checkpoint: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A real 16-bit EuroSAT chip given to an 8-bit model: refused by band, mapped when the
    user says how its values scale (``--input-scaling``)."""
    chip = next(iter(sorted((shared_data / "eurosat-ms").rglob("Forest_*.tif"))))
    out = tmp_path / "sr.tif"
    argv = ["super-resolve", str(chip), str(out), "--model", str(sr_uint8_checkpoint)]
    argv += ["--bands", "4,3,2", "--tile", "16", "--overlap", "4"]
    refused(argv, capsys, "band 1", "above 255", "uint16", "--input-scaling")
    assert not out.exists() and snapshot(tmp_path) == {}
    refused([*argv, "--input-scaling", "{bad"], capsys, "--input-scaling", "not valid JSON")
    assert main([*argv, "--input-scaling", "sentinel2"]) == 0
    assert out.is_file()


def test_an_input_that_is_nodata_everywhere_is_refused(
    sr_uint8_checkpoint: Path, naip: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import numpy as np
    import rasterio

    with rasterio.open(naip, "r+") as dst:  # the file's nodata is 0
        dst.write(np.zeros((dst.count, dst.height, dst.width), dtype=np.uint8))
    out = tmp_path / "out" / "sr.tif"
    argv = ["super-resolve", str(naip), str(out), "--model", str(sr_uint8_checkpoint)]
    refused([*argv, "--bands", "1,2,3"], capsys, str(naip), "no valid pixel", "nothing to map")
    assert not out.parent.exists() or snapshot(out.parent) == {}


@pytest.mark.parametrize(
    "content", [b"", b"II*\x00" + bytes(range(256)) * 2], ids=["empty", "corrupt"]
)
def test_an_unreadable_input_raster_is_one_line_first(
    content: bytes, carbon_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """GDAL's own messages must not come before terradiff's error line (``refused`` checks that
    stderr starts with it), and nothing is written."""
    image = tmp_path / "broken.tif"
    image.write_bytes(content)
    out = tmp_path / "maps"
    before = snapshot(tmp_path)
    argv = ["estimate", "--model", str(carbon_checkpoint), "--image", str(image), "--out", str(out)]
    refused(argv, capsys, str(image))
    assert snapshot(tmp_path) == before and not out.exists()


def test_a_distilled_student_without_a_teacher_is_refused_before_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``configs/sr/aid_light_x4.yaml`` trains alone; asking it to distil needs ``sr.teacher``."""
    run = tmp_path / "out" / "run"
    argv = ["train", str(REPO / "configs" / "sr" / "aid_light_x4.yaml"), "--output-dir", str(run)]
    refused([*argv, "--set", "sr.distill=mse"], capsys, "sr.teacher", "sr.distill: none")
    assert not (tmp_path / "out").exists()


def test_sample_chain_of_a_one_pass_model_is_refused_before_any_file(
    sr_uint8_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``sample --chain`` of a one-pass model wrote the grid, then crashed (exit 1) drawing a
    chain that does not exist."""
    argv = ["sample", str(sr_uint8_checkpoint), "--n", "2", "--out", str(tmp_path / "g.png")]
    refused([*argv, "--chain", str(tmp_path / "c.png")], capsys, "--chain", "one-pass model")
    assert snapshot(tmp_path) == {}


def test_a_missing_encoder_file_is_named(
    generator_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A FileNotFoundError raised with terradiff's own message (no ``filename``) printed
    ``error: : no such file or folder; check the path``, without the file."""
    missing = tmp_path / "nope.safetensors"
    argv = ["evaluate", str(generator_checkpoint), "--n", "2", "--encoder", str(missing)]
    refused(argv, capsys, f"encoder weights {missing} not found")


def test_sample_batch_size_of_a_data_driven_model_is_refused_before_any_file(
    sr_uint8_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--batch-size`` splits a generation model's draws; a super-resolution preview takes its
    --n images from its data, so the option is refused rather than ignored."""
    argv = ["sample", str(sr_uint8_checkpoint), "--n", "3", "--out", str(tmp_path / "g.png")]
    refused([*argv, "--batch-size", "2"], capsys, "--batch-size", "'super_resolution' model")
    assert snapshot(tmp_path) == {}
