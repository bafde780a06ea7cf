"""Fast denoiser calls (``terradiff.nets.fast_forward``): the same outputs as the eager net.

The CUDA-graph path runs only on a GPU; its keying, re-capture and buffer handling run here
with :class:`EagerCaptureBackend`, which "replays" by calling the net on the static inputs.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import terradiff.tasks.base as task_base
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.data.tiling.probe import peak_tensor_bytes
from terradiff.errors import ConfigError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.fast_forward import (
    EagerCaptureBackend,
    FastForward,
    GraphedForward,
    fast_forward,
    resolve_fast,
)
from terradiff.nets.unet import UNet
from terradiff.tasks.generation import GenerationTask
from tests.helpers import tiny_config


class _Denoiser(nn.Module):
    """A small net with the UNet's call: ``net(x_t, t, cond=None)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        self.calls += 1
        out = self.conv(x) * (1 + t.view(-1, 1, 1, 1) / 100)
        return out if cond is None else out + cond


def _tiny_unet(condition_spec: ConditionSpec | None = None) -> UNet:
    torch.manual_seed(0)
    return UNet(
        3,
        3,
        condition_spec=condition_spec,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        image_size=16,
        num_groups=8,
        head_channels=16,
    ).eval()


def test_resolve_fast_graph_on_cuda_only() -> None:
    assert resolve_fast("auto", "cuda") == "graph"
    assert resolve_fast("auto", "cpu") == "off"
    assert resolve_fast("graph", "cpu") == "off"  # the eager net: identical outputs
    assert resolve_fast("graph", "cuda:0") == "graph"
    assert resolve_fast("compile", "cpu") == "compile"
    assert resolve_fast("compile+graph", "cuda") == "compile+graph"
    assert resolve_fast("compile+graph", "cpu") == "compile"  # a graph needs CUDA
    assert resolve_fast("off", "cuda") == "off"
    with pytest.raises(ValueError, match="fast must be one of"):
        resolve_fast("fastest", "cpu")


@pytest.mark.parametrize("policy", ["auto", "graph", "off"])
def test_cpu_falls_back_to_the_eager_net(policy: str) -> None:
    net = _tiny_unet()
    assert fast_forward(net, policy) is net


@torch.no_grad()
def test_graph_replays_equal_eager_and_capture_once_per_shape() -> None:
    net = _Denoiser().eval()
    backend = EagerCaptureBackend()
    graphed = fast_forward(net, "graph", backend=backend)
    assert isinstance(graphed, FastForward)
    torch.manual_seed(0)
    for step in range(4):  # new values each call: the static inputs are refreshed
        x, t, cond = torch.randn(2, 3, 8, 8), torch.full((2,), 10.0 * step), torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(graphed(x, t, cond), net(x, t, cond), rtol=0, atol=0)
    assert len(backend.captures) == 1 and backend.replays == 4  # a capture runs nothing
    x, t = torch.randn(3, 3, 8, 8), torch.zeros(3)  # a new batch and no cond: a new capture
    torch.testing.assert_close(graphed(x, t), net(x, t), rtol=0, atol=0)
    assert len(backend.captures) == 2
    torch.testing.assert_close(graphed(x, t, None), net(x, t), rtol=0, atol=0)
    assert len(backend.captures) == 3  # another call signature (three arguments)
    assert fast_forward(net, "graph", backend=backend) is graphed  # kept per net


@torch.no_grad()
def test_outputs_are_not_overwritten_by_the_next_replay() -> None:
    """A sampler may keep step k's output (DPM-Solver++'s history) while step k+1 replays."""
    net = _Denoiser().eval()
    graphed = GraphedForward(net, backend=EagerCaptureBackend())
    x = torch.randn(1, 3, 4, 4)
    first = graphed(x, torch.zeros(1))
    kept = first.clone()
    graphed(x * 2, torch.ones(1))
    torch.testing.assert_close(first, kept, rtol=0, atol=0)


@torch.no_grad()
def test_least_recently_used_capture_is_dropped() -> None:
    net = _Denoiser().eval()
    backend = EagerCaptureBackend()
    graphed = GraphedForward(net, backend=backend, max_graphs=2)
    small, large, other = (torch.randn(n, 3, 4, 4) for n in (1, 2, 3))
    for x in (small, large, small, other):  # "other" evicts "large", the least recent
        graphed(x, torch.zeros(x.shape[0]))
    assert len(backend.captures) == 3 and len(graphed.captures) == 2
    graphed(small, torch.zeros(1))
    assert len(backend.captures) == 3  # still kept
    graphed(large, torch.zeros(2))
    assert len(backend.captures) == 4  # captured again
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedForward(net, max_graphs=0)


