"""Change-detection metrics against hand-computed values; batch accumulation; edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from terradiff.metrics.change import (
    ChangeConfusion,
    ChangeScoreHistogram,
    average_precision_of,
    change_metrics,
    f1_optimal_threshold,
)

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


def test_average_precision_equals_scikit_learn_on_binned_probabilities() -> None:
    from sklearn.metrics import average_precision_score

    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 32, 32, generator=generator) < 0.2).float()
    probability = (0.6 * target + 0.7 * torch.rand(3, 32, 32, generator=generator)).clamp(0, 1)
    histogram = ChangeScoreHistogram.empty().update(probability, target)
    binned = (probability * 100).long().clamp(0, 99)  # the bins the histogram uses
    expected = average_precision_score(target.flatten().numpy(), binned.flatten().numpy())
    assert histogram.average_precision() == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 1.0  # informative but imperfect scores: the test is not trivial


def test_average_precision_edge_values() -> None:
    target = TARGET[None]
    perfect = ChangeScoreHistogram.empty().update(0.1 + 0.8 * target, target)
    assert perfect.average_precision() == pytest.approx(1.0)
    constant = ChangeScoreHistogram.empty().update(torch.full_like(target, 0.5), target)
    assert constant.average_precision() == pytest.approx(5 / 16)  # the share of changed pixels
    nothing = ChangeScoreHistogram.empty().update(torch.rand(1, 4, 4), torch.zeros(1, 4, 4))
    assert math.isnan(nothing.average_precision())


def test_score_histograms_add_up_and_honour_the_valid_mask() -> None:
    generator = torch.Generator().manual_seed(1)
    probability = torch.rand(2, 8, 8, generator=generator)
    target = (torch.rand(2, 8, 8, generator=generator) < 0.3).float()
    whole = ChangeScoreHistogram.empty(10).update(probability, target)
    parts = ChangeScoreHistogram.empty(10).update(probability[:1], target[:1]) + (
        ChangeScoreHistogram.empty(10).update(probability[1:], target[1:])
    )
    assert parts == whole and sum(whole.changed) + sum(whole.unchanged) == 128
    assert average_precision_of(whole.changed, whole.unchanged) == whole.average_precision()
    valid = torch.zeros(2, 8, 8)
    valid[0] = 1
    masked = ChangeScoreHistogram.empty(10).update(probability, target, valid)
    assert masked == ChangeScoreHistogram.empty(10).update(probability[:1], target[:1])


def test_score_histogram_refuses_logits_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ChangeScoreHistogram.empty().update(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="same shape"):
        ChangeScoreHistogram.empty().update(torch.rand(4), torch.rand(5))
    with pytest.raises(ValueError, match="bins"):
        ChangeScoreHistogram.empty() + ChangeScoreHistogram.empty(10)


def test_confusion_at_a_bin_edge_equals_thresholding_the_probabilities() -> None:
    generator = torch.Generator().manual_seed(2)
    target = (torch.rand(2, 16, 16, generator=generator) < 0.25).float()
    # probabilities off the bin edges (x.xx5), so ">" and ">=" agree
    probability = ((torch.rand(2, 16, 16, generator=generator) * 100).floor() + 0.5) / 100
    histogram = ChangeScoreHistogram.empty().update(probability, target)
    for threshold in (0.01, 0.3, 0.5, 0.77, 0.99):
        expected = ChangeConfusion().update(probability, target, threshold=threshold)
        assert histogram.confusion_at(threshold) == expected
    for bad in (0.0, 1.0, 0.505, -0.2):
        with pytest.raises(ValueError, match="bin edge"):
            histogram.confusion_at(bad)


def test_f1_optimal_threshold_finds_the_separating_edge_and_prefers_one_half_on_ties() -> None:
    target = TARGET[None]
    # changed pixels at 0.35, unchanged at 0.15: any edge in (0.15, 0.35] separates them
    probability = 0.15 + 0.2 * target
    histogram = ChangeScoreHistogram.empty().update(probability, target)
    threshold, f1 = f1_optimal_threshold(histogram)
    assert f1 == 1.0 and threshold == pytest.approx(0.35)  # the perfect edge nearest 0.5
    assert histogram.confusion_at(0.5).f1 == 0.0  # the default would call nothing change
    # a constant score: the best F1 calls everything change, at any edge up to 0.4 (the tie
    # goes to the edge nearest 0.5)
    flat = ChangeScoreHistogram.empty().update(torch.full_like(target, 0.4), target)
    threshold, f1 = f1_optimal_threshold(flat)
    assert threshold == pytest.approx(0.4) and f1 == pytest.approx(2 * 5 / (2 * 5 + 11))
    with pytest.raises(ValueError, match="no changed pixel"):
        f1_optimal_threshold(ChangeScoreHistogram.empty().update(probability, 0 * target))


def test_score_histogram_round_trips_through_json_and_refuses_broken_counts() -> None:
    histogram = ChangeScoreHistogram.empty(10).update(torch.rand(3, 5), torch.rand(3, 5))
    assert ChangeScoreHistogram.from_dict(histogram.as_dict()) == histogram
    with pytest.raises(ValueError, match="'changed' and 'unchanged'"):
        ChangeScoreHistogram.from_dict({"changed": [1, 2]})
    with pytest.raises(ValueError, match="same, non-zero length"):
        ChangeScoreHistogram.from_dict({"changed": [1, 2], "unchanged": [3]})


def test_precision_recall_curve_points_are_the_confusions_at_the_bin_edges() -> None:
    generator = torch.Generator().manual_seed(4)
    target = (torch.rand(1, 20, 20, generator=generator) < 0.3).float()
    probability = (0.4 * target + 0.6 * torch.rand(1, 20, 20, generator=generator)).clamp(0, 1)
    histogram = ChangeScoreHistogram.empty(20).update(probability, target)
    thresholds, precision, recall = histogram.precision_recall_curve()
    assert thresholds == sorted(thresholds, reverse=True) and recall[-1] == 1.0
    for t, p, r in zip(thresholds, precision, recall, strict=True):
        if t > 0:
            confusion = histogram.confusion_at(t)
            assert (p, r) == (confusion.precision, confusion.recall)
    # AP is the recall-weighted sum of these precisions
    steps = [r - q for r, q in zip(recall, [0.0, *recall[:-1]], strict=True)]
    ap = sum(s * p for s, p in zip(steps, precision, strict=True))
    assert ap == pytest.approx(histogram.average_precision())
    assert ChangeScoreHistogram.empty().precision_recall_curve() == ([], [], [])
