"""Change-detection metrics against hand-computed values; batch accumulation; edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.metrics.change import ChangeConfusion, change_metrics

# 4 x 4 masks: 5 true change pixels, 4 predicted, 3 of them right
TARGET = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.float32)
PREDICTION = torch.tensor(
    [[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32
)


def test_hand_computed_values() -> None:
    # TP = 3 ((0,0), (0,1), (2,3)), FP = 1 ((0,2)), FN = 2 ((1,0), (3,3)), TN = 10
    m = change_metrics(PREDICTION, TARGET)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 2, 10)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))  # 2/3 = 2PR/(P+R)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))
    assert m["iou"] == pytest.approx(3 / 6)
    assert m["overall_accuracy"] == pytest.approx(13 / 16)


def test_batches_accumulate_counts_not_means() -> None:
    empty = torch.zeros(4, 4)
    total = ChangeConfusion()
    total.update(PREDICTION[None], TARGET[None])
    total.update(empty[None], empty[None])
    assert (total.tp, total.fp, total.fn, total.tn) == (3, 1, 2, 26)
    assert total.f1 == pytest.approx(2 / 3)  # the empty tile adds only true negatives
    both = ChangeConfusion().update(torch.stack([PREDICTION, empty]), torch.stack([TARGET, empty]))
    assert both == total and (ChangeConfusion().update(PREDICTION, TARGET) + both).tp == 6


def test_logits_bool_and_valid_mask() -> None:
    logits = PREDICTION * 4 - 2  # +2 where change, -2 elsewhere
    assert change_metrics(logits, TARGET, threshold=0.0) == change_metrics(PREDICTION, TARGET)
    assert change_metrics(PREDICTION.bool(), TARGET.bool())["f1"] == pytest.approx(2 / 3)
    valid = torch.ones(4, 4)
    valid[3] = 0  # drop the last row: its FN (3, 3) and three TNs
    m = change_metrics(PREDICTION, TARGET, valid)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 7)
    with pytest.raises(ValueError, match="same shape"):
        change_metrics(PREDICTION, TARGET[:2])


def test_edge_cases() -> None:
    none = torch.zeros(3, 3)
    some = torch.zeros(3, 3)
    some[0, 0] = 1
    perfect_empty = ChangeConfusion().update(none, none)
    assert perfect_empty.as_dict()["f1"] == 1.0 and perfect_empty.iou == 1.0
    assert perfect_empty.precision == 1.0 and perfect_empty.recall == 1.0
    false_alarm = ChangeConfusion().update(some, none)  # no change present, one predicted
    assert false_alarm.recall == 0.0 and false_alarm.precision == 0.0 and false_alarm.f1 == 0.0
    missed = ChangeConfusion().update(none, some)  # change present, none predicted
    assert missed.precision == 0.0 and missed.recall == 0.0 and missed.iou == 0.0
    assert math.isnan(ChangeConfusion().f1) and math.isnan(ChangeConfusion().overall_accuracy)
