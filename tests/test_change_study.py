"""The pure parts of ``scripts/change_study.py`` (issue 17, change detection)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.change_study import (
    aid_generator_lines,
    ap_lines,
    average_precisions,
    bootstrap_f1,
    counts_at,
    f1_of,
    naive_counts,
    paired_ap_difference,
    paired_difference,
    paired_lines,
    rescore_lines,
    scored_runs,
    seed_summary,
    threshold_lines,
    tile_counts,
    verdict,
)


def test_f1_from_counts() -> None:
    assert f1_of({"tp": 3, "fp": 1, "fn": 2}) == pytest.approx(6 / 9)
    assert f1_of({"tp": 0, "fp": 0, "fn": 0}) == 0.0


def test_bootstrap_interval_holds_the_pooled_f1() -> None:
    windows = [
        {"tp": 30, "fp": 10, "fn": 5, "tn": 100},
        {"tp": 2, "fp": 20, "fn": 10, "tn": 100},
        {"tp": 15, "fp": 5, "fn": 5, "tn": 100},
    ]
    result = bootstrap_f1(windows, resamples=500)
    assert result["f1"] == pytest.approx(f1_of({"tp": 47, "fp": 35, "fn": 20}))
    assert result["low"] <= result["f1"] <= result["high"] and result["low"] < result["high"]
    same = bootstrap_f1([windows[0]] * 3, resamples=100)
    assert same["low"] == pytest.approx(same["high"])  # identical tiles: no spread


def test_seed_summary_and_verdict() -> None:
    summary = seed_summary(
        [{m: v for m in ("f1", "iou", "precision", "recall")} for v in (0.4, 0.6)]
    )
    assert summary["f1"]["mean"] == pytest.approx(0.5) and summary["f1"]["n"] == 2
    wide = {"low": 0.3, "high": 0.7}
    assert verdict({"low": 0.8, "high": 0.9}, wide).endswith("target met")
    assert "not met" in verdict({"low": 0.1, "high": 0.2}, wide)
    assert verdict({"low": 0.5, "high": 0.9}, wide).startswith("not distinguishable")


def _evaluation(rows: list[tuple[int, int, int, int]]) -> dict:
    return {"per_window": [dict(zip(("tp", "fp", "fn", "tn"), r, strict=True)) for r in rows]}


def test_paired_difference_resamples_the_same_tiles_for_both_sides() -> None:
    a = tile_counts([_evaluation([(30, 10, 5, 100), (2, 20, 10, 100)])] * 2)
    assert a.tolist() == [[60, 20, 10], [4, 40, 20]]  # two seeds pooled per tile
    same = paired_difference(a, a.copy(), resamples=200)
    assert same["difference"] == 0.0 and same["low"] == same["high"] == 0.0  # paired: no spread
    better = a.copy()
    better[:, 0] += 10  # more true positives on every tile
    d = paired_difference(better, a, resamples=500)
    expected = f1_of(dict(zip(("tp", "fp", "fn"), better.sum(0), strict=True))) - f1_of(
        dict(zip(("tp", "fp", "fn"), a.sum(0), strict=True))
    )
    assert d["difference"] == pytest.approx(expected) and 0 < d["low"] <= d["high"]


def test_naive_counts_call_every_pixel_change() -> None:
    naive = naive_counts(_evaluation([(3, 1, 2, 10)]))
    assert np.array_equal(naive, [[5, 11, 0]])


def test_paired_lines_say_when_an_interval_holds_zero() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},
        "supervised_unet/seed0": {"evaluation": _evaluation(tiles)},
    }
    text = "\n".join(paired_lines(runs))
    assert "U-Net - DDPM-CD: +0.0 [+0.0, +0.0] (the interval holds 0" in text
    assert "DDPM-CD - naive all-change" in text
    assert paired_lines({"ddpm_cd/seed0": runs["ddpm_cd/seed0"]}) == []


def test_paired_lines_add_the_aid_generator_when_it_has_runs() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    better = [(34, 6, 1, 104), (10, 12, 2, 108), (19, 1, 1, 104)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},
        "supervised_unet/seed0": {"evaluation": _evaluation(tiles)},
    }
    assert "AID generator" not in "\n".join(paired_lines(runs))
    runs["ddpm_cd_aid/seed0"] = {"evaluation": _evaluation(better)}
    runs["ddpm_cd_aid/seed1"] = {"evaluation": _evaluation(better)}
    lines = [line for line in paired_lines(runs) if line.startswith("- DDPM-CD (AID generator)")]
    assert [line.split(":")[0] for line in lines] == [
        "- DDPM-CD (AID generator) - DDPM-CD",
        "- DDPM-CD (AID generator) - U-Net",
        "- DDPM-CD (AID generator) - naive all-change",
    ]
    assert all("holds 0" not in line for line in lines[:2])  # better on every tile: separated
    # pooling two identical seeds leaves F1 unchanged, so the naive comparison does not move
    one_seed = dict(runs)
    del one_seed["ddpm_cd_aid/seed1"]
    naive_line = [line for line in paired_lines(one_seed) if "AID generator) - naive" in line]
    assert naive_line == lines[2:]


def test_aid_generator_lines_describe_the_run_once_trained() -> None:
    assert aid_generator_lines(None) == []
    text = aid_generator_lines(
        {"steps": 2000, "batch_size": 16, "train_minutes": 31.5, "final_loss": 0.03}
    )[0]
    assert "2000 steps of batch 16" in text and "31.5 min" in text and "0.0300" in text


def _scored(rows: list[tuple[int, int, int, int]], seed: int) -> dict:
    """An evaluation with probability histograms (5 bins) drawn for each tile's counts."""
    rng = np.random.default_rng(seed)
    windows = []
    for tp, fp, fn, tn in rows:
        changed = rng.multinomial(tp + fn, [0.1, 0.1, 0.2, 0.2, 0.4]).tolist()
        unchanged = rng.multinomial(fp + tn, [0.4, 0.3, 0.1, 0.1, 0.1]).tolist()
        windows.append({"changed": changed, "unchanged": unchanged})
    h = np.array([[[w["changed"], w["unchanged"]] for w in windows]], np.float64).sum(axis=1)
    return {
        **_evaluation(rows),
        "f1": f1_of(dict(zip(("tp", "fp", "fn"), np.sum(rows, axis=0)[:3], strict=True))),
        "per_window_scores": windows,
        "average_precision": float(average_precisions(h)[0]),
    }


