"""Weighted sums of tile predictions, one column block of a pass at a time.

:class:`BlockSums` holds ``sum(w * pred)`` and ``sum(w)`` of one
:class:`~terradiff.data.tiling.plan.ColumnBlock` of a :class:`~terradiff.data.tiling.plan.RowPass`
(see "Blending weights" and "Memory" in :mod:`terradiff.data.tiling`), plus what crosses block
and pass borders:

* the *row carry*: the partial sums of the rows a pass shares with the next one (at most
  ``overlap`` input rows), over the raster's whole width: the only buffer whose size follows the
  width;
* the *column carry*: the partial sums of the columns a block shares with the next block of the
  same pass (the whole pass's rows, at most ``tile - 1`` columns);
* *deferred parts*: in a pass of two tile rows, the part of a second-row tile that lies in the
  next block's columns, kept (unsummed) until the first row's tiles of that block are in (and
  kept again for the block after, when it reaches that far: overlaps above half a tile).

Every output pixel therefore receives its tiles' contributions in the order of a run over the
whole raster in one buffer (tile rows top to bottom, tiles left to right within a row), with
the same float32 additions, so the blended values are bit-identical to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terradiff.data.tiling.geometry import WEIGHT_FLOOR
from terradiff.data.tiling.plan import ColumnBlock, RowPass


@dataclass
class _Deferred:
    """A weighted tile part kept for the next block (input-pixel row/column of its corner)."""

    row: int
    col: int
    weighted: np.ndarray
    weight: np.ndarray


class BlockSums:
    """Accumulation buffers of one column block of a pass, sized once for the whole run.

    Attributes:
        scale: output pixels per input pixel along each axis.
        num: ``sum(w * pred)``, ``[C, rows * scale, cols * scale]`` float32 (capacity).
        den: ``sum(w)``, ``[rows * scale, cols * scale]`` float32.
        valid: validity of the block's input pixels, ``[rows, cols]``.
        carry_num: the row carry ``[C, carry * scale, width * scale]`` (whole width).
        carry_den: its weights.
    """

    def __init__(
        self, channels: int, rows: int, cols: int, carry: int, width: int, scale: int
    ) -> None:
        s = self.scale = scale
        self.num = np.zeros((channels, rows * s, cols * s), dtype=np.float32)
        self.den = np.zeros((rows * s, cols * s), dtype=np.float32)
        self.valid = np.zeros((rows, cols), dtype=bool)
        self.carry_num = np.zeros((channels, carry * s, width * s), dtype=np.float32)
        self.carry_den = np.zeros((carry * s, width * s), dtype=np.float32)
        self.carry_rows = 0  # input rows of the row carry in use (from the current pass's top)
        self.side: tuple[np.ndarray, np.ndarray] | None = None  # the column carry
        self.deferred: dict[int, list[_Deferred]] = {}
        self.top = self.start = 0
        self.extra_peak = 0  # bytes of the column carry and deferred parts at their largest

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers sized for the run (block buffers and the row carry)."""
        arrays = (self.num, self.den, self.valid, self.carry_num, self.carry_den)
        return sum(a.nbytes for a in arrays)

    # ---- a block ---------------------------------------------------------------------------
    def begin(self, rpass: RowPass, block: ColumnBlock, first_block: bool) -> None:
        """Clear the buffers for ``block`` of ``rpass`` and put in what is carried into it."""
        s = self.scale
        rows, cols = rpass.height * s, block.width * s
        self.top, self.start = rpass.top, block.start
        self.num[:, :rows, :cols] = 0.0
        self.den[:rows, :cols] = 0.0
        self.valid[: rpass.height, : block.width] = False
        side_cols = 0
        if not first_block and self.side is not None:
            side_num, side_den = self.side
            side_cols = side_num.shape[2]
            self.num[:, :rows, :side_cols] = side_num
            self.den[:rows, :side_cols] = side_den
        self.side = None
        if self.carry_rows:
            n = self.carry_rows * s
            c0, c1 = (block.start * s) + side_cols, block.end * s
            self.num[:, :n, side_cols:cols] = self.carry_num[:, :n, c0:c1]
            self.den[:n, side_cols:cols] = self.carry_den[:n, c0:c1]

    def add(
        self,
        pred: np.ndarray,
        wy: np.ndarray,
        wx: np.ndarray,
        row: int,
        col: int,
        defer_from: int | None = None,
    ) -> int:
        """Accumulate one tile's ``pred [C, h, w]`` (output pixels) weighted by ``outer(wy, wx)``.

        Args:
            pred: the tile's prediction, cropped to the raster.
            wy: its 1-D weight along rows (output pixels).
            wx: its 1-D weight along columns.
            row: the tile's first input row.
            col: the tile's first input column.
            defer_from: an input column from which the tile's part is kept for the next block
                (:meth:`add_deferred`) instead of added now; None adds it all.

        Returns:
            The bytes of the temporaries.
        """
        weight = np.outer(wy, wx)
        weighted = pred * weight
        self._add(_Deferred(row, col, weighted, weight), defer_from)
        return 2 * weighted.nbytes + 2 * weight.nbytes

    def add_deferred(self, row: int, defer_from: int | None = None) -> None:
        """Add the parts of the tile row starting at input row ``row`` kept by the last block,
        in the order they were kept; parts reaching past ``defer_from`` keep that part again."""
        for part in self.deferred.pop(row, []):
            self._add(part, defer_from)

    def _add(self, part: _Deferred, defer_from: int | None) -> None:
        """Add ``part``; its columns from ``defer_from`` on (when given) are kept instead."""
        s = self.scale
        h, w = part.weight.shape
        if defer_from is not None and (defer_from - part.col) * s < w:
            cut = max(0, (defer_from - part.col) * s)
            kept = _Deferred(
                part.row, defer_from, part.weighted[:, :, cut:].copy(), part.weight[:, cut:].copy()
            )
            self.deferred.setdefault(part.row, []).append(kept)
            self.extra_peak = max(self.extra_peak, self._deferred_bytes() + self._side_bytes())
            if cut == 0:
                return
            part = _Deferred(part.row, part.col, part.weighted[:, :, :cut], part.weight[:, :cut])
            w = cut
        r0, c0 = (part.row - self.top) * s, (part.col - self.start) * s
        self.num[:, r0 : r0 + h, c0 : c0 + w] += part.weighted
        self.den[r0 : r0 + h, c0 : c0 + w] += part.weight

    def finish(self, rpass: RowPass, block: ColumnBlock) -> tuple[np.ndarray, np.ndarray]:
        """End ``block``: keep the carries, return the final sums ``(num, den)`` (views).

        The final pixels are rows ``[top, final_end)`` and columns ``[start, final_end)`` of
        the pass and block; the views stay valid until the next :meth:`begin`.
        """
        s = self.scale
        rows, done = rpass.height * s, (rpass.final_end - rpass.top) * s
        cols, final = block.width * s, (block.final_end - block.start) * s
        if final < cols:  # the column carry: columns the next block shares
            self.side = (
                self.num[:, :rows, final:cols].copy(),
                self.den[:rows, final:cols].copy(),
            )
            self.extra_peak = max(self.extra_peak, self._side_bytes())
        if rpass.carry:  # the row carry of the next pass, over this block's final columns
            n = rpass.carry * s
            c0, c1 = block.start * s, block.final_end * s
            self.carry_num[:, :n, c0:c1] = self.num[:, done : done + n, :final]
            self.carry_den[:n, c0:c1] = self.den[done : done + n, :final]
        return self.num[:, :done, :final], self.den[:done, :final]

    def end_pass(self, rpass: RowPass) -> None:
        """The next pass starts: the row carry now holds ``rpass.carry`` rows."""
        self.carry_rows = rpass.carry
        self.side = None

    def _deferred_bytes(self) -> int:
        parts = [p for kept in self.deferred.values() for p in kept]
        return sum(p.weighted.nbytes + p.weight.nbytes for p in parts)

    def _side_bytes(self) -> int:
        return 0 if self.side is None else self.side[0].nbytes + self.side[1].nbytes


def blend(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with the denominator floored at ``WEIGHT_FLOOR ** 2`` (float32)."""
    return num / np.maximum(den, np.float32(WEIGHT_FLOOR**2))


__all__ = ["BlockSums", "blend"]
