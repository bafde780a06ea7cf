"""Accuracy of carbon-density maps under a mask, as the IIDM paper reports it (its Sec. 3.3).

Two groups, both over the masked (forest, valid) pixels only:

* on the normalised maps (density / ``max_density``, in [0, 1]): MAE, RMSE, PSNR and SSIM -- the
  paper's Table 1-2 metrics;
* in physical units (Mg C/ha): MAE, RMSE, bias and the coefficient of determination
  ``R^2 = 1 - SS_res / SS_tot`` -- what a carbon analyst quotes.
"""

from __future__ import annotations

import numpy as np
import torch

from terradiff.errors import DataError
from terradiff.metrics.image_quality import psnr, ssim

SSIM_WINDOW = 11
"""SSIM's Gaussian window (Wang et al. 2004); smaller maps get NaN SSIM."""


def carbon_metrics(
    predicted: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    max_density: float,
) -> dict[str, float]:
    """Masked accuracy of a carbon map (see the module docstring).

    Args:
        predicted, truth: maps in Mg C/ha, ``[H, W]`` or ``[N, H, W]`` (or ``[N, 1, H, W]``).
        mask: pixels that count (nonzero), same shape.
        max_density: the normalisation of the first group (Mg C/ha mapped to 1).

    Returns:
        ``mae_norm, rmse_norm, psnr_norm, ssim_norm, mae, rmse, bias, r2, pixels``
        (``ssim_norm`` is NaN for maps smaller than the 11x11 window).

    Raises:
        DataError: shapes differ or the mask selects no pixel.
    """
    p, t, m = (
        torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (predicted, truth, mask)
    )
    if p.shape != t.shape or p.shape != m.shape:
        raise DataError(
            f"prediction {tuple(p.shape)}, truth {tuple(t.shape)} and mask {tuple(m.shape)} "
            "must have one shape"
        )
    if p.ndim == 2:
        p, t, m = p[None, None], t[None, None], m[None, None]
    elif p.ndim == 3:
        p, t, m = p[:, None], t[:, None], m[:, None]
    elif p.ndim != 4 or p.shape[1] != 1:
        raise DataError(f"maps must be [H, W], [N, H, W] or [N, 1, H, W], got {tuple(p.shape)}")
    selected = m > 0
    count = int(selected.sum())
    if count == 0:
        raise DataError("the mask selects no pixel; nothing to evaluate")
    error = (p - t)[selected]
    truth_values = t[selected]
    ss_res = float((error**2).sum())
    ss_tot = float(((truth_values - truth_values.mean()) ** 2).sum())
    pn, tn = p / max_density, t / max_density
    norm_error = (pn - tn)[selected]
    return {
        "mae_norm": float(norm_error.abs().mean()),
        "rmse_norm": float(norm_error.square().mean().sqrt()),
        "psnr_norm": float(psnr(pn, tn, data_range=1.0, mask=m, reduction="pooled")),
        "ssim_norm": float(ssim(pn, tn, data_range=1.0, mask=m, padding="reflect"))
        if min(p.shape[-2:]) >= SSIM_WINDOW
        else float("nan"),
        "mae": float(error.abs().mean()),
        "rmse": float(error.square().mean().sqrt()),
        "bias": float(error.mean()),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "pixels": count,
    }
