"""Compression of the carbon IIDM (capability 4): PCA knowledge distillation with its one setting
chosen on the validation chip, over three teacher seeds, with intervals.

``reports/carbon`` distilled one IIDM once and raised the KD-UNet step count after a test-chip
result. Here the whole recipe is fixed beforehand and the test chip is read once, at the end:

- **Teachers**: ``configs/carbon/biomassters_iidm.yaml`` as configured (500 steps x batch 8 of
  64x64 crops of the training chip), seeds 0, 1, 2 (``--seeds``).
- **KD-VGG** (PCA KD of the VGG extractor, no fine-tuning; Hinton et al. 2015 for distillation,
  the IIDM paper's PCA variant): ``terradiff compress`` with the block / chain steps of
  ``reports/carbon`` (1,000 / 300), not tuned.
- **KD-UNet** (PCA KD of the denoising UNet): encoder and decoder phase steps from 50, 100
  or 200 (:data:`KD_UNET_GRID`), fixed before any run of this study; the one count used
  for every seed is the lowest mean validation RMSE over seeds and draws (:func:`choose_steps`).
- **Scoring**: DDIM-20 maps of a whole 256x256 chip, 2 sampling seeds per model
  (:data:`DRAWS`; each a separate sample); RMSE on the chip's forest pixels (Mg C/ha). The
  validation chip (``288afc34``) makes the choice; the test chip (``000aa810``, spring/summer
  images only, see ``reports/carbon_loco``) scores the teacher, KD-VGG and the chosen KD-UNet,
  beside the training chip's constant and forest-mean maps. Every map is scored by the code of
  ``terradiff evaluate RUN --split val|test --steps 20 --seed DRAW``, which reproduces it.
- **Intervals**: 95% percentile bootstrap over 32x32 blocks of the test chip, each replicate
  also drawing one (teacher seed, sampling draw) pair, the same pair for the two models of a
  paired difference (``terradiff.carbon.intervals``); and the Student-t interval over the three
  teacher seeds of each seed's mean RMSE (so training variation is in it).
- **Speed**: the three models' seconds per 256x256 map (DDIM-20), timed side by side in one
  process, interleaved, median of 3 (:data:`TIMING_REPEATS`).

Everything is saved to ``results.json`` as it is measured, so an interrupted study continues.
Run (``make carbon-kd-study``; ~1.2 h on 2 CPU cores)::

    python scripts/carbon_kd_study.py --work outputs/carbon_kd --out reports/carbon_kd
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from scripts.carbon_loco_study import point_metrics  # noqa: E402
from scripts.study_common import open_results, record_command, train  # noqa: E402
from terradiff.carbon.intervals import block_bootstrap as bootstrap  # noqa: E402
from terradiff.carbon.intervals import metrics_from_stats  # noqa: E402
from terradiff.io import atomic_write_text  # noqa: E402
from terradiff.report_format import (  # noqa: E402
    SYMMETRIC_NOTE,
    difference_reading,
    format_interval,
    interval_from_samples,
)

BASE = REPO / "configs/carbon/biomassters_iidm.yaml"
KD_UNET_GRID = (50, 100, 200)
"""KD-UNet phase steps tried (encoder and decoder alike), fixed before the study's first run."""
KD_VGG_STEPS = {"block_steps": 1000, "chain_steps": 300}
"""As in ``reports/carbon`` (not tuned)."""
DRAWS = 2
"""DDIM sampling seeds per (model, chip): the maps are samples, so each is drawn twice."""
TIMING_REPEATS = 3
TAILS = (2.5, 97.5)
LABELS = {
    "teacher": "IIDM (teacher)",
    "kd_vgg": "IIDM + KD-VGG",
    "kd_unet": "IIDM + KD-UNet",
    "constant": "constant (training-chip mean)",
    "forest_mean": "forest mean (training chip)",
}


def choose_steps(val_rmse: dict[str, list[float]]) -> dict[str, Any]:
    """The KD-UNet step count (keys: counts as strings) with the lowest mean validation RMSE over
    every (seed, draw); a tie goes to the fewer steps (the cheaper distillation)."""
    if not val_rmse:
        raise ValueError("no validation RMSE to choose from")
    means = {steps: float(np.mean(values)) for steps, values in val_rmse.items()}
    best = min(means, key=lambda s: (round(means[s], 9), int(s)))
    edge = best == max(means, key=int)
    return {"steps": int(best), "mean_val_rmse": means, "at_grid_edge": edge}


