"""The offline perceptual loss for the light SR student: what it buys, what it costs.

The light student (``configs/sr/aid_light_x4.yaml``: SlimDiffSR's 0.085 M-parameter network
trained alone, L1 to HR, 1,000 steps of 8 crops) is the fast one-pass x4 model of these
reports: 0.54 dB above bicubic, 0.04 dB below the regression UNet (``reports/distill_teacher``),
and like every L1-trained model it is smooth (detail above the LR Nyquist frequency about 9 dB
below the reference's). ``sr.feature_distance_weight`` adds ``w`` times the AID feature distance
(:mod:`terradiff.tasks.super_resolution.perceptual`: LPIPS's form in terradiff's own AID encoder,
offline) to its L1. This study writes ``reports/perceptual_loss``:

1. **Validation** (trained on ``data.split: fit``, scored on the 32-scene ``val`` split,
   144 px centre crops, seed 0): ``w`` in :data:`WEIGHTS` and ``w = 0``. The choice, fixed
   before any run: among the weights whose mean validation PSNR is above bicubic's, the one with
   the lowest validation feature distance (the smallest weight if none stays above bicubic).
   The grid 0.01-0.3 was fixed before any run; 0.003 was added when that rule chose 0.01, the
   grid's edge, and the rule then chose among all five (validation rows only).
2. **Test** (trained on ``data.split: train``, scored on the 32 test scenes of ``reports/sr``):
   every weight at seed 0 (the trade-off curve, all reported, nothing chosen from it), and the
   chosen weight against ``w = 0`` at seeds 0, 1, 2. The ``w = 0`` test runs are those of
   ``scripts/distill_teacher_study.py`` (``none_1000``: the same recipe) when present, else
   trained here; they are scored again, since their committed rows predate the distance.

Scores: PSNR and SSIM; the AID feature distance (circular for ``w > 0``: the loss and the score
share the encoder, so it is read beside the two measures no network defines); the power above
the LR Nyquist frequency against the reference's (``hf_power_db``, 0 dB = the reference's
amount, ``reports/sr_detail``). Differences: per seed, the mean of the per-scene differences,
then Student-t 95% over the seeds; seed 0 also as a percentile bootstrap over the scenes.
Context rows (not compared): the regression UNet and one SR3 draw of ``reports/feature_distance``.

Example (two processes of one thread share the cells; then the render)::

    python scripts/perceptual_loss_study.py &
    python scripts/perceptual_loss_study.py
    python scripts/perceptual_loss_study.py --report-only
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
    claim_cell,
    is_finished,
    machine_description,
    open_results,
    record_command,
    report_header,
    train,
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

OUT = REPO / "reports" / "perceptual_loss"
CONFIG = REPO / "configs" / "sr" / "aid_light_x4.yaml"
# 0.01-0.3 fixed before any run (0 is the baseline); 0.003 added after the first round of
# validation chose the grid's smallest weight (module docstring)
WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3)
SEEDS = (0, 1, 2)
SCENES = {"num_images": 32, "image_size": 144, "batch_size": 8}  # reports/sr's x4 crops
BASELINE_RUNS = "outputs/distill_teacher/runs/none_1000/seed{seed}"  # the same recipe, w = 0
CONTEXT_ROWS = REPO / "reports" / "feature_distance" / "rows"
CONTEXT = {"regression": "regression UNet (1.68 M)", "sr3": "SR3, one DDIM-20 draw (1.68 M)"}
METRICS = {
    "psnr": ("PSNR, dB", 2, True),
    "ssim": ("SSIM", 4, True),
    FEATURE_DISTANCE_NAME: ("AID feature distance", 3, False),
    "hf_power_db": ("detail above the LR Nyquist vs HR, dB", 1, None),
}
# The same distance in a second aid-cnn encoder trained apart (``--second-encoder``): another
# seed, another held-out split, other widths and depths. The students never saw its features,
# so its reading of their gain is not circular.
SECOND = "aid_feature_distance_second"
SECOND_METRICS = {SECOND: ("AID feature distance, second encoder", 3, False)}
SECOND_ENCODER = REPO / "reports" / "perceptual_loss" / "encoder_b" / "aid_cnn_b.safetensors"
SECOND_CONTEXT = "second_encoder_context.json"


def cell_name(phase: str, weight: float, seed: int) -> str:
    return f"{phase}_w{weight:g}_seed{seed}"


def row_path(out: Path, phase: str, weight: float, seed: int) -> Path:
    return out / "rows" / f"{cell_name(phase, weight, seed)}.json"


def run_dir(runs_root: Path, phase: str, weight: float, seed: int, smoke: bool = False) -> Path:
    """The run folder of a cell (``w = 0`` on test: :data:`BASELINE_RUNS` when finished)."""
    if phase == "test" and weight == 0 and not smoke:
        committed = REPO / BASELINE_RUNS.format(seed=seed)
        if is_finished(committed, 1000):
            return committed
    return runs_root / phase / f"w{weight:g}" / f"seed{seed}"


def measure(
    out: Path,
    runs_root: Path,
    phase: str,
    weight: float,
    seed: int,
    smoke: dict[str, Any] | None = None,
) -> None:
    """Train (or resume, or read) one cell's run, score it, save its row. ``smoke``
    (``{"steps": n, "images": k}``) shrinks the run and the scenes for a test of the plumbing."""
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = row_path(out, phase, weight, seed)
    if path.is_file():
        return
    folder = run_dir(runs_root, phase, weight, seed, smoke=smoke is not None)
    scenes = dict(SCENES, num_images=smoke["images"]) if smoke else SCENES
    overrides = [
        f"seed={seed}",
        f"output_dir={folder}",
        f"data.split={'fit' if phase == 'val' else 'train'}",
        f"sr.feature_distance_weight={weight:g}",
        "train.progress=false",
        *([f"train.max_steps={smoke['steps']}", "train.save_every=1000"] if smoke else []),
    ]
    print(f"training {cell_name(phase, weight, seed)} ...", flush=True)
    started = time.time()
    run = train(cell_name(phase, weight, seed), CONFIG, overrides)
    row = evaluate_super_resolution(folder, seed=0, progress=False, **scenes)
    expected = "val" if phase == "val" else "test"
    if row["split"] != expected:
        raise RuntimeError(f"{folder}: scored on {row['split']!r}, expected {expected!r}")
    record = {
        "phase": phase,
        "weight": weight,
        "seed": seed,
        "run": run,
        "row": row,
        "minutes": round((time.time() - started) / 60.0, 1),
        "machine": machine_description(),
        "provenance": provenance_record(data_paths=["../shared/data/aid"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    print(f"{cell_name(phase, weight, seed)}: PSNR {row['model']['psnr']:.3f}", flush=True)


def load_records(out: Path) -> dict[tuple[str, float, int], dict[str, Any]]:
    """Every saved row by ``(phase, weight, seed)``; a row scored in the second encoder also
    carries that distance per scene under :data:`SECOND` (model and bicubic)."""
    records = {}
    for path in sorted((out / "rows").glob("*.json")):
        record = json.loads(path.read_text())
        if "second_encoder" in record:
            for side in ("model", "bicubic"):
                values = record["second_encoder"]["per_image"][side]
                record["row"]["per_image"][side][SECOND] = values
        records[(record["phase"], float(record["weight"]), int(record["seed"]))] = record
    return records


def score_in_second_encoder(out: Path, encoder: Path) -> None:
    """Score every test row's student again with the AID distance in ``encoder`` (same scenes,
    same crops) and save it in the row as ``second_encoder``; rows already scored in that file
    (by its fingerprint) are kept. The model's PSNR must come out as recorded: the check that
    the run scored is the run of the row."""
    from terradiff.metrics.encoders import file_fingerprint
    from terradiff.sr_evaluate import evaluate_super_resolution

    fingerprint = file_fingerprint(encoder)
    for path in sorted((out / "rows").glob("test_*.json")):
        record = json.loads(path.read_text())
        if record.get("second_encoder", {}).get("fingerprint") == fingerprint:
            continue
        checkpoint = record["row"]["checkpoint"]
        row = evaluate_super_resolution(
            checkpoint, seed=0, progress=False, distance_encoder=encoder, **SCENES
        )
        if abs(row["model"]["psnr"] - record["row"]["model"]["psnr"]) > 1e-3:
            raise RuntimeError(
                f"{checkpoint}: PSNR {row['model']['psnr']:.4f} now, "
                f"{record['row']['model']['psnr']:.4f} in {path}: not the run of this row"
            )
        record["second_encoder"] = {
            "weights": str(encoder.relative_to(REPO) if encoder.is_relative_to(REPO) else encoder),
            "fingerprint": fingerprint,
            "per_image": {
                side: row["per_image"][side][FEATURE_DISTANCE_NAME] for side in ("model", "bicubic")
            },
            "caveats": row.get("caveats", []),
        }
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        print(f"{path.stem}: second-encoder distance {row['model'][FEATURE_DISTANCE_NAME]:.3f}")


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def score_context_in_both_encoders(out: Path, encoder: Path) -> None:
    """The context models (:data:`CONTEXT`: the regression UNet and one SR3 draw) scored in the
    shipped encoder and in ``encoder`` on the same draws (one draw, seed 0, twice: the CPU
    repeats it exactly), saved to ``out/second_encoder_context.json`` per model; models already
    scored in that file are kept."""
    from terradiff.metrics.encoders import file_fingerprint
    from terradiff.sr_evaluate import evaluate_super_resolution

    path = out / SECOND_CONTEXT
    saved = json.loads(path.read_text()) if path.is_file() else {}
    fingerprint = file_fingerprint(encoder)
    for key, name in CONTEXT.items():
        source = CONTEXT_ROWS / f"{key}_seed0.json"
        if saved.get(key, {}).get("fingerprint") == fingerprint or not source.is_file():
            continue
        checkpoint = json.loads(source.read_text())["row"]["checkpoint"]
        rows = [
            evaluate_super_resolution(
                checkpoint, seed=0, progress=False, distance_encoder=weights, **SCENES
            )
            for weights in (None, encoder)
        ]
        if rows[0]["model"]["psnr"] != rows[1]["model"]["psnr"]:
            raise RuntimeError(f"{checkpoint}: the two passes drew different images")
        saved[key] = {
            "name": name,
            "checkpoint": checkpoint,
            "fingerprint": fingerprint,
            "psnr": rows[0]["model"]["psnr"],
            "hf_power_db": rows[0]["model"]["hf_power_db"],
            FEATURE_DISTANCE_NAME: rows[0]["per_image"]["model"][FEATURE_DISTANCE_NAME],
            SECOND: rows[1]["per_image"]["model"][FEATURE_DISTANCE_NAME],
        }
        atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
        print(
            f"{key}: shipped {rows[0]['model'][FEATURE_DISTANCE_NAME]:.3f}, second "
            f"{rows[1]['model'][FEATURE_DISTANCE_NAME]:.3f}",
            flush=True,
        )


def chosen_weight(records: dict[tuple[str, float, int], dict[str, Any]]) -> float | None:
    """The validation choice (module docstring); None until every validation row exists."""
    rows = [records.get(("val", w, 0)) for w in WEIGHTS]
    if any(r is None for r in rows):
        return None
    scored = {w: r["row"] for w, r in zip(WEIGHTS, rows, strict=True) if r is not None}
    above = [w for w, row in scored.items() if row["model"]["psnr"] > row["bicubic"]["psnr"]]
    if not above:
        return min(WEIGHTS)
    return min(above, key=lambda w: scored[w]["model"][FEATURE_DISTANCE_NAME])


def cells(records: dict[tuple[str, float, int], dict[str, Any]]) -> list[tuple[str, float, int]]:
    """The cells to measure now: validation, the test curve, then the choice's other seeds."""
    todo = [("val", w, 0) for w in (0.0, *WEIGHTS)] + [("test", w, 0) for w in (0.0, *WEIGHTS)]
    choice = chosen_weight(records)
    if choice is not None:
        todo += [("test", w, s) for w in (0.0, choice) for s in SEEDS[1:]]
    return [c for c in todo if c not in records]


