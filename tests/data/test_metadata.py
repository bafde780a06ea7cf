"""Tests of terradiff.data.metadata: fields, normalisation, missing values, errors, sidecars."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
import torch

from terradiff.data.folders import path_key
from terradiff.data.metadata import (
    FIELDS,
    RAW_KEYS,
    MetadataSchema,
    read_metadata_sidecar,
    resolve_raw,
)
from terradiff.errors import ConfigError, DataError

ALL = ["gsd", "month", "day_of_year", "lat", "lon", "cloud_cover", "year"]


def _values(schema: MetadataSchema, raw: dict) -> dict[str, float | None]:
    values, present = schema.normalise(raw)
    return {
        f: (float(v) if p else None) for f, v, p in zip(schema.fields, values, present, strict=True)
    }


def test_schema_expands_cyclic_shorthands_in_order() -> None:
    schema = MetadataSchema(["gsd", "month", "lat"])
    assert schema.fields == ("gsd", "month_sin", "month_cos", "lat")
    assert len(schema) == schema.num_fields == 4
    assert schema.sources == ("gsd", "month", "lat")
    assert MetadataSchema(ALL).fields == tuple(FIELDS)  # the canonical order
    assert MetadataSchema.from_dict(schema.to_dict()) == schema
    assert json.loads(json.dumps(schema.to_dict())) == {
        "fields": ["gsd", "month_sin", "month_cos", "lat"]
    }
    assert set(schema.describe()) == set(schema.fields)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"gsd": 10.0}, {"gsd": 0.0}),
        ({"gsd": 0.01}, {"gsd": -1.0}),
        ({"gsd": 10_000}, {"gsd": 1.0}),
        ({"gsd": 1.0}, {"gsd": -1 / 3}),
        ({"gsd": 100.0}, {"gsd": 1 / 3}),
        ({"month": 1}, {"month_sin": 0.0, "month_cos": 1.0}),
        ({"month": 4}, {"month_sin": 1.0, "month_cos": 0.0}),
        ({"month": 7}, {"month_sin": 0.0, "month_cos": -1.0}),
        ({"day_of_year": 1}, {"day_of_year_sin": 0.0, "day_of_year_cos": 1.0}),
        ({"lat": 45.0, "lon": -90.0}, {"lat": 0.5, "lon": -0.5}),
        ({"lat": -90, "lon": 180}, {"lat": -1.0, "lon": 1.0}),
        ({"cloud_cover": 0}, {"cloud_cover": -1.0}),
        ({"cloud_cover": 75}, {"cloud_cover": 0.5}),
        ({"year": 2025}, {"year": 0.5}),
        ({"year": 1950}, {"year": -1.0}),
    ],
)
def test_normalisation_of_each_field(raw: dict, expected: dict) -> None:
    got = _values(MetadataSchema(ALL), raw)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_cyclic_fields_put_december_next_to_january() -> None:
    schema = MetadataSchema(["month", "day_of_year"])
    dec, jan, jun = (schema.normalise({"month": m})[0][:2] for m in (12, 1, 6))
    assert torch.dist(dec, jan) < torch.dist(jun, jan) / 3
    last, first = (schema.normalise({"day_of_year": d})[0][2:] for d in (366, 1))
    assert float(torch.dist(last, first)) < 0.02


def test_every_valid_value_normalises_into_minus_one_one() -> None:
    schema = MetadataSchema(ALL)
    for name in ALL:
        spec = next(f for f in FIELDS.values() if f.source == name)
        steps = [spec.low + (spec.high - spec.low) * k / 20 for k in range(21)]
        if spec.kind == "log":
            steps = [spec.low * (spec.high / spec.low) ** (k / 20) for k in range(21)]
        for raw in steps:
            value = round(raw) if spec.whole else raw
            values, present = schema.normalise({name: value})
            assert present.sum() == (2 if spec.whole else 1)
            assert float(values.abs().max()) <= 1.0 + 1e-6, (name, value)


def test_missing_values_are_zero_and_not_present() -> None:
    schema = MetadataSchema(["gsd", "month", "cloud_cover", "year"])
    values, present = schema.normalise({"gsd": None, "month": "", "cloud_cover": math.nan})
    assert values.dtype == torch.float32 and present.dtype == torch.bool
    assert values.shape == present.shape == (5,)
    assert not present.any() and not values.any()
    values, present = schema.normalise({"year": 2000, "lat": 12.0})  # lat: not in the schema
    assert present.tolist() == [False, False, False, False, True]
    batch, mask = schema.normalise_batch([{"gsd": 10}, {}, {"month": 3}])
    assert batch.shape == mask.shape == (3, 5)
    assert mask.tolist()[0] == [True, False, False, False, False]
    assert mask.tolist()[2] == [False, True, True, False, False]


def test_unknown_keys_list_the_valid_ones() -> None:
    schema = MetadataSchema(["gsd"])
    with pytest.raises(DataError) as err:
        schema.normalise({"gds": 10}, where="scene.tif")
    message = str(err.value)
    assert message.startswith("scene.tif: unknown metadata key 'gds' (did you mean 'gsd'?)")
    assert all(repr(k) in message for k in RAW_KEYS)
    with pytest.raises(DataError, match="unknown metadata key 'latitude'"):
        schema.normalise({"latitude": 10})


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ({"gsd": 0}, r"'gsd' = 0 is outside the valid range: it must be 0.01..10000 m"),
        ({"gsd": 20_000}, r"'gsd' = 20000 is outside .* 0.01..10000 m"),
        ({"month": 13}, r"'month' = 13 .* a whole number in 1..12 \(month of the acq"),
        ({"month": 2.5}, r"'month' = 2.5 .* a whole number in 1..12"),
        ({"day_of_year": 367}, r"'day_of_year' = 367 .* 1..366"),
        ({"lat": 91}, r"'lat' = 91 .* -90..90 deg"),
        ({"lon": -181}, r"'lon' = -181 .* -180..180 deg"),
        ({"cloud_cover": 0.2 * 1000}, r"'cloud_cover' = 200 .* 0..100 %"),
        ({"year": 1900}, r"'year' = 1900 .* 1950..2050"),
        ({"gsd": "ten"}, r"'gsd' must be a number, got 'ten'"),
        ({"gsd": True}, r"'gsd' must be a number"),
        ({"gsd": math.inf}, r"'gsd' is infinite"),
    ],
)
def test_bad_values_name_the_field_and_range(raw: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        MetadataSchema(ALL).normalise(raw, where="chips/a.tif")


def test_bad_schemas_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown metadata field 'month_sine' \(did you mean"):
        MetadataSchema(["month_sine"])
    with pytest.raises(ConfigError, match=r"valid fields are \['gsd', 'month_sin'"):
        MetadataSchema(["altitude"])
    with pytest.raises(ConfigError, match=r"\['month_sin'\] are given twice"):
        MetadataSchema(["month", "month_sin"])
    with pytest.raises(ConfigError, match="at least one field"):
        MetadataSchema([])
    with pytest.raises(ConfigError, match="needs 'fields'"):
        MetadataSchema.from_dict({"names": ["gsd"]})
    assert MetadataSchema("gsd").fields == ("gsd",)


def test_a_date_fills_year_month_and_day_of_year() -> None:
    raw = resolve_raw({"date": "2019-09-04", "gsd": "5"})
    assert raw == {"gsd": 5.0, "year": 2019.0, "month": 9.0, "day_of_year": 247.0}
    assert resolve_raw({"date": dt.date(2020, 12, 31)})["day_of_year"] == 366.0
    assert resolve_raw({"date": "2019-09-04", "month": 9})["month"] == 9.0
    with pytest.raises(DataError, match="'date' 2019-09-04 gives month 9 but month is 10"):
        resolve_raw({"date": "2019-09-04", "month": 10})
    with pytest.raises(DataError, match="cannot read the date '4/9/2019'; write it as YYYY-MM-DD"):
        resolve_raw({"date": "4/9/2019"})


# ---- sidecars ----------------------------------------------------------------------------


def test_csv_sidecar(tmp_path: Path) -> None:
    (tmp_path / "side").mkdir()
    csv = tmp_path / "side" / "meta.csv"
    csv.write_text(
        "path,class,gsd,month,cloud_cover,date\n"
        "../a.tif,Forest,10,6,,\n"
        "/abs/b.tif,,0.5,,12.5,2021-03-01\n"
    )
    table = read_metadata_sidecar(csv)
    assert table == {
        path_key(tmp_path / "a.tif"): {"gsd": 10.0, "month": 6.0},
        path_key("/abs/b.tif"): {"gsd": 0.5, "cloud_cover": 12.5, "date": "2021-03-01"},
    }
    schema = MetadataSchema(["gsd", "month", "cloud_cover", "year"])
    _, present = schema.normalise(table[path_key("/abs/b.tif")])
    assert present.tolist() == [True, True, True, True, True]  # month and year from the date


def test_json_sidecar(tmp_path: Path) -> None:
    side = tmp_path / "meta.json"
    side.write_text(json.dumps({"x/a.tif": {"gsd": 3, "lat": None}, "b.tif": {}}))
    table = read_metadata_sidecar(side)
    assert table == {path_key(tmp_path / "x/a.tif"): {"gsd": 3.0}, path_key(tmp_path / "b.tif"): {}}


def test_sidecar_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("path,gsd,clouds\na.tif,1,2\n")
    with pytest.raises(DataError) as err:
        read_metadata_sidecar(csv)
    assert f"metadata CSV {csv} header: unknown metadata key 'clouds'" in str(err.value)
    assert "valid keys are ['gsd'," in str(err.value)
    csv.write_text("path,gsd\na.tif,1\nb.tif,1 m\n")
    with pytest.raises(DataError, match=r"line 3: metadata 'gsd' must be a number, got '1 m'"):
        read_metadata_sidecar(csv)
    csv.write_text("file,gsd\na.tif,1\n")
    with pytest.raises(DataError, match="needs a 'path' column"):
        read_metadata_sidecar(csv)
    csv.write_text("path,gsd\na.tif,1\n./a.tif,2\n")
    with pytest.raises(DataError, match=r"a\.tif is listed twice"):
        read_metadata_sidecar(csv)
    side = tmp_path / "meta.json"
    side.write_text(json.dumps({"a.tif": {"gsd": 1, "mnth": 2}}))
    with pytest.raises(DataError, match=r"entry 'a.tif': unknown metadata key 'mnth' \(did you"):
        read_metadata_sidecar(side)
    side.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="must be an object"):
        read_metadata_sidecar(side)
    side.write_text("{")
    with pytest.raises(DataError, match="cannot read metadata JSON"):
        read_metadata_sidecar(side)
    with pytest.raises(DataError, match=r"must be a \.csv"):
        read_metadata_sidecar(tmp_path / "meta.yaml")