def test_vectorised_average_precision_matches_the_metric() -> None:
    from terradiff.metrics.change import average_precision_of

    rng = np.random.default_rng(0)
    histograms = rng.integers(0, 20, size=(6, 2, 7)).astype(np.float64)
    histograms[0, 0] = 0  # no changed pixel: NaN, as the metric says
    expected = [average_precision_of(h[0].tolist(), h[1].tolist()) for h in histograms]
    assert np.allclose(average_precisions(histograms), expected, equal_nan=True)
    assert np.isnan(average_precisions(histograms)[0])


def test_paired_ap_difference_is_zero_for_the_same_scores_and_positive_for_better() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    h = np.array([[w["changed"], w["unchanged"]] for w in _scored(tiles, 0)["per_window_scores"]])
    same = paired_ap_difference(h, h.copy(), resamples=200)
    assert same["difference"] == 0.0 and same["low"] == same["high"] == 0.0
    better = h.copy()
    better[:, 0, -1] += better[:, 0, 0]  # the changed pixels of the lowest bin move to the top
    better[:, 0, 0] = 0
    d = paired_ap_difference(better, h, resamples=300)
    assert d["difference"] > 0 and 0 <= d["low"] < d["high"]  # never worse on any resample


def test_ap_lines_cover_the_methods_with_histograms_and_the_naive_map() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},  # recorded before histograms
        "supervised_unet/seed0": {"evaluation": _evaluation(tiles)},
        "ddpm_cd_aid/seed0": {"evaluation": _scored(tiles, 1)},
    }
    assert ap_lines({"ddpm_cd/seed0": runs["ddpm_cd/seed0"]}, {}) == []
    rescored = {"supervised_unet/seed0": {"evaluation": _scored(tiles, 2), "retrained": True}}
    text = "\n".join(ap_lines(runs, rescored))
    assert "- U-Net: AP" in text and "- DDPM-CD (AID generator): AP" in text
    assert "- DDPM-CD: AP" not in text  # no histograms: left out, not guessed
    prevalence = sum(t[0] + t[2] for t in tiles) / sum(sum(t) for t in tiles)
    assert f"(every pixel alike): AP {100 * prevalence:.1f}" in text
    assert "- AP DDPM-CD (AID generator) - U-Net:" in text
    assert "- AP DDPM-CD (AID generator) - naive all-change:" in text
    runs["supervised_unet/seed0"]["evaluation"]["f1"] = 0.5
    lines = rescore_lines(runs, rescored)
    assert lines[-1].startswith("- supervised_unet/seed0:") and "(retrained)" in lines[-1]


