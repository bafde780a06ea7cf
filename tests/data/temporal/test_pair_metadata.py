"""Pair metadata: target/source date fields, years apart, and the split for a ControlNet."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.data.temporal.pair_metadata import PairSchema
from terradiff.errors import ConfigError, DataError
from terradiff.nets.conditioning import Condition, ConditionSpec, MetadataEmbedding


def test_fields_and_hand_computed_values() -> None:
    schema = PairSchema()
    assert schema.fields == (
        "month_sin",
        "month_cos",
        "day_of_year_sin",
        "day_of_year_cos",
        "source_month_sin",
        "source_month_cos",
        "source_day_of_year_sin",
        "source_day_of_year_cos",
        "years_apart",
    )
    # source: a BioMassters month (March, no day); target: 2019-09-04 (day 247); 2.5 years later
    values, present = schema.normalise({"month": 3}, {"date": "2019-09-04"}, 2.5)
    sep, mar, day = 2 * math.pi * 8 / 12, 2 * math.pi * 2 / 12, 2 * math.pi * 246 / 365.25
    expected = [
        math.sin(sep),
        math.cos(sep),
        math.sin(day),
        math.cos(day),
        math.sin(mar),
        math.cos(mar),
        0.0,
        0.0,
        2.5 / 50,
    ]
    assert values.tolist() == pytest.approx(expected, abs=1e-6)
    assert present.tolist() == [True] * 6 + [False, False, True]


def test_unknown_years_apart_and_parts() -> None:
    schema = PairSchema(target=("month", "year"), source=(), years_apart=True)
    values, present = schema.normalise({}, {"year": 2020}, None)
    assert schema.fields == ("month_sin", "month_cos", "year", "years_apart")
    assert present.tolist() == [False, False, True, False]
    assert values[2] == pytest.approx(0.4)
    assert schema.part_fields("target") == ("month_sin", "month_cos", "year")
    assert schema.part(values, "branch").tolist() == [0.0]
    assert PairSchema.from_dict(schema.to_dict()).fields == schema.fields


def test_metadata_conditioning_consumes_the_vector() -> None:
    schema = PairSchema()
    rows = [schema.normalise({"month": m}, {"month": 7}, (7 - m) / 12) for m in (1, 4)]
    values = torch.stack([r[0] for r in rows])
    present = torch.stack([r[1] for r in rows])
    spec = ConditionSpec(metadata_fields=schema.fields)
    embed = MetadataEmbedding(spec.metadata_fields, 32)
    condition = Condition(metadata=values, present=present)
    out = embed(condition.metadata, condition.present)
    assert out.shape == (2, 32) and not torch.equal(out[0], out[1])


def test_errors() -> None:
    with pytest.raises(DataError, match="years_apart"):
        PairSchema().normalise({}, {}, 80.0, where="pair a -> b")
    with pytest.raises(ConfigError, match="needs target fields"):
        PairSchema((), (), years_apart=False)
    with pytest.raises(ConfigError, match="unknown metadata field"):
        PairSchema(target=("mnth",))
