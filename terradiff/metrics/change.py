"""Binary change-detection metrics from confusion counts, accumulated over batches.

The metrics change-detection papers report on LEVIR-CD (Chen & Shi 2020; DDPM-CD, Bandara et
al. 2022, Table 1: F1, IoU, overall accuracy, precision and recall of the *change* class), all
computed from the pixel counts of the whole test set (micro-averaged, not a mean of per-image
scores), with "change" the positive class:

* precision ``P = TP / (TP + FP)``, recall ``R = TP / (TP + FN)``;
* ``F1 = 2 TP / (2 TP + FP + FN)`` (= ``2 P R / (P + R)``);
* ``IoU = TP / (TP + FP + FN)``;
* overall accuracy ``OA = (TP + TN) / N``.

**Edge cases** (a denominator of 0), defined so that a perfect answer scores 1 and a wrong one 0:

* no change predicted (``TP + FP = 0``): precision is 1 when there is no change to find
  (``FN = 0``), else 0;
* no change present (``TP + FN = 0``): recall is 1 when none was predicted (``FP = 0``), else 0;
* neither (``TP + FP + FN = 0``): F1 and IoU are 1 (the prediction is exactly right);
* no pixel counted: every metric is NaN (there is nothing to score).

Pixels outside an optional ``valid`` mask are not counted.

**Threshold-free** (:class:`ChangeScoreHistogram`): the F1 above depends on the threshold a
method's probabilities are cut at, and a small labelled set may leave none to choose it on. The
average precision (the area under the precision-recall curve as scikit-learn's
``average_precision_score`` defines it, ``AP = sum_k (R_k - R_{k+1}) P_k`` over thresholds from
high to low) scores the ranking of the pixels instead. It is computed here from histograms of the
probabilities of changed and unchanged pixels (``bins`` equal bins on [0, 1]), so that windows
can be summed and resampled for a bootstrap like the confusion counts; it equals scikit-learn's
value on the binned probabilities. A method that scores every pixel alike has AP = the share of
changed pixels.

**Choosing the threshold** (:func:`f1_optimal_threshold`): the same histograms give the
confusion counts at any bin edge (:meth:`ChangeScoreHistogram.confusion_at`), so the threshold
that maximises F1 can be read off the tiles a model was *not* tested on (its training or
validation tiles) and then applied to the test tiles. Chosen on the test tiles it is an oracle:
an upper bound, not a score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SCORE_BINS",
    "ChangeConfusion",
    "ChangeScoreHistogram",
    "average_precision_of",
    "change_metrics",
    "f1_optimal_threshold",
]

SCORE_BINS = 100
"""Bins of :class:`ChangeScoreHistogram` (probability resolution 0.01)."""


@dataclass
class ChangeConfusion:
    """Pixel confusion counts of a binary change map; :meth:`update` per batch, then read.

    Attributes:
        tp, fp, fn, tn: True/false positives/negatives (change = positive).
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(
        self,
        prediction: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        *,
        threshold: float = 0.5,
    ) -> ChangeConfusion:
        """Add one batch.

        Args:
            prediction: Bool masks, or scores that are change where ``> threshold`` (0/1 values,
                probabilities; pass ``threshold=0`` for logits), any shape.
            target: The true masks, the same shape: change where ``> 0.5``.
            valid: Optional mask of the pixels to count (``> 0.5``; broadcast to the shape).
            threshold: See ``prediction``.

        Returns:
            ``self``, updated.

        Raises:
            ValueError: Shapes that differ.
        """
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must have "
                "the same shape"
            )
        pred = prediction if prediction.dtype == torch.bool else prediction > threshold
        true = target if target.dtype == torch.bool else target > 0.5
        keep = torch.ones_like(true) if valid is None else (valid > 0.5).expand_as(true)
        self.tp += int((pred & true & keep).sum())
        self.fp += int((pred & ~true & keep).sum())
        self.fn += int((~pred & true & keep).sum())
        self.tn += int((~pred & ~true & keep).sum())
        return self

    def __add__(self, other: ChangeConfusion) -> ChangeConfusion:
        return ChangeConfusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Pixels counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)`` (edge cases: module docstring)."""
        if not self.total:
            return math.nan
        if self.tp + self.fp == 0:
            return 1.0 if self.fn == 0 else 0.0
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)`` (edge cases: module docstring)."""
        if not self.total:
            return math.nan
        if self.tp + self.fn == 0:
            return 1.0 if self.fp == 0 else 0.0
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)`` (1 when there is no change and none is predicted)."""
        if not self.total:
            return math.nan
        errors = self.fp + self.fn
        return 1.0 if self.tp + errors == 0 else 2 * self.tp / (2 * self.tp + errors)

    @property
    def iou(self) -> float:
        """``TP / (TP + FP + FN)`` of the change class (1 when there is no change and none is
        predicted)."""
        if not self.total:
            return math.nan
        union = self.tp + self.fp + self.fn
        return 1.0 if union == 0 else self.tp / union

    @property
    def overall_accuracy(self) -> float:
        """``(TP + TN) / N``."""
        return (self.tp + self.tn) / self.total if self.total else math.nan

    def as_dict(self) -> dict[str, float]:
        """``{f1, iou, precision, recall, overall_accuracy, tp, fp, fn, tn}`` for reports."""
        return {
            "f1": self.f1,
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "overall_accuracy": self.overall_accuracy,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


@dataclass
class ChangeScoreHistogram:
    """Counts of changed and unchanged pixels per probability bin; mergeable state of the
    threshold-free :meth:`average_precision` (module docstring).

    Attributes:
        changed, unchanged: ``bins`` counts each; bin ``k`` holds probabilities in
            ``[k / bins, (k + 1) / bins)`` (1.0 in the last bin).
    """

    changed: list[int]
    unchanged: list[int]

    @classmethod
    def empty(cls, bins: int = SCORE_BINS) -> ChangeScoreHistogram:
        """A histogram with no pixel yet."""
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        return cls([0] * bins, [0] * bins)

    @property
    def bins(self) -> int:
        return len(self.changed)

    def update(
        self, probability: Tensor, target: Tensor, valid: Tensor | None = None
    ) -> ChangeScoreHistogram:
        """Add one batch: change probabilities in [0, 1] and the true masks (change where
        ``> 0.5``), the same shape; pixels outside ``valid`` (``> 0.5``) are not counted.

        Raises:
            ValueError: Shapes that differ, or probabilities outside [0, 1] (logits, NaN).
        """
        if probability.shape != target.shape:
            raise ValueError(
                f"probability {tuple(probability.shape)} and target {tuple(target.shape)} must "
                "have the same shape"
            )
        score = probability.detach().float()
        keep = torch.ones_like(score, dtype=torch.bool)
        if valid is not None:
            keep = (valid > 0.5).expand_as(score)
        if not bool(((score >= 0) & (score <= 1))[keep].all()):
            raise ValueError("probabilities must lie in [0, 1] (pass sigmoid(logits), not NaN)")
        index = (score * self.bins).long().clamp_(0, self.bins - 1)
        true = (target > 0.5) & keep
        false = ~(target > 0.5) & keep
        for counts, mask in ((self.changed, true), (self.unchanged, false)):
            added = torch.bincount(index[mask], minlength=self.bins).tolist()
            counts[:] = [a + b for a, b in zip(counts, added, strict=True)]
        return self

    def __add__(self, other: ChangeScoreHistogram) -> ChangeScoreHistogram:
        if other.bins != self.bins:
            raise ValueError(f"cannot add histograms of {self.bins} and {other.bins} bins")
        return ChangeScoreHistogram(
            [a + b for a, b in zip(self.changed, other.changed, strict=True)],
            [a + b for a, b in zip(self.unchanged, other.unchanged, strict=True)],
        )

    def average_precision(self) -> float:
        """``sum_k (R_k - R_{k+1}) P_k``, thresholds at the bins' lower edges from the top;
        NaN when no changed pixel was counted (recall is undefined)."""
        return average_precision_of(self.changed, self.unchanged)

    def confusion_at(self, threshold: float) -> ChangeConfusion:
        """The confusion counts of "change where the probability ``>= threshold``", for a
        threshold on a bin edge (``k / bins``, ``0 < k < bins``): the pixels of bins ``k`` and up
        are called change. Equal to :meth:`ChangeConfusion.update` at that threshold except for
        probabilities exactly on the edge (counted as change here).

        Raises:
            ValueError: A threshold outside (0, 1) or off the bin edges.
        """
        edge = _edge_index(threshold, self.bins)
        tp, fp = sum(self.changed[edge:]), sum(self.unchanged[edge:])
        fn, tn = sum(self.changed[:edge]), sum(self.unchanged[:edge])
        return ChangeConfusion(tp=tp, fp=fp, fn=fn, tn=tn)

    def precision_recall_curve(self) -> tuple[list[float], list[float], list[float]]:
        """``(thresholds, precision, recall)`` of "change where the probability is in a bin at or
        above the threshold", at the lower edge of every non-empty bin from the top down (the
        points :meth:`average_precision` sums over; the last has recall 1). Empty lists when no
        changed pixel was counted."""
        positives = sum(self.changed)
        thresholds: list[float] = []
        precision: list[float] = []
        recall: list[float] = []
        if positives <= 0:
            return thresholds, precision, recall
        tp = fp = 0
        for k in range(self.bins - 1, -1, -1):
            if self.changed[k] == 0 and self.unchanged[k] == 0:
                continue
            tp, fp = tp + self.changed[k], fp + self.unchanged[k]
            thresholds.append(k / self.bins)
            precision.append(tp / (tp + fp))
            recall.append(tp / positives)
        return thresholds, precision, recall

    @classmethod
    def from_dict(cls, counts: dict[str, Sequence[int]]) -> ChangeScoreHistogram:
        """The inverse of :meth:`as_dict` (what ``terradiff evaluate --out`` writes per window).

        Raises:
            ValueError: Missing keys, or two lists of different lengths.
        """
        try:
            changed, unchanged = list(counts["changed"]), list(counts["unchanged"])
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"a score histogram needs the lists 'changed' and 'unchanged', got {counts!r}"
            ) from error
        if len(changed) != len(unchanged) or not changed:
            raise ValueError(
                f"'changed' ({len(changed)} bins) and 'unchanged' ({len(unchanged)} bins) must "
                "have the same, non-zero length"
            )
        return cls(changed, unchanged)

    def as_dict(self) -> dict[str, list[int]]:
        """``{"changed": [...], "unchanged": [...]}`` for JSON."""
        return {"changed": list(self.changed), "unchanged": list(self.unchanged)}


def _edge_index(threshold: float, bins: int) -> int:
    """``k`` of the bin edge ``k / bins`` that ``threshold`` names (ValueError if none)."""
    edge = round(threshold * bins)
    if not 0 < edge < bins or abs(edge - threshold * bins) > 1e-6:
        raise ValueError(
            f"threshold {threshold} is not an inner bin edge of a {bins}-bin histogram "
            f"(multiples of {1 / bins:g} in (0, 1))"
        )
    return edge


def f1_optimal_threshold(histogram: ChangeScoreHistogram) -> tuple[float, float]:
    """The bin edge ``k / bins`` (``0 < k < bins``) that maximises F1, and that F1.

    Ties go to the edge nearest 0.5 (then the lower one), so a model whose F1 is flat around the
    usual default keeps it. Choose it on tiles the model is not scored on (module docstring).

    Raises:
        ValueError: A histogram with no changed pixel (F1 does not rank thresholds then), or
            with one bin (no inner edge).
    """
    if sum(histogram.changed) <= 0:
        raise ValueError("no changed pixel counted: F1 cannot choose a threshold")
    bins = histogram.bins
    if bins < 2:
        raise ValueError("a 1-bin histogram has no threshold to choose")
    best: tuple[float, float, float] | None = None  # (f1, -distance to 0.5, -edge)
    for edge in range(1, bins):
        f1 = histogram.confusion_at(edge / bins).f1
        key = (f1, -abs(edge / bins - 0.5), -edge / bins)
        if best is None or key > best:
            best = key
    assert best is not None  # bins >= 2
    return -best[2], best[0]


def average_precision_of(changed: Sequence[float], unchanged: Sequence[float]) -> float:
    """Average precision from per-bin counts of changed and unchanged pixels (bins in increasing
    probability; :class:`ChangeScoreHistogram`). Also takes sums of resampled windows."""
    positives = float(sum(changed))
    if positives <= 0:
        return math.nan
    tp = fp = 0.0
    area = 0.0
    for k in range(len(changed) - 1, -1, -1):  # the threshold falls from the top bin down
        if changed[k] == 0 and unchanged[k] == 0:
            continue
        tp += changed[k]
        fp += unchanged[k]
        area += (changed[k] / positives) * (tp / (tp + fp))
    return area


def change_metrics(
    prediction: Tensor, target: Tensor, valid: Tensor | None = None, *, threshold: float = 0.5
) -> dict[str, float]:
    """The metrics of one set of masks (:meth:`ChangeConfusion.update` then ``as_dict``)."""
    return ChangeConfusion().update(prediction, target, valid, threshold=threshold).as_dict()
