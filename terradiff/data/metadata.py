"""Numeric image metadata (DiffusionSat-style conditioning): fields, normalisation, sidecars.

The network embeds each metadata *field* as one scalar in about ``[-1, 1]`` (a sinusoidal
embedding and an MLP, with a learned "null" per missing field). This module turns raw values in
physical units into those scalars. The fields (columns of ``metadata [B, F]``), each from one raw
key, and their normalisation:

* ``gsd`` from ``gsd``, ground sample distance in metres, 0.01..10,000 m, on a log scale:
  ``(log10(gsd) - 1) / 3`` (0.01 m -> -1, 1 m -> -1/3, 10 m -> 0, 100 m -> 1/3, 10 km -> 1).
* ``month_sin``, ``month_cos`` from ``month`` (whole, 1..12, 1 = January): ``sin`` and ``cos`` of
  ``2 pi (month - 1) / 12``.
* ``day_of_year_sin``, ``day_of_year_cos`` from ``day_of_year`` (whole, 1..366): ``sin`` and
  ``cos`` of ``2 pi (day_of_year - 1) / 365.25``.
* ``lat`` from ``lat``, latitude of the image centre in degrees (WGS84), -90..90: ``lat / 90``.
* ``lon`` from ``lon``, longitude of the centre in degrees (WGS84), -180..180: ``lon / 180``
  (linear, so the two sides of the antimeridian are far apart; rare in training sets).
* ``cloud_cover`` from ``cloud_cover``, percent of the image, 0..100: ``cloud_cover / 50 - 1``.
* ``year`` from ``year`` (fractions allowed), 1950..2050: ``(year - 2000) / 50``.

A cyclic quantity is two fields (its sine and cosine) because a single scalar would put
December and January at opposite ends; the shorthands ``"month"`` and ``"day_of_year"`` in a
:class:`MetadataSchema` stand for both. A raw key ``date`` (``"2019-09-04"``, a
:class:`datetime.date`) fills ``year``, ``month`` and ``day_of_year``.

Values outside the raw ranges are errors (not clipped): they are almost always a unit mistake
(a GSD in km, a percentage as a fraction...). A missing value (key absent, None, NaN, ``""``) is
allowed: its field is 0 with ``present`` False, and the network uses its null embedding.

Where raw values come from: a sidecar table (:func:`read_metadata_sidecar`: CSV
``path,gsd,month,...`` or JSON ``{path: {field: value}}``), a file-name date pattern
(:func:`terradiff.data.dates.date_from_name`), or the GeoTIFF itself
(:mod:`terradiff.data.scene_metadata`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from terradiff.data.dates import date_fields, parse_date
from terradiff.data.folders import path_key
from terradiff.data.labels import did_you_mean, read_csv_rows
from terradiff.errors import ConfigError, DataError

_MAX_LISTED = 3


@dataclass(frozen=True)
class MetadataField:
    """One scalar of the metadata vector and how it is computed from its raw key.

    Attributes:
        name: the field name (a column of ``metadata [B, F]``).
        source: the raw key it is computed from.
        low, high: the valid raw range (inclusive), in ``unit``.
        unit: the raw unit, for messages.
        kind: ``"linear"`` ([low, high] -> [-1, 1]), ``"log"`` (the same on log10), ``"sin"`` /
            ``"cos"`` (of ``2 pi (x - low) / period``).
        period: the cycle length of ``"sin"``/``"cos"`` fields.
        whole: the raw value must be a whole number (month, day of year).
        description: what the raw value is.
    """

    name: str
    source: str
    low: float
    high: float
    unit: str
    kind: str
    description: str
    period: float = 0.0
    whole: bool = False

    def normalise(self, value: float) -> float:
        """The field's scalar for a raw value already checked against ``low``/``high``."""
        if self.kind == "log":
            lo, hi = math.log10(self.low), math.log10(self.high)
            return 2.0 * (math.log10(value) - lo) / (hi - lo) - 1.0
        if self.kind == "linear":
            return 2.0 * (value - self.low) / (self.high - self.low) - 1.0
        angle = 2.0 * math.pi * (value - self.low) / self.period
        return math.sin(angle) if self.kind == "sin" else math.cos(angle)


