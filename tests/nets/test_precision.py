"""``sample.precision``: the number format a net runs in at inference (issue 16, item 5)."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import terradiff.tasks.base as task_base
from terradiff import config
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import ConfigError
from terradiff.nets import precision as module
from terradiff.nets.fast_forward import EagerCaptureBackend, fast_forward
from terradiff.nets.precision import (
    inference_autocast,
    native_bf16_cpu,
    resolve_inference_precision,
)
from terradiff.sr_mapping import _sr_predict_fn
from terradiff.tasks.generation import GenerationTask
from terradiff.tasks.super_resolution import SuperResolutionTask
from tests.helpers import tiny_config


def test_auto_follows_the_cpus_bf16_and_explicit_choices_are_kept() -> None:
    """``auto`` on a CPU: bf16 with AMX-BF16 or AVX512-BF16 (the rule of
    ``train.mixed_precision``), fp32 without; an explicit choice stands."""
    assert resolve_inference_precision("auto", "cpu", "flags : fpu avx2 fma") == "fp32"
    assert resolve_inference_precision("auto", "cpu", "flags : avx512f avx512_bf16") == "bf16"
    assert resolve_inference_precision("auto", "cpu", "flags : amx_bf16 amx_tile") == "bf16"
    for choice in ("fp32", "bf16", "fp16"):
        assert resolve_inference_precision(choice, "cpu", "flags : avx2") == choice
    assert native_bf16_cpu("flags : avx2") is False
    with pytest.raises(ValueError, match=r"one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'fp64'"):
        resolve_inference_precision("fp64", "cpu")


def test_choices_are_the_configs_and_the_module_needs_no_pydantic() -> None:
    assert module.INFERENCE_PRECISIONS == config.INFERENCE_PRECISIONS
    field = config.SampleConfig.model_fields["precision"]
    assert field.annotation.__args__ == config.INFERENCE_PRECISIONS
    code = "import sys; sys.modules['pydantic'] = None\nimport terradiff.nets.precision"
    subprocess.run([sys.executable, "-c", code], check=True)


@torch.no_grad()
def test_bf16_runs_the_convolutions_in_bf16_and_fp32_switches_an_outer_autocast_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with inference_autocast("bf16", "cpu"):
        assert conv(x).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16), inference_autocast("fp32", "cpu"):
        assert conv(x).dtype == torch.float32
    for native, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(module, "native_bf16_cpu", lambda _info=None, n=native: n)
        with inference_autocast("auto", "cpu"):
            assert conv(x).dtype == dtype


def _generation_task(tmp_path: Path, sample_data: Path) -> GenerationTask:
    raw = tiny_config(tmp_path / "run", sample_data)
    task = GenerationTask(config_from_dict(raw), band_info=BandInfo(3, ("r", "g", "b"), "none"))
    with torch.no_grad():  # the zero-initialised output conv would hide the format
        for p in task.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return task


def test_sampling_at_bf16_gives_fp32_samples_close_to_fp32s(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net runs under bf16 autocast, the sampler in fp32: fp32 samples that differ from
    the fp32 run's by bf16 rounding only; a graph keeps one capture per format."""
    task = _generation_task(tmp_path, sample_data)
    spec = task.sampling_spec("ddim", 4)

    def draw() -> torch.Tensor:
        return task.sample(
            task.net, 2, spec=spec, generator=torch.Generator().manual_seed(1)
        ).sample

    task.use_precision("fp32")
    full = draw()
    task.use_precision("bf16")
    assert task.config.sample.precision == "bf16"
    half = draw()
    assert half.dtype == torch.float32
    difference = (half - full).abs().max().item()
    assert 0.0 < difference < 0.1, difference
    backend = EagerCaptureBackend()
    graphed = functools.partial(fast_forward, backend=backend)
    monkeypatch.setattr(task_base, "fast_forward", graphed)
    task.use_fast("graph")
    torch.testing.assert_close(draw(), half, rtol=0, atol=0)
    task.use_precision("fp32")
    torch.testing.assert_close(draw(), full, rtol=0, atol=0)
    assert len(backend.captures) == 2 and backend.replays == 8


def test_use_precision_refuses_an_unknown_format(tmp_path: Path, sample_data: Path) -> None:
    task = _generation_task(tmp_path, sample_data)
    task.use_precision(None)  # keeps the checkpoint's
    assert task.config.sample.precision == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        task.use_precision("fp64")


def test_a_one_pass_sr_net_maps_tiles_at_bf16_with_fp32_outputs(
    tmp_path: Path, sample_data: Path
) -> None:
    """The distilled student (one pass, no sampler) runs inside the precision context."""
    raw = tiny_config(tmp_path / "run", sample_data)
    raw["task"] = "super_resolution"
    raw["sr"] = {"method": "student", "scale": 2, "teacher": "unused", "distill": "none"}
    task = SuperResolutionTask(
        config_from_dict(raw), band_info=BandInfo(3, ("r", "g", "b"), "none")
    )
    for p in task.net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    dtypes: list[torch.dtype] = []
    task.net.register_forward_hook(lambda _m, _a, out: dtypes.append(out.dtype))
    tiles = torch.rand(2, 3, 16, 16) * 2 - 1
    outputs = {}
    for precision in ("fp32", "bf16"):
        predict = _sr_predict_fn(
            task, factor=2, spec=None, seed=0, device="cpu", precision=precision
        )
        outputs[precision] = predict(tiles, None, [(0, 0)] * 2)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert outputs["bf16"].dtype == torch.float32
    difference = (outputs["bf16"] - outputs["fp32"]).abs().max().item()
    assert 0.0 < difference < 0.1, difference


def test_a_config_with_an_unknown_precision_names_the_key_and_the_choices(
    tmp_path: Path, sample_data: Path
) -> None:
    raw = tiny_config(tmp_path / "run", sample_data)
    raw["sample"] = {"precision": "fp64"}
    with pytest.raises(ConfigError, match=r"sample\.precision.*'auto', 'fp32', 'bf16' or 'fp16'"):
        config_from_dict(raw)


@torch.no_grad()
def test_the_unets_ends_run_in_fp32_under_autocast_at_inference_only() -> None:
    """Eval mode under bf16 autocast: the input conv and the output head in fp32 (the body in
    bf16); training mode follows autocast everywhere."""
    from terradiff.nets.unet import UNet

    net = UNet(
        3,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        num_groups=4,
        attention_resolutions=(),
        image_size=16,
    )
    dtypes: dict[str, torch.dtype] = {}
    for name in ("input_conv", "out"):
        module_ = getattr(net, name)
        module_.register_forward_hook(lambda _m, _a, out, n=name: dtypes.update({n: out.dtype}))
    net.down[0].res[0].register_forward_hook(lambda _m, _a, out: dtypes.update({"body": out.dtype}))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 900.0])
    with inference_autocast("bf16", "cpu"):
        net.eval()
        assert net(x, t).dtype == torch.float32
        # the input conv computes in fp32 (its hook sees fp32) and hands bf16 on
        assert dtypes == {"input_conv": torch.float32, "body": torch.bfloat16, "out": torch.float32}
        stream: list[torch.dtype] = []
        net.down[0].res[0].register_forward_pre_hook(lambda _m, args: stream.append(args[0].dtype))
        net.eval()
        net(x, t)
        assert stream == [torch.bfloat16]
        net.train()
        assert net(x, t).dtype == torch.bfloat16
        assert set(dtypes.values()) == {torch.bfloat16}
