"""Stable hash partitions of file and chip names into train/val/test splits.

This module's one job: decide which split a name belongs to from the SHA-256 of the name alone, so
the answer is the same on every machine, in every run, whatever the order or the number of the
other names; adding files never moves an existing one between splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_HASH_RANGE = 2**64


def hash_position(name: str) -> int:
    """The name's position in the hash range: the first 8 bytes of ``sha256(name)`` as a
    big-endian integer in ``[0, 2**64)``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def hash_split(name: str, fractions: Sequence[tuple[str, float]], rest: str = "train") -> str:
    """The split of ``name`` under a stable hash partition.

    The hash range ``[0, 2**64)`` is cut into consecutive intervals, one per ``(split, fraction)``
    in the given order and of that share of the range; names whose :func:`hash_position` falls in
    none of them belong to ``rest``. E.g. ``(("test", 0.2), ("val", 0.1))`` puts the lowest 20 % of
    the range in ``"test"``, the next 10 % in ``"val"``, and the rest in ``"train"``.

    The bounds are the running sums of the fractions, in float, times ``2**64`` (exact), and the
    comparison is between integers and those floats (exact too), so the partition does not depend
    on float rounding of the hash.

    Args:
        name: What is split: a path relative to the dataset root (POSIX separators), a chip name.
        fractions: ``(split name, share of the range)`` pairs, each share in ``[0, 1]``; the shares
            should sum to at most 1.
        rest: The split of names beyond the last interval.

    Returns:
        The split name.
    """
    position = hash_position(name)
    bound = 0.0
    for split, fraction in fractions:
        bound += fraction
        if position < bound * _HASH_RANGE:
            return split
    return rest


__all__ = ["hash_position", "hash_split"]
