"""In which order a tiled run visits its tiles: passes of tile rows, column blocks of tiles.

Pure integer arithmetic on a :class:`~terradiff.data.tiling.geometry.TileGrid`, no arrays. A run
goes through the tile rows top to bottom in *passes* (:func:`plan_passes`) and, within a pass,
through the tile columns left to right in *column blocks* (:func:`plan_blocks`), so that its
buffers span one block of columns instead of the raster's width (see "Memory" in
:mod:`terradiff.data.tiling`).

A pass is one tile row, except that the last tile row, when the grid shifted it inward (it then
overlaps the row above by more than ``overlap``), joins the pass of the row above: the partial
sums carried from one pass to the next then never span more than ``overlap`` rows. A column
block is a whole number of batches (batches never straddle two blocks, so every batch holds the
same tiles as in a run over the whole width, and stochastic models draw the same noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from terradiff.errors import DataError

#: Default tile columns per column block (rounded up to a whole number of batches).
BLOCK_TILES = 8


@dataclass(frozen=True)
class RowPass:
    """Consecutive tile rows processed together, block by block.

    Attributes:
        rows: ``(index in the grid's row_starts, first input row)`` of each tile row.
        top: first input row of the pass (its first tile's).
        bottom: input row past its last tile.
        final_end: rows ``[top, final_end)`` are final after the pass (no later tile touches
            them): the next pass's ``top``, or ``bottom`` for the last pass. Rows ``[final_end,
            bottom)`` are carried to the next pass as partial sums.
    """

    rows: tuple[tuple[int, int], ...]
    top: int
    bottom: int
    final_end: int

    @property
    def height(self) -> int:
        """Input rows spanned by the pass."""
        return self.bottom - self.top

    @property
    def carry(self) -> int:
        """Input rows carried to the next pass (0 for the last one)."""
        return self.bottom - self.final_end


@dataclass(frozen=True)
class ColumnBlock:
    """Consecutive tile columns of a pass, accumulated in one buffer.

    Attributes:
        cols: ``(index in the grid's col_starts, first input column)`` of each tile column.
        start: first input column of the block (its first tile's).
        end: input column past its last tile.
        final_end: columns ``[start, final_end)`` are final after the block: the next block's
            ``start``, or ``end`` for the last block. Columns ``[final_end, end)`` are carried to
            the next block of the same pass.
    """

    cols: tuple[tuple[int, int], ...]
    start: int
    end: int
    final_end: int

    @property
    def width(self) -> int:
        """Input columns spanned by the block."""
        return self.end - self.start


def plan_passes(rows: Sequence[tuple[int, int]], tile_height: int, overlap: int) -> list[RowPass]:
    """Group the tile rows ``rows`` (``(index, first row)``, top to bottom) into passes.

    A tile row joins the pass of the row above when the two overlap by more than ``overlap``
    rows (the last row of a grid, shifted inward to end on the raster's edge); otherwise it
    starts a new pass. The rows carried between passes are then at most ``overlap``.

    Raises:
        DataError: no rows.
    """
    if not rows:
        raise DataError("a tiled run needs at least one row of tiles")
    groups: list[list[tuple[int, int]]] = [[rows[0]]]
    for item in rows[1:]:
        previous = groups[-1][-1][1]
        if previous + tile_height - item[1] > overlap:
            groups[-1].append(item)
        else:
            groups.append([item])
    passes = []
    for k, group in enumerate(groups):
        top, bottom = group[0][1], group[-1][1] + tile_height
        final_end = groups[k + 1][0][1] if k + 1 < len(groups) else bottom
        passes.append(RowPass(tuple(group), top, bottom, final_end))
    return passes


def block_size(batch_size: int, block_tiles: int | None) -> int:
    """Tile columns per block: ``block_tiles`` (default :data:`BLOCK_TILES`) rounded up to a
    whole number of batches."""
    wanted = BLOCK_TILES if block_tiles is None else block_tiles
    return batch_size * max(1, -(-wanted // batch_size))


def plan_blocks(col_starts: Sequence[int], tile_width: int, per_block: int) -> list[ColumnBlock]:
    """The column blocks of a row of tiles: ``per_block`` tile columns each, left to right.

    ``per_block`` should be a whole number of batches (:func:`block_size`); the last block may
    hold fewer columns.

    Raises:
        DataError: ``per_block < 1`` or no columns.
    """
    if per_block < 1:
        raise DataError(f"a column block needs at least one tile column, got {per_block}")
    if not col_starts:
        raise DataError("a tiled run needs at least one column of tiles")
    cols = list(enumerate(col_starts))
    groups = [cols[i : i + per_block] for i in range(0, len(cols), per_block)]
    blocks = []
    for k, group in enumerate(groups):
        start, end = group[0][1], group[-1][1] + tile_width
        final_end = groups[k + 1][0][1] if k + 1 < len(groups) else end
        blocks.append(ColumnBlock(tuple(group), start, end, final_end))
    return blocks


def pass_capacity(passes: Sequence[RowPass], tile_height: int, overlap: int) -> tuple[int, int]:
    """``(rows, carry)``: input rows the buffers of ``passes`` are sized for, once for the run.

    ``rows`` is the tallest pass; where the last tile row joined the row above it is the most
    such a pass can span (``2 * tile_height - overlap - 1``, whatever the shift), so that the
    buffers do not depend on the raster's height. ``carry`` is the most rows carried between
    two passes (``overlap``, or 0 for a single pass).
    """
    merged = any(len(p.rows) > 1 for p in passes)
    rows = 2 * tile_height - overlap - 1 if merged else max(p.height for p in passes)
    return rows, max(p.carry for p in passes)


__all__ = [
    "BLOCK_TILES",
    "ColumnBlock",
    "RowPass",
    "block_size",
    "pass_capacity",
    "plan_blocks",
    "plan_passes",
]
