"""terradiff.data.distributed: arguments refused before a cluster starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from terradiff.data.distributed import predict_raster_dask
from terradiff.errors import DataError
from tests.conftest import SAMPLE_DATA

NAIP = SAMPLE_DATA / "naip" / "m_4709963_se_14_1_20190904.tif"


def never_called() -> None:
    raise AssertionError("no worker may start")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_workers": 0}, "n_workers (--workers) must be >= 1, got 0"),
        ({"rows_per_task": 0}, "rows_per_task must be >= 1, got 0"),
    ],
)
def test_bad_cluster_settings_are_refused_before_any_worker(
    tmp_path: Path, settings: dict[str, int], message: str
) -> None:
    """A local cluster of 0 workers would wait for one forever (found by running
    ``terradiff super-resolve --dask --workers 0``); both settings fail at once instead."""
    out = tmp_path / "out.tif"
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict_raster_dask(
            NAIP, out, never_called, progress=False, scaling="uint8", tile=32, overlap=8, **settings
        )
    assert list(tmp_path.iterdir()) == []
