"""The contract every method of every task keeps (in the spirit of diffusers' scheduler tests).

Each registered method, and any method a test registers, must: build from a config holding only
its own keys; train a few steps on real data (the bundled AID scenes or BioMassters chips) with a
falling loss; save and reload bit-identically as the same method; predict with the right shape and
bands (and refuse other bands); and report the sampling it ran truthfully: a stochastic method
returns the spec it was given and honours it, a one-pass method returns none and ignores it.
A new method gets these tests for free by being registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import torch
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import DataLoader

from terradiff.config import config_from_dict
from terradiff.diffusion import objectives
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import DataError
from terradiff.tasks import build_task, load_task
from terradiff.tasks.registry import (
    Method,
    register_method,
    registered_methods,
    unregister_method,
)
from terradiff.tasks.super_resolution import SRBatch, SRMethodConfig
from terradiff.tasks.super_resolution.method import OnePassSRMethod
from terradiff.train import Trainer
from tests.change_helpers import generator_config
from tests.helpers import tiny_config
from tests.temporal_helpers import generator_config as month_generator_config

SMALL = {  # size knobs, applied only where the method's config declares them
    "vgg_layout": "vgg11",
    "vgg_width": 0.125,
    "vgg_stages": 2,
    "feature_channels": 8,
    "decoder_hidden": 16,
    "render_channels": 8,
    "student_channels": 8,
    "hidden": 16,
}
STEPS = {"sr": 15, "carbon": 12, "change": 12, "temporal": 12, None: 15}


@pytest.fixture(autouse=True)
def _fresh_accelerator_state() -> Iterator[None]:
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def method_config(
    method: type[Method] | None,
    run_dir: Path,
    repo_samples: Path,
    steps: int,
    levir: Path | None = None,
) -> dict[str, Any]:
    """A tiny config of ``method`` (None: generation) on the bundled real data (change: on
    ``levir``, the real LEVIR-CD pairs; temporal: on ``levir``, the real BioMassters chips)."""
    raw = tiny_config(run_dir, repo_samples, max_steps=steps)
    raw["model"]["dropout"] = 0.0
    # the same 8 centre crops every step: a method must be able to fit one batch
    raw["data"].update({"max_images": 8, "crop": "center", "random_flip": False})
    if method is None:
        return raw
    tasks = {"sr": "super_resolution", "carbon": "carbon", "change": "change"}
    raw["task"] = {**tasks, "temporal": "temporal"}[method.section]
    section: dict[str, Any] = {"method": method.name}
    section.update({k: v for k, v in SMALL.items() if k in method.config_class.model_fields})
    if method.section == "sr":
        section["scale"] = 4
    elif method.section == "change":
        assert levir is not None
        raw["data"] = {
            "kind": "levir_cd",
            "root": str(levir),
            "image_size": 32,
            "crops_per_image": 2,
            "random_flip": False,
        }
        raw["model"]["attention_resolutions"] = []
        if "generator" in method.config_class.model_fields:  # reads a trained generator
            section["generator"] = str(levir_generator(run_dir.parent, levir))
            section["timesteps"] = [10, 100]
    elif method.section == "temporal":
        assert levir is not None
        raw["data"] = {
            "kind": "temporal",
            "root": str(levir),
            "image_size": 32,
            "scaling": "sentinel2",
            "crops_per_image": 1,
            "random_flip": False,
        }
        raw["model"]["attention_resolutions"] = []
        section["test_dates"] = 1
        if "generator" in method.config_class.model_fields:  # a frozen generator to steer
            section["generator"] = str(month_generator(run_dir.parent, levir))
            section["target_fields"] = ["month"]
            raw.pop("model")
    else:
        raw["data"] = {
            "kind": "paired",
            "root": str(repo_samples / "biomassters"),
            "image_size": 32,
            "scaling": "none",
            "crops_per_image": 8,
        }
        raw["model"]["attention_resolutions"] = []
        section.update({"train_chips": ["0060c0a5", "288afc34"], "test_chips": ["000aa810"]})
    raw[method.section] = section
    return raw


def train_teacher(section: str, root: Path, samples: Path) -> Path:
    """A few steps of the first registered method of ``section`` that can teach."""
    teacher = next(m for m in registered_methods(section) if getattr(m, "can_teach", False))
    run = root / f"teacher-{teacher.name}"
    if not run.exists():
        raw = method_config(teacher, run, samples, steps=10)
        Trainer(build_task(config_from_dict(raw)), run).fit()
        AcceleratorState._reset_state(reset_partial_state=True)
    return run


def levir_generator(root: Path, levir: Path) -> Path:
    """A few steps of a tiny generator on LEVIR-CD's training images (DDPM-CD's features)."""
    run = root / "levir-generator"
    if not run.exists():
        Trainer(build_task(config_from_dict(generator_config(levir, run, steps=4))), run).fit()
        AcceleratorState._reset_state(reset_partial_state=True)
    return run


def month_generator(root: Path, biomassters: Path) -> Path:
    """A few steps of a tiny month-conditioned generator of BioMassters months (ControlNet)."""
    run = root / "month-generator"
    if not run.exists():
        raw = month_generator_config(biomassters, run, steps=4)
        Trainer(build_task(config_from_dict(raw)), run).fit()
        AcceleratorState._reset_state(reset_partial_state=True)
    return run


@torch.no_grad()
def fixed_batch_loss(task: Any, batch: dict[str, Any]) -> float:
    """The training loss of ``batch`` with the noise of a fixed seed."""
    return float(task.training_loss(task.net, batch, torch.Generator().manual_seed(0)))


def check_contract(
    method: type[Method] | None, tmp_path: Path, samples: Path, levir: Path | None = None
) -> None:
    """Every clause of the contract, for one method (None: the generation task)."""
    section = method.section if method is not None else None
    raw = method_config(method, tmp_path / "run", samples, STEPS[section], levir)
    if method is not None and method.needs_teacher:
        raw[method.section]["teacher"] = str(train_teacher(method.section, tmp_path, samples))
    task = build_task(config_from_dict(raw, f"the contract config of {method}"))
    assert method is None or type(task.method) is method

    # trains on real data: the loss of a fixed batch (fixed noise) falls
    batch = next(iter(DataLoader(task.build_dataset(), batch_size=8)))
    before = fixed_batch_loss(task, batch)
    result = Trainer(task, tmp_path / "run").fit()
    after = fixed_batch_loss(task, batch)
    assert after < before, (method, before, after)

    # saves and reloads bit-identically, as the same method
    loaded, ckpt = load_task(tmp_path / "run", use_ema=False)
    assert ckpt.step == result.step
    assert method is None or type(loaded.method) is method
    trained = task.net.state_dict()
    reloaded = loaded.net.state_dict()
    assert trained.keys() == reloaded.keys()
    for key, value in trained.items():
        assert torch.equal(value, reloaded[key]), (method, key)
    assert loaded.band_info == task.band_info

    # predicts with the right shape and bands; reports the sampling it ran truthfully
    def predict(spec: SamplingSpec | None) -> tuple[torch.Tensor, Any]:
        generator = torch.Generator().manual_seed(0)
        if section == "sr":
            hr = torch.stack([loaded.build_dataset()[i]["image"] for i in (0, 5)])
            lr = loaded.degrade(hr)
            out = loaded.super_resolve(loaded.net, lr, spec=spec, generator=generator)
            assert out.sample.shape == hr.shape
            with pytest.raises(DataError, match="bands"):
                loaded.super_resolve(loaded.net, lr[:, :1], spec=spec)
            return out.sample, out.spec
        if section == "carbon":
            image = loaded.dataset("test").get(0)["image"][None, :, :36, :44]
            est = loaded.estimate(loaded.net, image, ensemble=2, spec=spec, generator=generator)
            assert est.mean.shape == (1, 1, 36, 44) and est.std.shape == est.mean.shape
            assert est.members == (2 if loaded.stochastic else 1)
            assert (est.std.mean() > 0) if loaded.stochastic else (est.std.abs().max() == 0)
            with pytest.raises(DataError, match="bands"):
                loaded.estimate(loaded.net, image[:, :2], spec=spec)
            return est.mean, est.spec
        if section == "change":
            item = loaded.dataset("test").get(0)
            before, after = item["before"][None, :, :36, :44], item["after"][None, :, :36, :44]
            probability = loaded.change_probability(loaded.net, before, after, generator=generator)
            assert probability.shape == (1, 1, 36, 44)
            with pytest.raises(DataError, match="bands"):
                loaded.change_probability(loaded.net, before[:, :2], after[:, :2])
            return probability * 2 - 1, None
        if section == "temporal":
            item = loaded.dataset("test").get(0)
            with pytest.raises(DataError, match="bands"):
                loaded.forecast(
                    loaded.net,
                    item["before"][None, :2],
                    item["metadata"][None],
                    item["present"][None],
                )
        out = loaded.sample(loaded.net, 2, spec=spec, generator=generator)
        assert out.sample.shape == (2, loaded.num_bands, 32, 32)
        return out.sample, out.spec

    two, three = SamplingSpec("ddim", 2), SamplingSpec("ddim", 3)
    sample_two, reported_two = predict(two)
    sample_three, reported_three = predict(three)
    assert torch.isfinite(sample_two).all() and sample_two.abs().max() <= 1.0
    if loaded.stochastic:
        assert loaded.sampling_spec(steps=2) == two
        assert reported_two == two and reported_three == three
        assert not torch.equal(sample_two, sample_three)  # the steps asked for were taken
    else:
        assert loaded.sampling_spec(steps=2) is None
        assert reported_two is None and reported_three is None
        assert torch.equal(sample_two, sample_three)  # nothing was sampled


def _method_id(method: type[Method] | None) -> str:
    return "generation" if method is None else f"{method.section}-{method.name}"


@pytest.mark.parametrize("method", [None, *registered_methods()], ids=_method_id)
def test_every_registered_method_keeps_the_contract(
    method: type[Method] | None, tmp_path: Path, sample_data: Path, request: pytest.FixtureRequest
) -> None:
    levir = None
    if method is not None and method.section == "change":  # real LEVIR-CD pairs
        levir = request.getfixturevalue("shared_data") / "levir-cd"
    if method is not None and method.section == "temporal":  # real BioMassters months
        levir = request.getfixturevalue("shared_data") / "biomassters"
    check_contract(method, tmp_path, sample_data, levir)


class NearestConfig(SRMethodConfig):
    """A toy method's config: only the shared keys."""

    method: Literal["nearest_toy"] = "nearest_toy"


