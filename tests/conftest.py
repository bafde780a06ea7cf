"""Shared pytest fixtures: the location of the real data in ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import terradiff.tasks  # noqa: F401 - registers the built-in methods that configs name

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TERRADIFF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLE_DATA = REPO_ROOT / "data" / "samples"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real imagery of ``../shared/data``; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}; set TERRADIFF_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The small real sample bundled with the repository (``data/samples``)."""
    return SAMPLE_DATA


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    """Tests run as CI does: 2 CPU threads (``TERRADIFF_TEST_THREADS`` overrides), fixed seed."""
    torch.set_num_threads(int(os.environ.get("TERRADIFF_TEST_THREADS", "2")))
    torch.manual_seed(0)