# ---- report ------------------------------------------------------------------------------------


def per_scene(row: dict[str, Any], metric: str, side: str = "model") -> list[float]:
    return row["per_image"][side][metric]


def label(weight: float) -> str:
    return "w = 0 (L1 only)" if weight == 0 else f"w = {weight:g}"


def context_rows() -> dict[str, dict[str, Any]]:
    """``{label: row}`` of the seed-0 context models (one draw of SR3), where committed."""
    found = {}
    for key, name in CONTEXT.items():
        path = CONTEXT_ROWS / f"{key}_seed0.json"
        if path.is_file():
            row = json.loads(path.read_text())["row"]
            curve = row.get("ensemble_curve")
            model = curve["1"]["per_image"] if curve else row["per_image"]["model"]
            bicubic = row["per_image"]["bicubic"]
            found[name + ", reports/feature_distance"] = {
                "per_image": {"model": model, "bicubic": bicubic}
            }
    return found


def curve_table(records: dict[tuple[str, float, int], dict[str, Any]], phase: str) -> list[str]:
    """One phase's rows at seed 0: every weight, bicubic, and (test) the context rows."""
    head = " | ".join(name for name, _, _ in METRICS.values())
    lines = [f"| model | {head} | PSNR - bicubic (95% bootstrap over scenes) |"]
    lines.append("|---" * (len(METRICS) + 2) + "|")
    rows = [
        (label(w), records[(phase, w, 0)]["row"])
        for w in (0.0, *WEIGHTS)
        if (phase, w, 0) in records
    ]
    if not rows:
        return ["(no rows yet)"]
    bicubic = rows[0][1]
    cells_of = [("bicubic", bicubic, "bicubic")] + [(n, r, "model") for n, r in rows]
    if phase == "test":
        cells_of += [(name, row, "model") for name, row in context_rows().items()]
    for name, row, side in cells_of:
        values = [f"{mean(per_scene(row, m, side)):.{d}f}" for m, (_, d, _) in METRICS.items()]
        gain = "-"
        if side == "model":
            gain = format_interval(
                paired_bootstrap(per_scene(row, "psnr"), per_scene(row, "psnr", "bicubic")),
                2,
                signed=True,
            )
        lines.append(f"| {name} | " + " | ".join(values) + f" | {gain} |")
    return lines


