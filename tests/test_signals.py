"""SIGTERM/SIGINT: training stops at a saved step and resumes exactly; mapping leaves no files.

The end-to-end tests run ``terradiff`` in a subprocess, send it SIGTERM as ``kill``, ``timeout``
or a batch scheduler would, and check the exit code (128 + 15), the one-line message and what
is left on disk.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from terradiff.checkpoint import list_checkpoints
from terradiff.cli import main
from terradiff.config import config_from_dict
from terradiff.io import host_tag
from terradiff.signals import SignalReceived, deferred_signals, raise_on_signals
from terradiff.tasks import build_task
from terradiff.tasks.generation import GenerationTask
from terradiff.train import Trainer
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]
NAIP = "naip/m_4709963_se_14_1_20190904.tif"  # bundled real NAIP tile (723 x 934 px)


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)


# ---- terradiff.signals -------------------------------------------------------------------


def _send(signum: int) -> None:
    """Send ``signum`` to this process and give its handler the chance to run."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_raise_on_signals_raises_and_restores(signum: int) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(SignalReceived) as caught, raise_on_signals():
        _send(signum)
    assert caught.value.signum == signum
    assert caught.value.exit_code == 128 + signum
    assert caught.value.name == signal.Signals(signum).name
    assert signal.getsignal(signum) is before


def test_deferred_signals_records_the_first_and_raises_on_the_second() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with raise_on_signals(), deferred_signals() as request:
        assert not request
        _send(signal.SIGTERM)  # recorded only
        assert request.signum == signal.SIGTERM and request.name == "SIGTERM"
        with pytest.raises(SignalReceived) as caught:
            _send(signal.SIGINT)  # the user insists
        assert caught.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_are_left_alone_outside_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def worker() -> None:
        with raise_on_signals(), deferred_signals() as request:
            seen.extend([signal.getsignal(signal.SIGTERM), request])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen[0] is before and not seen[1]


def test_a_handler_python_cannot_restore_becomes_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(signal, "getsignal", lambda signum: None)  # installed by C code
    try:
        with raise_on_signals():
            pass
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


# ---- training ----------------------------------------------------------------------------


def _small_config(run_dir: Path, sample_data: Path, **train: object) -> dict:
    """:func:`tiny_config` at 16 px without attention: about 30 ms a step on 2 CPU threads."""
    config = tiny_config(run_dir, sample_data, **train)
    config["data"]["image_size"] = 16
    config["model"].update(base_channels=8, num_groups=4, head_channels=8, attention_resolutions=[])
    return config


def _env() -> dict[str, str]:
    """One torch thread, as the tests that compare weights use in this process (the same float
    sums; and one thread does not stall when other processes share the 2 CPU cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TERRADIFF_DEBUG": ""}


def _start(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "terradiff.cli", *args]
    return subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Poll ``ready`` every 10 ms; fail if the process ends first or after 120 s."""
    deadline = time.monotonic() + 120
    while not ready():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exited with {process.returncode} before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after 120 s")
        time.sleep(0.01)


