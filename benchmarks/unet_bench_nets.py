"""The competitors of ``benchmarks/bench_unet.py`` and how each is timed.

terradiff's ``SMALL_64`` UNet, diffusers' ``UNet2DModel`` (default and with terradiff's layout),
``torch.compile``'d copies of any of them; a training step, DDIM and DDPM runs on CPU or CUDA, the
interleaved timing and the warm-up (which records compile time and peak memory). See the
benchmark's docstring for what each competitor is.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unet_bench_common import (
    COMPILED_SUFFIX,
    compile_net,
    peak_memory_bytes,
    resident_bytes,
    timed,
)

from terradiff.diffusion.samplers import ddim_sample, ddpm_sample
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.nets.compile import compile_regions
from terradiff.nets.fast_forward import fast_forward
from terradiff.nets.memory import set_channels_last
from terradiff.nets.unet import SMALL_64, UNet

#: The competitor that runs terradiff the way its commands do on CUDA: training through the
#: Trainer's regional compilation (``train.compile``), DDIM through ``sample.fast:
#: compile+graph`` (the compiled blocks inside one CUDA graph per shape). Ask for it in
#: ``--compile``; its base is ``terradiff``.
FAST_NAME = "terradiff-fast"

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
    """A net, its name, how its inputs are laid out, and the ``model_fn`` a sampler calls.

    ``fn`` is what runs the net (the net itself, or its ``torch.compile`` wrapper); ``net`` is
    the module whose parameters the optimizer updates and whose train/eval flag is set.
    ``cudnn_benchmark`` (None: leave it) is set as ``torch.backends.cudnn.benchmark`` at each
    call, so one run can time cuDNN's heuristic and autotuned algorithm choices side by side:
    the flag stays until the next competitor's call, through this one's backward.
    ``mark_steps`` (``torch.compile``'s ``reduce-overhead`` mode) marks each call as the start
    of a new step of the CUDA graph trees, whose outputs a later replay may overwrite: a train
    step or a sampler uses one call's output before the next call.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        description: str,
        *,
        diffusers: bool,
        channels_last_input: bool | None = None,
        fn: Callable[..., Any] | None = None,
        base: str | None = None,
        cudnn_benchmark: bool | None = None,
        mark_steps: bool = False,
    ) -> None:
        self.name = name
        self.mark_steps = mark_steps
        self.cudnn_benchmark = cudnn_benchmark
        self.net = net
        self.description = description
        self.diffusers = diffusers
        self.channels_last_input = diffusers if channels_last_input is None else channels_last_input
        self.fn = net if fn is None else fn
        self.base = base or name  # the eager competitor this one is a compiled copy of
        self.compiled = fn is not None
        self.failed: str | None = None
        self.params = sum(p.numel() for p in net.parameters())
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def prepare(self, x: Tensor) -> Tensor:
        """Input layout: channels-last for diffusers on CPU (ours converts internally)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last_input else x

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.mark_steps:  # CUDA graph trees: each call starts a new step (nothing held over)
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(self.prepare(x), t)
        return out.sample if self.diffusers else out


def layout_policy(channels_last: str, device: torch.device) -> tuple[bool | None, bool]:
    """(terradiff's ``channels_last`` argument, whether diffusers runs channels-last).

    ``auto``: terradiff's own default (channels-last on CPU only) and diffusers channels-last on
    CPU (as the committed CPU results), each library's default layout on CUDA.
    """
    if channels_last == "on":
        return True, True
    if channels_last == "off":
        return False, False
    return None, device.type == "cpu"


def build_competitors(
    variants: list[str],
    image_size: int,
    device: torch.device | None = None,
    channels_last: str = "auto",
) -> list[Competitor]:
    """terradiff's SMALL_64 and the requested diffusers variants (see the module docstring)."""
    device = torch.device("cpu") if device is None else device
    ours_policy, diffusers_cl = layout_policy(channels_last, device)
    torch.manual_seed(0)
    ours = UNet(3, **{**SMALL_64, "image_size": image_size, "channels_last": ours_policy})
    chans = tuple(SMALL_64["base_channels"] * m for m in SMALL_64["channel_mults"])
    if ours_policy is None and device.type == "cpu":
        ours_layout = "channels_last activations (its CPU default), contiguous weights"
    elif ours_policy is None:
        ours_layout = f"contiguous activations (its {device.type.upper()} default)"
    else:
        ours_layout = f"channels_last={ours_policy}"
    competitors = [
        Competitor(
            "terradiff",
            ours.to(device),
            f"terradiff UNet SMALL_64: channels {chans}, {SMALL_64['num_res_blocks']} ResBlocks "
            f"per level (+1 in the decoder), attention at {SMALL_64['attention_resolutions']} px "
            f"+ middle, head_channels {SMALL_64['head_channels']}, FiLM scale-shift; "
            + ours_layout,
            diffusers=False,
        )
    ]
    for variant in variants:
        from diffusers import UNet2DModel  # imported here: only the benchmark needs it

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
        if diffusers_cl:
            net = net.to(memory_format=torch.channels_last)
            desc += "; model.to(channels_last) and channels_last inputs"
        else:
            desc += "; default (contiguous) layout"
        competitors.append(
            Competitor(
                f"diffusers-{variant}",
                net.to(device),
                desc,
                diffusers=True,
                channels_last_input=diffusers_cl,
            )
        )
    return competitors


def fast_competitor(base: Competitor) -> Competitor:
    """terradiff as its commands run it on CUDA, whatever ``--channels-last`` says: the train
    step as ``Trainer.fit`` runs it by default (``train.channels_last: true``, blocks compiled
    in place by ``train.compile: auto``), sampling as ``sample --fast compile+graph`` runs a
    loaded checkpoint (contiguous weights, the UNet's inference layout default, NCHW on CUDA,
    its blocks compiled inside one CUDA graph per shape). Two copies of the weights: the
    optimizer steps the training one; speed does not depend on the values."""
    train_net = set_channels_last(copy.deepcopy(base.net), True)
    compile_regions(train_net)
    sample_net = copy.deepcopy(base.net).to(memory_format=torch.contiguous_format)
    set_channels_last(sample_net, None).eval()  # a loaded checkpoint: contiguous, inference
    sample_fn = fast_forward(sample_net, "compile+graph")

    def run(x: Tensor, t: Tensor) -> Tensor:
        return train_net(x, t) if torch.is_grad_enabled() else sample_fn(x, t)

    competitor = Competitor(
        FAST_NAME,
        train_net,
        "terradiff SMALL_64 as its commands run it: train step channels-last with its blocks "
        "compiled in place (Trainer defaults), DDIM with the inference layout default and "
        "sample.fast=compile+graph",
        diffusers=False,
        channels_last_input=False,
        fn=run,
        base="terradiff",
    )
    competitor.sample_net = sample_net  # type: ignore[attr-defined]  # FastForward's is weak
    return competitor


def compiled_copies(comps: list[Competitor], names: list[str]) -> list[Competitor]:
    """A ``torch.compile``'d copy (same weights, own optimizer) of each competitor in ``names``;
    :data:`FAST_NAME` is a copy of ``terradiff`` run through :func:`fast_forward`. ``NAME@MODE``
    compiles in ``torch.compile``'s ``MODE`` (e.g. ``reduce-overhead``: the compiled forward
    and backward replayed as CUDA graphs), named ``NAME-compiled-MODE``."""
    by_name = {c.name: c for c in comps}
    out = []
    for item in names:
        name, _, mode = item.partition("@")
        if name == FAST_NAME and "terradiff" in by_name:
            out.append(fast_competitor(by_name["terradiff"]))
            continue
        if name not in by_name:
            raise ValueError(f"--compile names {name!r}; competitors are {sorted(by_name)}")
        base = by_name[name]
        net = copy.deepcopy(base.net)
        out.append(
            Competitor(
                name + COMPILED_SUFFIX + (f"-{mode}" if mode else ""),
                net,
                base.description + f"; torch.compile(net, dynamic=False), {mode or 'default'} mode",
                diffusers=base.diffusers,
                channels_last_input=base.channels_last_input,
                fn=compile_net(net, mode or None),
                base=name,
                mark_steps=mode == "reduce-overhead",
            )
        )
    return out


# ----------------------------------------------------------------------------- timing


def precision(mode: str, device: torch.device | None = None) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: autocast to bfloat16 on the device's type. On CUDA without
    autocast's cache of cast weights (a CUDA graph needs it off, as terradiff's inference runs
    it; a train step casts each weight once either way); on a CPU with it, as the committed CPU
    figures were measured (on a 2-core Xeon the difference for a 20-step DDIM run was within the
    host's run-to-run noise of about 5%)."""
    if mode == "bf16":
        kind = "cpu" if device is None else device.type
        return torch.autocast(kind, dtype=torch.bfloat16, cache_enabled=kind != "cuda")
    return contextlib.nullcontext()


def train_inputs(x0: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(x_t, t, noise) of a train step, drawn on CPU from a fixed seed, then moved to ``device``."""
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    x_t = 0.7 * x0 + 0.7 * noise
    return x_t.to(device), t.to(device), noise.to(device)


def train_step(
    comp: Competitor, inputs: tuple[Tensor, Tensor, Tensor], mode: str, device: torch.device
) -> float:
    """One forward + MSE(eps) + backward + AdamW step; returns seconds."""
    comp.net.train()
    x_t, t, noise = inputs

    def step() -> None:
        with precision(mode, device):
            loss = F.mse_loss(comp(x_t, t).float(), noise)
        loss.backward()
        comp.optimizer.step()
        comp.optimizer.zero_grad(set_to_none=True)

    return timed(device, step)


def ddim_run(
    comp: Competitor, x_noise: Tensor, mode: str, steps: int, schedule: NoiseSchedule
) -> float:
    """``steps``-step DDIM (eta=0) with the shared sampler; returns seconds."""
    comp.net.eval()

    def run() -> None:
        with torch.no_grad(), precision(mode, x_noise.device):
            ddim_sample(comp, schedule, x_noise, steps=steps)

    return timed(x_noise.device, run)


def ddpm_run(comp: Competitor, x_noise: Tensor, mode: str, steps: int) -> float:
    """Full ancestral DDPM over a ``steps``-step schedule; returns seconds."""
    comp.net.eval()
    schedule = NoiseSchedule.create("linear", steps)

    def run() -> None:
        with torch.no_grad(), precision(mode, x_noise.device):
            ddpm_sample(comp, schedule, x_noise, generator=torch.Generator().manual_seed(0))

    return timed(x_noise.device, run)


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


def warm_up(
    comps: list[Competitor],
    fn: Callable[[Competitor], float],
    warmup: int,
    device: torch.device,
    training: bool,
) -> tuple[dict[str, float], dict[str, int | None]]:
    """Warm each competitor up; returns (first-call seconds, peak memory of one more call).

    A compiled competitor that fails to compile or run is marked ``failed`` and left out (the
    rest of the run goes on); an eager one that fails stops the benchmark.
    """
    first: dict[str, float] = {}
    memory: dict[str, int | None] = {}
    for comp in comps:
        try:
            for i in range(max(warmup, 1) if comp.compiled else warmup):
                seconds = fn(comp)
                if i == 0:
                    first[comp.name] = seconds
            if device.type == "cuda":
                own = resident_bytes(comp.net, comp.optimizer if training else None)
                memory[comp.name] = peak_memory_bytes(device, lambda comp=comp: fn(comp), own)
        except Exception as exc:
            if not comp.compiled:
                raise
            comp.failed = f"{type(exc).__name__}: {exc}"
            print(f"   {comp.name}: FAILED ({comp.failed[:400]}); left out from here on")
    return first, memory


def summary(times: list[float]) -> str:
    med = statistics.median(times)
    spread = f" [{min(times):.3f}-{max(times):.3f}]" if len(times) > 1 else ""
    return f"{med:8.3f} s{spread}"
