"""The typed band record every checkpoint stores (``config.json`` -> ``"bands"``)."""

from __future__ import annotations

import pytest

from terradiff.data.band_info import BandInfo, TargetInfo
from terradiff.errors import CheckpointError


def test_round_trip_keeps_every_field() -> None:
    target = TargetInfo(("carbon",), "Mg C/ha", {"name": "carbon", "mins": [0.0], "maxs": [300.0]})
    info = BandInfo(4, ("B02", "B03", "B04", "B08"), "sentinel2", target)
    assert BandInfo.from_dict(info.to_dict()) == info
    plain = BandInfo(3, ("red", "green", "blue"), "uint8")
    assert "target" not in plain.to_dict()
    assert BandInfo.from_dict(plain.to_dict()) == plain


def test_reads_the_first_checkpoint_format() -> None:
    """Checkpoints from before the typed record stored the same keys; unnamed bands load."""
    info = BandInfo.from_dict({"count": 2, "names": [], "scaling": None})
    assert info == BandInfo(2, (), "none")
    assert info.name_list is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1, 2, 3], "'bands' must be a mapping"),
        ({}, "'bands.count' is missing"),
        ({"count": "three"}, "'bands.count' is missing or not a number"),
        ({"count": 0}, "'bands.count' is 0"),
        ({"count": 3, "names": ["a", "b"]}, "2 names for 3 bands"),
        ({"count": 1, "scaling": 7}, "'bands.scaling' must be"),
        ({"count": 1, "target": {"names": ["carbon"]}}, "'bands.target' must hold"),
    ],
)
def test_a_bad_record_names_the_file_and_the_fix(record: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as caught:
        BandInfo.from_dict(record, "run/step_1/config.json")
    assert "run/step_1/config.json" in str(caught.value)
    assert "terradiff train" in str(caught.value)