def test_sigterm_saves_the_step_and_resume_gives_the_same_weights(
    tmp_path: Path,
    sample_data: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one thread here too, as in the subprocess (the in-process CLI takes OMP_NUM_THREADS;
    # conftest sets the count back for the next test)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    settings = {"max_steps": 40, "save_every": 1000}
    run = tmp_path / "stopped"
    config = _small_config(run, sample_data, **settings)
    config_path = tmp_path / "stopped.yaml"
    config_path.write_text(yaml.safe_dump(config))

    process = _start("train", str(config_path))
    metrics = run / "metrics.jsonl"
    _wait_until(lambda: metrics.is_file() and metrics.stat().st_size > 0, process, "a step")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-3000:]
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    found = re.fullmatch(
        r"terradiff train: stopped by SIGTERM at step (\d+) of 40; checkpoint saved to "
        r"(\S+); continue with: terradiff train \S+ --output-dir (\S+) --resume latest",
        lines[0],
    )
    assert found is not None, lines[0]
    step = int(found[1])
    assert 1 <= step < 40
    assert [p.name for p in list_checkpoints(run)] == [f"step_{step:08d}"]
    assert Path(found[2]) == run / "checkpoints" / f"step_{step:08d}"
    assert Path(found[3]) == run
    last = json.loads(metrics.read_text().splitlines()[-1])
    assert last["step"] == step and last["stopped_by"] == "SIGTERM"

    # a temporary left by a killed process goes at the next start, a live process's stays
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run / "checkpoints" / f".step_{step + 1:08d}.tmp-{dead.pid}-{host_tag()}-0badf00d"
    live = run / "checkpoints" / f".step_00000099.tmp-{os.getpid()}-{host_tag()}-0badf00d"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    assert main(["train", str(config_path), "--resume", "latest"]) == 0
    assert "reached train.max_steps=40" in capsys.readouterr().out
    assert not stale.exists() and live.exists()

    AcceleratorState._reset_state(reset_partial_state=True)
    straight_cfg = config_from_dict(_small_config(tmp_path / "straight", sample_data, **settings))
    straight = Trainer(GenerationTask(straight_cfg), tmp_path / "straight").fit()
    assert straight.checkpoint is not None and straight.checkpoint.name == "step_00000040"
    resumed = run / "checkpoints" / "step_00000040"
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(straight.checkpoint / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


# ---- mapping -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x4 regression super-resolution model trained 1 step (its quality does not matter)."""
    from tests.conftest import SAMPLE_DATA

    root = tmp_path_factory.mktemp("sr")
    config = _small_config(root / "run", SAMPLE_DATA, max_steps=1)
    config["task"] = "super_resolution"
    config["sr"] = {"method": "regression", "scale": 4}
    config["data"]["image_size"] = 32
    AcceleratorState._reset_state(reset_partial_state=True)
    Trainer(build_task(config_from_dict(config)), root / "run").fit()
    return root / "run"


def test_sigterm_during_super_resolve_leaves_no_file(
    sr_model: Path, sample_data: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out_dir / f".sr.tif.tmp-{dead.pid}-{host_tag()}-0badf00d"  # from a kill -9
    stale.write_bytes(b"II*\x00")
    out = out_dir / "sr.tif"
    # the whole NAIP tile: 4680 tiles of 16 px, tens of seconds on 2 CPU cores
    process = _start(
        "super-resolve",
        str(sample_data / NAIP),
        str(out),
        "--model",
        str(sr_model),
        "--bands",
        "1,2,3",
        "--tile",
        "16",
        "--overlap",
        "4",
        "--device",
        "cpu",
    )
    own = f".sr.tif.tmp-{process.pid}-"
    _wait_until(
        lambda: any(p.name.startswith(own) for p in out_dir.iterdir()), process, "a temporary"
    )
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    assert err.rstrip().endswith(
        "terradiff super-resolve: stopped by SIGTERM; no partial output was left"
    )
    assert f"removed stale temporary {stale}" in err
    assert list(out_dir.iterdir()) == []


def _nearest_x2(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _nearest_x2_factory() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return _nearest_x2


def test_signal_during_a_dask_run_leaves_no_file(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rasterio
    from distributed import Client, LocalCluster
    from rasterio.windows import Window

    from terradiff.data.distributed import predict_raster_dask
    from terradiff.data.tiling import writer

    source = tmp_path / "naip.tif"
    with rasterio.open(sample_data / NAIP) as src:
        window = Window(300, 200, 96, 96)
        profile = src.profile | {
            "height": 96,
            "width": 96,
            "transform": src.window_transform(window),
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data = src.read(window=window)
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(data)
    out_dir = tmp_path / "maps"
    seen: list[list[str]] = []
    write_rows = writer.GeoTiffWriter.write_rows

    def write_then_signal(self: writer.GeoTiffWriter, *args: object) -> None:
        write_rows(self, *args)  # type: ignore[arg-type]
        seen.append(sorted(p.name for p in out_dir.iterdir()))
        _send(signal.SIGTERM)

    monkeypatch.setattr(writer.GeoTiffWriter, "write_rows", write_then_signal)
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster) as client,
        raise_on_signals(),
        pytest.raises(SignalReceived),
    ):
        predict_raster_dask(
            source,
            out_dir / "x2.tif",
            _nearest_x2_factory,
            client=client,
            rows_per_task=1,
            progress=False,
            scaling="uint8",
            scale=2,
            tile=32,
            overlap=8,
        )
    assert len(seen) == 1 and seen[0][0].startswith(".x2.tif.tmp-")  # it was writing
    assert list(out_dir.iterdir()) == []


def _children_by_rank(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the worker processes ``torch.distributed.run`` started (Linux)."""
    found: dict[int, int] = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            ranks = [e[5:] for e in environ if e.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(pid)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers in /proc")
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(
    tmp_path: Path, sample_data: Path
) -> None:
    run = tmp_path / "ddp"
    config = _small_config(run, sample_data, max_steps=400, save_every=1000, batch_size=4)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", "29533", "-m", "terradiff.cli", "train", str(config_path)]
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = run / "metrics.jsonl"
    _wait_until(lambda: metrics.is_file() and metrics.stat().st_size > 0, process, "a step")
    workers = _children_by_rank(process.pid)
    assert sorted(workers) == [0, 1]
    os.kill(workers[1], signal.SIGTERM)  # rank 1 only: rank 0 learns it from the step's reduce
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    stops = re.findall(r"stopped by SIGTERM at step (\d+) of 400", err)
    assert len(stops) == 2 and stops[0] == stops[1], err[-3000:]
    step = int(stops[0])
    assert [p.name for p in list_checkpoints(run)] == [f"step_{step:08d}"]
    meta = json.loads((run / "checkpoints" / f"step_{step:08d}" / "trainer_state.json").read_text())
    assert meta["step"] == step and meta["num_processes"] == 2
