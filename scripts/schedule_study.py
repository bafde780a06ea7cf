"""The schedule study of issue 2: one UNet, one budget, three noise schedules, three samplers.

For each of ``configs/schedules/{linear,cosine,sigmoid}.yaml`` this trains the model (resuming a run
that was interrupted), then measures FID/KID with terradiff's offline AID encoder against all real
AID scenes of the config's data root for 20-step DDIM, 20-step DPM-Solver++(2M) and 1000-step
ancestral DDPM, saves sample grids, a DDPM denoising chain and the loss curves, and writes
``reports/schedules/README.md`` from the measured numbers. Results are saved after every
measurement, so an interrupted study continues where it stopped.

Examples: the reduced CPU budget (400 steps of batch 16)::

    python scripts/schedule_study.py --n-fast 200 --n-ddpm 12

and the GPU budget of the committed report (``reports/schedules/README.md`` gives the command it
was made with: one schedule per process, the three on one GPU, then ``--report-only``)::

    python scripts/schedule_study.py --schedules cosine --out OUT/cosine --n-fast 500 \\
        --n-ddpm 100 --set train.batch_size=64 --set train.max_steps=3000 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from study_common import read_losses, stamp_results, train

from terradiff.evaluate import evaluate_checkpoint
from terradiff.io import atomic_write_text
from terradiff.tasks import load_task
from terradiff.viz import save_chain_figure, save_loss_curves

SCHEDULES = ("linear", "cosine", "sigmoid")
SAMPLERS = (("ddim", 20), ("dpm_solver", 20), ("ddpm", 1000))


def chain_figure(run_dir: Path, out: Path, name: str) -> None:
    """x_t of 1000-step DDPM at 11 timesteps, 3 samples (the DDPM satellite report's Fig. 3)."""
    task, _ = load_task(run_dir, device="auto")
    generator = torch.Generator().manual_seed(0)
    traj = task.sample(
        task.net, 3, generator=generator, spec=task.sampling_spec("ddpm"), return_trajectory=True
    )
    save_chain_figure(traj, out, n_rows=3, title=f"{name} schedule, DDPM 1000 steps")


def loss_log_dir(train_info: dict[str, Any], out_dir: Path) -> Path:
    """The folder holding a run's ``metrics.jsonl``: the run itself, or the copy kept in the report
    (``out_dir/training_logs/<name>``) when the run was made on another machine."""
    kept = out_dir / "training_logs" / train_info["name"]
    return kept if (kept / "metrics.jsonl").is_file() else Path(train_info["run_dir"])


def write_report(results: dict[str, Any], out_dir: Path, args: argparse.Namespace) -> None:
    """``README.md`` of the study, from the measured ``results``.

    ``results["command"]`` (how the numbers were made) and ``results["budget_note"]`` (what the
    budget means) are written by the run or by hand before ``--report-only``; the defaults
    describe a plain run of this script.
    """
    any_run = next(iter(results["runs"].values()))
    train = any_run["train"]
    epochs = train["steps"] * train["batch_size"] / max(results.get("n_real", 1), 1)
    n_fast = results.get("n_fast", args.n_fast)
    n_ddpm = results.get("n_ddpm", args.n_ddpm)
    command = results.get(
        "command", f"python scripts/schedule_study.py --n-fast {n_fast} --n-ddpm {n_ddpm}"
    )
    lines = [
        "# Noise-schedule study on real AID scenes (64x64)",
        "",
        f"Made by `{command}` (configs in `configs/schedules/`); every number below was measured "
        "by that run and is also in `results.json`.",
        "",
        "## What was trained",
        "",
        f"- Data: all {results['n_real']} scenes of the 30 AID classes in "
        f"`{results['data_root']}`"
        + (f" ({results['data_note']})" if results.get("data_note") else "")
        + ", whole scenes resized to 64x64, random horizontal flips.",
        f"- Model: the same SR3-style UNet for every schedule, {train['parameters']:,} "
        "parameters (base 32 channels, multipliers 1-2-2-2, one residual block per level, "
        "attention at 16x16 and 8x8), eps-prediction, L2 loss, T = 1000.",
        f"- Budget: {train['steps']} AdamW steps of batch {train['batch_size']} "
        f"(about {epochs:.0f} epochs; cosine LR decay after warm-up, EMA 0.995) on "
        f"{results['machine']}. {results.get('budget_note', '')}".rstrip(),
        f"- Evaluation: FID and KID on the features of terradiff's offline AID "
        f"encoder (`aid-cnn`, 256-d), {n_fast} generated images for DDIM-20 and "
        f"DPM-Solver++-20 and {n_ddpm} for DDPM-1000, against all real scenes. With fewer "
        "generated images than feature dimensions FID is biased upward and only comparable at "
        "equal n; KID is unbiased and is the number to compare across rows.",
        "",
        "## Results",
        "",
        "| schedule | final loss | DDIM-20 FID | DDIM-20 KID | DPM++-20 FID "
        "| DPM++-20 KID | DDPM-1000 FID | DDPM-1000 KID | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in results["runs"].items():
        row = [name, f"{run['train']['final_loss']:.4f}"]
        for sampler, _ in SAMPLERS:
            m = run.get("metrics", {}).get(sampler)
            if m is None:
                row += ["-", "-"]
            else:
                row += [
                    f"{m['fid']:.1f}",
                    f"{m['kid_mean']:.3f} +- {m['kid_std']:.3f}",
                ]
        row.append(f"{run['train'].get('train_minutes_total', 0):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "KID is the mean +- std over 100 random subsets (of size min(n_fake, 100)). "
        + results.get("timing_note", ""),
        "",
        "Sampling cost (seconds per generated image, as measured by the evaluation):",
        "",
        "| schedule | " + " | ".join(s for s, _ in SAMPLERS) + " |",
        "|---|---|---|---|",
    ]
    for name, run in results["runs"].items():
        cells = [
            f"{run['metrics'][s]['seconds_per_image']:.3f}" if s in run.get("metrics", {}) else "-"
            for s, _ in SAMPLERS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Figures",
        "",
        "Loss curves (raw faint, smoothed solid):",
        "",
        "![loss curves](loss_curves.png)",
        "",
    ]
    for name in results["runs"]:
        lines += [
            f"### {name}",
            "",
            f"DDIM-20 samples: ![{name} DDIM-20](samples_{name}_ddim.png)",
            "",
            f"DPM-Solver++-20 samples: ![{name} DPM-Solver++-20](samples_{name}_dpm_solver.png)",
            "",
            f"DDPM-1000 samples: ![{name} DDPM-1000](samples_{name}_ddpm.png)",
            "",
            f"DDPM-1000 denoising chain: ![{name} chain](chain_{name}.png)",
            "",
        ]
    lines += [
        "## Reading the numbers",
        "",
        results.get("discussion", "(written after the run)"),
        "",
    ]
    atomic_write_text(out_dir / "README.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("reports/schedules"))
    parser.add_argument("--configs", type=Path, default=Path("configs/schedules"))
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    parser.add_argument("--n-fast", type=int, default=200, help="images for DDIM/DPM-Solver++")
    parser.add_argument("--n-ddpm", type=int, default=12, help="images for 1000-step DDPM")
    parser.add_argument("--set", action="append", default=[], help="config override for all runs")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only redraw the loss curves and rewrite README.md from --out/results.json",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = (
        json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    )
    # the report describes the machine that made the numbers; a re-render records its own apart
    stamp_results(results, report_only=args.report_only)

    def save() -> None:
        atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")

    for name in [] if args.report_only else args.schedules:
        results["n_fast"], results["n_ddpm"] = args.n_fast, args.n_ddpm
        run = results["runs"].setdefault(name, {})
        start = time.monotonic()
        info = train(name, args.configs / f"{name}.yaml", args.set)
        previous = run.get("train", {}).get("train_minutes_total")  # measured by earlier calls
        info["train_minutes_total"] = previous if previous is not None else info["train_minutes"]
        run["train"] = info
        save()
        metrics = run.setdefault("metrics", {})
        for sampler, steps in SAMPLERS:
            if sampler in metrics:
                continue
            n = args.n_ddpm if sampler == "ddpm" else args.n_fast
            m = evaluate_checkpoint(
                info["run_dir"],
                num_samples=n,
                sampler=sampler,
                steps=steps,
                grid_path=args.out / f"samples_{name}_{sampler}.png",
                progress=True,
            )
            metrics[sampler] = m
            results["n_real"] = m["n_real"]
            results["data_root"] = m["real_images"]
            save()
            print(f"{name} {sampler}-{steps}: FID {m['fid']:.1f}  KID {m['kid_mean']:.4f}")
        if not (args.out / f"chain_{name}.png").is_file():
            chain_figure(Path(info["run_dir"]), args.out / f"chain_{name}.png", name)
        print(f"{name}: done in {(time.monotonic() - start) / 60:.1f} min")
    runs = results["runs"]
    curves = {name: read_losses(loss_log_dir(run["train"], args.out)) for name, run in runs.items()}
    save_loss_curves(curves, args.out / "loss_curves.png", smoothing=0.8, title="training loss")
    save()
    write_report(results, args.out, args)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