def _cyclic(name: str, low: float, high: float, period: float, text: str) -> list[MetadataField]:
    return [
        MetadataField(f"{name}_{k}", name, low, high, "", k, text, period=period, whole=True)
        for k in ("sin", "cos")
    ]


#: Every metadata field, in the canonical order.
FIELDS: dict[str, MetadataField] = {
    f.name: f
    for f in [
        MetadataField("gsd", "gsd", 0.01, 10_000.0, "m", "log", "ground sample distance"),
        *_cyclic("month", 1, 12, 12.0, "month of the acquisition, 1 = January"),
        *_cyclic("day_of_year", 1, 366, 365.25, "day of the year of the acquisition, 1 = Jan 1"),
        MetadataField("lat", "lat", -90.0, 90.0, "deg", "linear", "latitude of the centre"),
        MetadataField("lon", "lon", -180.0, 180.0, "deg", "linear", "longitude of the centre"),
        MetadataField("cloud_cover", "cloud_cover", 0.0, 100.0, "%", "linear", "cloud cover"),
        MetadataField("year", "year", 1950.0, 2050.0, "", "linear", "year of the acquisition"),
    ]
}
#: Names that stand for several fields in a :class:`MetadataSchema`.
SHORTHANDS: dict[str, tuple[str, ...]] = {
    "month": ("month_sin", "month_cos"),
    "day_of_year": ("day_of_year_sin", "day_of_year_cos"),
}
#: The raw keys a metadata dict or sidecar may hold (``date`` fills year, month, day_of_year).
RAW_KEYS: tuple[str, ...] = (
    *dict.fromkeys(f.source for f in FIELDS.values()),
    "date",
)
#: Sidecar columns that are not metadata and are skipped (a CSV may carry classes too).
IGNORED_KEYS: tuple[str, ...] = ("path", "class", "label")


