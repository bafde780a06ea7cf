"""The CPU allocator setting of ``terradiff.runtime``."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from terradiff import runtime


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_tuned", None)
    monkeypatch.delenv("TERRADIFF_DEFAULT_MALLOC", raising=False)


@pytest.mark.skipif(
    platform.system() != "Linux" or runtime.preloaded_allocator() is not None,
    reason="glibc without a preloaded allocator only",
)
def test_glibc_accepts_the_setting_once(fresh: None) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "gnu_get_libc_version"):
        pytest.skip("not glibc")
    assert runtime.tune_cpu_allocator() is True
    assert runtime.tune_cpu_allocator() is True  # idempotent
    assert "tuned" in runtime.allocator_description()


def test_environment_switch_keeps_the_default(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRADIFF_DEFAULT_MALLOC", "1")
    assert runtime.tune_cpu_allocator() is False
    assert "default" in runtime.allocator_description() or runtime.preloaded_allocator()