def test_counts_at_a_threshold_read_the_histograms_above_and_below_it() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100)]
    evaluation = _scored(tiles, 3)  # 5 bins: edges 0.2, 0.4, 0.6, 0.8
    counts = counts_at(evaluation, 0.6)
    for row, window in zip(counts, evaluation["per_window_scores"], strict=True):
        changed, unchanged = window["changed"], window["unchanged"]
        assert row.tolist() == [sum(changed[3:]), sum(unchanged[3:]), sum(changed[:3])]
    with pytest.raises(ValueError, match="bin edge"):
        counts_at(evaluation, 0.5)


def test_threshold_lines_score_the_test_tiles_at_each_runs_training_threshold() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100), (15, 5, 5, 100)]
    runs = {
        k: {"evaluation": _evaluation(tiles)} for k in ("ddpm_cd/seed0", "supervised_unet/seed0")
    }
    rescored = {k: {"evaluation": _scored(tiles, i)} for i, k in enumerate(sorted(runs))}
    assert threshold_lines(runs, rescored, {}) == []
    calibrated = {"supervised_unet/seed0": {"threshold": 0.4}}
    text = "\n".join(threshold_lines(runs, rescored, calibrated))
    unet = counts_at(rescored["supervised_unet/seed0"]["evaluation"], 0.4).sum(0)
    expected = 100 * f1_of(dict(zip(("tp", "fp", "fn"), unet, strict=True)))
    assert f"- U-Net: thresholds 0.40; test F1 {expected:.1f} +- 0.0" in text
    assert "- DDPM-CD:" not in text  # not calibrated: left out
    assert "- U-Net - naive all-change:" in text and "U-Net - DDPM-CD" not in text
    calibrated["ddpm_cd/seed0"] = {"threshold": 0.6}
    text = "\n".join(threshold_lines(runs, rescored, calibrated))
    assert "- DDPM-CD: thresholds 0.60" in text and "- U-Net - DDPM-CD:" in text
    # a calibration made on other weights than those scored is not used
    calibrated["ddpm_cd/seed0"]["checkpoint"] = "old/step_00000500"
    assert "- DDPM-CD:" not in "\n".join(threshold_lines(runs, rescored, calibrated))


def test_scored_runs_prefer_the_rescoring_and_need_histograms() -> None:
    tiles = [(30, 10, 5, 100), (2, 20, 10, 100)]
    runs = {
        "ddpm_cd/seed0": {"evaluation": _evaluation(tiles)},  # no histograms, not re-scored
        "ddpm_cd/seed1": {"evaluation": _evaluation(tiles)},
        "supervised_unet/seed0": {"evaluation": _scored(tiles, 0)},  # a fresh study's own
    }
    rescored = {"ddpm_cd/seed1": {"evaluation": _scored(tiles, 1)}}
    scored = scored_runs(runs, rescored)
    assert sorted(scored) == ["ddpm_cd/seed1", "supervised_unet/seed0"]
    assert scored["ddpm_cd/seed1"] is rescored["ddpm_cd/seed1"]["evaluation"]
    assert scored["supervised_unet/seed0"] is runs["supervised_unet/seed0"]["evaluation"]
