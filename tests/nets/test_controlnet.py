"""ControlNet branch (Zhang et al. 2023): identity at initialisation, training moves only the
branch, extra branch metadata, input checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.controlnet import ControlNet
from terradiff.nets.unet import UNet

TINY: dict[str, Any] = {
    "base_channels": 16,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8,),
    "image_size": 16,
    "num_groups": 8,
    "head_channels": 16,
}


def _trained_unet(bands: int = 4, **kwargs: Any) -> UNet:
    """A UNet with random (non-zero) weights everywhere, standing in for a trained generator."""
    net = UNet(bands, **{**TINY, **kwargs})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def _inputs(bands: int = 4, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, bands, 16, 16, generator=g)
    before = torch.rand(batch, bands, 16, 16, generator=g) * 2 - 1
    t = torch.tensor([10.0, 700.0])[:batch]
    return x, t, before


def test_output_identical_to_locked_model_at_initialisation() -> None:
    locked = _trained_unet()
    net = ControlNet(locked, control_channels=4)
    x, t, before = _inputs()
    with torch.no_grad():
        expected = locked(x, t)
        got = net(x, t, control_image=before)
        got_train_mode = net.train()(x, t, control_image=before)
    assert expected.abs().max() > 0  # a real prediction, not the zero output layer
    assert torch.equal(got, expected)
    assert torch.equal(got_train_mode, expected)
    assert not net.locked.training  # the locked model stays in eval mode


def test_identity_with_metadata_and_branch_condition() -> None:
    spec = ConditionSpec(metadata_fields=("month_sin", "month_cos"))
    locked = _trained_unet(condition_spec=spec)
    net = ControlNet(locked, 4, branch_spec=ConditionSpec(metadata_fields=("years_apart",)))
    x, t, before = _inputs()
    condition = Condition(metadata=torch.tensor([[0.5, 0.8], [-1.0, 0.0]]))
    extra = Condition(metadata=torch.tensor([[0.1], [-0.3]]))
    with torch.no_grad():
        expected = locked(x, t, condition=condition)
        got = net(x, t, control_image=before, condition=condition, branch_condition=extra)
    assert torch.equal(got, expected)


def test_one_step_changes_output_and_leaves_locked_weights() -> None:
    locked = _trained_unet()
    net = ControlNet(locked, control_channels=4).train()
    frozen_before = {k: v.clone() for k, v in locked.state_dict().items()}
    assert all(not p.requires_grad for p in locked.parameters())
    trainable = list(net.trainable_parameters())
    assert trainable and all(p.requires_grad for p in trainable)
    assert len(trainable) == len(list(net.parameters())) - len(list(locked.parameters()))
    x, t, before = _inputs()
    with torch.no_grad():
        start = net(x, t, control_image=before)
    optimizer = torch.optim.Adam(net.trainable_parameters(), lr=1e-3)
    loss = F.mse_loss(net(x, t, control_image=before), torch.zeros_like(x))
    loss.backward()
    assert all(p.grad is None for p in locked.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.skip_zero.parameters())
    optimizer.step()
    with torch.no_grad():
        after = net(x, t, control_image=before)
    assert not torch.equal(after, start)
    for key, value in locked.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key


def test_scale_zero_is_the_locked_model_after_training_step() -> None:
    locked = _trained_unet()
    net = ControlNet(locked, 4)
    with torch.no_grad():
        for p in net.skip_zero.parameters():
            p.fill_(0.01)
    x, t, before = _inputs()
    with torch.no_grad():
        assert torch.equal(net(x, t, control_image=before, scale=0.0), locked(x, t))
        assert not torch.equal(net(x, t, control_image=before), locked(x, t))


def test_config_round_trip_and_state_dict() -> None:
    net = ControlNet(_trained_unet(), 4, hint_channels=8)
    rebuilt = ControlNet.from_config(net.config)
    rebuilt.load_state_dict(net.state_dict())
    x, t, before = _inputs()
    with torch.no_grad():
        assert torch.equal(rebuilt(x, t, control_image=before), net(x, t, control_image=before))
    assert not any(
        k.startswith("branch.up.") or k.startswith("branch.out.") for k in net.state_dict()
    )


def test_bad_inputs_are_clear_errors() -> None:
    net = ControlNet(_trained_unet(), 4)
    x, t, before = _inputs()
    with pytest.raises(ValueError, match="control_image must have shape"):
        net(x, t, control_image=before[:, :3])
    with pytest.raises(ValueError, match="no branch conditioning"):
        net(x, t, control_image=before, branch_condition=Condition(metadata=torch.zeros(2, 1)))
    with pytest.raises(ValueError, match="control_channels"):
        ControlNet(_trained_unet(), 0)
