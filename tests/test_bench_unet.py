"""The pure parts of benchmarks/bench_unet.py: FLOP counting, share of peak, rows, summary table.

The CUDA path itself needs a GPU (``benchmarks/gpu_session.sh``); what is tested here is the
arithmetic its figures come from, the CPU defaults it must keep, and one tiny CPU run of the
extended path (FLOPs, peak, rows in the JSON) with terradiff alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_unet
import unet_bench_common as ubc

CPU = torch.device("cpu")


def test_flops_of_a_conv_match_a_hand_count() -> None:
    conv = nn.Conv2d(3, 5, 3, padding=1)
    flops = ubc.count_flops(lambda: conv(torch.zeros(2, 3, 8, 8)))
    # 2 FLOPs per multiply-add: batch * out_channels * out_pixels * (in_channels * k * k)
    assert flops == 2 * 2 * 5 * (8 * 8) * (3 * 3 * 3)


def test_flops_of_a_strided_conv_and_a_linear_match_hand_counts() -> None:
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    linear = nn.Linear(7, 11)
    assert ubc.count_flops(lambda: conv(torch.zeros(1, 4, 8, 8))) == 2 * 6 * (4 * 4) * (4 * 9)
    assert ubc.count_flops(lambda: linear(torch.zeros(4, 7))) == 2 * 4 * 7 * 11


def test_attention_flops_are_counted_on_cpu() -> None:
    """The CPU SDPA kernel is invisible to FlopCounterMode; the count forces the math backend."""
    q = torch.zeros(2, 4, 16, 8)  # [B, heads, L, d]
    flops = ubc.count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 4 * 16 * 16 * 8)  # QK^T and (softmax)V, each 2*B*H*L*L*d


def test_forward_flops_per_image_counts_one_image() -> None:
    conv = nn.Conv2d(3, 4, 1)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == t.shape[0] == 1
        return conv(x)

    assert ubc.forward_flops_per_image(model_fn, 3, 8, CPU) == 2 * 4 * 64 * 3


def test_work_flops_train_is_three_forwards_and_ddim_n() -> None:
    assert ubc.work_flops_per_image(10.0, "train", 20) == 30.0
    assert ubc.work_flops_per_image(10.0, "ddim", 20) == 200.0
    with pytest.raises(ValueError):
        ubc.work_flops_per_image(10.0, "ddpm", 20)


def test_share_of_peak_arithmetic() -> None:
    # the eager figure: 1,228 images/s, 13.2 GFLOP forward x3, peak 790 TFLOP/s -> 6.2%
    share = ubc.share_of_peak(1228, 3 * 13.2e9, 790.0)
    assert share == pytest.approx(1228 * 39.6e9 / 790e12)
    assert round(share * 100, 1) == 6.2
    assert ubc.achieved_tflops(1000, 2e9) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        ubc.share_of_peak(1.0, 1.0, 0.0)


def test_make_row_derives_rate_tflops_and_shares() -> None:
    row = ubc.make_row(
        batch=128,
        mode="bf16",
        kind="train",
        competitor="terradiff",
        times_s=[0.3, 0.1, 0.2],
        forward_flops=1e9,
        peaks_tflops={"bf16": 100.0, "fp32": 10.0},
        peak_mem_bytes=3 * 2**20,
        compile_s=12.5,
    )
    assert row["median_s"] == 0.2
    assert row["images_per_s"] == pytest.approx(640.0)
    assert row["gflop_per_image"] == pytest.approx(3.0)
    assert row["tflops"] == pytest.approx(640 * 3e9 / 1e12)
    assert row["share_of_bf16_peak"] == pytest.approx(row["tflops"] / 100.0)
    assert row["share_of_fp32_peak"] == pytest.approx(row["tflops"] / 10.0)
    assert row["peak_mem_mib"] == 3.0
    assert row["compile_s"] == 12.5
    ddim = ubc.make_row(
        batch=4, mode="fp32", kind="ddim", competitor="x", times_s=[2.0], forward_flops=1e9
    )
    assert ddim["gflop_per_image"] == pytest.approx(20.0)  # 20 forwards (default ddim_steps)
    assert "share_of_bf16_peak" not in ddim
    bare = ubc.make_row(batch=4, mode="fp32", kind="ddim", competitor="x", times_s=[2.0])
    assert "tflops" not in bare and bare["peak_mem_mib"] is None


def _rows(rates: dict[tuple[int, str], dict[str, float]], kind: str = "train") -> list[dict]:
    return [
        ubc.make_row(batch=b, mode=m, kind=kind, competitor=name, times_s=[b / ips])
        for (b, m), cells in rates.items()
        for name, ips in cells.items()
    ]


def test_reference_is_diffusers_matched_compiled_then_eager_then_first() -> None:
    assert ubc.reference_name(["terradiff", "diffusers-matched", "diffusers-matched-compiled"]) == (
        "diffusers-matched-compiled"
    )
    assert ubc.reference_name(["terradiff", "diffusers-matched"]) == "diffusers-matched"
    assert ubc.reference_name(["terradiff", "diffusers-default"]) == "terradiff"


def test_summary_table_ratios_against_compiled_diffusers() -> None:
    rows = _rows(
        {
            (128, "bf16"): {
                "terradiff": 1200.0,
                "diffusers-matched": 1000.0,
                "diffusers-matched-compiled": 2000.0,
                "terradiff-compiled": 3000.0,
            },
            # the compiled reference is missing here (it failed): ratios fall back to eager
            (256, "fp32"): {"terradiff": 500.0, "diffusers-matched": 250.0},
        }
    )
    lines = ubc.summary_table(rows, "train")
    assert len(lines) == 3
    header = lines[0].split("|")
    names = [c.strip() for c in header[1:]]
    assert names == [
        "terradiff",
        "diffusers-matched",
        "diffusers-matched-compiled",
        "terradiff-compiled",
    ]
    first = [c.strip() for c in lines[1].split("|")]
    assert first[0].split() == ["128", "bf16"]
    assert first[1:] == ["1,200 (0.60x)", "1,000 (0.50x)", "2,000 (1.00x)", "3,000 (1.50x)"]
    second = [c.strip() for c in lines[2].split("|")]
    assert second[1:] == ["500 (2.00x)", "250 (1.00x)", "-", "-"]
    assert ubc.summary_table(rows, "ddim") == []


def test_summary_table_other_metrics_without_ratios() -> None:
    rows = _rows({(128, "bf16"): {"terradiff": 1000.0, "diffusers-matched": 500.0}})
    rows[0]["compile_s"] = 41.26
    lines = ubc.summary_table(rows, "train", "compile_s", ".1f", ratios=False)
    assert [c.strip() for c in lines[1].split("|")][1:] == ["41.3", "-"]


def test_timing_memory_and_peak_helpers_on_cpu() -> None:
    assert ubc.timed(CPU, lambda: torch.ones(4).sum()) >= 0.0
    assert ubc.peak_memory_bytes(CPU, lambda: None, 0) is None
    runs = ubc.matmul_peak_tflops(CPU, torch.float32, 64, repeats=2, warmup=1)
    assert len(runs) == 2 and all(r > 0 for r in runs)
    assert ubc.gpu_record(CPU) == {}


def test_resident_bytes_counts_weights_grads_and_optimizer_state() -> None:
    net = nn.Linear(4, 3)  # 15 fp32 parameters
    opt = torch.optim.AdamW(net.parameters())
    assert ubc.resident_bytes(net, opt) == 60
    net(torch.ones(2, 4)).sum().backward()
    assert ubc.resident_bytes(net, None) == 120
    opt.step()
    # + exp_avg and exp_avg_sq (15 floats each) + one step counter per parameter tensor
    steps = sum(s["step"].numel() * s["step"].element_size() for s in opt.state.values())
    assert ubc.resident_bytes(net, opt) == 120 + 120 + steps


def test_cpu_defaults_are_unchanged() -> None:
    args = bench_unet.parse_args([])
    assert args.device == "cpu" and args.batches == [16] and args.modes == ["fp32", "bf16"]
    assert args.compile == [] and not args.extended and args.ddpm_steps == 50
    quick = bench_unet.parse_args(["--quick"])
    assert (quick.batches, quick.repeats, quick.ddim_steps, quick.ddpm_steps) == ([2], 1, 3, 4)
    assert bench_unet.parse_args(["--compile", "terradiff"]).extended
    dropped = bench_unet.parse_args(["--compile", "diffusers-matched", "--diffusers", "default"])
    assert dropped.compile == []  # a compiled copy of a variant that is not run
    cuda_like = bench_unet.parse_args(["--compile", "none", "--batches", "4,8"])
    assert cuda_like.compile == [] and cuda_like.batches == [4, 8] and cuda_like.extended
    only = bench_unet.parse_args(["--compile", "terradiff,diffusers-matched", "--diffusers", ""])
    assert only.compile == ["terradiff"]


def test_tiny_extended_cpu_run_writes_rows(tmp_path: Path) -> None:
    """terradiff alone, 16 px, batch 1, one fp32 section: FLOPs, peak, rows and summary."""
    out = tmp_path / "unet.json"
    results = bench_unet.main(
        [
            "--quick",
            "--batch", "1",
            "--image-size", "16",
            "--diffusers", "",
            "--modes", "fp32",
            "--flops",
            "--peak-size", "64",
            "--ddpm-steps", "0",
            "--json", str(out),
            "--threads", str(torch.get_num_threads()),  # leave the test process's setting alone
        ]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["rows"] == results["rows"]
    assert [(r["kind"], r["competitor"]) for r in saved["rows"]] == [
        ("train", "terradiff"),
        ("ddim", "terradiff"),
    ]
    flops = saved["flops_per_image_forward"]["terradiff"]
    assert flops > 0
    train = saved["rows"][0]
    assert train["gflop_per_image"] == pytest.approx(3 * flops / 1e9)
    assert set(saved["peak_tflops"]) == {"bf16", "fp32"}
    assert train["share_of_bf16_peak"] > 0
    assert saved["train_step_s"]["fp32"]["terradiff"] == train["times_s"]  # legacy keys kept
    assert saved["device"] == "cpu" and saved["settings"]["compiled"] == []


def test_terradiff_fast_runs_the_commands_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--compile terradiff-fast`` on the CPU: its blocks compiled (dynamo's eager backend, the
    wiring without a compiler), its DDIM through the stand-in capture, both timed and summed up."""
    import functools

    import unet_bench_nets

    from terradiff.nets import fast_forward as ff
    from terradiff.nets.compile import compile_regions

    backend = ff.EagerCaptureBackend()
    patched = functools.partial(ff.fast_forward, backend=backend, compile_backend="eager")
    monkeypatch.setattr(unet_bench_nets, "fast_forward", patched)
    compiled: list[torch.nn.Module] = []

    def eager_regions(net: torch.nn.Module) -> int:
        compiled.append(net)
        return compile_regions(net, backend="eager")

    monkeypatch.setattr(unet_bench_nets, "compile_regions", eager_regions)
    before = torch.backends.cudnn.benchmark
    results = bench_unet.main(
        [
            "--quick",
            "--batch", "1",
            "--image-size", "16",
            "--diffusers", "",
            "--modes", "bf16",
            "--compile", "terradiff-fast",
            "--peak-size", "64",
            "--ddpm-steps", "0",
            "--threads", str(torch.get_num_threads()),
        ]
    )  # fmt: skip
    torch.backends.cudnn.benchmark = before
    rows = [(r["kind"], r["competitor"]) for r in results["rows"]]
    assert ("train", "terradiff-fast") in rows and ("ddim", "terradiff-fast") in rows
    assert results["settings"]["cudnn_benchmark"] is False  # auto: off on the CPU
    assert len(backend.captures) == 1 and backend.replays >= 3  # one shape, one capture
    # the train step ran the Trainer's layout (channels-last) whatever --channels-last says
    (train_net,) = compiled
    assert train_net.input_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert bench_unet.parse_args(["--compile", "terradiff-fast"]).compile == ["terradiff-fast"]