def seed_comparison(
    records: dict[tuple[str, float, int], dict[str, Any]],
    weight: float,
    metrics: dict[str, tuple[str, int, bool | None]] = METRICS,
) -> dict[str, Any]:
    """``weight`` minus ``w = 0`` per metric: per-seed mean differences, Student-t over seeds,
    seed 0 bootstrapped over the scenes."""
    seeds = [s for s in SEEDS if ("test", weight, s) in records and ("test", 0.0, s) in records]
    seeds = [s for s in seeds if all(m in per_image_of(records, weight, s) for m in metrics)]
    result: dict[str, Any] = {"seeds": seeds, "metrics": {}}
    for metric in metrics:
        mine = {s: per_scene(records[("test", weight, s)]["row"], metric) for s in seeds}
        base = {s: per_scene(records[("test", 0.0, s)]["row"], metric) for s in seeds}
        per_seed = [mean([a - b for a, b in zip(mine[s], base[s], strict=True)]) for s in seeds]
        result["metrics"][metric] = {
            "per_seed": per_seed,
            "over_seeds": interval_from_samples(per_seed) if len(seeds) > 1 else None,
            "seed0": paired_bootstrap(mine[seeds[0]], base[seeds[0]]) if seeds else None,
        }
    return result


def per_image_of(
    records: dict[tuple[str, float, int], dict[str, Any]], weight: float, seed: int
) -> dict[str, list[float]]:
    """The per-scene model values of a test row and of its ``w = 0`` partner, the metrics both
    have."""
    mine = records[("test", weight, seed)]["row"]["per_image"]["model"]
    base = records[("test", 0.0, seed)]["row"]["per_image"]["model"]
    return {k: v for k, v in mine.items() if k in base}