@torch.no_grad()
def test_another_autocast_setting_is_captured_again() -> None:
    """A graph replays the casts it recorded: a bf16-autocast call must not replay an fp32
    capture (nor the reverse), and each replays its own setting's result."""
    net = _Denoiser().eval()
    backend = EagerCaptureBackend()
    graphed = GraphedForward(net, backend=backend)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 5.0)
    fp32 = graphed(x, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = graphed(x, t)
        eager_bf16 = net(x, t)
    assert len(backend.captures) == 2
    torch.testing.assert_close(bf16, eager_bf16, rtol=0, atol=0)
    assert not torch.equal(bf16, fp32)  # the convolution really ran in bf16
    torch.testing.assert_close(graphed(x, t), fp32, rtol=0, atol=0)  # the fp32 capture again
    assert len(backend.captures) == 2


@torch.no_grad()
def test_new_parameter_storage_is_captured_again() -> None:
    """A graph reads the parameter storages it was captured with: a net whose weights were
    replaced (``.to``, ``.data =``) is captured again; in training mode it runs eagerly."""
    net = _Denoiser().eval()
    backend = EagerCaptureBackend()
    graphed = fast_forward(net, "graph", backend=backend)
    x, t = torch.randn(1, 3, 4, 4), torch.zeros(1)
    graphed(x, t)
    net.conv.weight.data = net.conv.weight.data * 3
    torch.testing.assert_close(graphed(x, t), net(x, t), rtol=0, atol=0)
    assert len(backend.captures) == 2
    net.train()
    graphed(x, t)
    assert len(backend.captures) == 2


class _FailingBackend:
    def capture(self, fn, inputs):
        raise RuntimeError("operation not permitted when stream is capturing")


@torch.no_grad()
def test_a_failed_capture_runs_eagerly_with_a_warning() -> None:
    net = _Denoiser().eval()
    graphed = GraphedForward(net, backend=_FailingBackend())
    x, t = torch.randn(1, 3, 4, 4), torch.zeros(1)
    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        torch.testing.assert_close(graphed(x, t), net(x, t), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second try, no second warning
        torch.testing.assert_close(graphed(x, t), net(x, t), rtol=0, atol=0)
    assert not graphed.captures and len(graphed.uncapturable) == 1


def test_eager_for_keywords_gradients_and_dispatch_modes() -> None:
    """A condition object (keyword), a call with gradients and the tiling engine's memory probe
    (a ``TorchDispatchMode``) all run the eager net: nothing is captured."""
    net = _Denoiser().eval()
    backend = EagerCaptureBackend()
    graphed = fast_forward(net, "graph", backend=backend)
    x, t = torch.randn(1, 3, 4, 4), torch.zeros(1)
    out = graphed(x, t)  # gradients on: eager, differentiable
    assert out.requires_grad
    with torch.no_grad():
        graphed(x, t, cond=torch.zeros_like(x))
        assert peak_tensor_bytes(lambda: graphed(x, t)) > 0
    assert backend.captures == []


@torch.no_grad()
def test_unet_graphed_equals_eager() -> None:
    net = _tiny_unet()
    graphed = fast_forward(net, "graph", backend=EagerCaptureBackend())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 150.0])
    for _ in range(2):
        torch.testing.assert_close(graphed(x, t), net(x, t), rtol=0, atol=0)


@torch.no_grad()
def test_a_conditional_unet_is_graphed_with_its_condition_as_inputs() -> None:
    """``condition=`` is captured as three more inputs: one capture per signature, replays
    that follow new labels and metadata (the static inputs are refreshed), outputs equal to the
    eager net's; a condition with other parts (no metadata) is another signature."""
    net = _tiny_unet(ConditionSpec(num_classes=3, metadata_fields=("lat", "gsd")))
    for p in net.parameters():  # the condition embedding starts at zero: make it matter
        p.add_(0.05 * torch.randn_like(p))
    backend = EagerCaptureBackend()
    graphed = fast_forward(net, "graph", backend=backend)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 150.0])
    first = Condition(torch.tensor([0, 2]), torch.tensor([[0.1, float("nan")], [0.5, 0.3]]))
    second = Condition(torch.tensor([1, -1]), torch.tensor([[0.7, 0.2], [float("nan")] * 2]))
    outputs = [graphed(x, t, condition=c) for c in (first, second)]
    for out, c in zip(outputs, (first, second), strict=True):
        torch.testing.assert_close(out, net(x, t, condition=c), rtol=0, atol=0)
    assert not torch.equal(outputs[0], outputs[1])
    assert len(backend.captures) == 1 and backend.replays == 2
    graphed(x, t, condition=Condition(torch.tensor([0, 1])))
    assert len(backend.captures) == 2
    torch.testing.assert_close(graphed(x, t, condition=None), net(x, t), rtol=0, atol=0)
    assert len(backend.captures) == 3  # the unconditioned call has its own graph


