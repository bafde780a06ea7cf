"""Speed of terradiff's UNet against diffusers' UNet2DModel at matched parameter count (CPU).

Measures, in one run, for each precision (fp32, bf16 autocast):

* a training step: forward + MSE loss + backward + AdamW step, at ``--batch`` images;
* 20-step DDIM sampling (``terradiff.diffusion.samplers.ddim_sample``: 20 forwards at ``--batch``
  images under ``no_grad``), the same sampler driving both nets;
* for terradiff only, seconds per image of 20-step DDIM vs 1000-step DDPM; the 1000-step figure is
  extrapolated from a measured ``--ddpm-steps``-step DDPM run (a schedule with that many steps,
  ``ddpm_sample``) scaled by ``1000 / ddpm_steps`` (the UNet is >99% of sampling time).

Competitors (all at 64x64, 3 bands, the same batch):

* ``terradiff``: :data:`terradiff.nets.unet.SMALL_64` -- 64/128/128/256 channels, 2 ResBlocks
  per level, attention at 16x16 and 8x8 + middle, 64-channel heads, FiLM scale-shift.
* ``diffusers-default``: ``UNet2DModel(block_out_channels=(64, 128, 128, 256))`` with everything
  else at diffusers' defaults (attention in the 2nd-4th blocks, i.e. at 32x32, 16x16 and 8x8 + mid;
  ``attention_head_dim=8``; additive time embedding). Same channels as ours, parameters within
  a few percent -- the "diffusers out of the box" comparison.
* ``diffusers-matched``: the same channels with *our* layout (attention only at 16x16 and 8x8,
  64-channel heads, ``resnet_time_scale_shift="scale_shift"``): the same architecture and
  parameter count to within 0.01%, so this ratio is the implementation alone.

Settings, identical on both sides: ``torch.set_num_threads(--threads)``; activations in
``torch.channels_last`` (terradiff does it by default on CPU; diffusers gets
``model.to(memory_format=torch.channels_last)`` and channels-last inputs); "bf16" means
``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward (and the loss), fp32 weights
and optimizer. Each timing is the median of ``--repeats`` runs after ``--warmup`` runs, and the
competitors are interleaved (order reversed every repeat) so that load from other processes
hits all of them alike.

Run:  ``.venv/bin/python benchmarks/bench_unet.py`` (about 15 min on 2 cores);
      ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python ...`` for jemalloc;
      ``--quick`` for a smoke run (under a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terradiff.diffusion.samplers import ddim_sample, ddpm_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.io import atomic_write_text
from terradiff.nets.unet import SMALL_64, UNet
from terradiff.provenance import provenance_record

MATCHED_LAYOUT: dict[str, Any] = {
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": 64,
    "resnet_time_scale_shift": "scale_shift",
}


# ----------------------------------------------------------------------------- environment


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (plus the matrix-unit flags that matter for bf16)."""
    name, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags.split()]
    return f"{name or platform.processor() or 'unknown'} [{' '.join(extras) or 'no avx512/amx'}]"


def allocator() -> str:
    """Which malloc this process uses (LD_PRELOAD'ed jemalloc/tcmalloc, else glibc's)."""
    with contextlib.suppress(OSError):
        maps = Path("/proc/self/maps").read_text()
        for lib in ("jemalloc", "tcmalloc", "mimalloc"):
            if lib in maps:
                return f"{lib} (LD_PRELOAD={os.environ.get('LD_PRELOAD', '')})"
    return "default (glibc malloc; no LD_PRELOAD allocator)"


# ----------------------------------------------------------------------------- nets


class Competitor:
    """A net, its name, how its inputs are laid out, and the ``model_fn`` a sampler calls."""

    def __init__(self, name: str, net: nn.Module, description: str, *, diffusers: bool) -> None:
        self.name = name
        self.net = net
        self.description = description
        self.diffusers = diffusers
        self.params = sum(p.numel() for p in net.parameters())
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def prepare(self, x: Tensor) -> Tensor:
        """Input layout: channels-last for diffusers (ours converts internally)."""
        return x.contiguous(memory_format=torch.channels_last) if self.diffusers else x

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        out = self.net(self.prepare(x), t)
        return out.sample if self.diffusers else out


