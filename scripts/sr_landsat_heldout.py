"""The spatially held-out Landsat check of the super-resolution study (issue 14).

The scene is cut by columns into a training part (left) and a test part (right) with a gap between
them (:func:`column_split`); the x2 config ``configs/sr/landsat_b3b4_regression_x2.yaml`` is trained
on the training crops of B3/B4 only (one run per seed) and measured on the test part only, against
bicubic, with a bootstrap over spatial blocks (:func:`block_bootstrap`), for B3/B4 (bands seen,
pixels not) and B2 (band and pixels never seen; synthetic LR and the shipped ``B2_60m`` file).
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from sr_landsat import (
    LANDSAT,
    b2_60m_provenance,
    dn_to_model,
    dn_to_unit,
    landsat_metrics,
    provenance_sentence,
    valid_30m,
    write_bicubic_lr,
)
from study_common import train

from terradiff.data.degrade import upsample_to
from terradiff.metrics.image_quality import psnr
from terradiff.report_format import SYMMETRIC_NOTE, format_interval
from terradiff.sr_mapping import super_resolve_raster
from terradiff.tasks import load_task

LANDSAT_CONFIG = "configs/sr/landsat_b3b4_regression_x2.yaml"
HELDOUT = "landsat_heldout"
TRAIN_FRACTION = 0.75
GAP = 64  # 30 m pixels between the last training column and the first test column (1.92 km)
BLOCK = 64  # bootstrap block side, 30 m pixels
RESAMPLES = 2000


# ---- the column split --------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSplit:
    """Column ranges ``[start, stop)`` of a scene: training on the left, test on the right."""

    width: int
    train: tuple[int, int]
    test: tuple[int, int]
    gap: int


def column_split(
    width: int, train_fraction: float = TRAIN_FRACTION, gap: int = GAP, multiple: int = 2
) -> ColumnSplit:
    """Cut ``width`` columns at ``train_fraction`` (rounded down to ``multiple``, so the test part
    starts on a pixel of the ``multiple``-coarser grid): the test part is every column from the
    cut on, the training part stops ``gap`` columns before it, and the test width is a multiple of
    ``multiple`` (its last odd column is dropped)."""
    cut = int(width * train_fraction) // multiple * multiple
    train_stop = cut - gap
    test_stop = cut + (width - cut) // multiple * multiple
    if train_stop <= 0 or test_stop <= cut:
        raise ValueError(f"no room for a {gap}-column gap in {width} columns at {train_fraction}")
    return ColumnSplit(width=width, train=(0, train_stop), test=(cut, test_stop), gap=gap)


def column_window(cols: tuple[int, int], height: int) -> Window:
    """The rasterio window of columns ``cols`` over ``height`` rows from the top."""
    return Window(cols[0], 0, cols[1] - cols[0], height)


def write_window(src_path: Path, out_path: Path, window: Window) -> None:
    """``window`` of ``src_path`` as a GeoTIFF with its own transform (georeferencing kept)."""
    with rasterio.open(src_path) as src:
        data = src.read(window=window)
        profile = src.profile | {
            "height": data.shape[1],
            "width": data.shape[2],
            "transform": src.window_transform(window),
        }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(data)


def prepare_heldout_data(shared: Path, work: Path) -> ColumnSplit:
    """Write the training crops of B3/B4 (``work/train``) and the 30 m test crops of B2-B4
    (``work/test``), all cut by :func:`column_split`; files already written are kept."""
    with rasterio.open(shared / LANDSAT.format(band="B3")) as src:
        width, height = src.width, src.height
    split = column_split(width)
    even_height = height // 2 * 2
    for band in ("B3", "B4"):
        out = work / "train" / Path(LANDSAT.format(band=band)).name
        if not out.is_file():
            write_window(
                shared / LANDSAT.format(band=band), out, column_window(split.train, height)
            )
    for band in ("B2", "B3", "B4"):
        out = work / "test" / Path(LANDSAT.format(band=band)).name
        if not out.is_file():
            window = column_window(split.test, even_height)
            write_window(shared / LANDSAT.format(band=band), out, window)
    return split


def train_heldout(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train (or finish) the held-out run of ``seed``: the Landsat config on the training crops."""
    work = heldout_work(args)
    prepare_heldout_data(args.shared, work)
    overrides = [
        *args.set,
        f"data.root={work / 'train'}",
        f"output_dir={work / f'seed{seed}'}",
        f"seed={seed}",
    ]
    return train(f"{HELDOUT}_seed{seed}", Path(LANDSAT_CONFIG), overrides)


