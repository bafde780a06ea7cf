"""Tests of terradiff.diffusion.guidance (classifier-free guidance) and its SamplingSpec field."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor

from terradiff.diffusion import objectives
from terradiff.diffusion.guidance import GuidedModelFn, check_scale, guidance_scale_of, guided
from terradiff.diffusion.samplers import SAMPLERS
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.diffusion.spec import SamplingSpec, run_spec
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.unet import UNet

SCHED = NoiseSchedule.create("linear", 12)  # short chain: DDPM runs all 12 steps
TINY: dict[str, Any] = {
    "base_channels": 16,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (4,),
    "image_size": 8,
    "num_groups": 8,
    "head_channels": 16,
}


def _net(cond_channels: int = 0) -> UNet:
    torch.manual_seed(0)
    net = UNet(
        2,
        **TINY,
        cond_channels=cond_channels,
        condition_spec=ConditionSpec(num_classes=3, metadata_fields=("lat",)),
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights: the zero-initialised output layer would hide bugs
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


class Counting:
    """``model_fn(x_t, t, cond, condition)`` of a net that records the batch of every call."""

    def __init__(self, net: UNet) -> None:
        self.net = net
        self.batches: list[int] = []

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None, condition: Any) -> Tensor:
        self.batches.append(x.shape[0])
        if cond is not None:
            assert cond.shape[0] == x.shape[0]
        return self.net(x, t, cond, condition=condition)

    def plain(
        self, condition: Condition | None
    ) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        """The ``model_fn(x_t, t, cond)`` of the net with a fixed condition."""
        return lambda x, t, cond: self(x, t, cond, condition)


CONDITION = Condition(torch.tensor([2, 0, -1]), torch.tensor([[0.4], [float("nan")], [0.1]]))


def _sample(name: str, model_fn: Any, seed: int = 0, cond: Tensor | None = None) -> Tensor:
    x_T = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(seed))
    kwargs: dict[str, Any] = {"steps": 4} if name != "ddpm" else {}
    if name == "ddim":
        kwargs["eta"] = 0.5  # stochastic: the same seed must give the same noise
    out = SAMPLERS[name](
        model_fn, SCHED, x_T, cond=cond, generator=torch.Generator().manual_seed(seed), **kwargs
    )
    return out.sample


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_scale_one_and_zero_reproduce_the_conditional_and_unconditional_samplers(
    name: str,
) -> None:
    """Bitwise: s = 1 / s = 0 make the very same calls (B samples) as the plain samplers."""
    model = Counting(_net())
    conditional = _sample(name, model.plain(CONDITION))
    unconditional = _sample(name, model.plain(None))  # None = the null condition in the UNet
    calls = len(model.batches)
    model.batches.clear()
    assert torch.equal(_sample(name, guided(model, CONDITION, 1.0)), conditional)
    assert torch.equal(_sample(name, guided(model, CONDITION, 0)), unconditional)
    assert model.batches == [3] * calls  # no doubled batch
    assert not torch.equal(conditional, unconditional)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_guided_sampler_makes_one_doubled_forward_per_step(name: str) -> None:
    model = Counting(_net())
    _sample(name, model.plain(CONDITION))
    steps = len(model.batches)
    model.batches.clear()
    guided_sample = _sample(name, guided(model, CONDITION, 3.0))
    assert model.batches == [6] * steps  # one call of 2B per step, no loop over the two halves
    conditional = _sample(name, model.plain(CONDITION))
    assert torch.isfinite(guided_sample).all() and not torch.allclose(guided_sample, conditional)


def test_guided_output_is_the_documented_mix() -> None:
    net = _net(cond_channels=1)
    model = Counting(net)
    x, t = torch.randn(3, 2, 8, 8), torch.tensor([11.0, 5.0, 0.0])
    image = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        out_cond = net(x, t, image, condition=CONDITION)
        out_null = net(x, t, image, condition=CONDITION.null_like())
        for s in (0.5, 1.5, 4.0):
            mixed = guided(model, CONDITION, s)(x, t, image)
            # the doubled batch runs other kernels than two B-batches: equal up to rounding
            torch.testing.assert_close(mixed, out_null + s * (out_cond - out_null))
    assert model.batches == [6, 6, 6]


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_guiding_x0_or_v_guides_the_implied_eps(prediction: str) -> None:
    """The mix of outputs implies the same mix of eps (weights 1 - s and s sum to one)."""
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 2, 8, 8, generator=g)
    out_cond, out_null = torch.randn(2, 4, 2, 8, 8, generator=g)
    t = torch.tensor([1, 4, 8, 11])
    s = 2.5
    mixed = objectives.to_eps(prediction, out_null + s * (out_cond - out_null), x_t, t, SCHED)
    eps_cond = objectives.to_eps(prediction, out_cond, x_t, t, SCHED)
    eps_null = objectives.to_eps(prediction, out_null, x_t, t, SCHED)
    torch.testing.assert_close(mixed, eps_null + s * (eps_cond - eps_null), rtol=1e-4, atol=1e-4)


def test_guidance_works_with_any_condition_object() -> None:
    """The maths module knows no nets: a duck-typed condition with null_like / concat works."""

    class Tag:
        def __init__(self, values: list[float]) -> None:
            self.values = values

        def null_like(self, batch: int | None = None) -> Tag:
            return Tag([0.0] * (batch or len(self.values)))

        @staticmethod
        def concat(a: Tag, b: Tag) -> Tag:
            return Tag(a.values + b.values)

    def model_fn(x: Tensor, t: Tensor, cond: Tensor | None, tag: Tag) -> Tensor:
        return x * torch.tensor(tag.values).view(-1, 1)

    x = torch.ones(2, 3)
    out = guided(model_fn, Tag([1.0, 2.0]), 3.0)(x, torch.zeros(2), None)
    torch.testing.assert_close(out, torch.tensor([[3.0] * 3, [6.0] * 3]))


def test_scale_validation() -> None:
    assert check_scale(2) == 2.0 and isinstance(check_scale(2), float)
    for bad in (-0.5, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="guidance scale"):
            check_scale(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="guidance scale"):
        guided(Counting(_net()), CONDITION, -1.0)
    fn = guided(Counting(_net()), CONDITION, 2.0)
    assert isinstance(fn, GuidedModelFn) and guidance_scale_of(fn) == 2.0
    assert guidance_scale_of(lambda x, t, c: x) is None


# ----------------------------------------------------------------------------- SamplingSpec


def test_sampling_spec_records_and_validates_guidance() -> None:
    spec = SamplingSpec("ddim", 4, guidance=3)
    assert spec.guidance == 3.0 and isinstance(spec.guidance, float)
    assert spec.to_dict()["guidance"] == 3.0 and "guidance=3.0" in repr(spec)
    assert SamplingSpec("ddim", 4).to_dict()["guidance"] is None
    with pytest.raises(ValueError, match="guidance scale"):
        SamplingSpec("ddim", 4, guidance=-1.0)
    defaults = SimpleNamespace(sampler="ddim", steps=4, eta=0.0, clip_denoised=True)
    assert SamplingSpec.resolve(defaults, 12).guidance is None  # a section without guidance
    assert SamplingSpec.resolve(defaults, 12, guidance=2.0).guidance == 2.0
    defaults.guidance = 1.5
    assert SamplingSpec.resolve(defaults, 12).guidance == 1.5
    assert SamplingSpec.resolve(defaults, 12, guidance=0.0).guidance == 0.0


def test_run_spec_checks_the_guidance_it_records() -> None:
    model = Counting(_net())
    x_T = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    spec = SamplingSpec("dpm_solver", 3, guidance=2.0)
    out = run_spec(spec, guided(model, CONDITION, 2.0), SCHED, x_T)
    assert out.spec == spec and model.batches == [6] * 3
    with pytest.raises(ValueError, match=r"asks for guidance 2\.0 but model_fn is not guided"):
        run_spec(spec, model.plain(CONDITION), SCHED, x_T)
    with pytest.raises(ValueError, match="asks for no guidance but model_fn guides with scale"):
        run_spec(SamplingSpec("ddim", 3), guided(model, CONDITION, 2.0), SCHED, x_T)
    with pytest.raises(ValueError, match=r"asks for guidance 2\.0 but model_fn guides with scale"):
        run_spec(spec, guided(model, CONDITION, 3.0), SCHED, x_T)
