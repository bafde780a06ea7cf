"""``terradiff train``'s loop end to end against the bare train step of the same net (issue 16).

Issue 16 item 4 asks that the whole training loop run within 10% of the bare step rate: the data
path (reading, cropping, flipping, scaling, copying) and the loop's bookkeeping must not starve
the device. This measures, on one device and one batch size:

* **bare**: the step alone on one fixed batch already on the device: the task's loss under the
  run's autocast, backward, gradient clipping, AdamW, the LR schedule and the EMA update, built
  as :class:`terradiff.train.Trainer` builds them (same net, channels-last and compile policy,
  accelerate, a per-step seeded generator).
* **loop, device_batches=off / on**: :meth:`Trainer.fit` itself, on the same config with
  ``data.device_batches`` set: ``off`` is the per-item DataLoader path, ``on`` the batched
  device path (:mod:`terradiff.data.device_batches`).

Each is timed from the start of step ``warmup + 1`` to the start of step ``warmup + steps + 1``
(the device synchronised at both ends only, by the task's loss being wrapped), so start-up,
compilation and the final checkpoint are left out and exactly ``steps`` whole steps are timed. It
prints steps/s and the ratio loop / bare (>= 0.9 is the issue's target); the bare step runs
first and last, and the faster of the two is the reference. The bare runs also print their
``warmup`` untimed steps' seconds: with ``train.compile`` on, the first is the cold compilation
and the second what the in-memory and on-disk caches leave of it.

Data: the real AID sample bundled with the repository (``data/samples/aid``: 300 JPEGs of
150x150, decoded once and cached, as ``data.cache: true`` does), random crops of
``--image-size`` with flips (``--model schedule``: the whole scenes resized, as the schedule
study's config does; ``--crop`` chooses); or ``--data`` for another folder of images.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_train_loop.py --quick            # CPU smoke run, < 1 min
    python benchmarks/bench_train_loop.py --device cuda --json out.json # SMALL_64, batch 64
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate import Accelerator
from accelerate.state import AcceleratorState

import terradiff.train
from terradiff.accelerate_steps import optimizer_step
from terradiff.batching import collate_batch, seed_global_generators, step_seed
from terradiff.config import ExperimentConfig, config_from_dict
from terradiff.ema import EMA
from terradiff.nets.compile import compile_for_training, compile_plan
from terradiff.nets.memory import set_channels_last
from terradiff.runtime import enable_cudnn_autotuner
from terradiff.tasks.generation import GenerationTask
from terradiff.train import Trainer, cosine_warmup_lambda, resolve_mixed_precision

REPO = Path(__file__).resolve().parents[1]
#: The schedule study's config, whose net ``--model schedule`` times.
SCHEDULE_CONFIG = REPO / "configs" / "schedules" / "cosine.yaml"
#: The small net of ``--quick`` (the tests' tiny UNet).
TINY_MODEL: dict[str, Any] = {
    "base_channels": 16,
    "channel_mults": [1, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [16],
    "num_groups": 8,
    "head_channels": 16,
}


#: Defaults of a full run and of ``--quick``.
FULL: dict[str, Any] = {"model": "small", "batch": 64, "image_size": 64, "steps": 100, "warmup": 10}
QUICK: dict[str, Any] = {
    "model": "tiny",
    "batch": 8,
    "image_size": 32,
    "steps": 8,
    "warmup": 2,
    "max_images": 48,
}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ClockedTask(GenerationTask):
    """A generation task whose loss notes the time (device synchronised) at two calls."""

    def start_clock(self, device: torch.device, first: int, last: int) -> None:
        """Note the time at the ``first``-th and ``last``-th call of :meth:`training_loss`."""
        self.clock_device, self.clock_at, self.calls = device, (first, last), 0
        self.marks: list[float] = []

    def training_loss(self, net, batch, generator):  # type: ignore[no-untyped-def, override]
        self.calls += 1
        if self.calls in self.clock_at:
            synchronize(self.clock_device)
            self.marks.append(time.perf_counter())
        return super().training_loss(net, batch, generator)

    def timed_seconds(self) -> float:
        if len(self.marks) != 2:
            raise RuntimeError(f"the run stopped before its timed steps ({len(self.marks)} marks)")
        return self.marks[1] - self.marks[0]


def model_section(name: str) -> dict[str, Any]:
    """The ``model`` config of ``--model``: ``small`` (SMALL_64, the default), ``tiny`` (the
    tests' UNet) or ``schedule`` (the 1.68 M-parameter net of ``configs/schedules/cosine.yaml``,
    read from that file)."""
    if name == "tiny":
        return dict(TINY_MODEL)
    if name == "schedule":
        return dict(yaml.safe_load(SCHEDULE_CONFIG.read_text())["model"])
    return {}


def crop_mode(args: argparse.Namespace) -> str:
    """``--crop``; ``auto``: the schedule study's own (``resize``: whole scenes) for ``--model
    schedule``, random crops otherwise."""
    if args.crop != "auto":
        return args.crop
    if args.model == "schedule":
        return str(yaml.safe_load(SCHEDULE_CONFIG.read_text())["data"]["crop"])
    return "random"


def make_config(args: argparse.Namespace, run_dir: Path, device_batches: str) -> ExperimentConfig:
    """The benchmark's experiment config (``--set``-like choices come from ``args``)."""
    data: dict[str, Any] = {
        "root": str(args.data),
        "image_size": args.image_size,
        "crop": crop_mode(args),
        "cache": True,
        "device_batches": device_batches,
    }
    if args.max_images:
        data["max_images"] = args.max_images
    return config_from_dict(
        {
            "name": "bench_train_loop",
            "seed": 0,
            "output_dir": str(run_dir),
            "data": data,
            "model": model_section(args.model),
            "train": {
                "batch_size": args.batch,
                "max_steps": args.warmup + args.steps + 1,
                "warmup_steps": 0,
                "mixed_precision": args.mixed_precision,
                "compile": args.compile,
                "num_workers": args.num_workers,
                "log_every": args.log_every,
                "save_every": 10**9,
                "sample_every": 10**9,
                "progress": False,
            },
        }
    )


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """A fresh Accelerator for ``--device`` with the run's mixed precision."""
    AcceleratorState._reset_state(reset_partial_state=True)
    precision = args.mixed_precision
    if precision == "auto":  # resolve_mixed_precision asks CUDA first: --device cpu beside a GPU
        cpu_beside_gpu = args.device == "cpu" and torch.cuda.is_available()
        precision = "no" if cpu_beside_gpu else resolve_mixed_precision("auto")
    return Accelerator(mixed_precision=precision, cpu=args.device == "cpu")