def heldout_work(args: argparse.Namespace) -> Path:
    """The held-out check's work folder (cut scenes and one run per seed)."""
    root = args.runs_root if args.runs_root is not None else Path("runs/sr")
    return root / "landsat-heldout"


# ---- block bootstrap ---------------------------------------------------------------------------


def block_sums(
    pred01: torch.Tensor, target01: torch.Tensor, valid: np.ndarray, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Squared-error sums and valid-pixel counts per ``block`` x ``block`` block (row-major; edge
    blocks may be smaller), from :func:`terradiff.metrics.psnr` per block on [0, 1] images
    ``[1, 1, H, W]``. Blocks without a valid pixel have count 0."""
    height, width = valid.shape
    sse, counts = [], []
    for r in range(0, height, block):
        for c in range(0, width, block):
            keep = valid[r : r + block, c : c + block]
            n = int(keep.sum())
            counts.append(n)
            if n == 0:
                sse.append(0.0)
                continue
            window = (..., slice(r, r + block), slice(c, c + block))
            mask = torch.from_numpy(np.ascontiguousarray(keep))[None, None]
            db = float(psnr(pred01[window], target01[window], data_range=1.0, mask=mask))
            sse.append(n * 10.0 ** (-db / 10.0))
    return np.asarray(sse, dtype=np.float64), np.asarray(counts, dtype=np.int64)


def _pooled_psnr(sse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """PSNR (data range 1) of the pooled MSE, along the last axis."""
    return 10.0 * np.log10(counts.sum(axis=-1) / sse.sum(axis=-1))


def block_bootstrap(
    sse_model: np.ndarray,
    sse_bicubic: np.ndarray,
    counts: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of the pooled PSNR of the model, of bicubic and of their difference,
    resampling spatial blocks with replacement (paired: the same blocks for both).

    ``sse_model`` is ``[S, B]`` (one row per training seed) or ``[B]``; each replicate also draws
    one seed, so the interval holds seed and spatial variation. The point estimate is the mean
    over seeds of the full-sample value. Blocks with count 0 are dropped.
    """
    model = np.atleast_2d(np.asarray(sse_model, dtype=np.float64))
    keep = np.asarray(counts) > 0
    model, bicubic, n = model[:, keep], np.asarray(sse_bicubic)[keep], np.asarray(counts)[keep]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n.size, size=(resamples, n.size))
    seeds = rng.integers(0, model.shape[0], size=resamples)
    rep_model = _pooled_psnr(model[seeds[:, None], picks], n[picks])
    rep_bicubic = _pooled_psnr(bicubic[picks], n[picks])
    full_model = float(_pooled_psnr(model, np.broadcast_to(n, model.shape)).mean())
    full_bicubic = float(_pooled_psnr(bicubic, n))
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for key, full, reps in (
        ("model", full_model, rep_model),
        ("bicubic", full_bicubic, rep_bicubic),
        ("difference", full_model - full_bicubic, rep_model - rep_bicubic),
    ):
        low, high = np.percentile(reps, [tail, 100.0 - tail])
        out[key] = {
            "mean": round(full, 3),
            "low": round(float(low), 3),
            "high": round(float(high), 3),
            "level": level,
        }
    out["blocks"] = {"n": int(n.size), "seeds": int(model.shape[0]), "resamples": resamples}
    return out


# ---- the held-out measurement ------------------------------------------------------------------

#: case -> (band, LR source): "bicubic" = the 30 m test crop down-sampled by bicubic x1/2 (the
#: training degradation); "file" = the test columns of the shipped ``B2_60m`` file.
CASES = {
    "B3_bicubic_lr": ("B3", "bicubic"),
    "B4_bicubic_lr": ("B4", "bicubic"),
    "B2_bicubic_lr": ("B2", "bicubic"),
    "B2_60m_file": ("B2", "file"),
}
BLOCKS_FILE = "landsat_heldout_blocks.npz"