def stacked(cells: dict[str, Any], model: str, seeds: list[int]) -> np.ndarray:
    """``[seeds x draws, blocks, 6]`` block statistics of ``model`` on the test chip, seed-major
    (so two models stacked alike pair by teacher seed and draw)."""
    return np.concatenate([np.asarray(cells[f"s{s}/{model}"]["blocks"]) for s in seeds])


def summarise(cells: dict[str, Any], seeds: list[int], resamples: int) -> dict[str, Any]:
    """Per model: point metrics, bootstrap RMSE interval, Student-t over teacher seeds; paired
    RMSE differences to the teacher and to the constant map."""
    models = [
        m for m in ("teacher", "kd_vgg", "kd_unet") if all(f"s{s}/{m}" in cells for s in seeds)
    ]
    naive = {m: np.asarray(cells[m]["blocks"]) for m in ("constant", "forest_mean") if m in cells}
    stats = {m: stacked(cells, m, seeds) for m in models}
    # one bootstrap per map: the resampled blocks depend on the seed and block count only (not on
    # how many seeds/draws a map has), so every pair of maps below is paired on the same blocks
    replicates = {
        name: metrics_from_stats(bootstrap([arr], resamples))["rmse"]
        for name, arr in {**stats, **naive}.items()
    }
    out: dict[str, Any] = {}
    for name, arr in {**stats, **naive}.items():
        low, high = np.percentile(replicates[name], TAILS)
        point = point_metrics([arr])
        row: dict[str, Any] = {
            **point,
            "rmse_interval": {"mean": point["rmse"], "low": low, "high": high},
        }
        if name in stats:
            per_seed = [
                float(np.mean([c["rmse"] for c in cells[f"s{s}/{name}"]["metrics"]])) for s in seeds
            ]
            row["rmse_per_seed"] = per_seed
            row["rmse_seed_interval"] = interval_from_samples(per_seed)
        out[name] = row
    for name in stats:
        references = ["teacher"] if name != "teacher" and "teacher" in stats else []
        for ref_name in [*references, *naive]:
            low, high = np.percentile(replicates[name] - replicates[ref_name], TAILS)
            mean = out[name]["rmse"] - out[ref_name]["rmse"]
            out[name][f"rmse_minus_{ref_name}"] = {"mean": mean, "low": low, "high": high}
        if references:
            per_seed = np.subtract(out[name]["rmse_per_seed"], out["teacher"]["rmse_per_seed"])
            out[name]["rmse_minus_teacher_seeds"] = interval_from_samples(list(per_seed))
    return out


def fmt(interval: dict[str, Any] | None, signed: bool = False) -> str:
    return "-" if interval is None else format_interval(interval, 2, signed=signed)


