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


@pytest.fixture
def restore_threads() -> object:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_follow_flag_then_env_then_affinity(
    monkeypatch: pytest.MonkeyPatch, restore_threads: None
) -> None:
    import os

    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.configure_threads(None) == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    expected = runtime.available_cores()
    assert 1 <= expected <= len(os.sched_getaffinity(0))
    assert runtime.configure_threads(None) == expected == torch.get_num_threads()
    assert runtime.configure_threads(1) == 1  # --threads wins over everything


def test_cli_takes_threads_and_refuses_zero(
    capsys: pytest.CaptureFixture, restore_threads: None
) -> None:
    from terradiff.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", "info", "x"])
    assert exit_info.value.code == 2
    assert "--threads: must be >= 1" in capsys.readouterr().err
    assert main(["--threads", "1", "info", "missing-run"]) == 2  # parsed, then a named error
    import os

    assert os.environ.get("OMP_WAIT_POLICY")  # the CLI chose an OpenMP waiting policy


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(runtime.SPIN_COUNT)}),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None}),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
        ({"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "0"}),
    ],
)
def test_bounded_spinning_is_the_default_and_a_users_choice_is_kept(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], expected: dict[str, str | None]
) -> None:
    import os

    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    assert runtime.prefer_bounded_openmp_spinning() is False  # torch is loaded in the tests
    assert {name: os.environ.get(name) for name in expected} == expected


def test_gdal_chatter_stays_out_of_the_error_line(restore_threads: None) -> None:
    """GDAL's INFO messages (logger ``rasterio._err``) show only with ``--verbose``."""
    import logging

    from terradiff.cli import main

    rasterio_log = logging.getLogger("rasterio._err")
    try:
        main(["info", "missing-run"])
        assert not rasterio_log.isEnabledFor(logging.INFO)
        assert rasterio_log.isEnabledFor(logging.WARNING)
        main(["--verbose", "info", "missing-run"])
        assert logging.getLogger("rasterio").level == logging.NOTSET  # the root's level rules
    finally:
        logging.getLogger("rasterio").setLevel(logging.NOTSET)


@pytest.fixture
def restore_cudnn_benchmark() -> object:
    import torch

    before = torch.backends.cudnn.benchmark
    yield None
    torch.backends.cudnn.benchmark = before


def test_cudnn_autotuner_is_switched_on(
    restore_cudnn_benchmark: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.delenv(runtime.CUDNN_BENCHMARK_ENV, raising=False)
    torch.backends.cudnn.benchmark = False
    assert runtime.enable_cudnn_autotuner() is True
    assert torch.backends.cudnn.benchmark is True
    assert runtime.enable_cudnn_autotuner() is True  # idempotent


def test_cudnn_autotuner_opt_out_keeps_the_heuristic(
    restore_cudnn_benchmark: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv(runtime.CUDNN_BENCHMARK_ENV, "0")
    torch.backends.cudnn.benchmark = False
    assert runtime.enable_cudnn_autotuner() is False
    assert torch.backends.cudnn.benchmark is False


def test_the_command_turns_the_autotuner_on(
    restore_cudnn_benchmark: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import torch

    from terradiff import cli

    monkeypatch.delenv(runtime.CUDNN_BENCHMARK_ENV, raising=False)
    torch.backends.cudnn.benchmark = False
    assert cli.main(["train", "no_such_config.yaml"]) == 2  # a refusal still ran the setup
    assert "no_such_config.yaml" in capsys.readouterr().err
    assert torch.backends.cudnn.benchmark is True
