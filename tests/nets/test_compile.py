"""Regional compilation (``terradiff.nets.compile``): same outputs, same weights' names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from terradiff.nets.blocks import ResBlock
from terradiff.nets.compile import (
    compile_for_training,
    compile_plan,
    compile_regions,
    resolve_compile,
)


class _OneBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = ResBlock(8, 16, emb_dim=12, num_groups=4)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x, emb))


def test_auto_compiles_on_cuda_only() -> None:
    assert resolve_compile("auto", "cuda") and not resolve_compile("auto", "cpu")
    assert resolve_compile("on", "cpu") and not resolve_compile("off", "cuda")
    with pytest.raises(ValueError, match="'auto', 'on', 'off' or 'graphs'"):
        resolve_compile("yes", "cpu")


@pytest.mark.slow
def test_compiled_blocks_match_eager_and_keep_their_names() -> None:
    """Forward and gradients of a compiled ResBlock equal the eager ones to 1e-5 (float32; the
    compiler may reorder the float arithmetic), and ``state_dict`` keys do not change."""
    torch.manual_seed(0)
    net = _OneBlock()
    for p in net.parameters():  # the block's zero-initialised conv would hide differences
        nn.init.normal_(p, std=0.2)
    x, emb = torch.randn(2, 8, 8, 8), torch.randn(2, 12)
    eager = net(x, emb)
    eager.square().mean().backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    keys = list(net.state_dict())
    net.zero_grad()
    assert compile_regions(net) == 1
    compiled = net(x, emb)
    compiled.square().mean().backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for got, want in zip((p.grad for p in net.parameters()), eager_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert list(net.state_dict()) == keys


def test_compile_plans_per_setting_and_device() -> None:
    assert compile_plan("auto", "cuda") == "blocks" and compile_plan("auto", "cpu") == "off"
    assert compile_plan("on", "cpu") == "blocks" and compile_plan("off", "cuda") == "off"
    assert compile_plan("graphs", "cpu") == "graphs" and resolve_compile("graphs", "cpu")
    with pytest.raises(ValueError, match="'graphs'"):
        compile_plan("whole", "cuda")


def test_compile_for_training_compiles_in_place_and_returns_the_step_marker() -> None:
    """``graphs`` compiles the whole net in place (names kept; the eager backend stands in for
    inductor) and returns the CUDA graph trees' step marker; ``off`` and ``blocks`` a no-op."""
    torch.manual_seed(0)
    net = _OneBlock()
    x, emb = torch.randn(2, 8, 8, 8), torch.randn(2, 12)
    eager = net(x, emb)
    keys = list(net.state_dict())
    assert compile_for_training(net, "off")() is None
    marker = compile_for_training(net, "graphs", backend="eager")
    assert marker is torch.compiler.cudagraph_mark_step_begin
    marker()
    torch.testing.assert_close(net(x, emb), eager)
    assert net._compiled_call_impl is not None and list(net.state_dict()) == keys
    blocks = _OneBlock()
    assert compile_for_training(blocks, "blocks", backend="eager")() is None
    assert blocks.block._compiled_call_impl is not None
    with pytest.raises(ValueError, match="plan"):
        compile_for_training(_OneBlock(), "everything")  # type: ignore[arg-type]