def report_lines(results: dict[str, Any]) -> list[str]:
    """README.md of the report, every figure read from ``results``."""
    summary, choice = results.get("summary", {}), results.get("choice")
    lines = [
        "# Carbon IIDM compression with its setting chosen on validation (capability 4)",
        "",
        "Every number is read from `results.json` (its `provenance` holds the argv, commit,",
        f"machine and date). Machine of the measurement: {results.get('machine_measured', '?')}.",
        "Command: " + "; ".join(f"`{c}`" for c in results.get("commands", [])),
        "",
        (__doc__ or "").split("\n\n", 1)[1].split("\n\nEverything is saved")[0],
        "",
    ]
    teachers = results.get("teachers", {})
    if teachers:
        minutes = ", ".join(f"{t['train_minutes']} min" for t in teachers.values())
        lines += [f"Teachers trained: {len(teachers)} ({minutes} on this CPU).", ""]
    if choice:
        lines += ["![validation choice and test RMSE](kd.png)", ""]
        grid = ", ".join(
            f"{s} steps {v:.2f}"
            for s, v in sorted(choice["mean_val_rmse"].items(), key=lambda kv: int(kv[0]))
        )
        edge = " (the grid's edge: more steps were not tried)" if choice["at_grid_edge"] else ""
        lines += [
            "## The choice (validation chip only)",
            "",
            f"Mean validation RMSE (Mg C/ha) over seeds and draws: {grid}. Chosen: "
            f"**{choice['steps']} steps**{edge}.",
            "",
        ]
    if summary:
        lines += [
            "## Test chip (read once, after the choice)",
            "",
            "| model | parameters (of which extractor) | RMSE (Mg C/ha) | over teacher seeds | "
            "R^2 | bias | RMSE - teacher | RMSE - constant | RMSE - forest mean |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        params = results.get("parameters", {})
        for name in ("constant", "forest_mean", "teacher", "kd_vgg", "kd_unet"):
            if name not in summary:
                continue
            row = summary[name]
            p = params.get(name)
            size = "-" if p is None else f"{p['total']:,} ({p['extractor']:,})"
            lines.append(
                f"| {LABELS[name]} | {size} | "
                f"{fmt(row['rmse_interval'])} | {fmt(row.get('rmse_seed_interval'))} | "
                f"{row['r2']:.3f} | {row['bias']:+.2f} | "
                f"{fmt(row.get('rmse_minus_teacher'), True)} | "
                f"{fmt(row.get('rmse_minus_constant'), True)} | "
                f"{fmt(row.get('rmse_minus_forest_mean'), True)} |"
            )
        lines += ["", SYMMETRIC_NOTE, ""]
        lines += ["## Reading", "", *reading_lines(summary, results)]
    if results.get("notes"):
        lines += ["", "## Notes", "", *[f"- {note}" for note in results["notes"]]]
    speed = results.get("speed")
    if speed:
        lines += [
            "",
            "## Speed (one process, interleaved, seed-0 models)",
            "",
            f"| model | seconds per 256x256 map (DDIM-{speed.get('ddim_steps', '?')}), median | "
            "all repeats | vs teacher |",
            "|---|---|---|---|",
        ]
        base = speed["teacher"]["median"]
        for name in ("teacher", "kd_vgg", "kd_unet"):
            s = speed[name]
            runs = ", ".join(f"{v:.2f}" for v in s["seconds"])
            lines.append(
                f"| {LABELS[name]} | {s['median']:.2f} | {runs} | {base / s['median']:.2f}x |"
            )
        lines += ["", f"Threads: {speed['threads']}."]
    return lines


def reading_lines(summary: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """One bullet per student: what the paired intervals allow one to say."""
    lines = []
    for name in ("kd_vgg", "kd_unet"):
        if name not in summary:
            continue
        row = summary[name]
        vs_teacher = difference_reading(
            row["rmse_minus_teacher"], LABELS[name], "the teacher", higher_is_better=False
        )
        vs_constant = difference_reading(
            row["rmse_minus_constant"], LABELS[name], "the constant map", higher_is_better=False
        )
        size = size_text(results.get("parameters", {}), name)
        lines.append(
            f"- **{LABELS[name]}**{size}: against the teacher {vs_teacher} "
            f"({fmt(row['rmse_minus_teacher'], True)} Mg C/ha, blocks + seeds; over teacher "
            f"seeds {fmt(row['rmse_minus_teacher_seeds'], True)}); against the constant map "
            f"{vs_constant}."
        )
    teacher = summary.get("teacher")
    if teacher and "rmse_minus_constant" in teacher:
        lines.append(
            "- **The teacher itself** against the constant map: "
            + difference_reading(
                teacher["rmse_minus_constant"],
                "the teacher",
                "the constant map",
                higher_is_better=False,
            )
            + f" ({fmt(teacher['rmse_minus_constant'], True)}): a student that matches the "
            "teacher inherits this; compression does not make the map better than the teacher's."
        )
    return lines


def save_plot(results: dict[str, Any], path: Path) -> None:
    """Left: validation RMSE per KD-UNet step count (a line per teacher seed, the teacher's own
    level dashed). Right: test RMSE with its 95% interval (blocks + seeds) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val, summary = results.get("val", {}), results.get("summary", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    seeds = sorted(int(s) for s in results.get("teachers", {}))
    grid = sorted(int(k.rsplit("_", 1)[1]) for k in val if k.startswith("s0/kd_unet_"))
    for s in seeds:
        rmse = [np.mean(val[f"s{s}/kd_unet_{n}"]) for n in grid if f"s{s}/kd_unet_{n}" in val]
        if len(rmse) == len(grid):
            (line,) = left.plot(grid, rmse, "o-", label=f"KD-UNet, teacher seed {s}")
            if f"s{s}/teacher" in val:
                left.axhline(np.mean(val[f"s{s}/teacher"]), ls="--", color=line.get_color())
    if "choice" in results:
        left.axvline(results["choice"]["steps"], color="grey", lw=0.8)
    left.set_xscale("log", base=2)
    left.set_xticks(grid, [str(n) for n in grid])
    left.set_xlabel("KD-UNet steps per phase")
    left.set_ylabel("validation RMSE, Mg C/ha")
    left.set_title("choice on the validation chip (dashed: teacher)", fontsize=9)
    left.legend(fontsize=7)
    names = [n for n in ("constant", "forest_mean", "teacher", "kd_vgg", "kd_unet") if n in summary]
    if names:
        means = np.array([summary[n]["rmse_interval"]["mean"] for n in names])
        low = np.array([summary[n]["rmse_interval"]["low"] for n in names])
        high = np.array([summary[n]["rmse_interval"]["high"] for n in names])
        right.errorbar(
            range(len(names)), means, yerr=[means - low, high - means], fmt="o", capsize=4
        )
        right.set_xticks(
            range(len(names)),
            [LABELS[n].split(" (")[0] for n in names],
            rotation=30,
            ha="right",
            fontsize=8,
        )
    right.set_ylabel("test RMSE, Mg C/ha (forest pixels)")
    right.set_title("test chip, read once", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def size_text(params: dict[str, dict[str, int]], name: str) -> str:
    """How much smaller ``name`` is than the teacher: the part it compresses (KD-VGG: the
    extractor; KD-UNet: the rest) and the whole model."""
    if "teacher" not in params or name not in params:
        return ""
    teacher, student = params["teacher"], params[name]
    part = "extractor" if name == "kd_vgg" else "UNet"

    def of(p: dict[str, int]) -> int:
        return p["extractor"] if part == "extractor" else p["total"] - p["extractor"]

    return (
        f" ({part} {of(teacher) / of(student):.1f}x smaller, whole model "
        f"{teacher['total'] / student['total']:.2f}x)"
    )


def parameter_counts(run: Path) -> dict[str, int]:
    """Parameters of the run's network and of its feature extractor."""
    from terradiff.nets import count_parameters
    from terradiff.tasks import load_task

    net = load_task(run, use_ema=True)[0].net
    extractor = getattr(net, "extractor", None)
    return {
        "total": count_parameters(net),
        "extractor": 0 if extractor is None else count_parameters(extractor),
    }


def score(run: Path, split: str, ddim_steps: int) -> dict[str, Any]:
    """:data:`DRAWS` sampled maps of the ``split`` chip by ``terradiff evaluate``'s code
    (:func:`terradiff.carbon_evaluate.evaluate_carbon`, ``--seed`` = the draw): per draw the
    metrics, the seconds of the map and the block statistics of the model and the naive maps."""
    from terradiff.carbon_evaluate import evaluate_carbon

    metrics, blocks, naive, seconds = [], [], {}, []
    for draw in range(DRAWS):
        result = evaluate_carbon(
            run,
            split=split,
            steps=ddim_steps,
            seed=draw,
            resamples=10,
            keep_blocks=True,
            progress=False,
        )
        metrics.append({k: result["model"][k]["mean"] for k in ("rmse", "mae", "r2", "bias")})
        blocks.append(result["block_stats"]["model"][0])
        naive = {k: [v[0]] for k, v in result["block_stats"].items() if k != "model"}
        seconds.append(result["seconds_per_chip"])
    return {"metrics": metrics, "blocks": blocks, "naive": naive, "seconds": seconds}


def time_maps(runs: dict[str, Path], ddim_steps: int) -> dict[str, Any]:
    """Seconds per test-chip map (the sampling alone, weights loaded) of each run, interleaved,
    :data:`TIMING_REPEATS` repeats after a warm-up."""
    import torch

    from terradiff.carbon_evaluate import evaluate_carbon

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up (kernels chosen, files cached)
        evaluate_carbon(run, split="test", steps=2, resamples=10, progress=False)
    for _ in range(TIMING_REPEATS):
        for name, run in runs.items():
            result = evaluate_carbon(
                run, split="test", steps=ddim_steps, resamples=10, progress=False
            )
            seconds[name].append(result["seconds_per_chip"])
    out: dict[str, Any] = {
        name: {"seconds": v, "median": statistics.median(v)} for name, v in seconds.items()
    }
    out["threads"] = torch.get_num_threads()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=Path("outputs/carbon_kd"))
    p.add_argument("--out", type=Path, default=Path("reports/carbon_kd"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--report-only", action="store_true", help="re-render from results.json")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="plumbing test only: 4 teacher steps, KD grid 1, 2, DDIM-2 (use another --work/--out)",
    )
    args = p.parse_args(argv)
    args.grid, args.vgg_steps, args.teacher_set = KD_UNET_GRID, KD_VGG_STEPS, []
    if args.smoke:
        args.grid, args.vgg_steps = (1, 2), {"block_steps": 2, "chain_steps": 2}
        args.teacher_set, args.ddim_steps = ["train.max_steps=4", "train.save_every=4"], 2
    return args


def main(argv: list[str] | None = None) -> None:
    """Teachers, compressions, validation choice, test scoring, timing; then the report."""
    from terradiff.carbon.prepare import prepare_biomassters
    from terradiff.compress import compress_carbon_unet, compress_carbon_vgg
    from terradiff.config_loading import load_config

    args = parse_args(argv)
    results, save = open_results(args.out, report_only=args.report_only)
    if not args.report_only:
        record_command(results, argv)
        chips_dir = args.work / "chips"
        if not (chips_dir / "manifest.json").is_file():
            prepare_biomassters(args.shared / "biomassters", chips_dir)
        base = load_config(BASE, [f"data.root={chips_dir}"])
        split = {k: getattr(base.carbon, f"{k}_chips")[0] for k in ("train", "val", "test")}
        results["data"] = split
        teachers, runs = results.setdefault("teachers", {}), {}
        for s in args.seeds:
            run_dir = args.work / f"teacher_s{s}"
            overrides = [f"data.root={chips_dir}", f"output_dir={run_dir}", f"seed={s}"]
            overrides += [f"name=teacher_s{s}", *args.teacher_set]
            teachers[str(s)] = train(f"teacher_s{s}", BASE, overrides)
            save()
            runs[(s, "teacher")] = run_dir
        compressions = results.setdefault("compressions", {})
        for s in args.seeds:
            jobs = {"kd_vgg": ("vgg", args.vgg_steps)}
            jobs |= {f"kd_unet_{n}": ("unet", n) for n in args.grid}
            for name, (part, steps) in jobs.items():
                out = args.work / f"s{s}" / name
                runs[(s, name)] = out / "run"
                if f"s{s}/{name}" in compressions:
                    continue
                print(f"compressing seed {s}: {name} ...", flush=True)
                start = time.perf_counter()
                teacher = args.work / f"teacher_s{s}"
                if part == "vgg":
                    summary = compress_carbon_vgg(
                        teacher, out, progress=False, overwrite=True, **steps
                    )
                else:
                    summary = compress_carbon_unet(
                        teacher,
                        out,
                        encoder_steps=steps,
                        decoder_steps=steps,
                        progress=False,
                        overwrite=True,
                    )
                summary = {k: v for k, v in summary.items() if isinstance(v, int | float | str)}
                compressions[f"s{s}/{name}"] = {**summary, "seconds": time.perf_counter() - start}
                save()
        val = results.setdefault("val", {})
        for s in args.seeds:
            for name in ("teacher", "kd_vgg", *(f"kd_unet_{n}" for n in args.grid)):
                if f"s{s}/{name}" not in val:
                    print(f"validation maps: seed {s} {name} ...", flush=True)
                    scored = score(runs[(s, name)], "val", args.ddim_steps)
                    val[f"s{s}/{name}"] = [m["rmse"] for m in scored["metrics"]]
                    save()
        grid = {
            str(n): [r for s in args.seeds for r in val[f"s{s}/kd_unet_{n}"]] for n in args.grid
        }
        results["choice"] = choose_steps(grid)
        chosen = f"kd_unet_{results['choice']['steps']}"
        save()
        cells = results.setdefault("test", {})
        for s in args.seeds:
            for name, source in (("teacher", "teacher"), ("kd_vgg", "kd_vgg"), ("kd_unet", chosen)):
                key = f"s{s}/{name}"
                if cells.get(key, {}).get("source") != source:
                    print(f"test maps: seed {s} {name} ({source}) ...", flush=True)
                    scored = score(runs[(s, source)], "test", args.ddim_steps)
                    for naive, blocks in scored.pop("naive").items():
                        cells[naive] = {"blocks": blocks}  # the training chip's: every run alike
                    cells[key] = {**scored, "source": source}
                    save()
        s0 = args.seeds[0]
        named = {
            "teacher": runs[(s0, "teacher")],
            "kd_vgg": runs[(s0, "kd_vgg")],
            "kd_unet": runs[(s0, chosen)],
        }
        results["parameters"] = {name: parameter_counts(run) for name, run in named.items()}
        if results.get("speed", {}).get("kd_unet_source") != chosen:
            print("timing the three models side by side ...", flush=True)
            results["speed"] = {
                **time_maps(named, args.ddim_steps),
                "ddim_steps": args.ddim_steps,
                "kd_unet_source": chosen,
            }
        save()
    results["summary"] = summarise(
        results["test"], [int(s) for s in results["teachers"]], args.resamples
    )
    save()
    save_plot(results, args.out / "kd.png")
    atomic_write_text(args.out / "README.md", "\n".join(report_lines(results)) + "\n")
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