def is_missing(value: Any) -> bool:
    """Whether a raw value means "missing": None, NaN or an empty/blank string."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def check_keys(keys: Iterable[str], *, where: str = "metadata") -> None:
    """Fail on keys that are no raw metadata key (``path``/``class``/``label`` are allowed).

    Raises:
        DataError: the first unknown key, with a suggestion and the valid keys.
    """
    for key in keys:
        if key not in RAW_KEYS and key not in IGNORED_KEYS:
            raise DataError(
                f"{where}: unknown metadata key {key!r}{did_you_mean(key, RAW_KEYS)}; valid "
                f"keys are {list(RAW_KEYS)}"
            )


class MetadataSchema:
    """The metadata fields a model is conditioned on, and their normalisation.

    Args:
        fields: field names of :data:`FIELDS`, or the shorthands of :data:`SHORTHANDS`
            (``"month"`` -> ``month_sin``, ``month_cos``); the order is kept and is the column
            order of ``metadata [B, F]``.

    Attributes:
        fields: the expanded field names; ``F = len(fields)``.

    Raises:
        ConfigError: an unknown or repeated field, or no field.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        if isinstance(fields, str):
            fields = [fields]
        valid = [*FIELDS, *SHORTHANDS]
        expanded: list[str] = []
        for name in fields:
            if name not in FIELDS and name not in SHORTHANDS:
                raise ConfigError(
                    f"unknown metadata field {name!r}{did_you_mean(str(name), valid)}; valid "
                    f"fields are {valid}"
                )
            expanded.extend(SHORTHANDS.get(name, (name,)))
        twice = sorted({f for f in expanded if expanded.count(f) > 1})
        if twice:
            raise ConfigError(f"metadata fields {twice} are given twice; list each field once")
        if not expanded:
            raise ConfigError(f"a metadata schema needs at least one field of {valid}")
        self.fields: tuple[str, ...] = tuple(expanded)

    @property
    def num_fields(self) -> int:
        """``F``, the number of scalars per item."""
        return len(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"MetadataSchema({list(self.fields)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetadataSchema) and self.fields == other.fields

    def __hash__(self) -> int:
        return hash(self.fields)

    @property
    def sources(self) -> tuple[str, ...]:
        """The raw keys the fields are computed from, in field order, once each."""
        return tuple(dict.fromkeys(FIELDS[f].source for f in self.fields))

    def describe(self) -> dict[str, str]:
        """``{field: "raw key in unit, range low..high, normalisation"}`` for reports."""
        out = {}
        for name in self.fields:
            f = FIELDS[name]
            unit = f" {f.unit}" if f.unit else ""
            out[name] = f"{f.description} ({f.source}{unit}, {f.low:g}..{f.high:g}; {f.kind})"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the checkpoint's config; :meth:`from_dict` inverts it."""
        return {"fields": list(self.fields)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetadataSchema:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: no ``fields`` list, or an unknown field.
        """
        fields = data.get("fields") if isinstance(data, Mapping) else None
        if not isinstance(fields, list):
            raise ConfigError(
                f"a metadata schema needs 'fields', a list of field names; got {data!r}"
            )
        return cls(fields)

    def normalise(
        self, raw: Mapping[str, Any], *, where: str = "metadata"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw values -> ``(values float32 [F], present bool [F])``.

        Missing values (absent key, None, NaN, ``""``) give 0 and ``present`` False. Keys the
        schema does not use are ignored; keys that are no metadata key are errors.

        Args:
            raw: ``{raw key: value}`` (:data:`RAW_KEYS`), values in the units of the table above.
            where: what ``raw`` describes (a file, a table row), for the error messages.

        Raises:
            DataError: an unknown key, a value that is not a number, not whole where it must
                be, or outside its range; a ``date`` that contradicts ``year``/``month``.
        """
        values = resolve_raw(raw, where=where)
        out = torch.zeros(len(self.fields), dtype=torch.float32)
        present = torch.zeros(len(self.fields), dtype=torch.bool)
        for i, name in enumerate(self.fields):
            spec = FIELDS[name]
            value = values.get(spec.source)
            if value is None:
                continue
            check_value(spec, value, where=where)
            out[i] = spec.normalise(value)
            present[i] = True
        return out, present

    def normalise_batch(
        self, raws: Sequence[Mapping[str, Any]], *, where: str = "metadata"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`normalise` of each dict, stacked: ``(values [B, F], present [B, F])``."""
        if not raws:
            empty = torch.zeros(0, len(self.fields))
            return empty, empty.bool()
        pairs = [self.normalise(r, where=f"{where} item {i}") for i, r in enumerate(raws)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def check_value(spec: MetadataField, value: float, *, where: str) -> None:
    """Fail when ``value`` is outside the raw range of ``spec`` or not whole where it must be.

    Raises:
        DataError: naming the field, the value, the range and the unit.
    """
    unit = f" {spec.unit}" if spec.unit else ""
    if not spec.low <= value <= spec.high or (spec.whole and value != int(value)):
        kind = "a whole number in " if spec.whole else ""
        raise DataError(
            f"{where}: metadata {spec.source!r} = {value:g} is outside the valid range: it must "
            f"be {kind}{spec.low:g}..{spec.high:g}{unit} ({spec.description}); fix the value "
            "(check its unit) or leave it empty to mark it missing"
        )


def _number(key: str, value: Any, where: str) -> float:
    """A raw value as a finite float."""
    if isinstance(value, bool):
        raise DataError(f"{where}: metadata {key!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{where}: metadata {key!r} must be a number, got {value!r}; write a plain number "
            "(e.g. 10 or 0.5) or leave it empty to mark it missing"
        ) from err
    if math.isinf(number):
        raise DataError(f"{where}: metadata {key!r} is infinite; give a finite number")
    return number


def resolve_raw(raw: Mapping[str, Any], *, where: str = "metadata") -> dict[str, float]:
    """Raw values as floats, missing ones dropped, a ``date`` expanded into its keys.

    Raises:
        DataError: an unknown key, a value that is not a number, a bad date, or a date that
            contradicts an explicit ``year``/``month``/``day_of_year``.
    """
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: metadata must be a mapping of key -> value, got {raw!r}")
    check_keys(raw, where=where)
    out = {
        k: _number(k, v, where)
        for k, v in raw.items()
        if k not in IGNORED_KEYS and k != "date" and not is_missing(v)
    }
    date = raw.get("date")
    if not is_missing(date):
        for key, value in date_fields(parse_date(date, where=where)).items():
            if key in out and out[key] != value:
                raise DataError(
                    f"{where}: 'date' {date} gives {key} {value} but {key} is {out[key]:g}; "
                    "keep them consistent or give only one"
                )
            out[key] = float(value)
    return out


# ---- sidecars ----------------------------------------------------------------------------


def read_metadata_sidecar(path: str | os.PathLike[str]) -> dict[Path, dict[str, Any]]:
    """Raw metadata per file from a sidecar table.

    * CSV (``.csv``): a header ``path,<key>,<key>,...`` and one row per file; empty cells are
      missing values; ``class``/``label`` columns are skipped (one CSV may carry both).
    * JSON (``.json``): ``{"<path>": {"<key>": value, ...}, ...}``; ``null`` is missing.

    Keys are :data:`RAW_KEYS`; paths are relative to the sidecar's folder. Values are checked
    against the field ranges later, by :meth:`MetadataSchema.normalise`.

    Returns:
        ``{file: {key: value}}`` keyed by :func:`~terradiff.data.folders.path_key`; numbers as
        floats, ``date`` as given.

    Raises:
        DataError: a missing or unreadable file, another suffix, an unknown key, a value that is
            not a number, a file listed twice.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = read_csv_rows(path)
        if "path" not in rows[0]:
            raise DataError(
                f"metadata CSV {path} needs a 'path' column; found {list(rows[0])}. Write a "
                "header line such as 'path,gsd,month' and one row per file"
            )
        check_keys(rows[0], where=f"metadata CSV {path} header")
        entries = [
            (f"metadata CSV {path} line {n}", row.get("path", ""), row)
            for n, row in enumerate(rows, start=2)
        ]
    elif suffix == ".json":
        entries = _json_entries(path)
    else:
        raise DataError(
            f"metadata sidecar {path} must be a .csv (path,gsd,month,...) or a .json "
            "({path: {field: value}}) file"
        )
    table: dict[Path, dict[str, Any]] = {}
    for where, file, values in entries:
        if not str(file).strip():
            raise DataError(f"{where}: empty 'path'; give the file's path")
        check_keys(values, where=where)
        parsed = {
            k: v if k == "date" else _number(k, v, where)
            for k, v in values.items()
            if k not in IGNORED_KEYS and not is_missing(v)
        }
        key = path_key(path.parent / str(file).strip())
        if key in table:
            raise DataError(f"{where}: {file} is listed twice in {path}; keep one entry per file")
        table[key] = parsed
    return table


def _json_entries(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(where, file, values)`` of a JSON sidecar."""
    if not path.is_file():
        raise DataError(f"metadata sidecar not found: {path} (resolved from {Path.cwd()})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read metadata JSON {path}: {err}") from err
    if not isinstance(data, dict):
        raise DataError(
            f"metadata JSON {path} must be an object {{path: {{field: value}}}}, got "
            f"{type(data).__name__}"
        )
    entries = []
    for file, values in data.items():
        where = f"metadata JSON {path} entry {file!r}"
        if not isinstance(values, dict):
            raise DataError(f"{where}: must be an object {{field: value}}, got {values!r}")
        entries.append((where, file, values))
    return entries


__all__ = [
    "FIELDS",
    "IGNORED_KEYS",
    "RAW_KEYS",
    "SHORTHANDS",
    "MetadataField",
    "MetadataSchema",
    "check_keys",
    "check_value",
    "is_missing",
    "read_metadata_sidecar",
    "resolve_raw",
]
