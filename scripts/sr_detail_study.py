"""How much detail each AID x4 super-resolution model puts where the LR image has none.

PSNR rewards the conditional mean ``E[HR | LR]``, which is blurred: the regression UNet leads on
it, and the mean of N diffusion draws climbs towards it (``reports/sr_ensemble``). What a draw of
a diffusion model should give in exchange is the reference's amount of fine detail. This study
sets the two side by side (the perception-distortion trade-off, Blau & Michaeli 2018, CVPR), on the
32 AID x4 test scenes of ``reports/sr_ensemble`` (144 px centre crops):

* ``hf_power_db``: the power above the LR Nyquist frequency (0.125 cycles per HR pixel at x4)
  against the reference's, in dB (0: the reference's amount of detail; -3: half of it), and
  ``lsd_hf_db``, the log-spectral distance over those frequencies (0: the same spectrum); both
  from :mod:`terradiff.metrics.spectrum`, computed by ``terradiff evaluate`` beside PSNR;
* the methods: bicubic; the regression UNet (``configs/sr/aid_regression_x4.yaml``, seeds 0-2,
  retrained here in ``outputs/seeds/runs`` as ``reports/seeds`` trains them); SR3 and the implicit
  model (validation choices of ``reports/sr_settings``): one DDIM-20 draw and the mean of 2, 4, 8
  draws, read from the rows of ``reports/sr_ensemble`` (same runs, same noise);
* each method's mean over the scenes per seed, then a Student-t 95% interval over the 3 seeds;
  for seed 0 the paired differences of chosen methods with a bootstrap over the scenes. Nothing
  is chosen here: every method and size is reported;
* whether the references' detail is JPEG block edges: the share of their power above the LR
  Nyquist frequency on the frequency lines of an 8 and a 16 px grid, against the share of the
  frequency bins on those lines (:func:`block_grid_share`).

Neither measure is a perceptual metric validated against human judgements (LPIPS is, and needs
local weights that this machine does not have); they say how much detail there is above the LR's
frequencies, not whether it is in the right place: the PSNR beside them says that.

Example::

    python scripts/sr_ensemble_study.py --refresh
    python scripts/sr_detail_study.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.seed_study import REPLICATES, SEEDS, overrides_for, seed_zero_row  # noqa: E402
from scripts.seed_study import row_path as seed_row_path  # noqa: E402
from scripts.sr_ensemble_study import (  # noqa: E402
    has_spectral_measures,
    load_measured,
    one_size,
)
from scripts.sr_settings_study import TEST_MODELS  # noqa: E402
from scripts.study_common import machine_description, train  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.report_format import (  # noqa: E402
    format_interval,
    interval_from_samples,
    paired_bootstrap,
)

METRICS = ("psnr", "hf_power_db", "lsd_hf_db")
ENSEMBLE_DIR = REPO / "reports" / "sr_ensemble"
#: The seed-0 differences read over the scenes: (method a, method b).
READ_PAIRS = (
    ("SR3, 1 draw", "regression UNet"),
    ("SR3, mean of 8", "regression UNet"),
    ("implicit, 1 draw", "regression UNet"),
    ("implicit, mean of 8", "regression UNet"),
    ("SR3, 1 draw", "implicit, 1 draw"),
    ("regression UNet", "bicubic"),
    ("SR3, 1 draw", "SR3, mean of 8"),
)


def regression_path(out: Path, seed: int) -> Path:
    return out / "rows" / f"regression_seed{seed}.json"


def measure_regression(seed: int, out: Path, runs_root: Path) -> None:
    """Train (or reuse) the regression UNet of ``seed`` and score it, spectral measures too."""
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = regression_path(out, seed)
    if path.is_file():
        return
    replicate = REPLICATES["regression"]
    print(f"training (or reusing) the regression UNet, seed {seed} ...", flush=True)
    run = train(
        f"regression_seed{seed}", Path(replicate.config), overrides_for(replicate, seed, runs_root)
    )
    row = evaluate_super_resolution(run["run_dir"], seed=0, **replicate.evaluation)
    record = {"seed": seed, "run": run, "row": row, "machine": machine_description()}
    record["reproduction"] = regression_reproduction(row, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def regression_reproduction(row: dict[str, Any], seed: int) -> dict[str, Any]:
    """This run's PSNR against the committed row of the same seed (``reports/sr`` for seed 0,
    ``reports/seeds`` otherwise), image by image: retraining is not bit-exact across machines."""
    if seed == 0:
        committed = seed_zero_row(REPLICATES["regression"])
    else:
        path = seed_row_path(REPO / "reports" / "seeds", "regression", seed)
        committed = json.loads(path.read_text())["row"] if path.is_file() else None
    if committed is None or "per_image" not in committed:
        return {"compared": False}
    if committed["per_image"]["image"] != row["per_image"]["image"]:
        raise RuntimeError(f"regression seed {seed}: not the test scenes of the committed row")
    gaps = [
        a - b
        for a, b in zip(
            row["per_image"]["model"]["psnr"], committed["per_image"]["model"]["psnr"], strict=True
        )
    ]
    return {
        "compared": True,
        "mean_psnr_difference": sum(gaps) / len(gaps),
        "max_abs_psnr_difference": max(abs(g) for g in gaps),
    }


def spectra_path(out: Path) -> Path:
    return out / "rows" / "spectra_seed0.json"


def measure_spectra(out: Path, runs_root: Path, ensemble_runs: Path) -> None:
    """The radial power spectra (bands summed, 4 px border cropped) of HR, bicubic, the
    regression UNet and one DDIM-20 draw (noise seed 0) of SR3 and of the implicit model, seed-0
    runs, averaged over the test scenes; saved once for :func:`plot_spectra`."""
    import torch

    from terradiff.data.degrade import make_lr, upsample_to
    from terradiff.evaluate import real_dataset
    from terradiff.metrics.spectrum import radial_power_spectrum
    from terradiff.sr_evaluate import scene_indices
    from terradiff.tasks import load_task

    path = spectra_path(out)
    if path.is_file():
        return
    settings = TEST_MODELS["sr3"].evaluation()
    runs = {
        "regression UNet": runs_root / "regression" / "seed0",
        "SR3, 1 draw": ensemble_runs / "test" / "sr3" / "seed0",
        "implicit, 1 draw": ensemble_runs / "test" / "implicit" / "seed0",
    }
    images: dict[str, list] = {"HR": [], "bicubic": []}
    for method, run in runs.items():
        print(f"spectra: {method} ({run}) ...", flush=True)
        task, _ = load_task(run, use_ema=True, device="cpu")
        dataset = real_dataset(task.config, split="test", image_size=settings["image_size"])
        indices = scene_indices(len(dataset), settings["num_images"])
        generator = torch.Generator().manual_seed(0)
        spec = task.sampling_spec("ddim", 20) if task.method.name != "regression" else None
        images[method] = []
        for start in range(0, len(indices), settings["batch_size"]):
            batch = indices[start : start + settings["batch_size"]]
            hr = torch.stack([dataset[i]["image"] for i in batch])
            lr = make_lr(hr, 4, "bicubic")
            out_size = tuple(hr.shape[-2:])
            result = task.super_resolve(
                task.net, lr, out_size=out_size, spec=spec, generator=generator
            )
            images[method].append(result.sample.float())
            if method == "regression UNet":
                images["HR"].append(hr)
                images["bicubic"].append(upsample_to(lr, out_size))
            elif not torch.equal(hr, images["HR"][start // settings["batch_size"]]):
                raise RuntimeError(f"{run}: not the regression run's test scenes")
    spectra, frequencies = {}, None
    for method, batches in images.items():
        frequencies, power = radial_power_spectrum(torch.cat(batches)[..., 4:-4, 4:-4])
        spectra[method] = power.mean(0).tolist()
    record = {
        "frequencies": frequencies.tolist(),
        "spectra": spectra,
        "runs": {k: str(v) for k, v in runs.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def block_grid_share(images: Any, period: int, low: float = 0.125) -> dict[str, float]:
    """How much of the power above ``low`` cycles/px lies on the lines of a ``period``-px grid.

    A JPEG's block grid (8 px; 16 px for 4:2:0 chroma) repeats every ``period`` pixels, so its
    power sits at horizontal or vertical frequencies ``k / period`` (here +-1 frequency bin). The
    share of the power above ``low`` on those lines is set against the share of the frequency
    bins they hold: about equal means no excess power on the grid. ``images``: ``[B, C, H, W]``.
    """
    import torch

    from terradiff.metrics.spectrum import power_spectrum

    power = power_spectrum(images).mean(0)
    height, width = power.shape
    fy = torch.fft.fftfreq(height, dtype=power.dtype)[:, None].expand(height, width)
    fx = torch.fft.fftfreq(width, dtype=power.dtype)[None, :].expand(height, width)
    high = (fx.hypot(fy) > low) & (fx.hypot(fy) <= 0.5)
    on_grid = torch.zeros_like(high)
    for k in range(1, period // 2 + 1):
        for size, axis in ((height, 0), (width, 1)):
            centre = round(k / period * size)
            for index in {(sign * centre + d) % size for sign in (1, -1) for d in (-1, 0, 1)}:
                on_grid.select(axis, index).fill_(True)
    return {
        "period": period,
        "power_share": float(power[high & on_grid].sum() / power[high].sum()),
        "bin_share": float((high & on_grid).sum() / high.sum()),
    }


def block_grid_path(out: Path) -> Path:
    return out / "rows" / "block_grid.json"


def measure_block_grid(out: Path, names: list[str], root: Path) -> None:
    """:func:`block_grid_share` of the test scenes' references (their JPEG files, centre crops
    of the evaluated size), for the 8 and 16 px grids; saved once."""
    import numpy as np
    import torch
    from PIL import Image

    path = block_grid_path(out)
    if path.is_file() or not names:
        return
    size = 144
    crops = []
    for name in names:
        array = np.asarray(Image.open(root / name).convert("RGB"), dtype=np.float64)
        top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
        crops.append(torch.from_numpy(array[top : top + size, left : left + size]).permute(2, 0, 1))
    images = torch.stack(crops)
    record = {"scenes": len(names), "shares": [block_grid_share(images, p) for p in (8, 16)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def plot_spectra(record: dict[str, Any], path: Path) -> None:
    """Mean radial power spectra on a log scale, the LR Nyquist frequency marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"HR": {"color": "k", "lw": 1.6}, "bicubic": {"color": "0.55", "ls": "--"}}
    for method, power in record["spectra"].items():
        ax.semilogy(record["frequencies"], power, label=method, **styles.get(method, {"lw": 1.0}))
    ax.axvline(0.125, color="0.6", lw=0.8, ls=":")
    ax.text(0.128, ax.get_ylim()[1], "LR Nyquist (x4)", fontsize=8, color="0.4", va="top")
    ax.set_xlabel("radial frequency, cycles per HR pixel")
    ax.set_ylabel("mean power (bands summed)")
    ax.set_title("AID x4, 32 test scenes, seed-0 runs, one draw each", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(out: Path, ensemble_dir: Path) -> tuple[dict[str, dict[int, dict[str, list]]], list]:
    """``({method: {seed: {metric: per-image values}}}, image names)`` of every measured row.

    Raises:
        RuntimeError: a row without the spectral measures, or rows of other scenes.
    """
    methods: dict[str, dict[int, dict[str, list]]] = {}
    names: list | None = None

    def add(method: str, seed: int, row: dict[str, Any], side: str = "model") -> None:
        nonlocal names
        image_names = row["per_image"]["image"]
        if names is not None and image_names != names:
            raise RuntimeError(f"{method} seed {seed}: not the same test scenes as the others")
        names = image_names
        values = row["per_image"][side]
        methods.setdefault(method, {})[seed] = {m: values[m] for m in METRICS}

    for seed in SEEDS:
        path = regression_path(out, seed)
        if path.is_file():
            row = json.loads(path.read_text())["row"]
            add("regression UNet", seed, row)
            add("bicubic", 0, row, side="bicubic")  # a function of the scenes alone
    for key in TEST_MODELS:
        short = key if key != "sr3" else "SR3"
        for seed, record in sorted(load_measured(ensemble_dir, key).items()):
            if not has_spectral_measures(record):
                raise RuntimeError(
                    f"{ensemble_dir}/rows/{key}_seed{seed}.json has no spectral measures: run "
                    f"python scripts/sr_ensemble_study.py --refresh --models {key} --seeds {seed}"
                )
            for size in record["row"]["ensemble_curve"]:
                label = f"{short}, 1 draw" if size == "1" else f"{short}, mean of {size}"
                add(label, seed, one_size(record["row"], int(size)))
    return methods, names or []


def scene_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite)