@pytest.mark.parametrize(
    "fast",
    [
        "graph",
        "auto",
        "compile+graph",
        pytest.param("compile", marks=pytest.mark.slow),
    ],
)
def test_run_sampler_gives_the_eager_samples(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch, fast: str
) -> None:
    """``sample.fast`` changes how the denoiser runs, not the samples: DDIM-4 through a graph
    (one capture, four replays), ``auto`` on the CPU (eager), ``compile`` (the eager
    compiler backend: the wiring, without a C++ toolchain) and ``compile+graph`` (the compiled
    blocks inside the one capture) equal the eager run."""
    raw = tiny_config(tmp_path / "run", sample_data)
    task = GenerationTask(config_from_dict(raw), band_info=BandInfo(3, ("r", "g", "b"), "none"))
    spec = task.sampling_spec("ddim", 4)
    eager = task.sample(task.net, 2, spec=spec, generator=torch.Generator().manual_seed(1))
    backend = EagerCaptureBackend()
    monkeypatch.setattr(
        task_base,
        "fast_forward",
        functools.partial(fast_forward, backend=backend, compile_backend="eager"),
    )
    task.use_fast(fast)
    assert task.config.sample.fast == fast
    out = task.sample(task.net, 2, spec=spec, generator=torch.Generator().manual_seed(1))
    tol = 1e-5 if "compile" in fast else 0.0
    torch.testing.assert_close(out.sample, eager.sample, rtol=tol, atol=tol)
    if "graph" in fast:
        assert len(backend.captures) == 1 and backend.replays == 4
    else:
        assert backend.captures == []
    compiled = [m for m in task.net.modules() if getattr(m, "_compiled_call_impl", None)]
    assert bool(compiled) == ("compile" in fast)


def test_use_fast_refuses_an_unknown_policy(tmp_path: Path, sample_data: Path) -> None:
    raw = tiny_config(tmp_path / "run", sample_data)
    task = GenerationTask(config_from_dict(raw), band_info=BandInfo(3, ("r", "g", "b"), "none"))
    assert task.config.sample.fast == "off"  # the default: what existing checkpoints get
    with pytest.raises(ConfigError, match="fast must be one of"):
        task.use_fast("turbo")
    task.use_fast(None)
    assert task.config.sample.fast == "off"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@torch.no_grad()
def test_cuda_graph_equals_eager_on_the_gpu() -> None:
    net = _tiny_unet().cuda()
    graphed = fast_forward(net, "graph")
    assert isinstance(graphed, FastForward)
    for batch in (4, 4, 2, 4):  # replay, re-capture for a new batch, replay the first again
        x = torch.randn(batch, 3, 16, 16, device="cuda")
        t = torch.rand(batch, device="cuda") * 999
        torch.testing.assert_close(graphed(x, t), net(x, t), rtol=1e-5, atol=1e-5)
    assert len(graphed.graphed.captures) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@torch.no_grad()
def test_compiled_blocks_in_a_cuda_graph_equal_eager_on_the_gpu() -> None:
    """``compile+graph`` with inductor: the warm-up calls compile, the capture replays the fused
    kernels; float tolerance (inductor may reorder reductions)."""
    net = _tiny_unet().cuda()
    reference = copy.deepcopy(net)
    fast = fast_forward(net, "compile+graph")
    assert isinstance(fast, FastForward)
    for batch in (4, 4, 2):
        x = torch.randn(batch, 3, 16, 16, device="cuda")
        t = torch.rand(batch, device="cuda") * 999
        torch.testing.assert_close(fast(x, t), reference(x, t), rtol=1e-4, atol=1e-4)
    assert len(fast.graphed.captures) == 2


def test_policies_are_the_configs_and_the_module_imports_without_pydantic() -> None:
    import subprocess
    import sys

    from terradiff import config
    from terradiff.nets import fast_forward as module

    assert module.FAST_POLICIES == config.FAST_POLICIES
    code = (
        "import sys; sys.modules['pydantic'] = None; sys.modules['rasterio'] = None\n"
        "import terradiff.nets.fast_forward, terradiff.nets.unet, terradiff.diffusion.samplers"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