def test_compile_items_name_a_torch_compile_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NAME@MODE`` is a copy compiled in that mode (its calls mark the CUDA graph trees'
    steps when the mode replays graphs); a plain NAME keeps the default mode."""
    import unet_bench_nets

    modes: list[str | None] = []
    monkeypatch.setattr(unet_bench_nets, "compile_net", lambda net, mode=None: modes.append(mode))
    base = unet_bench_nets.Competitor("terradiff", nn.Conv2d(1, 1, 1), "a net", diffusers=False)
    copies = unet_bench_nets.compiled_copies([base], ["terradiff", "terradiff@reduce-overhead"])
    assert [c.name for c in copies] == ["terradiff-compiled", "terradiff-compiled-reduce-overhead"]
    assert modes == [None, "reduce-overhead"]
    assert [c.mark_steps for c in copies] == [False, True]
    assert copies[1].base == "terradiff" and "reduce-overhead mode" in copies[1].description
    with pytest.raises(ValueError, match="competitors are"):
        unet_bench_nets.compiled_copies([base], ["diffusers-matched@reduce-overhead"])
    # a compiled copy of a diffusers variant that is not run is dropped, whatever its mode
    args = bench_unet.parse_args(
        ["--diffusers", "default", "--compile", "diffusers-matched@reduce-overhead,terradiff"]
    )
    assert args.compile == ["terradiff"]
