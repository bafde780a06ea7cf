"""Atomic writes: the final name holds a complete file with ordinary permissions, or nothing new."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from terradiff.io import atomic_directory, atomic_path, atomic_write_text


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
