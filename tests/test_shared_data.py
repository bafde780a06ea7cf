"""The real-data fixture: a skip on a developer's machine, a failure in CI (issue 14, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import in_ci, require_shared_data


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("True", True), ("1", True), (" true ", True),
     ("false", False), ("0", False), ("", False), ("yes", False)],
)  # fmt: skip
def test_ci_is_true_or_one_in_any_case(value: str, expected: bool) -> None:
    assert in_ci({"CI": value}) is expected


def test_ci_unset_is_not_ci() -> None:
    assert in_ci({}) is False


def test_ci_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert in_ci() is True
    monkeypatch.delenv("CI")
    assert in_ci() is False


def test_present_folder_is_returned_in_and_out_of_ci(tmp_path: Path) -> None:
    assert require_shared_data(tmp_path, {"CI": "true"}) == tmp_path
    assert require_shared_data(tmp_path, {}) == tmp_path


def test_missing_folder_skips_outside_ci(tmp_path: Path) -> None:
    missing = tmp_path / "no-data"
    with pytest.raises(pytest.skip.Exception, match="TERRADIFF_SHARED_DATA") as info:
        require_shared_data(missing, {"CI": "false"})
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_missing_folder_fails_in_ci(tmp_path: Path, value: str) -> None:
    missing = tmp_path / "no-data"
    with pytest.raises(pytest.fail.Exception) as info:
        require_shared_data(missing, {"CI": value})
    message = str(info.value)
    assert str(missing) in message and "TERRADIFF_SHARED_DATA" in message


def test_missing_folder_fails_in_ci_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "True")
    with pytest.raises(pytest.fail.Exception, match="real data not found"):
        require_shared_data(tmp_path / "gone")
