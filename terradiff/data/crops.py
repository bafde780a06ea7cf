"""Crop windows of a fixed size inside a column band of an image: random (training) or a fixed
grid (evaluation).

Used by the paired temporal and change-detection datasets, whose spatial splits keep train and
test crops in disjoint column bands ``[left, right)`` of the same image, so no crop of one split
holds a pixel of the other.
"""

from __future__ import annotations

import torch

from terradiff.errors import DataError

__all__ = ["check_fits", "grid_windows", "random_window"]


def check_fits(height: int, right: int, left: int, size: int, where: str) -> None:
    """Fail when a ``size`` crop does not fit in rows ``[0, height)`` x columns ``[left, right)``.

    Raises:
        DataError: naming ``where`` and the fix.
    """
    if size < 1:
        raise DataError(f"crop size must be >= 1, got {size}")
    if height < size or right - left < size:
        raise DataError(
            f"{where}: a {size}x{size} crop does not fit in its {height} rows x {right - left} "
            "columns; lower the crop size (or the held-out fraction)"
        )


def random_window(
    height: int, left: int, right: int, size: int, generator: torch.Generator
) -> tuple[int, int]:
    """Uniform top-left corner ``(top, col)`` of a ``size`` crop inside columns
    ``[left, right)`` (two draws on ``generator``)."""
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    col = int(torch.randint(left, right - size + 1, (1,), generator=generator))
    return top, col


def grid_windows(height: int, left: int, right: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, col)`` of non-overlapping ``size`` crops covering rows
    ``[0, height)`` x columns ``[left, right)`` row by row; a remainder narrower than ``size`` at
    the bottom/right is left out (``floor(height / size) * floor((right - left) / size)``
    crops)."""
    rows = range(0, height - size + 1, size)
    cols = range(left, right - size + 1, size)
    return [(top, col) for top in rows for col in cols]
