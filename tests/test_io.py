"""Atomic writes: the final name holds a complete file with ordinary permissions, or nothing new;
temporaries name their process, and those of ended processes are removed (never a live one's)."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from terradiff.io import (
    atomic_directory,
    atomic_path,
    atomic_write_text,
    host_tag,
    remove_stale_temporaries,
    temporary_name,
)
from terradiff.signals import SignalReceived, raise_on_signals


def test_failure_leaves_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_directory_replaced_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "w").write_text("2")
        raise RuntimeError("killed")
    assert (target / "w").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


# ---- temporaries that name their process; stale ones of killed processes -------------------


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_temporary_names_carry_process_and_host(tmp_path: Path) -> None:
    seen: list[str] = []
    with atomic_path(tmp_path / "a.json") as tmp:
        seen.append(tmp.name)
        tmp.write_text("{}")
    with atomic_directory(tmp_path / "step_00000001") as tmp:
        seen.append(tmp.name)
    prefix = f"-{os.getpid()}-{host_tag()}-"
    assert seen[0].startswith(f".a.json.tmp{prefix}") and seen[0].endswith(".json")
    assert seen[1].startswith(f".step_00000001.tmp{prefix}")
    assert temporary_name(tmp_path / "x.tif", "old").name.startswith(f".x.tif.old{prefix}")
    assert _hidden(tmp_path) == []


def test_only_temporaries_of_ended_processes_are_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead, tag = _dead_pid(), host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale_dir = tmp_path / f".step_00000004.tmp-{dead}-{tag}-0badf00d"
        stale_dir.mkdir()
        (stale_dir / "model.safetensors").write_bytes(b"half")
        stale = [
            stale_dir,
            tmp_path / f".map.tif.tmp-{dead}-{tag}-12ab34cd",
            tmp_path / f".map.tif.tmp-{dead}-{tag}-12ab34cd.aux.xml",  # GDAL's side file
            tmp_path / f".a.json.tmp-{dead}-{tag}-5e6f7a8b.json",
        ]
        kept = [
            tmp_path / f".b.tif.tmp-{os.getpid()}-{tag}-00000001",  # this process
            tmp_path / f".c.tif.tmp-{sleeper.pid}-{tag}-00000002",  # another live process
            tmp_path / f".d.tif.tmp-{dead}-0000beef-00000003",  # another host's
            tmp_path / ".e.tif.tmp-k3j4h5g6",  # made before names carried a process id
            tmp_path / ".hidden_config",
            tmp_path / "map.tif",
        ]
        for path in [*stale[1:], *kept]:
            path.write_bytes(b"x")
        with caplog.at_level(logging.INFO, logger="terradiff.io"):
            removed = remove_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted(stale)
        assert sorted(tmp_path.iterdir()) == sorted(kept)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == len(stale)
        assert all(f"left by process {dead} that no longer runs" in line for line in lines)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_stale_old_folder_is_put_back_when_its_replacement_never_came(tmp_path: Path) -> None:
    dead, tag = _dead_pid(), host_tag()
    old = tmp_path / f".step_00000006.old-{dead}-{tag}-0badf00d"  # killed between the 2 renames
    old.mkdir()
    (old / "w").write_text("complete")
    done = tmp_path / "step_00000003"
    done.mkdir()
    done_old = tmp_path / f".step_00000003.old-{dead}-{tag}-0badf00e"  # killed after both
    done_old.mkdir()
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([old, done_old])
    assert (tmp_path / "step_00000006" / "w").read_text() == "complete"
    assert _hidden(tmp_path) == []


def test_interrupted_replacement_restores_previous_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "w").write_text("1")
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def second_move_fails(src: str | Path, dst: str | Path) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError("interrupted")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_move_fails)
    with pytest.raises(OSError, match="interrupted"), atomic_directory(target) as tmp:
        (tmp / "w").write_text("2")
    monkeypatch.undo()
    assert calls[0][0] == "ckpt" and ".old-" in calls[0][1]  # the previous folder moved aside
    assert (target / "w").read_text() == "1"  # ... and back
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_signal_inside_an_atomic_write_leaves_nothing(tmp_path: Path, kind: str) -> None:
    target = tmp_path / ("a.txt" if kind == "file" else "ckpt")
    writer = atomic_path if kind == "file" else atomic_directory
    with pytest.raises(SignalReceived), raise_on_signals(), writer(target) as tmp:
        (tmp if kind == "file" else tmp / "w").write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert list(tmp_path.iterdir()) == []


def test_cleaning_is_best_effort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / f".map.tif.tmp-{_dead_pid()}-{host_tag()}-12ab34cd"
    stale.write_bytes(b"x")

    def refused(entry: Path) -> None:
        raise PermissionError(13, "Permission denied", str(entry))

    monkeypatch.setattr("terradiff.io._remove", refused)
    assert remove_stale_temporaries(tmp_path) == []  # the write that asked goes on regardless
    assert stale.exists()
    assert remove_stale_temporaries(tmp_path / "map.tif") == []  # not a folder
