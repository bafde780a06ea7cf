"""Where the tiles go and how much each of their pixels counts: the tile grid, blending weights.

Pure array arithmetic, no file access: :class:`TileGrid` places overlapping tiles over a raster,
:func:`blend_window`/:func:`blend_weights` give each tile its separable weight (see
:mod:`terradiff.data.tiling` for the scheme; :mod:`~terradiff.data.tiling.blend` accumulates the
weighted predictions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window

from terradiff.errors import DataError

#: Weight of the ``margin`` pixels next to a tile edge that faces another tile.
WEIGHT_FLOOR = 1e-6


def _is_int(value: object) -> bool:
    """Whether ``value`` is a Python or NumPy integer (``bool`` excluded)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def check_grid_args(tile: int, overlap: int) -> None:
    """Check a tile side and an overlap (pixels).

    Raises:
        DataError: ``tile < 1``, ``overlap < 0``, ``overlap >= tile`` or a non-integer.
    """
    if not _is_int(tile) or tile < 1:
        raise DataError(f"tile must be a positive integer (pixels), got {tile!r}")
    if not _is_int(overlap) or overlap < 0:
        raise DataError(f"overlap must be an integer >= 0 (pixels), got {overlap!r}")
    if overlap >= tile:
        raise DataError(
            f"overlap ({overlap}) must be smaller than the tile ({tile}); e.g. tile=256, overlap=32"
        )


def check_margin(overlap: int, margin: int) -> None:
    """Check a blending margin against the overlap it sits in.

    Raises:
        DataError: ``margin`` is not an integer ``>= 0`` or exceeds half the overlap.
    """
    if not _is_int(margin) or margin < 0:
        raise DataError(f"blend margin must be an integer >= 0 (pixels), got {margin!r}")
    if 2 * margin > overlap:
        raise DataError(
            f"blend margin ({margin}) must be at most half the overlap ({overlap}); the default "
            "is overlap // 4"
        )


# --------------------------------------------------------------------------------------------
# tile grid
# --------------------------------------------------------------------------------------------


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """First pixel of every tile along one axis of ``length`` pixels.

    Tiles start every ``tile - overlap`` pixels; the last one is shifted inward to end on the
    edge. An axis no longer than ``tile`` has a single tile at 0.

    Raises:
        DataError: ``length < 1``, ``tile < 1``, ``overlap < 0`` or ``overlap >= tile``.
    """
    check_grid_args(tile, overlap)
    if length < 1:
        raise DataError(f"cannot tile an axis of {length} pixels")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering a ``height x width`` raster (see :mod:`terradiff.data.tiling`).

    Attributes:
        height: raster rows.
        width: raster columns.
        tile: tile side in pixels (what the model sees; axes shorter than it are padded).
        overlap: minimum overlap of neighbouring tiles in pixels.
    """

    height: int
    width: int
    tile: int
    overlap: int = 0

    def __post_init__(self) -> None:
        check_grid_args(self.tile, self.overlap)
        if self.height < 1 or self.width < 1:
            raise DataError(f"cannot tile an empty raster of {self.height} x {self.width} pixels")

    @cached_property
    def row_starts(self) -> list[int]:
        """First row of each row of tiles."""
        return axis_starts(self.height, self.tile, self.overlap)

    @cached_property
    def col_starts(self) -> list[int]:
        """First column of each column of tiles."""
        return axis_starts(self.width, self.tile, self.overlap)

    @property
    def tile_height(self) -> int:
        """Rows of the raster inside a tile (``min(tile, height)``; the rest is padding)."""
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        """Columns of the raster inside a tile (``min(tile, width)``)."""
        return min(self.tile, self.width)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows of tiles, columns of tiles)``."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def windows(self) -> list[Window]:
        """The tiles as rasterio windows clipped to the raster, row by row."""
        return list(self)

    def __iter__(self) -> Iterator[Window]:
        for row in self.row_starts:
            for col in self.col_starts:
                yield Window(col, row, self.tile_width, self.tile_height)


def tile_windows(height: int, width: int, tile: int, overlap: int = 0) -> list[Window]:
    """Windows of ``tile`` pixels with ``overlap`` covering a raster, row by row.

    Shorthand for ``TileGrid(height, width, tile, overlap).windows()``; windows are clipped to
    the raster when it is smaller than a tile.
    """
    return TileGrid(height, width, tile, overlap).windows()


# --------------------------------------------------------------------------------------------
# blending weights
# --------------------------------------------------------------------------------------------


def blend_window(
    length: int,
    overlap: int,
    *,
    margin: int = 0,
    ramp_start: bool = True,
    ramp_end: bool = True,
    floor: float = WEIGHT_FLOOR,
) -> np.ndarray:
    """One-dimensional blending weight of a tile (float32, strictly positive).

    Over the first ``overlap`` pixels (when ``ramp_start``): ``floor`` on ``margin`` pixels, then
    ``sin^2(pi / 2 * (i - margin + 0.5) / (overlap - 2 margin))``, then 1; mirrored at the end
    (when ``ramp_end``). Two windows overlapping by exactly ``overlap`` pixels sum to 1 there.

    Args:
        length: pixels of the tile along the axis.
        overlap: width of the blending zone on each ramped side.
        margin: pixels next to the edge given only ``floor`` (their predictions are the least
            trustworthy); ``2 * margin <= overlap``.
        ramp_start: ramp at the first pixel (False where the tile touches the raster's edge).
        ramp_end: ramp at the last pixel.
        floor: smallest weight.
    """
    if length < 1:
        raise DataError(f"blend window needs a positive length, got {length}")
    if overlap < 0:
        raise DataError(f"overlap must be >= 0, got {overlap}")
    check_margin(overlap, margin)
    i = np.arange(length, dtype=np.float64)
    ramp_len = overlap - 2 * margin

    def ramp(pos: np.ndarray) -> np.ndarray:
        out = np.ones_like(pos)
        if overlap == 0:
            return out
        out[pos < margin] = 0.0
        if ramp_len > 0:
            inside = (pos >= margin) & (pos < overlap - margin)
            out[inside] = np.sin(0.5 * np.pi * (pos[inside] - margin + 0.5) / ramp_len) ** 2
        return out

    w = np.ones(length, dtype=np.float64)
    if ramp_start:
        w = np.minimum(w, ramp(i))
    if ramp_end:
        w = np.minimum(w, ramp(length - 1 - i))
    return np.maximum(w, floor).astype(np.float32)


def blend_weights(
    height: int,
    width: int,
    overlap: int,
    *,
    margin: int = 0,
    top: bool = True,
    bottom: bool = True,
    left: bool = True,
    right: bool = True,
) -> np.ndarray:
    """Separable 2-D weight ``[height, width]`` of a tile: outer product of two 1-D windows.

    ``top``/``bottom``/``left``/``right`` say which sides face another tile (and so ramp).
    """
    wy = blend_window(height, overlap, margin=margin, ramp_start=top, ramp_end=bottom)
    wx = blend_window(width, overlap, margin=margin, ramp_start=left, ramp_end=right)
    return np.outer(wy, wx)


__all__ = [
    "WEIGHT_FLOOR",
    "TileGrid",
    "axis_starts",
    "blend_weights",
    "blend_window",
    "check_grid_args",
    "check_margin",
    "tile_windows",
]