def comparison_lines(
    comparison: dict[str, Any],
    weight: float,
    metrics: dict[str, tuple[str, int, bool | None]] = METRICS,
) -> list[str]:
    lines = []
    for metric, (name, digits, higher) in metrics.items():
        entry = comparison["metrics"][metric]
        if entry["over_seeds"] is None:
            continue
        over = entry["over_seeds"]
        if higher is None:  # detail: nearer 0 dB is better, read as a direction only
            reading = (
                "more detail"
                if over["low"] > 0
                else "less detail"
                if over["high"] < 0
                else ("not distinguishable (the interval holds 0)")
            )
        else:
            reading = difference_reading(over, label(weight), label(0.0), higher_is_better=higher)
        lines.append(
            f"- {name}, {label(weight)} minus w = 0: seeds "
            + ", ".join(f"{v:+.{digits + 1}f}" for v in entry["per_seed"])
            + f"; over {len(comparison['seeds'])} seeds "
            f"{format_interval(over, digits + 1, signed=True)}: {reading}. Seed 0 over the "
            f"scenes: {format_interval(entry['seed0'], digits + 1, signed=True)}."
        )
    return lines


def reading_lines(
    records: dict[tuple[str, float, int], dict[str, Any]],
    comparison: dict[str, Any],
    choice: float,
) -> list[str]:
    """What the comparison says, in numbers, and what it cannot say."""
    metrics = comparison["metrics"]
    if any(metrics[m]["over_seeds"] is None for m in METRICS):
        return []
    distance = metrics[FEATURE_DISTANCE_NAME]["over_seeds"]["mean"]
    psnr = metrics["psnr"]["over_seeds"]["mean"]
    detail = metrics["hf_power_db"]["over_seeds"]["mean"]
    base = records[("test", 0.0, 0)]["row"]
    base_detail = mean(per_scene(base, "hf_power_db"))
    base_gain = mean(per_scene(base, "psnr")) - mean(per_scene(base, "psnr", "bicubic"))
    context = context_rows()
    sr3 = next((r for n, r in context.items() if n.startswith("SR3")), None)
    lines = [
        "## Reading",
        "",
        f"- At the validation choice (w = {choice:g}) the student's AID feature distance falls by "
        f"{-distance:.2f} over 3 seeds, at a cost of {-psnr:.2f} dB PSNR (seed 0 stays "
        f"{base_gain + metrics['psnr']['per_seed'][0]:+.2f} dB over bicubic), and its detail "
        f"above the LR Nyquist frequency rises by {detail:.2f} dB, "
        f"{100 * detail / -base_detail:.0f}% of the {-base_detail:.1f} dB by which the L1-only "
        "student falls short of the reference.",
    ]
    if sr3 is not None:
        lines.append(
            "- The distance is circular here: the loss and the score share the AID encoder. By "
            f"it the seed-0 student at w = {choice:g} "
            f"({mean(per_scene(records[('test', choice, 0)]['row'], FEATURE_DISTANCE_NAME)):.2f})"
            f" is nearer to the reference than one SR3 draw "
            f"({mean(per_scene(sr3, FEATURE_DISTANCE_NAME)):.2f}), whose detail "
            f"({mean(per_scene(sr3, 'hf_power_db')):.1f} dB) is far nearer the reference's than "
            "the student's: a network trained against the distance lowers it by more than it "
            "adds detail. So the distance ranks models trained without it (as in "
            "`reports/feature_distance`); for a model trained with it, read PSNR, detail and the "
            "images."
        )
    lines += [
        "- The images (figure above, one run): the weighted students draw sharper edges than "
        "the L1-only one, and small dark dots and grid-like texture that grow with the weight; "
        "judge them by eye, no measure here scores artefacts.",
        "- One dataset (AID x4, 32 test scenes), 1,000 CPU "
        "steps per run, an encoder trained on AID (it may have seen these scenes); the "
        "validation scenes are a separate hash split of AID. Weights below the grid's smallest "
        f"({min(WEIGHTS):g}) were not tried.",
        "",
    ]
    return lines


