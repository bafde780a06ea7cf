"""Acquisition dates: parsing date strings and reading dates from file names.

Dates feed the ``year``, ``month`` and ``day_of_year`` metadata keys of
:mod:`terradiff.data.metadata`. File names often carry the date (NAIP
``m_4709963_se_14_1_20190904.tif``, Landsat ``LC08_L1TP_224077_20200518_...``, a yearly
composite ``2015.tif``); :func:`date_from_name` reads it with a regular expression that has named
groups (``year``, ``month``, ``day``, ``day_of_year``) or a preset of :data:`DATE_PATTERNS`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from terradiff.errors import ConfigError, DataError

_DATE_RE = re.compile(r"^\s*(\d{4})(?:([-:/])(\d{1,2})\2(\d{1,2})|()(\d{2})(\d{2}))(?:[T\s].*)?$")

#: Named file-name date patterns (regular expressions with named groups).
DATE_PATTERNS: dict[str, str] = {
    # 8 digits not inside a longer number: NAIP m_4709963_se_14_1_20190904.tif, Landsat
    # LC08_L1TP_224077_20200518_... (the first date, the acquisition).
    "yyyymmdd": r"(?<!\d)(?P<year>(?:19|20)\d{2})(?P<month>[01]\d)(?P<day>[0-3]\d)(?!\d)",
    "yyyy-mm-dd": r"(?<!\d)(?P<year>(?:19|20)\d{2})-(?P<month>[01]\d)-(?P<day>[0-3]\d)(?!\d)",
    # a four-digit year alone: 2015.tif
    "year": r"(?<!\d)(?P<year>(?:19|20)\d{2})(?!\d)",
}
#: The named groups a file-name date pattern may use.
DATE_GROUPS: tuple[str, ...] = ("year", "month", "day", "day_of_year")


def parse_date(value: Any, *, where: str = "metadata") -> dt.date:
    """A date from a :class:`datetime.date`/``datetime`` or a string that starts with one.

    Strings: ``2019-09-04``, ``2019:09:04`` (TIFF), ``2019/09/04``, ``20190904``, each optionally
    followed by a time (``2019-09-04T10:00:00Z``, ``2019:09:04 10:00:00``).

    Raises:
        DataError: another form, or an impossible date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    match = _DATE_RE.match(str(value))
    if match is not None:
        try:
            month, day = (match[3], match[4]) if match[2] else (match[6], match[7])
            return dt.date(int(match[1]), int(month), int(day))
        except ValueError:
            pass
    raise DataError(
        f"{where}: cannot read the date {value!r}; write it as YYYY-MM-DD (e.g. 2019-09-04)"
    )


def date_fields(date: dt.date) -> dict[str, int]:
    """``{"year", "month", "day_of_year"}`` of a date."""
    return {"year": date.year, "month": date.month, "day_of_year": date.timetuple().tm_yday}


def compile_date_pattern(pattern: str) -> re.Pattern[str]:
    """A file-name date pattern: a :data:`DATE_PATTERNS` name or a regular expression.

    The expression needs at least one named group of :data:`DATE_GROUPS` and no others.

    Raises:
        ConfigError: an invalid expression, or one with no or unknown named groups.
    """
    text = DATE_PATTERNS.get(pattern, pattern)
    try:
        compiled = re.compile(text)
    except re.error as err:
        raise ConfigError(
            f"date pattern {pattern!r} is no valid regular expression: {err}"
        ) from err
    groups = set(compiled.groupindex)
    unknown = sorted(groups - set(DATE_GROUPS))
    if unknown or not groups:
        raise ConfigError(
            f"date pattern {pattern!r} has named groups {sorted(groups)}; use (?P<name>...) "
            f"groups among {list(DATE_GROUPS)} (or a preset of {list(DATE_PATTERNS)})"
        )
    return compiled


def date_from_name(name: str | os.PathLike[str], pattern: str | re.Pattern[str]) -> dict[str, int]:
    """The raw date keys (``year``, ``month``, ``day_of_year``) found in a file name.

    The pattern is searched in the file's base name (``re.search``); a name it does not match
    gives ``{}`` (no date). ``day`` gives ``day_of_year`` only with ``year`` and ``month``.

    Args:
        name: A file name or path.
        pattern: A :data:`DATE_PATTERNS` name, a regular expression with named groups of
            :data:`DATE_GROUPS`, or a compiled one.

    Raises:
        ConfigError: a bad pattern (see :func:`compile_date_pattern`).
        DataError: a match that is no valid date (e.g. month 13); the pattern does not fit.
    """
    compiled = pattern if isinstance(pattern, re.Pattern) else compile_date_pattern(pattern)
    base = Path(name).name
    match = compiled.search(base)
    if match is None:
        return {}
    found = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    try:
        if {"year", "month", "day"} <= found.keys():
            date = dt.date(found["year"], found["month"], found["day"])
            found["day_of_year"] = date.timetuple().tm_yday
        elif "month" in found and not 1 <= found["month"] <= 12:
            raise ValueError(f"month {found['month']}")
    except ValueError as err:
        raise DataError(
            f"file name {base!r}: the date pattern {compiled.pattern!r} matched "
            f"{match.group(0)!r}, which is no valid date ({err}); fix the pattern"
        ) from err
    found.pop("day", None)
    return found


__all__ = [
    "DATE_GROUPS",
    "DATE_PATTERNS",
    "compile_date_pattern",
    "date_fields",
    "date_from_name",
    "parse_date",
]
