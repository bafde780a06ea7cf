"""Metadata of a (before, after) pair: target date, source date and the years between them.

The vector is built from the fields of :mod:`terradiff.data.metadata` (same normalisation, same
missing-value convention: value 0 and ``present`` False), so the metadata conditioning of
:mod:`terradiff.nets.conditioning` embeds it like any other metadata
(``ConditionSpec(metadata_fields=schema.fields)``; DiffusionSat, Khanna et al. 2024, Sec. 3 and
its temporal setting ``X_post ~ p(X | X_pre, C)``, Sec. 3.3). Its columns, in order:

* the **target** date's fields (default ``month_sin, month_cos, day_of_year_sin,
  day_of_year_cos``: any :class:`~terradiff.data.metadata.MetadataSchema` names, e.g. ``year``);
* the **source** date's fields, the same kinds with the prefix ``source_``;
* ``years_apart``: target time minus source time in years (negative: backwards in time),
  ``-50..50`` mapped linearly to ``[-1, 1]``.

A generator that only knows the target date takes the first block (:meth:`PairSchema.part`
``"target"``); a ControlNet branch can take the rest (``"branch"``: source date and years apart).
Unknown parts of a date (BioMassters months have no day of year or year; a Landsat ``1985.tif``
has only the year) are missing, not guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from terradiff.data.metadata import MetadataField, MetadataSchema, check_value
from terradiff.errors import ConfigError

__all__ = ["SOURCE_PREFIX", "YEARS_APART", "PairSchema"]

SOURCE_PREFIX = "source_"
#: The ``years_apart`` field: target minus source time, in years.
YEARS_APART = MetadataField(
    "years_apart",
    "years_apart",
    -50.0,
    50.0,
    "years",
    "linear",
    "time from the source (before) to the target (after) date",
)
_PARTS = ("target", "branch")


class PairSchema:
    """The metadata fields of a temporal pair (see the module docstring).

    Args:
        target: Fields of the target date (names or shorthands of
            :class:`~terradiff.data.metadata.MetadataSchema`); empty: none.
        source: Fields of the source date (stored with the ``source_`` prefix); empty: none.
        years_apart: Add the ``years_apart`` field.

    Attributes:
        fields: All field names, the column order of ``metadata [F]``.

    Raises:
        ConfigError: An unknown field, or no field at all.
    """

    def __init__(
        self,
        target: Sequence[str] = ("month", "day_of_year"),
        source: Sequence[str] = ("month", "day_of_year"),
        *,
        years_apart: bool = True,
    ) -> None:
        self.target = MetadataSchema(target) if target else None
        self.source = MetadataSchema(source) if source else None
        self.years_apart = bool(years_apart)
        target_fields = self.target.fields if self.target else ()
        source_names = self.source.fields if self.source else ()
        source_fields = tuple(SOURCE_PREFIX + f for f in source_names)
        extra = (YEARS_APART.name,) if self.years_apart else ()
        self.fields: tuple[str, ...] = (*target_fields, *source_fields, *extra)
        if not self.fields:
            raise ConfigError("a pair schema needs target fields, source fields or years_apart")
        self._num_target = len(target_fields)

    @property
    def num_fields(self) -> int:
        """``F``."""
        return len(self.fields)

    def __repr__(self) -> str:
        return f"PairSchema({list(self.fields)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (:meth:`from_dict` inverts it)."""
        return {
            "target": list(self.target.fields) if self.target else [],
            "source": list(self.source.fields) if self.source else [],
            "years_apart": self.years_apart,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairSchema:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(data) - {"target", "source", "years_apart"})
        if unknown:
            raise ConfigError(
                f"unknown pair-schema keys {unknown}; use target, source, years_apart"
            )
        years_apart = bool(data.get("years_apart", True))
        return cls(data.get("target", ()), data.get("source", ()), years_apart=years_apart)

    def normalise(
        self,
        source: Mapping[str, Any],
        target: Mapping[str, Any],
        years_apart: float | None,
        *,
        where: str = "pair",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values float32 [F], present bool [F])`` of one pair.

        Args:
            source, target: Raw metadata of the two dates (``year``, ``month``, ``day_of_year``,
                ``date``... as :meth:`MetadataSchema.normalise` takes them).
            years_apart: Target minus source time in years; None = unknown.
            where: The pair, for error messages.

        Raises:
            DataError: A value out of range (naming ``where`` and the field).
        """
        values, present = [], []
        if self.target is not None:
            v, p = self.target.normalise(target, where=f"{where} (target)")
            values.append(v)
            present.append(p)
        if self.source is not None:
            v, p = self.source.normalise(source, where=f"{where} (source)")
            values.append(v)
            present.append(p)
        if self.years_apart:
            known = years_apart is not None
            if known:
                check_value(YEARS_APART, float(years_apart), where=where)
            value = YEARS_APART.normalise(float(years_apart)) if known else 0.0
            values.append(torch.tensor([value], dtype=torch.float32))
            present.append(torch.tensor([known]))
        return torch.cat(values), torch.cat(present)

    def part(self, values: torch.Tensor, which: str) -> torch.Tensor:
        """The target-date columns (``"target"``) or the others (``"branch"``: source date and
        years apart) of ``values`` or ``present`` (``[..., F]``)."""
        if which not in _PARTS:
            raise ValueError(f"part must be one of {list(_PARTS)}, got {which!r}")
        n = self._num_target
        return values[..., :n] if which == "target" else values[..., n:]

    def part_fields(self, which: str) -> tuple[str, ...]:
        """The field names of :meth:`part` ``which``."""
        if which not in _PARTS:
            raise ValueError(f"part must be one of {list(_PARTS)}, got {which!r}")
        n = self._num_target
        return self.fields[:n] if which == "target" else self.fields[n:]