def encoder_description(info_path: Path) -> str:
    """Size, architecture, seed, held-out accuracy and command of an aid-cnn encoder, from the
    JSON config beside its weights ("config not found" without it)."""
    if not info_path.is_file():
        return f"config {info_path.name} not found"
    info = json.loads(info_path.read_text())
    architecture, training = info["architecture"], info.get("training", {})
    return (
        f"{info['num_parameters']:,} parameters; widths {architecture['widths']}, blocks "
        f"{architecture['blocks']}; seed {training.get('args', {}).get('seed')}, so its own "
        f"held-out 20% of AID; held-out accuracy {100 * info['metrics']['test_accuracy']:.1f}%; "
        f"`{training.get('command', '?')}`"
    )


def second_encoder_lines(
    records: dict[tuple[str, float, int], dict[str, Any]],
    choice: float | None,
    comparison: dict[str, Any] | None,
    context: dict[str, Any] | None = None,
) -> list[str]:
    """The section on the distance in the second encoder (none before any row is scored);
    ``context``: :func:`score_context_in_both_encoders`'s file, rows below the students'."""
    scored = {k: r for k, r in records.items() if k[0] == "test" and "second_encoder" in r}
    if not scored:
        return []
    weights_file = next(iter(scored.values()))["second_encoder"]["weights"]
    info_path = (REPO / weights_file).with_suffix(".json")
    lines = [
        "## The distance in a second encoder trained apart",
        "",
        f"`{weights_file}` ({encoder_description(info_path)}). The students were trained "
        "against the shipped encoder only, so this distance is not circular for them. Same "
        "scenes and crops; `--second-encoder` scores the rows.",
        "",
        "| model (test, seed 0) | AID feature distance, shipped encoder | second encoder |",
        "|---|---|---|",
    ]
    first = scored.get(("test", 0.0, 0))
    if first is not None:
        row = first["row"]
        lines.append(
            f"| bicubic | {mean(per_scene(row, FEATURE_DISTANCE_NAME, 'bicubic')):.3f} | "
            f"{mean(per_scene(row, SECOND, 'bicubic')):.3f} |"
        )
    for weight in (0.0, *WEIGHTS):
        record = scored.get(("test", weight, 0))
        if record is not None:
            row = record["row"]
            lines.append(
                f"| {label(weight)} | {mean(per_scene(row, FEATURE_DISTANCE_NAME)):.3f} | "
                f"{mean(per_scene(row, SECOND)):.3f} |"
            )
    for entry in (context or {}).values():
        lines.append(
            f"| {entry['name']} (PSNR {entry['psnr']:.2f} dB, detail {entry['hf_power_db']:.1f} "
            f"dB; same draw in both) | {mean(entry[FEATURE_DISTANCE_NAME]):.3f} | "
            f"{mean(entry[SECOND]):.3f} |"
        )
    if choice is None or comparison is None:
        return [*lines, ""]
    second = seed_comparison(records, choice, SECOND_METRICS)
    if len(second["seeds"]) < 2:
        return [*lines, ""]
    lines += ["", *comparison_lines(second, choice, SECOND_METRICS)]
    shipped = comparison["metrics"][FEATURE_DISTANCE_NAME]["over_seeds"]
    apart = second["metrics"][SECOND]["over_seeds"]
    if shipped is not None and shipped["mean"] < 0:
        share = 100 * apart["mean"] / shipped["mean"]
        lines.append(
            f"- Of the fall in the distance the students were trained against "
            f"({shipped['mean']:+.3f}), the second encoder sees {apart['mean']:+.3f} "
            f"({share:.0f}%)."
        )
    sr3 = (context or {}).get("sr3")
    student = scored.get(("test", choice, 0))
    if sr3 is not None and student is not None:
        near = mean(per_scene(student["row"], SECOND)) < mean(sr3[SECOND])
        lines.append(
            f"- In the second encoder the seed-0 student at w = {choice:g} is "
            f"{'also nearer to' if near else 'farther from'} the reference than one SR3 draw "
            f"({mean(per_scene(student['row'], SECOND)):.3f} vs {mean(sr3[SECOND]):.3f}), "
            f"whose detail ({sr3['hf_power_db']:.1f} dB) is far nearer the reference's. "
            + (
                "So the ordering is not an artefact of the one network the students were "
                "trained against. Both encoders share AID, the scene-classification objective "
                "and the architecture family, so a blind spot they share is not ruled out: an "
                "encoder of another family (LPIPS with local weights, `--lpips-weights`) is the "
                "stronger test, not available offline."
                if near
                else "So the students' gain does not carry to an encoder trained apart."
            )
        )
    return [*lines, ""]