def summarise(methods: dict[str, dict[int, dict[str, list]]]) -> dict[str, Any]:
    """Per method and metric: the scene mean of each seed and their interval over seeds."""
    summary: dict[str, Any] = {}
    for method, seeds in methods.items():
        summary[method] = {"seeds": sorted(seeds)}
        for metric in METRICS:
            per_seed = {s: scene_mean(v[metric]) for s, v in seeds.items()}
            summary[method][metric] = {
                "per_seed": per_seed,
                "over_seeds": interval_from_samples(list(per_seed.values())),
            }
    return summary


def seed_zero_differences(methods: dict[str, dict[int, dict[str, list]]]) -> dict[str, Any]:
    """Seed 0 (bicubic has no seed): ``a - b`` of :data:`READ_PAIRS`, paired over the scenes."""
    found = {}
    for a, b in READ_PAIRS:
        if 0 not in methods.get(a, {}) or 0 not in methods.get(b, {}):
            continue
        found[f"{a} - {b}"] = {
            metric: paired_bootstrap(methods[a][0][metric], methods[b][0][metric], seed=0)
            for metric in METRICS
        }
    return found


def _markdown(text: str) -> str:
    return text.replace("``", "`").replace(":mod:", "")


def cell(entry: dict[str, Any], untrained: bool = False, digits: int = 2) -> str:
    """``mean ± half-width`` over seeds; one trained run is flagged, bicubic is not a run."""
    interval = entry["over_seeds"]
    if untrained:
        return f"{interval['mean']:.{digits}f}"
    if interval["n"] == 1:
        return f"{interval['mean']:.{digits}f} (one run)"
    return format_interval(interval, digits)


