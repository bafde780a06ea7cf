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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ChangeConfusion", "change_metrics"]


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


def change_metrics(
    prediction: Tensor, target: Tensor, valid: Tensor | None = None, *, threshold: float = 0.5
) -> dict[str, float]:
    """The metrics of one set of masks (:meth:`ChangeConfusion.update` then ``as_dict``)."""
    return ChangeConfusion().update(prediction, target, valid, threshold=threshold).as_dict()
