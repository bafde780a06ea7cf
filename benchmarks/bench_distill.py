"""Distilled super-resolution speed: seconds per 512x512 output, side by side in one run.

On the trained x4 AID checkpoints of the SR study (``runs/sr``) and the distillation study
(``runs/distill``), each model super-resolves the same real 128x128 LR image (four AID scenes tiled,
as ``bench_sr.py``) to 512x512:

* the multi-step SR3 model with DDIM-20 (its config's default sampler; measured) and with DDPM-1000
  (extrapolated from ``--ddpm-steps`` measured ancestral steps: the UNet is a step's whole cost);
* the SlimDiffSR single-step teacher (estimator + noise-level head + one denoiser step);
* every student of ``--students`` (one light forward pass).

Prints seconds, parameters and the speed-ups of each one-step model over SR3 DDIM-20, SR3
DDPM-1000 and the single-step teacher. One-pass models: median of ``--repeats`` after a warm-up;
SR3: ``--sampler-repeats`` runs after a small warm-up.

Run:  ``.venv/bin/python benchmarks/bench_distill.py --json benchmarks/results/distill.json``
      (``--device cuda`` on a GPU: the same models in fp32, each timing synchronised)
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sr import cpu_model, real_512, write_json
from bench_sr import timed as timed_with_sync

from terradiff.data.degrade import bicubic_downsample
from terradiff.diffusion.samplers import ddpm_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.nets import count_parameters
from terradiff.runtime import allocator_description, tune_cpu_allocator
from terradiff.tasks import load_task

STUDENTS = (
    "aid-student-x4",
    "aid-student-x4-mse",
    "aid-student-x4-none",
    "aid-student-x4-no-fs",
    "aid-student-x4-no-ds",
    "aid-student-x4-no-ga",
)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per 512x512 output of every model (see the module docstring)."""
    device = torch.device(args.device)
    hr = real_512(args.shared)
    lr = bicubic_downsample(hr, 4)  # hr: [1, 3, 512, 512]
    small = lr[..., :16, :16]
    rows: list[dict[str, Any]] = []

    sync = partial(torch.cuda.synchronize, device) if device.type == "cuda" else None
    timed = partial(timed_with_sync, sync=sync)

    with torch.no_grad():
        sr3, _ = load_task(args.sr_runs / "aid-sr3-x4", use_ema=True)
        sr3.net.to(device)
        seconds = timed(
            lambda: sr3.super_resolve(sr3.net, lr, spec=sr3.sampling_spec("ddim", 20)),
            args.sampler_repeats,
            warmup=lambda: sr3.super_resolve(sr3.net, small, spec=sr3.sampling_spec("ddim", 2)),
        )
        params = count_parameters(sr3.net)
        rows.append({"model": "SR3 DDIM-20", "seconds": seconds, "parameters": params})
        schedule = NoiseSchedule.create(
            sr3.config.diffusion.schedule, args.ddpm_steps, **sr3.config.diffusion.schedule_kwargs()
        )
        cond = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").to(device)

        def short_ddpm() -> None:
            ddpm_sample(
                lambda x, t, c: sr3.net(x, t, cond=c), schedule, torch.randn_like(cond), cond=cond
            )

        seconds = timed(short_ddpm, 1, warmup=lambda: None) * 1000 / args.ddpm_steps
        rows.append(
            {
                "model": "SR3 DDPM-1000",
                "seconds": seconds,
                "parameters": params,
                "note": f"extrapolated from {args.ddpm_steps} measured steps",
            }
        )
        names = ("aid-single-step-x4", *args.students)
        for name in names:
            run = args.runs / name
            if not run.is_dir():
                print(f"skipping {name}: no run at {run}")
                continue
            task, _ = load_task(run, use_ema=True)
            task.net.to(device)
            seconds = timed(
                lambda t=task: t.super_resolve(t.net, lr, generator=torch.Generator()),
                args.repeats,
            )
            rows.append(
                {"model": name, "seconds": seconds, "parameters": count_parameters(task.net)}
            )
    by_name = {r["model"]: r for r in rows}
    for row in rows:
        for ref in ("SR3 DDIM-20", "SR3 DDPM-1000", "aid-single-step-x4"):
            if ref in by_name and ref != row["model"]:
                key = "speedup_vs_" + ref.lower().replace(" ", "_").replace("-", "_")
                row[key] = by_name[ref]["seconds"] / row["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/distill"))
    parser.add_argument("--sr-runs", type=Path, default=Path("runs/sr"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--students", nargs="*", default=list(STUDENTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sampler-repeats", type=int, default=1)
    parser.add_argument("--ddpm-steps", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronise)")
    parser.add_argument(
        "--allocator",
        choices=["tuned", "default"],
        default="tuned",
        help="tuned: glibc malloc as the terradiff command sets it (terradiff.runtime); "
        "default: glibc's own settings",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.allocator == "tuned":
        tune_cpu_allocator()
    machine = (
        f"{cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, "
        f"{allocator_description()}"
    )
    if torch.device(args.device).type == "cuda":
        machine += f", {torch.cuda.get_device_name(args.device)} (fp32 weights and activations)"
    print(f"machine: {machine}")
    rows = measure(args)
    print(f"{'model':<24} {'s/512^2':>9} {'params':>11} {'vs DDIM-20':>11} {'vs DDPM-1000':>13}")
    for r in rows:
        print(
            f"{r['model']:<24} {r['seconds']:>9.3f} {r['parameters']:>11,} "
            f"{r.get('speedup_vs_sr3_ddim_20', float('nan')):>10.1f}x "
            f"{r.get('speedup_vs_sr3_ddpm_1000', float('nan')):>12.1f}x"
        )
    if args.json:
        write_json(args.json, machine, args, per_image_512=rows)


if __name__ == "__main__":
    main()