def plot_plane(summary: dict[str, Any], path: Path) -> None:
    """PSNR (x) against ``hf_power_db`` (y), each method's mean over seeds with its t interval;
    the ensemble sizes of a model are joined in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--")
    families: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for method, entry in summary.items():
        family, _, size = method.partition(", ")
        draws = size.split()[-1] if size else ""  # "1 draw" -> "1", "mean of 8" -> "8"
        size_label = "1" if draws == "draw" else draws
        point = (size_label, entry["psnr"]["over_seeds"], entry["hf_power_db"]["over_seeds"])
        families.setdefault(family, []).append(point)
    for family, points in families.items():
        xs = [x["mean"] for _, x, _ in points]
        ys = [y["mean"] for _, _, y in points]
        errors = {
            "xerr": [
                [x["mean"] - x["low"] for _, x, _ in points],
                [x["high"] - x["mean"] for _, x, _ in points],
            ],
            "yerr": [
                [y["mean"] - y["low"] for _, _, y in points],
                [y["high"] - y["mean"] for _, _, y in points],
            ],
        }
        ax.errorbar(xs, ys, fmt="-o", ms=4, lw=0.9, capsize=2, label=family, **errors)
        for (size, _, _), x, y in zip(points, xs, ys, strict=True):
            if size:
                ax.annotate(size, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.legend(fontsize=8, title="numbers: draws averaged", title_fontsize=7)
    ax.text(ax.get_xlim()[0], 0.3, " the reference's detail", fontsize=8, color="0.4")
    ax.set_xlabel("PSNR, dB (higher: closer to the reference pixel by pixel)")
    ax.set_ylabel("power above the LR Nyquist frequency\nagainst the reference's, dB")
    ax.set_title("AID x4, 32 test scenes: mean over seeds, 95% t intervals", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, ensemble_dir: Path = ENSEMBLE_DIR) -> dict[str, Any]:
    """``out/README.md``, ``out/results.json`` and ``out/plane.png`` from the measured rows."""
    methods, names = collect(out, ensemble_dir)
    summary = summarise(methods)
    differences = seed_zero_differences(methods)
    lines = [
        "# Detail above the LR's frequencies against PSNR (AID x4)",
        "",
        "Commands (rows are saved as measured, so they resume):",
        "",
        *[f"    {line.strip()}" for line in __doc__.split("::")[1].strip().splitlines()],
        "",
        *_markdown(__doc__.split("\n\n")[1]).splitlines(),
        "",
        *_markdown(__doc__.split("\n\n")[2]).splitlines(),
        "",
        "| method | seeds | PSNR, dB | power above the LR Nyquist vs HR, dB "
        "| log-spectral distance there, dB |",
        "|---|---|---|---|---|",
    ]
    for method, entry in summary.items():
        untrained = method == "bicubic"
        seeds = "no training" if untrained else ", ".join(str(s) for s in entry["seeds"])
        metric_cells = " | ".join(cell(entry[m], untrained) for m in METRICS)
        lines.append(f"| {method} | {seeds} | {metric_cells} |")
    lines += [
        "",
        "Seed 0, paired over the scenes (95% percentile bootstrap, 2000 resamples; the variation "
        "over scenes only):",
        "",
    ]
    for pair, by_metric in differences.items():
        parts = [
            f"{label} {format_interval(by_metric[m], 2, ' dB', signed=True)}"
            for m, label in zip(METRICS, ("PSNR", "detail", "LSD"), strict=True)
        ]
        lines.append(f"- {pair}: " + "; ".join(parts))
    regression_records = [
        json.loads(p.read_text()) for p in (out / "rows").glob("regression_*.json")
    ]
    machines = sorted({r["machine"] for r in regression_records})
    compared = [
        r["reproduction"] for r in regression_records if r.get("reproduction", {}).get("compared")
    ]
    if compared:
        lines += [
            "",
            f"The retrained regression runs against the committed rows of the same seeds "
            f"(`reports/sr`, `reports/seeds`), image by image: mean PSNR differences "
            f"{min(c['mean_psnr_difference'] for c in compared):+.3f} to "
            f"{max(c['mean_psnr_difference'] for c in compared):+.3f} dB, at most "
            f"{max(c['max_abs_psnr_difference'] for c in compared):.2f} dB on one scene.",
        ]
    lines += [
        "",
        "![PSNR against the detail above the LR's frequencies](plane.png)",
        "",
        f"Regression runs trained and scored on: {'; '.join(machines) or '-'}. The diffusion rows "
        f"are those of `reports/sr_ensemble` (see its machine line). {len(names)} scenes.",
        "",
    ]
    if spectra_path(out).is_file():
        plot_spectra(json.loads(spectra_path(out).read_text()), out / "spectra.png")
        lines += [
            "Where the power goes, frequency by frequency (seed-0 runs, one draw; "
            "`rows/spectra_seed0.json`):",
            "",
            "![Mean radial power spectra](spectra.png)",
            "",
        ]
    if block_grid_path(out).is_file():
        grid = json.loads(block_grid_path(out).read_text())
        shares = "; ".join(
            f"{s['period']} px grid: {100 * s['power_share']:.1f}% of the power in "
            f"{100 * s['bin_share']:.1f}% of the frequency bins"
            for s in grid["shares"]
        )
        lines += [
            f"JPEG block grid of the {grid['scenes']} references (power above the LR Nyquist "
            f"frequency on the grid's lines, `rows/block_grid.json`): {shares}.",
            "",
        ]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    plot_plane(summary, out / "plane.png")
    results = {"summary": summary, "seed0_differences": differences, "scenes": names}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "README.md", "\n".join(lines))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/sr_detail"))
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/seeds/runs"))
    parser.add_argument(
        "--ensemble-runs",
        type=Path,
        default=Path("outputs/sr_settings/runs"),
        help="the run folders of reports/sr_ensemble (for the seed-0 spectra)",
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS), choices=SEEDS)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "aid")
    parser.add_argument("--report-only", action="store_true", help="render the report only")
    args = parser.parse_args(argv)
    if not args.report_only:
        for seed in args.seeds:
            measure_regression(seed, args.out, args.runs_root)
        if 0 in args.seeds:
            measure_spectra(args.out, args.runs_root, args.ensemble_runs)
        measure_block_grid(args.out, collect(args.out, ENSEMBLE_DIR)[1], args.data_root)
    write_report(args.out)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