def build_competitors(variants: list[str], image_size: int) -> list[Competitor]:
    """terradiff's SMALL_64 and the requested diffusers variants (see the module docstring)."""
    from diffusers import UNet2DModel  # imported here: only the benchmark needs it

    torch.manual_seed(0)
    ours = UNet(3, **{**SMALL_64, "image_size": image_size})
    chans = tuple(SMALL_64["base_channels"] * m for m in SMALL_64["channel_mults"])
    competitors = [
        Competitor(
            "terradiff",
            ours,
            f"terradiff UNet SMALL_64: channels {chans}, {SMALL_64['num_res_blocks']} ResBlocks "
            f"per level (+1 in the decoder), attention at {SMALL_64['attention_resolutions']} px "
            f"+ middle, head_channels {SMALL_64['head_channels']}, FiLM scale-shift; "
            "channels_last activations (its CPU default), contiguous weights",
            diffusers=False,
        )
    ]
    for variant in variants:
        kwargs: dict[str, Any] = {
            "sample_size": image_size,
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": chans,
        }
        if variant == "default":
            desc = (
                f"diffusers UNet2DModel(block_out_channels={chans}), all else default: "
                "layers_per_block=2, attention in down blocks 2-4 / up blocks 1-3 (32, 16, 8 px) "
                "+ middle, attention_head_dim=8, additive time embedding"
            )
        elif variant == "matched":
            kwargs.update(MATCHED_LAYOUT)
            desc = (
                f"diffusers UNet2DModel(block_out_channels={chans}) with terradiff's layout: "
                "attention at 16 and 8 px + middle, attention_head_dim=64, "
                "resnet_time_scale_shift='scale_shift'"
            )
        else:
            raise ValueError(f"unknown diffusers variant {variant!r}; use default or matched")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = UNet2DModel(**kwargs)
        net = net.to(memory_format=torch.channels_last)
        desc += "; model.to(channels_last) and channels_last inputs"
        competitors.append(Competitor(f"diffusers-{variant}", net, desc, diffusers=True))
    return competitors


# ----------------------------------------------------------------------------- timing


def precision(mode: str) -> contextlib.AbstractContextManager[Any]:
    """fp32: nothing; bf16: CPU autocast to bfloat16."""
    if mode == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(comp: Competitor, x0: Tensor, mode: str) -> float:
    """One forward + MSE(eps) + backward + AdamW step; returns seconds."""
    comp.net.train()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    x_t = 0.7 * x0 + 0.7 * noise
    start = time.perf_counter()
    with precision(mode):
        loss = F.mse_loss(comp(x_t, t).float(), noise)
    loss.backward()
    comp.optimizer.step()
    comp.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def ddim_run(
    comp: Competitor, x_noise: Tensor, mode: str, steps: int, schedule: NoiseSchedule
) -> float:
    """``steps``-step DDIM (eta=0) with the shared sampler; returns seconds."""
    comp.net.eval()
    start = time.perf_counter()
    with torch.no_grad(), precision(mode):
        ddim_sample(comp, schedule, x_noise, steps=steps)
    return time.perf_counter() - start