def plot_curve(records: dict[tuple[str, float, int], dict[str, Any]], path: Path) -> None:
    """PSNR against the distance and against detail, seed-0 test rows and context rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (label(w), records[("test", w, 0)]["row"])
        for w in (0.0, *WEIGHTS)
        if ("test", w, 0) in records
    ]
    if not points:
        return
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, (FEATURE_DISTANCE_NAME, "hf_power_db"), strict=True):
        xs = [mean(per_scene(r, metric)) for _, r in points]
        ys = [mean(per_scene(r, "psnr")) for _, r in points]
        axis.plot(xs, ys, "o-", label="light student, L1 + w x AID distance")
        for (name, _), x, y in zip(points, xs, ys, strict=True):
            axis.annotate(name.split(" (")[0], (x, y), fontsize=8)
        bicubic = points[0][1]
        axis.plot(
            mean(per_scene(bicubic, metric, "bicubic")),
            mean(per_scene(bicubic, "psnr", "bicubic")),
            "ks",
            label="bicubic",
        )
        for (name, row), marker in zip(context_rows().items(), ("^", "v"), strict=False):
            axis.plot(
                mean(per_scene(row, metric)),
                mean(per_scene(row, "psnr")),
                marker,
                color="grey",
                label=name.split(" (")[0],
            )
        axis.set_xlabel(
            METRICS[metric][0]
            + (" (lower is nearer)" if metric != "hf_power_db" else " (0 = the reference's)")
        )
        axis.set_ylabel("PSNR, dB")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("AID x4, 32 test scenes, seed 0")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_examples(
    records: dict[tuple[str, float, int], dict[str, Any]], choice: float | None, path: Path
) -> None:
    """The first two of the 32 test scenes (not picked by their scores): bicubic, the seed-0
    students at ``w = 0``, the choice and the largest weight, and HR, with a zoomed crop.
    Skipped (an existing figure kept) when a run folder is missing."""
    import torch

    from terradiff.data.degrade import upsample_to
    from terradiff.evaluate import real_dataset
    from terradiff.sr_evaluate import scene_indices
    from terradiff.tasks import load_task
    from terradiff.viz import save_comparison_figure

    shown = [w for w in dict.fromkeys((0.0, choice, max(WEIGHTS))) if w is not None]
    folders = {
        w: Path(records[("test", w, 0)]["run"]["run_dir"])
        for w in shown
        if ("test", w, 0) in records
    }
    if len(folders) < len(shown) or not all((f / "checkpoints").is_dir() for f in folders.values()):
        return
    tasks = {w: load_task(folder, use_ema=True, device="cpu")[0] for w, folder in folders.items()}
    first = tasks[0.0]
    dataset = real_dataset(
        first.config, split="test", image_size=SCENES["image_size"], band_info=first.band_info
    )
    indices = scene_indices(len(dataset), SCENES["num_images"])[:2]
    hr = torch.stack([dataset[i]["image"] for i in indices])
    lr = first.degrade(hr)
    panels = {"bicubic": upsample_to(lr, hr.shape[-2:]).clamp(-1, 1)}
    for weight, task in tasks.items():
        panels[label(weight)] = task.super_resolve(task.net, lr).sample
    panels["HR"] = hr
    save_comparison_figure(panels, path, zoom=(40, 40, 48))


def training_lines(records: dict[tuple[str, float, int], dict[str, Any]]) -> list[str]:
    lines = [
        "| run | steps x batch | train minutes (one thread) | final loss |",
        "|---|---|---|---|",
    ]
    for (phase, weight, seed), record in sorted(records.items()):
        run = record["run"]
        lines.append(
            f"| {phase}, {label(weight)}, seed {seed} | {run['steps']} x {run['batch_size']} | "
            f"{run['train_minutes']} | {run['final_loss']:.4f} |"
        )
    return lines


def write_report(out: Path) -> None:
    records = load_records(out)
    results, save = open_results(out, data_paths=["../shared/data/aid"])
    record_command(results)
    choice = chosen_weight(records)
    comparison = seed_comparison(records, choice) if choice is not None else None
    results.update(
        {
            "weights": list(WEIGHTS),
            "choice": choice,
            "comparison": comparison,
            "means": {
                cell_name(*key): {m: mean(per_scene(r["row"], m)) for m in METRICS}
                for key, r in records.items()
            },
        }
    )
    save()
    plot_curve(records, out / "curve.png")
    plot_examples(records, choice, out / "examples.png")
    lines = [
        *report_header("The offline perceptual loss for the light SR student (AID x4)", results),
        __doc__.split("\n\n", 1)[1].split("Example (")[0].strip(),
        "",
        "## Validation (seed 0, 32 `val` scenes)",
        "",
        *curve_table(records, "val"),
        "",
        f"Choice: w = {choice:g}." if choice is not None else "Choice: not yet (rows missing).",
        "",
        "## Test, seed 0: the trade-off (every weight; nothing chosen here)",
        "",
        *curve_table(records, "test"),
        "",
        "![PSNR against the AID distance and against detail](curve.png)",
        "",
        "The first two test scenes (seed-0 students; the yellow box enlarged below each):",
        "",
        "![bicubic, the students and HR on two test scenes](examples.png)",
        "",
    ]
    if comparison is not None:
        lines += [
            f"## The choice against L1 alone over seeds ({len(comparison['seeds'])} seeds)",
            "",
            SYMMETRIC_NOTE,
            "",
            *comparison_lines(comparison, choice),
            "",
            *reading_lines(records, comparison, choice),
        ]
    context_file = out / SECOND_CONTEXT
    context = json.loads(context_file.read_text()) if context_file.is_file() else None
    lines += second_encoder_lines(records, choice, comparison, context)
    lines += ["## Training", "", *training_lines(records), ""]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


def measure_all(out: Path, runs_root: Path, smoke: dict[str, Any] | None = None) -> None:
    """Measure cells until none is left, sharing them with other processes by claims; a process
    with nothing to claim waits while another still measures (the choice may add cells)."""
    while True:
        pending = cells(load_records(out))
        if not pending:
            return
        mine = next((c for c in pending if claim_cell(runs_root / "claims", cell_name(*c))), None)
        if mine is None:
            time.sleep(30)
            continue
        measure(out, runs_root, *mine, smoke=smoke)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/perceptual_loss/runs"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--second-encoder",
        type=Path,
        nargs="?",
        const=SECOND_ENCODER,
        help="score the test rows' AID distance in this other aid-cnn encoder too (default "
        "file: the one trained for this report)",
    )
    parser.add_argument(
        "--smoke", type=int, nargs=2, metavar=("STEPS", "IMAGES"), help="plumbing test only"
    )
    args = parser.parse_args(argv)
    smoke = {"steps": args.smoke[0], "images": args.smoke[1]} if args.smoke else None
    if not args.report_only:
        measure_all(args.out, args.runs_root, smoke)
        if args.second_encoder is not None:
            score_in_second_encoder(args.out, args.second_encoder.resolve())
            score_context_in_both_encoders(args.out, args.second_encoder.resolve())
    write_report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