def prepare_test_inputs(shared: Path, work: Path, split: ColumnSplit, scaling: Any) -> None:
    """The LR inputs of every case, as GeoTIFFs in ``work/test_lr`` (georeferenced at 60 m on the
    test crops' grid)."""
    lr_dir = work / "test_lr"
    lr_dir.mkdir(parents=True, exist_ok=True)
    for case, (band, source) in CASES.items():
        out = lr_dir / f"{case}.tif"
        if out.is_file():
            continue
        with rasterio.open(work / "test" / Path(LANDSAT.format(band=band)).name) as src:
            hr_dn, profile = src.read(1).astype(np.float64), src.profile
        grid = profile["transform"] @ rasterio.Affine.scale(2)
        if source == "file":
            window = Window(split.test[0] // 2, 0, hr_dn.shape[1] // 2, hr_dn.shape[0] // 2)
            with rasterio.open(shared / LANDSAT.format(band="B2_60m")) as src:
                if src.window_transform(window) != grid:
                    raise ValueError("the B2_60m test window is not on the 30 m test grid")
            write_window(shared / LANDSAT.format(band="B2_60m"), out, window)
            continue
        write_bicubic_lr(hr_dn, scaling, profile, out)


def measure_case(
    run_dir: Path, work: Path, case: str, seed: int, scaling: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One seed's model and bicubic on one case's test part: full-part metrics, the block
    bootstrap over the part, and the block sums (for pooling over seeds)."""
    band, _ = CASES[case]
    source = work / "test_lr" / f"{case}.tif"
    out = work / f"seed{seed}" / "heldout_sr" / f"{case}.tif"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = super_resolve_raster(run_dir, source, out, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    with rasterio.open(out) as src:
        sr_dn = src.read(1).astype(np.float64)
    with rasterio.open(source) as src:
        lr_dn = src.read(1).astype(np.float64)
    with rasterio.open(work / "test" / Path(LANDSAT.format(band=band)).name) as src:
        target = src.read(1).astype(np.float64)
    if sr_dn.shape != target.shape:
        raise ValueError(f"{out}: {sr_dn.shape} is not the test crop's {target.shape}")
    bicubic = upsample_to(dn_to_model(lr_dn, scaling), target.shape)[0, 0].numpy()
    bicubic_dn = scaling.from_model(bicubic[None].astype(np.float64))[0]
    valid = valid_30m(lr_dn, target.shape) & (target > 0)
    sse_model, counts = block_sums(dn_to_unit(sr_dn, scaling), dn_to_unit(target, scaling), valid)
    sse_bicubic, _ = block_sums(dn_to_unit(bicubic_dn, scaling), dn_to_unit(target, scaling), valid)
    entry = {
        "tiles": summary.tiles,
        "seconds": round(seconds, 2),
        "valid_pixels": int(valid.sum()),
        "model": landsat_metrics(sr_dn, target, valid, scaling),
        "bicubic": landsat_metrics(bicubic_dn, target, valid, scaling),
        "bootstrap": block_bootstrap(sse_model, sse_bicubic, counts),
    }
    return entry, {"sse_model": sse_model, "sse_bicubic": sse_bicubic, "count": counts}


def _read_blocks(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write_blocks(path: Path, blocks: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **blocks)
    tmp.replace(path)


def pooled_over_seeds(blocks: dict[str, np.ndarray], seeds: list[int]) -> dict[str, Any]:
    """Per case (and B3+B4 summed per block): :func:`block_bootstrap` over blocks and seeds."""
    pooled: dict[str, Any] = {}
    groups = {case: [case] for case in CASES} | {"B3+B4_bicubic_lr": list(CASES)[:2]}
    for name, cases in groups.items():
        keys = [f"seed{s}/{c}" for s in seeds for c in cases]
        if not all(f"{k}/count" in blocks for k in keys):
            continue
        counts = sum(blocks[f"seed{seeds[0]}/{c}/count"] for c in cases)
        bicubic = sum(blocks[f"seed{seeds[0]}/{c}/sse_bicubic"] for c in cases)
        model = np.stack([sum(blocks[f"seed{s}/{c}/sse_model"] for c in cases) for s in seeds])
        pooled[name] = block_bootstrap(model, bicubic, counts)
        pooled[name]["seeds"] = list(seeds)
    return pooled


def measure_landsat_heldout(
    results: dict[str, Any], args: argparse.Namespace, save: Callable[[], None]
) -> None:
    """Train one run per ``--heldout-seeds`` seed on the training columns, measure every case on
    the test columns (each saved as measured), then pool the seeds."""
    rows, runs = results.setdefault("rows", {}), results.setdefault("runs", {})
    if HELDOUT not in args.only:
        return
    work = heldout_work(args)
    split = prepare_heldout_data(args.shared, work)
    row = rows.setdefault(HELDOUT, {})
    row["split"] = {
        "width": split.width,
        "train_columns": list(split.train),
        "test_columns": list(split.test),
        "gap_columns": split.gap,
        "test_rows": [0, _height(work / "test" / Path(LANDSAT.format(band="B2")).name)],
        "block": BLOCK,
        "resamples": RESAMPLES,
    }
    if "b2_60m_file" not in row:
        row["b2_60m_file"] = b2_60m_provenance(args.shared)
        save()
    blocks_path = args.out / BLOCKS_FILE
    blocks = _read_blocks(blocks_path)
    for seed in args.heldout_seeds:
        name = f"{HELDOUT}_seed{seed}"
        print(f"training {name} ...", flush=True)
        runs[name] = train_heldout(args, seed)
        _copy_logs(Path(runs[name]["run_dir"]), args.out / "training_logs", name)
        save()
        run_dir = Path(runs[name]["run_dir"])
        task, _ = load_task(run_dir, use_ema=True)
        scaling = task.band_info.band_scaling()
        prepare_test_inputs(args.shared, work, split, scaling)
        entries = row.setdefault("seeds", {}).setdefault(str(seed), {})
        for case in CASES:
            if case in entries and f"seed{seed}/{case}/count" in blocks:
                continue
            print(f"measuring {name} {case} ...", flush=True)
            entries[case], sums = measure_case(run_dir, work, case, seed, scaling)
            blocks |= {f"seed{seed}/{case}/{k}": v for k, v in sums.items()}
            _write_blocks(blocks_path, blocks)
            save()
    row["pooled"] = pooled_over_seeds(blocks, sorted(int(s) for s in row["seeds"]))
    save()


def _height(path: Path) -> int:
    with rasterio.open(path) as src:
        return int(src.height)


def _copy_logs(run_dir: Path, logs: Path, name: str) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "metrics.jsonl", logs / f"{name}.metrics.jsonl")
    shutil.copyfile(run_dir / "config.json", logs / f"{name}.config.json")


CASE_LABELS = {
    "B3+B4_bicubic_lr": ("B3 + B4, bicubic x1/2", "yes"),
    "B3_bicubic_lr": ("B3, bicubic x1/2", "yes"),
    "B4_bicubic_lr": ("B4, bicubic x1/2", "yes"),
    "B2_bicubic_lr": ("B2, bicubic x1/2", "no"),
    "B2_60m_file": ("B2, `B2_60m` file", "no"),
}


def heldout_command(rows: dict[str, Any]) -> list[str]:
    """The report's line naming the command of the held-out section (none without it)."""
    if HELDOUT not in rows:
        return []
    seeds = " ".join(sorted(rows[HELDOUT].get("seeds", {}), key=int))
    return [
        "The held-out Landsat section: `python scripts/sr_study.py --only landsat_heldout "
        f"--heldout-seeds {seeds}` (it adds to `results.json`; it resumes)."
    ]


def _reading(difference: dict[str, Any]) -> str:
    """What the interval of model - bicubic allows one to say."""
    if difference["low"] > 0:
        return "model better (interval above 0)"
    if difference["high"] < 0:
        return "bicubic better (interval below 0)"
    return "not distinguishable (interval contains 0)"


def heldout_report_lines(row: dict[str, Any], runs: dict[str, Any]) -> list[str]:
    """The spatially held-out Landsat section (issue 14), from ``rows["landsat_heldout"]``."""
    split, seeds = row["split"], sorted(row.get("seeds", {}), key=int)
    first = runs.get(f"{HELDOUT}_seed{seeds[0]}", {}) if seeds else {}
    steps = f"{first.get('steps', '?')} steps of batch {first.get('batch_size', '?')}"
    seed_text = (
        f"{len(seeds)} training seeds ({', '.join(seeds)}); each bootstrap replicate also draws "
        "one seed, so the intervals hold both seed and spatial variation"
        if len(seeds) > 1
        else f"one training seed ({', '.join(seeds)}): the intervals are spatial only"
    )
    train_cols, test_cols = split["train_columns"], split["test_columns"]
    lines = [
        "## Landsat-8, spatially held out (issue 14)",
        "",
        f"The scene ({split['width']} columns at 30 m) is cut by columns: the same x2 config "
        f"(`{LANDSAT_CONFIG}`, {steps}) is trained on columns {train_cols[0]}-{train_cols[1] - 1} "
        f"of B3 and B4 only (GeoTIFF crops written with their own georeferencing); the next "
        f"{split['gap_columns']} columns ({split['gap_columns'] * 30 / 1000:.2f} km) are a gap "
        f"used by nothing, and every number below is on columns {test_cols[0]}-{test_cols[1] - 1} "
        f"(rows {split['test_rows'][0]}-{split['test_rows'][1] - 1}) only, pixels the model never "
        "saw in any band. LR inputs: (a) B3/B4 test crops down-sampled by bicubic x1/2 (bands "
        "seen, pixels not; the training degradation); (b) B2 (band and pixels never seen), both "
        "down-sampled by bicubic x1/2 and as the test columns of the shipped `B2_60m` file. "
        "Each model output is made by `terradiff super-resolve` on the LR test crop alone. "
        f"PSNR (dB) on the clipped DN stretch as above, pixels within one 60 m pixel of the "
        f"empty border excluded. Intervals: 95% percentile bootstrap over "
        f"{split['block']}x{split['block']}-pixel blocks ({split['resamples']} resamples; "
        f"model and bicubic on the same blocks), {seed_text}. The blocks "
        f"({split['block'] * 30 / 1000:.2f} km) are treated as independent: correlation over "
        "longer distances would make the intervals too narrow, and one scene of one date says "
        f"nothing about other scenes. {SYMMETRIC_NOTE}",
        "",
        provenance_sentence(row["b2_60m_file"]),
        "",
        "| test input (LR) | band trained on | bicubic PSNR | model PSNR | model - bicubic | "
        "reading | blocks |",
        "|---|---|---|---|---|---|---|",
    ]
    pooled = row.get("pooled", {})
    for case in (c for c in CASE_LABELS if c in pooled):
        entry, (label, seen) = pooled[case], CASE_LABELS[case]
        lines.append(
            f"| {label} | {seen} | {format_interval(entry['bicubic'])} | "
            f"{format_interval(entry['model'])} | {format_interval(entry['difference'])} | "
            f"{_reading(entry['difference'])} | {entry['blocks']['n']} |"
        )
    lines += [
        "",
        "Per seed (PSNR/SSIM/MAE on the whole test part; the interval is over blocks):",
        "",
        "| seed | test input (LR) | bicubic PSNR | model PSNR | model - bicubic | bicubic SSIM | "
        "model SSIM | bicubic MAE (DN) | model MAE (DN) | pixels |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        for case, e in row["seeds"][seed].items():
            b, m = e["bicubic"], e["model"]
            lines.append(
                f"| {seed} | {CASE_LABELS[case][0]} | {b['psnr']:.2f} | {m['psnr']:.2f} | "
                f"{format_interval(e['bootstrap']['difference'])} | {b['ssim']:.4f} | "
                f"{m['ssim']:.4f} | {b['mae_dn']:.1f} | {m['mae_dn']:.1f} | "
                f"{e['valid_pixels']} |"
            )
    return [*lines, ""]