def time_bare(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """Seconds of ``args.steps`` bare steps on one fixed device batch, and of the ``args.warmup``
    untimed steps before them (the compilation of ``train.compile`` included: cold in the first
    run of a process, from the in-memory and on-disk caches in the second)."""
    config = make_config(args, work / "bare", "off")
    task = GenerationTask(config)
    acc = make_accelerator(args)
    cfg = config.train
    dataset = task.build_dataset()
    items = [dataset.get(i % len(dataset), epoch=0) for i in range(cfg.batch_size)]
    batch = {
        k: v.to(acc.device) if isinstance(v, torch.Tensor) else v
        for k, v in collate_batch(items).items()
    }
    net = task.net
    set_channels_last(net, cfg.channels_last)
    net.to(acc.device)
    fused = True if acc.device.type == "cuda" else None
    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        weight_decay=cfg.weight_decay,
        fused=fused,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_warmup_lambda(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    )
    ema = EMA(net, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
    step_begin = compile_for_training(net, compile_plan(cfg.compile, acc.device))
    net, optimizer = acc.prepare(net, optimizer)
    net.train()
    unwrapped, parameters = acc.unwrap_model(net), list(net.parameters())  # as Trainer.fit
    step_optimizer = optimizer_step(acc, optimizer)
    synchronize(acc.device)
    warmup_start = start = time.perf_counter()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronize(acc.device)
            start = time.perf_counter()
        seed = step_seed(config.seed, step, acc.process_index)
        seed_global_generators(seed, acc.device)
        generator = torch.Generator().manual_seed(seed)
        step_begin()
        with acc.autocast():
            loss = task.training_loss(net, batch, generator)
        acc.backward(loss)
        if cfg.grad_clip is not None:
            acc.clip_grad_norm_(parameters, cfg.grad_clip)
        step_optimizer()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(unwrapped)
    synchronize(acc.device)
    return time.perf_counter() - start, start - warmup_start


def time_loop(args: argparse.Namespace, work: Path, device_batches: str) -> tuple[float, str]:
    """Seconds of ``args.steps`` steps of :meth:`Trainer.fit`, and what cut the batches."""
    run_dir = work / f"loop_{device_batches}"
    task = ClockedTask(make_config(args, run_dir, device_batches))
    acc = make_accelerator(args)
    task.start_clock(acc.device, args.warmup + 1, args.warmup + args.steps + 1)
    trainer = Trainer(task, run_dir, accelerator=acc)
    made: list[str] = []
    build = terradiff.train.device_batches_for  # what Trainer.fit calls to pick its batches

    def noted(*args: Any, **kwargs: Any) -> Any:  # what fit builds, described
        source = build(*args, **kwargs)
        made.append("DataLoader" if source is None else repr(source))
        return source

    terradiff.train.device_batches_for = noted
    try:
        trainer.fit()
    finally:
        terradiff.train.device_batches_for = build
    return task.timed_seconds(), made[0]


def environment(device: torch.device) -> str:
    """One line on where the numbers come from."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, device {device} "
        f"({where or platform.machine()}), threads {torch.get_num_threads()}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="defaults of a smoke run: tiny net, batch 8, 32 px, 8 steps",
    )
    parser.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "aid")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument(
        "--model",
        choices=["small", "tiny", "schedule"],
        help="small: SMALL_64 (default); schedule: the net of configs/schedules/cosine.yaml",
    )
    parser.add_argument("--image-size", type=int, help="crop side (default 64)")
    parser.add_argument(
        "--crop",
        default="auto",
        choices=["auto", "random", "center", "resize"],
        help="data.crop (auto: resize for --model schedule, as its config; random otherwise)",
    )
    parser.add_argument("--batch", type=int, help="per step (default 64)")
    parser.add_argument("--steps", type=int, help="timed steps (default 100)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10)")
    parser.add_argument("--modes", default="off,on", help="data.device_batches settings")
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off", "graphs"])
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:  # what is given on the command line stands
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":  # as Trainer.fit does on CUDA: the bare step times the same kernels
        enable_cudnn_autotuner()
    print(environment(device))
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"net {args.model}, batch {args.batch}, {args.image_size} px, crop {crop_mode(args)}, "
        f"of {args.data}, "
        f"{args.steps} timed steps after {args.warmup}, mixed precision {args.mixed_precision}, "
        f"compile {args.compile}, DataLoader workers {args.num_workers}"
    )
    results: dict[str, Any] = {
        "environment": environment(device),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_train_loop_") as tmp:
        work = Path(tmp)
        seconds, warmup_first = time_bare(args, work)
        bare_rates = [args.steps / seconds]
        print(
            f"  bare step (first)        {bare_rates[0]:9.2f} steps/s"
            f"   warm-up {warmup_first:.1f} s ({args.warmup} steps)"
        )
        loops = []
        for mode in [m for m in args.modes.split(",") if m]:
            seconds, source = time_loop(args, work, mode)
            loops.append((f"loop device_batches={mode}", args.steps / seconds, source))
            print(f"  {loops[-1][0]:<24} {loops[-1][1]:9.2f} steps/s")
        seconds, warmup_again = time_bare(args, work)
        bare_rates.append(args.steps / seconds)
        print(
            f"  bare step (again)        {bare_rates[1]:9.2f} steps/s"
            f"   warm-up {warmup_again:.1f} s (second run in this process)"
        )
    bare = max(bare_rates)  # the faster bare run: warm-up or load cannot flatter the loop
    results["rows"].append(
        {
            "name": "bare step",
            "steps_per_s": bare,
            "ratio": 1.0,
            "warmup_s": {"first": warmup_first, "again": warmup_again},
        }
    )
    print(f"{'bare step (best of 2)':<24} {bare:9.2f} steps/s")
    for name, rate, source in loops:
        row = {"name": name, "steps_per_s": rate, "ratio": rate / bare, "batches": source}
        results["rows"].append(row)
        print(f"{name:<24} {rate:9.2f} steps/s  ratio {rate / bare:5.2f}  ({source})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