def ddpm_run(comp: Competitor, x_noise: Tensor, mode: str, steps: int) -> float:
    """Full ancestral DDPM over a ``steps``-step schedule; returns seconds."""
    comp.net.eval()
    schedule = NoiseSchedule.create("linear", steps)
    start = time.perf_counter()
    with torch.no_grad(), precision(mode):
        ddpm_sample(comp, schedule, x_noise, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def interleaved(
    comps: list[Competitor], fn: Callable[[Competitor], float], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Warm up each competitor, then time them interleaved (order reversed every repeat)."""
    for comp in comps:
        for _ in range(warmup):
            fn(comp)
    times: dict[str, list[float]] = {c.name: [] for c in comps}
    for r in range(repeats):
        for comp in comps if r % 2 == 0 else reversed(comps):
            times[comp.name].append(fn(comp))
    return times


def summary(times: list[float]) -> str:
    med = statistics.median(times)
    spread = f" [{min(times):.3f}-{max(times):.3f}]" if len(times) > 1 else ""
    return f"{med:8.3f} s{spread}"


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    start = time.perf_counter()
    yield
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps per net")
    parser.add_argument("--sample-repeats", type=int, default=3, help="timed DDIM runs per net")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ddim-steps", type=int, default=20)
    parser.add_argument(
        "--ddpm-steps",
        type=int,
        default=50,
        help="steps of the measured DDPM run that the 1000-step figure is extrapolated from",
    )
    parser.add_argument("--modes", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument(
        "--diffusers", default="default,matched", help="comma list of diffusers variants"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batch 2, 1 repeat, 3 DDIM steps, 4 DDPM steps",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.sample_repeats = 2, 1, 1
        args.ddim_steps, args.ddpm_steps = 3, 4
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in ("fp32", "bf16"):
            parser.error(f"unknown mode {mode!r}; use fp32 and/or bf16")
    variants = [v.strip() for v in args.diffusers.split(",") if v.strip()]

    torch.set_num_threads(args.threads)
    import diffusers

    print("terradiff UNet vs diffusers UNet2DModel -- CPU speed at matched parameter count")
    print(f"command   : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"torch     : {torch.__version__} (diffusers {diffusers.__version__})")
    print(f"threads   : {torch.get_num_threads()} (os.cpu_count()={os.cpu_count()})")
    print(f"cpu       : {cpu_model()}")
    print(f"allocator : {allocator()}")
    print(
        f"workload  : batch {args.batch}, {args.image_size}x{args.image_size}, 3 bands; "
        f"median of {args.repeats} train steps / {args.sample_repeats} sampling runs after "
        f"{args.warmup} warm-up; competitors interleaved"
        + ("  [--quick smoke run: numbers are not meaningful]" if args.quick else "")
    )

    comps = build_competitors(variants, args.image_size)
    ours = comps[0]
    print("\nnets:")
    for comp in comps:
        rel = comp.params / ours.params - 1
        flag = "" if abs(rel) <= 0.10 else "  WARNING: not within 10% of terradiff"
        print(f"  {comp.name:18s} {comp.params:>12,d} params ({rel:+.1%}){flag}")
        print(f"  {'':18s} {comp.description}")

    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(args.batch, 3, args.image_size, args.image_size, generator=g) * 2 - 1
    x_noise = torch.randn(x0.shape, generator=g)
    schedule = NoiseSchedule.create("linear", 1000)
    results: dict[str, Any] = {
        "provenance": provenance_record(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "allocator": allocator(),
        "batch": args.batch,
        "image_size": args.image_size,
        "quick": args.quick,
        "params": {c.name: c.params for c in comps},
        "train_step_s": {},
        "ddim_s": {},
        "per_image_s": {},
    }

    for mode in modes:
        with section(f"{mode}: training step (forward + backward + AdamW), batch {args.batch}"):
            times = interleaved(
                comps, lambda c, mode=mode: train_step(c, x0, mode), args.repeats, args.warmup
            )
            results["train_step_s"][mode] = times
            report(comps, times)
        with section(
            f"{mode}: {args.ddim_steps}-step DDIM sampling ({args.ddim_steps} forwards, "
            f"batch {args.batch}, no_grad)"
        ):
            for comp in comps:  # warm-up: a 1-step run (a whole sampling run each is wasteful)
                ddim_run(comp, x_noise, mode, 1, schedule)
            times = interleaved(
                comps,
                lambda c, mode=mode: ddim_run(c, x_noise, mode, args.ddim_steps, schedule),
                args.sample_repeats,
                0,
            )
            results["ddim_s"][mode] = times
            report(comps, times)
        with section(f"{mode}: terradiff seconds per image, DDIM vs DDPM"):
            ddpm = ddpm_run(ours, x_noise, mode, args.ddpm_steps)
            per_forward = ddpm / args.ddpm_steps
            ddim_img = statistics.median(results["ddim_s"][mode][ours.name]) / args.batch
            ddpm_img = per_forward * 1000 / args.batch
            results["per_image_s"][mode] = {
                f"ddim_{args.ddim_steps}": ddim_img,
                "ddpm_1000_extrapolated": ddpm_img,
                "ddpm_measured_steps": args.ddpm_steps,
                "ddpm_measured_s": ddpm,
            }
            print(f"   DDIM {args.ddim_steps:4d} steps : {ddim_img:8.3f} s/image (measured)")
            print(
                f"   DDPM 1000 steps : {ddpm_img:8.3f} s/image (EXTRAPOLATED: a measured "
                f"{args.ddpm_steps}-step DDPM run, {ddpm:.2f} s at batch {args.batch}, "
                f"x 1000/{args.ddpm_steps})"
            )
            print(f"   ratio           : {ddpm_img / ddim_img:8.1f}x")
        if args.json:  # after every precision, so a run cut short keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.json, json.dumps(results, indent=2))

    print("\nsummary (median seconds; ratio = diffusers / terradiff, > 1 means terradiff faster)")
    for key, label in (("train_step_s", "train step"), ("ddim_s", f"{args.ddim_steps}-step DDIM")):
        for mode in modes:
            times = results[key][mode]
            base = statistics.median(times[ours.name])
            cells = [f"terradiff {base:.3f}"]
            for comp in comps[1:]:
                med = statistics.median(times[comp.name])
                cells.append(f"{comp.name} {med:.3f} ({med / base:.2f}x)")
            print(f"  {label:13s} {mode:4s}: " + ", ".join(cells))
    if args.json:
        print(f"\nwrote {args.json}")
    return results


def report(comps: list[Competitor], times: dict[str, list[float]]) -> None:
    """Print medians and the diffusers/terradiff ratio."""
    base = statistics.median(times[comps[0].name])
    for comp in comps:
        med = statistics.median(times[comp.name])
        ratio = "" if comp is comps[0] else f"   ratio diffusers/terradiff = {med / base:.2f}x"
        print(f"   {comp.name:18s} {summary(times[comp.name])}{ratio}", flush=True)


if __name__ == "__main__":
    main()
