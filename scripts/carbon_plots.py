"""Plot-level carbon from the real Finnish forest inventory plots (issue 4, item 2).

1. Carbon density of every plot from its measured stem volume with the IIDM paper's
   ``C = V x delta x rho x gamma`` (delta 1.90, rho 0.5 t/m3, gamma 0.5): Juupajoki (178 plots) and
   Orivesi (659 plots), per species group too (pine, spruce, deciduous volumes).
2. The paper's per-pixel baselines (OLS, random forest, SVR; bands + NDVI/EVI) at plot level:
   Orivesi plots carry the mean Sentinel-2 reflectance of each plot (10 bands); 5-fold
   cross-validated predictions of plot carbon give RMSE and R^2 on plots never used for fitting.

Writes ``reports/carbon/plots.json`` and ``reports/carbon/plots.md`` (included in the carbon
report) and a scatter plot. Runs in seconds on a CPU::

    python scripts/carbon_plots.py
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from terradiff.carbon.baselines import make_pixel_model, pixel_features
from terradiff.carbon.stock import DEFAULT_FACTORS, carbon_from_volume
from terradiff.io import atomic_write_text

S2_COLUMNS = {
    "blue": "B2", "green": "B3", "red": "B4", "re1": "B5", "re2": "B6", "re3": "B7",
    "nir": "B8", "nirnarrow": "B8A", "swir1": "B11", "swir2": "B12",
}  # fmt: skip
"""Orivesi columns -> Sentinel-2 band names (reflectance x 10,000 in the file)."""


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def site_summary(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Plot count and carbon-density statistics (Mg C/ha) of a site, total and per species."""
    out: dict[str, Any] = {"plots": len(rows)}
    for column, label in (
        ("volume", "all"),
        ("pinevol", "pine"),
        ("sprucevol", "spruce"),
        ("decidvol", "deciduous"),
    ):
        carbon = carbon_from_volume(np.array([float(r[column]) for r in rows]))
        out[label] = {
            "mean": round(float(carbon.mean()), 2),
            "median": round(float(np.median(carbon)), 2),
            "p95": round(float(np.percentile(carbon, 95)), 2),
            "max": round(float(carbon.max()), 2),
        }
    return out


def cross_validated(
    rows: list[dict[str, str]], folds: int, seed: int
) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """5-fold CV predictions of plot carbon by OLS/RF/SVR from plot-mean Sentinel-2."""
    from sklearn.model_selection import KFold, cross_val_predict

    reflectance = np.array(
        [[float(r[c]) / 10_000.0 for c in S2_COLUMNS] for r in rows], dtype=np.float64
    )  # [N, 10]
    features, names = pixel_features(reflectance.T[:, :, None], list(S2_COLUMNS.values()))
    carbon = carbon_from_volume(np.array([float(r["volume"]) for r in rows]))
    splitter = KFold(folds, shuffle=True, random_state=seed)
    results: dict[str, Any] = {"features": names, "folds": folds, "plots": len(rows)}
    predictions = {}
    for kind in ("ols", "rf", "svr"):
        predicted = cross_val_predict(make_pixel_model(kind, seed), features, carbon, cv=splitter)
        predicted = np.clip(predicted, 0, None)
        error = predicted - carbon
        results[kind] = {
            "rmse": round(float(np.sqrt(np.mean(error**2))), 2),
            "mae": round(float(np.mean(np.abs(error))), 2),
            "r2": round(float(1 - np.sum(error**2) / np.sum((carbon - carbon.mean()) ** 2)), 3),
        }
        predictions[kind] = predicted
    results["mean_carbon"] = round(float(carbon.mean()), 2)
    return results, carbon, predictions


def scatter(carbon: np.ndarray, predictions: dict[str, np.ndarray], path: Path) -> None:
    """Predicted vs measured plot carbon, one panel per model."""
    fig = Figure(figsize=(10, 3.4))
    top = float(max(carbon.max(), *(p.max() for p in predictions.values())))
    for i, (kind, predicted) in enumerate(predictions.items()):
        ax = fig.add_subplot(1, len(predictions), i + 1)
        ax.scatter(carbon, predicted, s=6, alpha=0.5)
        ax.plot([0, top], [0, top], color="k", lw=0.8)
        ax.set_title(kind.upper(), fontsize=10)
        ax.set_xlabel("measured (Mg C/ha)")
        if i == 0:
            ax.set_ylabel("predicted, 5-fold CV (Mg C/ha)")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/finland-plots"))
    parser.add_argument("--out", type=Path, default=Path("reports/carbon"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    juupajoki = read_rows(args.data / "Juupajoki_field_data.csv")
    orivesi = read_rows(args.data / "Orivesi_field+RS_data.csv")
    cv, carbon, predictions = cross_validated(orivesi, args.folds, args.seed)
    f = DEFAULT_FACTORS
    result = {
        "factors": {
            "delta": f.volume_expansion,
            "rho": f.basic_density,
            "gamma": f.carbon_fraction,
        },
        "juupajoki": site_summary(juupajoki),
        "orivesi": site_summary(orivesi),
        "orivesi_cv": cv,
    }
    atomic_write_text(args.out / "plots.json", json.dumps(result, indent=2) + "\n")
    scatter(carbon, predictions, args.out / "plots_cv.png")
    lines = [
        "### Plot level: the Finnish inventory plots",
        "",
        f"Carbon density from measured stem volume, C = V x {f.volume_expansion} x "
        f"{f.basic_density} x {f.carbon_fraction} (Mg C/ha), `python scripts/carbon_plots.py`:",
        "",
        "| site | plots | mean | median | 95th pct | max | pine mean | spruce mean "
        "| deciduous mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for site in ("juupajoki", "orivesi"):
        s = result[site]
        lines.append(
            f"| {site.capitalize()} | {s['plots']} | {s['all']['mean']} | {s['all']['median']} | "
            f"{s['all']['p95']} | {s['all']['max']} | {s['pine']['mean']} | "
            f"{s['spruce']['mean']} | {s['deciduous']['mean']} |"
        )
    lines += [
        "",
        f"The per-pixel baselines at plot level: {cv['plots']} Orivesi plots, features = the "
        f"plot-mean Sentinel-2 bands + {', '.join(cv['features'][10:])}, {cv['folds']}-fold "
        f"cross-validated (every prediction is for a plot not used in fitting); mean carbon "
        f"{cv['mean_carbon']} Mg C/ha.",
        "",
        "| model | RMSE (Mg C/ha) | MAE (Mg C/ha) | R^2 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k.upper()} | {cv[k]['rmse']} | {cv[k]['mae']} | {cv[k]['r2']} |"
        for k in ("ols", "rf", "svr")
    ]
    lines += ["", "![plot-level CV](plots_cv.png)", ""]
    atomic_write_text(args.out / "plots.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
