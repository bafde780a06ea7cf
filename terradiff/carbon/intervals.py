"""Intervals for carbon maps scored on whole chips: a block bootstrap over the chip's pixels.

Neighbouring pixels of a map are correlated, so resampling pixels would give intervals far too
narrow; the chip is cut into square blocks and the blocks are resampled instead (the moving /
non-overlapping block bootstrap of Kunsch 1989; percentile intervals as in Efron & Tibshirani
1993, ch. 13). Each block is reduced to six sums (:data:`STAT_NAMES`), from which RMSE, MAE,
R^2 and bias of any resample follow exactly (:func:`metrics_from_stats`). Several seeds (or
sampling draws) of one model are a leading axis; each replicate draws one of them, so the
interval holds that variation too. Two models scored on the same chips get the same resampled
blocks, which makes their difference paired.
"""

from __future__ import annotations

import numpy as np

STAT_NAMES = ("n", "sum_e", "sum_e2", "sum_abs_e", "sum_t", "sum_t2")
"""Per-block sufficient statistics (e = prediction - truth, t = truth, masked pixels)."""


def block_stats(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, block: int) -> np.ndarray:
    """``[n_blocks, 6]`` sums (:data:`STAT_NAMES`) over the masked pixels of each
    ``block`` x ``block`` tile (edge tiles smaller); tiles with no masked pixel keep n = 0."""
    rows = []
    for i in range(0, truth.shape[0], block):
        for j in range(0, truth.shape[1], block):
            m = mask[i : i + block, j : j + block].astype(bool)
            t = truth[i : i + block, j : j + block][m].astype(np.float64)
            e = pred[i : i + block, j : j + block][m].astype(np.float64) - t
            rows.append([m.sum(), e.sum(), (e**2).sum(), np.abs(e).sum(), t.sum(), (t**2).sum()])
    return np.asarray(rows, dtype=np.float64)


def metrics_from_stats(totals: np.ndarray) -> dict[str, np.ndarray]:
    """RMSE, MAE, R^2 (1 - SS_res / SS_tot) and bias from summed statistics ``[..., 6]``
    (NaN where no pixel was counted)."""
    n, se, se2, sae, st, st2 = np.moveaxis(np.asarray(totals, dtype=np.float64), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_tot = st2 - st**2 / n
        r2 = np.where(ss_tot > 0, 1.0 - se2 / ss_tot, np.nan)
        return {"rmse": np.sqrt(se2 / n), "mae": sae / n, "r2": r2, "bias": se / n}


def resample_counts(n_blocks: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[resamples, n_blocks]``: how often each block is drawn (n_blocks draws, replaced)."""
    draws = rng.integers(0, n_blocks, size=(resamples, n_blocks))
    counts = np.zeros((resamples, n_blocks))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts


def block_bootstrap(folds: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Replicate totals ``[resamples, 6]``: per fold (``[seeds, blocks, 6]``) the blocks
    resampled (stratified by fold) and one seed drawn, then summed over folds.

    The block draws depend on ``seed`` and the block counts only, so two models scored on the
    same chips get the same resampled blocks (paired differences).
    """
    block_rng, seed_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    totals = np.zeros((resamples, len(STAT_NAMES)))
    for stats in folds:
        counts = resample_counts(stats.shape[1], resamples, block_rng)
        chosen = stats[seed_rng.integers(0, stats.shape[0], size=resamples)]
        totals += np.einsum("rb,rbk->rk", counts, chosen)
    return totals
