"""Regional compilation (``terradiff.nets.compile``): same outputs, same weights' names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from terradiff.nets.blocks import ResBlock
from terradiff.nets.compile import compile_regions, resolve_compile


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
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
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
