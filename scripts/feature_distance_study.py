"""The offline perceptual distance on real AID scenes: what it ranks, and the x4 SR models by it.

``terradiff evaluate`` scores super-resolution with ``aid_feature_distance``
(:mod:`terradiff.metrics.feature_distance`): LPIPS's form (Zhang et al. 2018, Eq. 1) in the
layers of terradiff's own AID encoder, with unit layer weights, because LPIPS needs weights this
machine cannot download. This study writes ``reports/feature_distance``:

1. **What it ranks** (no model): the 32 AID x4 test scenes of ``reports/sr`` (144 px centre
   crops) against copies of themselves with a Gaussian blur (sigma 0.5, 1, 2 px), white noise of
   the same mean squared error as the sigma-1 blur (so PSNR cannot tell the two apart), bicubic
   down- and up-sampling (x2, x4), and a shift by one pixel. Per degradation: the mean PSNR and
   the mean distance with a percentile bootstrap interval over the scenes; the blur - noise
   difference paired over the scenes.
2. **The x4 models by it**: bicubic, the regression UNet (``reports/seeds`` runs) and one DDIM-20
   draw of SR3 and of the implicit model (the validation choices of ``reports/sr_settings``, the
   same runs and noise as there), seeds 0, 1, 2, scored by ``evaluate_super_resolution`` on those
   scenes; for seed 0 of the two diffusion models also the mean of 2 and 4 draws. Each model's
   mean over the scenes per seed, with a Student-t 95% interval over the 3 seeds; each difference
   to bicubic and to the regression UNet paired over the scenes per seed, then over the seeds.
   Nothing is chosen from these scores: every row is reported.

Runs are read, never trained: a missing run folder is an error naming the study that makes it
(``scripts/seed_study.py``, ``scripts/sr_settings_study.py``). Each model row is saved to
``OUT/rows`` as soon as it is measured, so an interrupted study resumes.

Example (two processes of one thread each, then the render)::

    python scripts/feature_distance_study.py --models sr3 &
    python scripts/feature_distance_study.py --models regression implicit
    python scripts/feature_distance_study.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.study_common import (  # noqa: E402
    machine_description,
    open_results,
    record_command,
    report_header,
)
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.metrics.feature_distance import FEATURE_DISTANCE_NAME  # noqa: E402
from terradiff.provenance import provenance_record  # noqa: E402
from terradiff.report_format import (  # noqa: E402
    SYMMETRIC_NOTE,
    difference_reading,
    format_interval,
    interval_from_samples,
    paired_bootstrap,
)

OUT = REPO / "reports" / "feature_distance"
SETTINGS_ROWS = REPO / "reports" / "sr_settings" / "rows"  # the committed one-draw rows
SEEDS = (0, 1, 2)
ENSEMBLE_SEED0 = 4  # draws per scene for seed 0 of the diffusion models (curve 1, 2, 4)
SCENES = {"num_images": 32, "image_size": 144, "batch_size": 8}  # reports/sr's x4 test crops
DIFFUSION = {**SCENES, "sampler": "ddim", "steps": 20}
#: key -> (label, run folder pattern, evaluation keywords, the study that trains the runs)
MODELS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "regression": (
        "regression UNet",
        "outputs/seeds/runs/regression/seed{seed}",
        SCENES,
        "scripts/seed_study.py",
    ),
    "sr3": (
        "SR3, validation choice",
        "outputs/sr_settings/runs/test/sr3/seed{seed}",
        DIFFUSION,
        "scripts/sr_settings_study.py --phase test",
    ),
    "implicit": (
        "implicit, validation choice",
        "outputs/sr_settings/runs/test/implicit/seed{seed}",
        DIFFUSION,
        "scripts/sr_settings_study.py --phase test",
    ),
}
BLUR_SIGMAS = (0.5, 1.0, 2.0)
#: Degradations compared pairwise: blur against noise of its MSE; a 1 px shift against a blur of
#: about its PSNR (a shift moves every edge but keeps every detail).
PAIRS = (("blur_1", "noise_matched"), ("shift_1px", "blur_2"))
METRIC = FEATURE_DISTANCE_NAME


# ---- measuring ---------------------------------------------------------------------------------


def test_scenes() -> tuple[Any, list[str]]:
    """The 32 HR test scenes ``[32, 3, 144, 144]`` in ``[-1, 1]`` and their file names, read as
    ``evaluate_super_resolution`` reads them for the regression UNet of seed 0."""
    import torch

    from terradiff.evaluate import image_names, real_dataset
    from terradiff.sr_evaluate import scene_indices
    from terradiff.tasks import load_task

    task, _ = load_task(run_folder("regression", 0), use_ema=True, device="cpu")
    dataset = real_dataset(
        task.config, split="test", image_size=SCENES["image_size"], band_info=task.band_info
    )
    indices = scene_indices(len(dataset), SCENES["num_images"])
    images = torch.stack([dataset[i]["image"] for i in indices])
    return images, image_names(dataset, indices)


def gaussian_blur(images: Any, sigma: float) -> Any:
    """``images`` blurred by a Gaussian of ``sigma`` px (separable taps to 3 sigma, reflected)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(3 * sigma))
    taps = torch.exp(-(torch.arange(-radius, radius + 1).float() ** 2) / (2 * sigma**2))
    kernel = (taps / taps.sum())[:, None] * (taps / taps.sum())[None, :]
    channels = images.shape[1]
    padded = F.pad(images, (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel.expand(channels, 1, -1, -1), groups=channels)


def degradations(hr: Any) -> dict[str, tuple[str, Any, Any]]:
    """``{key: (label, degraded, reference)}``; the shift compares overlapping windows."""
    import torch

    from terradiff.data.degrade import make_lr, upsample_to

    out: dict[str, tuple[str, Any, Any]] = {}
    for sigma in BLUR_SIGMAS:
        out[f"blur_{sigma:g}"] = (
            f"Gaussian blur, σ {sigma:g} px",
            gaussian_blur(hr, sigma),
            hr,
        )
    blurred = out["blur_1"][1]
    rms = (blurred - hr).pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    noise = noise / noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    out["noise_matched"] = ("white noise of the σ-1 blur's MSE", hr + rms * noise, hr)
    for scale in (2, 4):
        up = upsample_to(make_lr(hr, scale, "bicubic"), hr.shape[-2:])
        out[f"bicubic_x{scale}"] = (f"bicubic down and up, x{scale}", up, hr)
    out["shift_1px"] = ("1 px shift (overlapping part)", hr[..., 1:], hr[..., :-1])
    return out


def measure_degradations(out: Path) -> dict[str, Any]:
    """Part 1: PSNR and the distance of each degradation, per scene (saved to ``out``)."""
    from terradiff.metrics.feature_distance import load_feature_distance
    from terradiff.metrics.pixel import psnr

    path = out / "degradations.json"
    if path.is_file():
        return json.loads(path.read_text())
    hr, names = test_scenes()
    distance = load_feature_distance()
    rows = {}
    for key, (label, degraded, reference) in degradations(hr).items():
        rows[key] = {
            "label": label,
            "psnr": psnr(degraded, reference, reduction="none").tolist(),
            METRIC: distance(degraded, reference).tolist(),
        }
    record = {"images": names, "rows": rows, "machine": machine_description()}
    record["provenance"] = provenance_record(data_paths=["../shared/data/aid"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def run_folder(key: str, seed: int) -> Path:
    """The run folder of ``key`` and ``seed``; a missing one names the study that trains it."""
    label, pattern, _, study = MODELS[key]
    folder = REPO / pattern.format(seed=seed)
    if not (folder / "checkpoints").is_dir():
        raise SystemExit(f"{folder}: no run of {label} seed {seed}; train it with python {study}")
    return folder


def row_path(out: Path, key: str, seed: int) -> Path:
    return out / "rows" / f"{key}_seed{seed}.json"


def measure_model(out: Path, key: str, seed: int) -> None:
    """Part 2: one model and seed scored by ``evaluate_super_resolution``, saved once."""
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(out, key, seed)
    if path.is_file():
        return
    _, _, evaluation, _ = MODELS[key]
    ensemble = ENSEMBLE_SEED0 if seed == 0 and key != "regression" else 1
    print(f"measuring {key} seed {seed} ({ensemble} draw(s) per scene) ...", flush=True)
    started = time.time()
    row = evaluate_super_resolution(
        run_folder(key, seed), seed=0, ensemble=ensemble, progress=False, **evaluation
    )
    record = {
        "key": key,
        "seed": seed,
        "row": row,
        "measure_minutes": round((time.time() - started) / 60.0, 1),
        "machine": machine_description(),
        "provenance": provenance_record(data_paths=["../shared/data/aid"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


# ---- report ------------------------------------------------------------------------------------


def load_rows(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{key: {seed: evaluate row}}`` of the measured models."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for key in MODELS:
        for seed in SEEDS:
            path = row_path(out, key, seed)
            if path.is_file():
                rows.setdefault(key, {})[seed] = json.loads(path.read_text())["row"]
    return rows


def first_draw(row: dict[str, Any]) -> dict[str, list[float]]:
    """Per-scene values of one draw (the curve's size 1 of an ensemble row)."""
    curve = row.get("ensemble_curve")
    return curve["1"]["per_image"] if curve else row["per_image"]["model"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def mean_interval(values: list[float]) -> dict[str, Any]:
    """The mean over the scenes with its percentile bootstrap interval."""
    return paired_bootstrap(values, [0.0] * len(values))


def degradation_lines(record: dict[str, Any]) -> list[str]:
    rows = record["rows"]
    lines = [
        "| degradation (against the scene itself) | PSNR, dB | AID feature distance (95% bootstrap "
        "interval over the scenes) |",
        "|---|---|---|",
    ]
    scenes = len(record["images"])
    for row in rows.values():
        interval = mean_interval(row[METRIC])
        lines.append(
            f"| {row['label']} | {mean(row['psnr']):.2f} | {format_interval(interval, 3)} |"
        )
    lines.append("")
    for first, second in PAIRS:
        a, b = rows[first], rows[second]
        difference = paired_bootstrap(a[METRIC], b[METRIC])
        reading = difference_reading(difference, a["label"], b["label"], higher_is_better=False)
        lines.append(
            f"- {a['label']} minus {b['label']} (PSNR {mean(a['psnr']):.2f} vs "
            f"{mean(b['psnr']):.2f} dB), paired over the {scenes} scenes: "
            f"{format_interval(difference, 3, signed=True)}: "
            + reading.replace("is better", "is closer to the scene")
        )
    return lines


def seed_values(rows: dict[int, dict[str, Any]], side: str, metric: str) -> dict[int, list[float]]:
    """Per-scene values of ``side`` (``model``: one draw; ``bicubic``) by seed."""
    return {
        seed: (first_draw(row) if side == "model" else row["per_image"]["bicubic"])[metric]
        for seed, row in rows.items()
    }


def model_lines(rows: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lines = [
        "| method (diffusion: one draw) | seeds | PSNR, dB (over seeds) "
        "| AID feature distance (over seeds) | high-frequency power, dB |",
        "|---|---|---|---|---|",
    ]
    reference = next(iter(rows.values()))
    table = {
        "bicubic": ("bicubic", seed_values(reference, "bicubic", "psnr"), reference, "bicubic")
    }
    for key, by_seed in rows.items():
        table[key] = (MODELS[key][0], seed_values(by_seed, "model", "psnr"), by_seed, "model")
    for label, psnrs, by_seed, side in table.values():
        distances = seed_values(by_seed, side, METRIC)
        power = seed_values(by_seed, side, "hf_power_db")
        cells = [
            format_interval(interval_from_samples([mean(v) for v in values.values()]), digits)
            for values, digits in ((psnrs, 2), (distances, 3), (power, 1))
        ]
        lines.append(f"| {label} | {len(psnrs)} | " + " | ".join(cells) + " |")
    lines.append("")
    for key, by_seed in rows.items():
        for other, other_label in (("bicubic", "bicubic"), ("regression", "regression UNet")):
            if other == key or (other != "bicubic" and other not in rows):
                continue
            lines.append("- " + difference_line(key, by_seed, other, rows, other_label))
    return lines


def difference_line(
    key: str,
    by_seed: dict[int, dict[str, Any]],
    other: str,
    rows: dict[str, dict[int, dict[str, Any]]],
    other_label: str,
) -> str:
    """``key`` minus ``other`` in the distance: per seed paired over the scenes, over seeds."""
    mine = seed_values(by_seed, "model", METRIC)
    if other == "bicubic":
        theirs = seed_values(by_seed, "bicubic", METRIC)
    else:
        theirs = seed_values(rows[other], "model", METRIC)
    seeds = sorted(set(mine) & set(theirs))
    per_seed = [mean([a - b for a, b in zip(mine[s], theirs[s], strict=True)]) for s in seeds]
    over = interval_from_samples(per_seed)
    reading = difference_reading(over, MODELS[key][0], other_label, higher_is_better=False)
    seed0 = paired_bootstrap(mine[seeds[0]], theirs[seeds[0]])
    return (
        f"{MODELS[key][0]}{'' if key == 'regression' else ' (one draw)'} minus {other_label}: "
        "seeds "
        + ", ".join(f"{v:+.3f}" for v in per_seed)
        + f"; over {len(seeds)} seeds {format_interval(over, 3, signed=True)}: {reading}. "
        f"Seed {seeds[0]} paired over the scenes: {format_interval(seed0, 3, signed=True)}."
    )


def reproduction_lines(rows: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """The first draw against the committed one-draw rows of ``reports/sr_settings`` (same runs,
    same noise): the largest per-scene PSNR difference per model and seed."""
    lines = []
    for key, by_seed in rows.items():
        if key == "regression":
            continue
        gaps = []
        for seed, row in sorted(by_seed.items()):
            path = SETTINGS_ROWS / f"test_{key}_seed{seed}.json"
            if not path.is_file():
                continue
            committed_row = json.loads(path.read_text())["row"]["per_image"]
            if committed_row.get("image") != row["per_image"].get("image"):
                continue  # other scenes (or none named): nothing to compare
            committed, mine = committed_row["model"]["psnr"], first_draw(row)["psnr"]
            gaps_of_scenes = [a - b for a, b in zip(mine, committed, strict=True)]
            largest = max(abs(g) for g in gaps_of_scenes)
            gaps.append(f"seed {seed} {mean(gaps_of_scenes):+.3f} dB ({largest:.3f})")
        if gaps:
            lines.append(
                f"- {MODELS[key][0]}, first draw minus `reports/sr_settings`' row, PSNR: mean over "
                "the scenes (largest per scene): " + ", ".join(gaps)
            )
    return lines


def ensemble_lines(rows: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lines = []
    for key, by_seed in rows.items():
        curve = by_seed.get(0, {}).get("ensemble_curve")
        if not curve:
            continue
        bicubic = by_seed[0]["per_image"]["bicubic"]
        cells = []
        for size, entry in curve.items():
            values = entry["per_image"]
            cells.append(
                f"mean of {size}: PSNR {mean(values['psnr']):.2f} dB, distance "
                f"{format_interval(mean_interval(values[METRIC]), 3)}"
            )
        lines.append(
            f"- {MODELS[key][0]}, seed 0 ({len(bicubic[METRIC])} scenes): " + "; ".join(cells)
        )
        largest = max(curve, key=int)
        one, many = curve["1"]["per_image"][METRIC], curve[largest]["per_image"][METRIC]
        difference = paired_bootstrap(many, one)
        reading = difference_reading(
            difference, f"the mean of {largest}", "one draw", higher_is_better=False
        )
        lines.append(
            f"  - the mean of {largest} minus one draw, paired over the scenes: "
            f"{format_interval(difference, 3, signed=True)}: "
            + reading.replace("is better", "is closer to the reference")
        )
    return lines


def plot_plane(
    rows: dict[str, dict[int, dict[str, Any]]], record: dict[str, Any], path: Path
) -> None:
    """PSNR against the distance: each model and seed (one draw; seed-0 ensemble means as open
    markers) and the degradations of part 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for key, row in record["rows"].items():
        ax.scatter(mean(row["psnr"]), mean(row[METRIC]), marker="x", color="grey")
        ax.annotate(key, (mean(row["psnr"]), mean(row[METRIC])), fontsize=7, color="grey")
    reference = next(iter(rows.values()))
    points = {
        "bicubic": [first for first in (r["per_image"]["bicubic"] for r in reference.values())]
    }
    for key, by_seed in rows.items():
        points[MODELS[key][0]] = [first_draw(row) for row in by_seed.values()]
    for label, values in points.items():
        xs = [mean(v["psnr"]) for v in values]
        ys = [mean(v[METRIC]) for v in values]
        ax.scatter(xs, ys, label=label)
    for key, by_seed in rows.items():
        curve = by_seed.get(0, {}).get("ensemble_curve") or {}
        for size, entry in curve.items():
            if size != "1":
                values = entry["per_image"]
                ax.scatter(
                    mean(values["psnr"]),
                    mean(values[METRIC]),
                    facecolors="none",
                    edgecolors="black",
                )
                ax.annotate(
                    f"{key} mean of {size}",
                    (mean(values["psnr"]), mean(values[METRIC])),
                    fontsize=7,
                )
    ax.set_xlabel("PSNR, dB (higher: closer in pixels)")
    ax.set_ylabel("AID feature distance (lower: closer in features)")
    ax.set_title("32 AID x4 test scenes: pixels against features")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path) -> None:
    record = measure_degradations(out) if (out / "degradations.json").is_file() else None
    rows = load_rows(out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    title = "An offline perceptual distance: what it ranks, and the AID x4 models by it"
    lines = [
        *report_header(title, results),
        "`aid_feature_distance` (`terradiff.metrics.feature_distance`) is LPIPS's form (Zhang et "
        "al. 2018, Eq. 1: channel-normalised activations, squared differences averaged over "
        "pixels, summed over layers) in the five layers (stem and four stages) of terradiff's own "
        "AID scene classifier (`terradiff/assets/aid_encoder.*`, the FID encoder), with every "
        "layer weighted 1. It is **not LPIPS**: LPIPS's layer weights were fitted to human "
        "judgements and its backbone to ImageNet; nothing here was checked against human "
        "judgements. The encoder was trained on AID itself (80% of its images, not split by "
        "these test scenes), so these scenes may be among its training images.",
        "",
        SYMMETRIC_NOTE,
        "",
    ]
    if record is not None:
        lines += ["## What it ranks (no model)", "", *degradation_lines(record), ""]
    if rows:
        lines += [
            "## The x4 models by it",
            "",
            "Bicubic's row is its values in the evaluations of the first model's seeds (the same "
            "scenes). A difference below 0 means closer to the reference than the other.",
            "",
            *model_lines(rows),
            "",
            "The mean of several draws (seed 0; lower is closer):",
            "",
            *ensemble_lines(rows),
            "",
            "Same runs and noise seed as the committed one-draw rows. A draw follows the "
            "floating-point order of the machine and thread count, so single scenes differ while "
            "the mean over the scenes stays close (as in `reports/sr_ensemble`):",
            "",
            *reproduction_lines(rows),
            "",
        ]
        if record is not None:
            plot_plane(rows, record, out / "plane.png")
            lines += ["![PSNR against the AID feature distance](plane.png)", ""]
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["## Reading", "", reading.read_text().strip(), ""]
    atomic_write_text(out / "README.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to measure (default all; none given: the degradations only)",
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true", help="re-render from saved rows")
    args = parser.parse_args(argv)
    if not args.report_only:
        results, save = open_results(
            args.out, report_only=False, data_paths=["../shared/data/aid"], merge=["commands"]
        )
        record_command(results, argv)
        save()
        measure_degradations(args.out)
        for key in args.models:
            for seed in args.seeds:
                measure_model(args.out, key, seed)
    write_report(args.out)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