class NearestToy(OnePassSRMethod):
    """A toy method written as a user would: a 1x1 convolution on the bicubic image."""

    name: ClassVar[str] = "nearest_toy"
    config_class = NearestConfig

    def build_net(self) -> nn.Module:
        bands = self.task.num_bands
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.task.config.seed)
            return nn.Conv2d(bands, bands, 1)

    def training_loss(
        self, net: nn.Module, batch: SRBatch, generator: torch.Generator
    ) -> torch.Tensor:
        prediction = self.forward(net, batch.bicubic, generator)
        return objectives.diffusion_loss(prediction, batch.hr, loss_type="l1", mask=batch.mask)

    def forward(
        self, net: nn.Module, bicubic: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return bicubic + net(bicubic).float()


def test_a_new_method_is_one_class_and_one_registration(tmp_path: Path, sample_data: Path) -> None:
    register_method(NearestToy)
    try:
        raw = method_config(NearestToy, tmp_path / "run", sample_data, steps=1)
        assert config_from_dict(raw).sr.method == "nearest_toy"  # type: ignore[union-attr]
        check_contract(NearestToy, tmp_path, sample_data)
    finally:
        unregister_method("sr", "nearest_toy")
    with pytest.raises(Exception, match="not a registered method"):
        config_from_dict(raw)


def test_registration_checks_the_declarations() -> None:
    class Unnamed(NearestToy):
        name: ClassVar[str] = "unnamed_toy"  # its config still says 'nearest_toy'

    with pytest.raises(ValueError, match="must default to 'unnamed_toy'"):
        register_method(Unnamed)
