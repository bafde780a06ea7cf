"""Distilled super-resolution speed: seconds per output image at several sizes, side by side.

On the trained x4 AID checkpoints of the SR study (``--sr-runs``, default ``runs/sr``, as
``scripts/sr_study.py --runs-root`` puts them) and the distillation study (``--runs``, default
``runs/distill``), each model super-resolves real AID content (four AID scenes tiled to 512x512,
as ``bench_sr.py``; a centre crop of it for smaller outputs) from an LR input of ``size / 4`` to
each output size of ``--sizes`` (default 64, 128, 256 and 512 px):

* the multi-step SR3 model with DDIM-20 (its config's default sampler; measured) and with
  DDPM-1000 (extrapolated from ``--ddpm-steps`` measured ancestral steps: the UNet is a step's
  whole cost; stored with ``terradiff.report_format.extrapolated`` and printed labelled);
* the SR study's regression UNet (one forward pass: the strongest one-pass baseline);
* the SlimDiffSR single-step teacher (estimator + noise-level head + one denoiser step);
* every student of ``--students`` (one light forward pass).

``terradiff super-resolve`` feeds x4 models LR tiles of 64 px by default (256 px outputs); the
64 and 128 px outputs are smaller tiles, 512 px one whole image (where SR3's attention, quadratic
in the pixel count, dominates). Each model is timed ``--repeats`` times per size after a warm-up
(SR3: ``--sampler-repeats``, default ``--repeats``, after a warm-up on a small input); the median,
min-max and quartiles are kept, and the speed-ups over SR3 DDIM-20, SR3 DDPM-1000, the regression
UNet and the teacher are per size. A run missing on this machine gets a "run not found" row.

Run (1 thread, nothing else running):
    ``.venv/bin/python benchmarks/bench_distill.py --json benchmarks/results/distill.json``
``--markdown FILE`` also writes the tables (the ``BENCHMARKS.md`` section's); ``--device cuda``
on a GPU: the same models in fp32, each timing synchronised.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sr import cpu_model, real_512, time_calls, write_json
from distill_speed import (
    REGRESSION,
    SR3_DDIM,
    SR3_DDPM,
    TEACHER,
    add_speedups,
    missing_row,
    speed_table,
    timing_row,
)

from terradiff.checkpoint import list_checkpoints
from terradiff.data.degrade import bicubic_downsample
from terradiff.diffusion.samplers import ddpm_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.io import atomic_write_text
from terradiff.nets import count_parameters
from terradiff.runtime import allocator_description, tune_cpu_allocator
from terradiff.tasks import load_task

SCALE = 4
STUDENTS = (
    "aid-student-x4",
    "aid-student-x4-mse",
    "aid-student-x4-none",
    "aid-student-x4-no-fs",
    "aid-student-x4-no-ds",
    "aid-student-x4-no-ga",
)
DEFAULT_SIZES = (64, 128, 256, 512)


def run_problem(path: Path) -> str | None:
    """None when ``path`` holds a run with a checkpoint; otherwise why it cannot be timed."""
    if not path.is_dir():
        return f"run not found at {path}"
    if not list_checkpoints(path):
        return f"run not found at {path} (no checkpoint)"
    return None


def hr_at(hr: torch.Tensor, size: int) -> torch.Tensor:
    """``hr`` ([1, C, 512, 512]) at ``size`` px: its centre crop, or a bicubic resize if larger."""
    side = hr.shape[-1]
    if size > side:
        return torch.nn.functional.interpolate(hr, size=size, mode="bicubic").clamp(-1, 1)
    top = (side - size) // 2
    return hr[..., top : top + size, top : top + size]


def check_sizes(sizes: Sequence[int]) -> list[int]:
    """The sizes, sorted; each a multiple of 16 (whole LR pixels and UNet levels at x4)."""
    bad = [s for s in sizes if s < 16 or s % 16]
    if bad:
        raise SystemExit(f"--sizes {bad}: give output sizes that are multiples of 16 (>= 16)")
    return sorted(set(sizes))


def measure(
    args: argparse.Namespace, weights: dict[str, dict[str, Any]] | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Rows by output size (see the module docstring); ``weights`` receives, per timed run, its
    folder and the training step of the weights timed (speed does not depend on weight values,
    so architecture-identical runs of a few steps time the same as the trained ones; the
    record says which were used)."""
    weights = {} if weights is None else weights
    device = torch.device(args.device)
    hr = real_512(args.shared)
    inputs = {s: bicubic_downsample(hr_at(hr, s), SCALE) for s in args.sizes}
    small = inputs[args.sizes[0]][..., :16, :16]
    rows: dict[int, list[dict[str, Any]]] = {s: [] for s in args.sizes}
    sync = partial(torch.cuda.synchronize, device) if device.type == "cuda" else None
    timed = partial(time_calls, sync=sync)
    sampler_repeats = args.sampler_repeats or args.repeats

    with torch.no_grad():
        sr3_run = args.sr_runs / "aid-sr3-x4"
        problem = run_problem(sr3_run)
        if problem:
            print(f"skipping SR3: {problem}")
            for size in args.sizes:
                rows[size] += [missing_row(SR3_DDIM, problem), missing_row(SR3_DDPM, problem)]
        else:
            sr3, ckpt = load_task(sr3_run, use_ema=True)
            weights["aid-sr3-x4"] = {"run": str(sr3_run), "step": ckpt.step}
            sr3.net.to(device)
            params = count_parameters(sr3.net)
            schedule = NoiseSchedule.create(
                sr3.config.diffusion.schedule,
                args.ddpm_steps,
                **sr3.config.diffusion.schedule_kwargs(),
            )
            for size in args.sizes:
                lr = inputs[size]
                print(f"timing {SR3_DDIM} at {size} px ...", flush=True)
                times = timed(
                    lambda lr=lr: sr3.super_resolve(
                        sr3.net, lr, spec=sr3.sampling_spec("ddim", 20)
                    ),
                    sampler_repeats,
                    warmup=lambda: sr3.super_resolve(
                        sr3.net, small, spec=sr3.sampling_spec("ddim", 2)
                    ),
                )
                rows[size].append(timing_row(SR3_DDIM, times, params))
                cond = torch.nn.functional.interpolate(lr, scale_factor=SCALE, mode="bicubic")
                cond = cond.to(device)

                def short_ddpm(cond: torch.Tensor = cond) -> None:
                    ddpm_sample(
                        lambda x, t, c: sr3.net(x, t, cond=c),
                        schedule,
                        torch.randn_like(cond),
                        cond=cond,
                    )

                print(f"timing {SR3_DDPM} at {size} px ({args.ddpm_steps} steps) ...", flush=True)
                times = timed(short_ddpm, sampler_repeats, warmup=lambda: None)
                rows[size].append(
                    timing_row(SR3_DDPM, times, params, measured_steps=args.ddpm_steps)
                )
            del sr3

        one_pass = [(REGRESSION, args.sr_runs / REGRESSION), (TEACHER, args.runs / TEACHER)]
        one_pass += [(name, args.runs / name) for name in args.students]
        for name, run in one_pass:
            problem = run_problem(run)
            if problem:
                print(f"skipping {name}: {problem}")
                for size in args.sizes:
                    rows[size].append(missing_row(name, problem))
                continue
            task, ckpt = load_task(run, use_ema=True)
            weights[name] = {"run": str(run), "step": ckpt.step}
            task.net.to(device)
            for size in args.sizes:
                print(f"timing {name} at {size} px ...", flush=True)
                times = timed(
                    lambda t=task, lr=inputs[size]: t.super_resolve(
                        t.net, lr, generator=torch.Generator()
                    ),
                    args.repeats,
                )
                rows[size].append(timing_row(name, times, count_parameters(task.net)))
    for size_rows in rows.values():
        add_speedups(size_rows)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/distill"))
    parser.add_argument("--sr-runs", type=Path, default=Path("runs/sr"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--students", nargs="*", default=list(STUDENTS))
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="output sizes in px (LR input: size / 4)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model and size")
    parser.add_argument(
        "--sampler-repeats", type=int, help="timed SR3 runs per size (default: --repeats)"
    )
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
    parser.add_argument("--markdown", type=Path, help="also write the tables (Markdown) here")
    args = parser.parse_args(argv)
    args.sizes = check_sizes(args.sizes)
    if args.repeats < 1 or (args.sampler_repeats is not None and args.sampler_repeats < 1):
        parser.error("--repeats and --sampler-repeats must be >= 1")
    return args


def main() -> None:
    args = parse_args()
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
    weights: dict[str, dict[str, Any]] = {}
    rows = measure(args, weights)
    tables = speed_table(rows, scale=SCALE)
    print("\n".join(tables))
    if args.markdown:
        atomic_write_text(args.markdown, f"Machine: {machine}.\n\n" + "\n".join(tables))
        print(f"wrote {args.markdown}")
    if args.json:
        write_json(
            args.json,
            machine,
            args,
            threads=args.threads,
            repeats=args.repeats,
            sampler_repeats=args.sampler_repeats or args.repeats,
            ddpm_steps=args.ddpm_steps,
            scale=SCALE,
            sizes=args.sizes,
            per_size={str(s): {"lr_size": s // SCALE, "rows": r} for s, r in rows.items()},
            weights=weights,
        )


if __name__ == "__main__":
    main()
