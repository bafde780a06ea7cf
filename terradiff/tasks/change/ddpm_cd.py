"""DDPM-CD: a light change head on the frozen decoder features of a trained diffusion generator.

Bandara, Nair & Patel 2022, "DDPM-CD: Remote Sensing Change Detection using Denoising Diffusion
Probabilistic Models", Sec. 3: an unconditional DDPM is trained on the unlabelled images of both
dates (here: ``terradiff train configs/change/levir_generator.yaml``, a ``generation`` run);
``change.generator`` names that run. Each date is diffused to ``change.timesteps`` with the same
noise, the frozen denoiser's decoder features (``change.levels``, all by default) are taken per
timestep (:class:`~terradiff.change.DiffusionFeatures`), and only the
:class:`~terradiff.nets.change.ChangeHead` (``change.hidden`` wide) is trained on the labels.

**What a checkpoint holds (a choice).** The generator's weights are part of the detector's
network, so every checkpoint of a ``ddpm_cd`` run stores them beside the head's, and
``terradiff train`` records the generator's config, bands, checkpoint folder and step in
``change.generator_config``. A trained detector therefore loads without its generator run (it
may be deleted, moved, or trained further without changing the features the head was trained
on); the generator run is read only when training starts (a missing or unsuitable one is a
:class:`~terradiff.errors.ConfigError` naming ``change.generator``), and at load time only by a
checkpoint whose config lacks the record (hand-made configs). The ``model`` and ``diffusion``
sections of a ``ddpm_cd`` config are not used: the generator's are.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.change.ddpm_cd import DDPMChangeDetector, DiffusionFeatures
from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import ConfigError
from terradiff.tasks.base import build_schedule, build_unet, fixed_seed_net
from terradiff.tasks.change.method import ChangeMethod, ChangeMethodConfig
from terradiff.tasks.frozen_generator import read_frozen_generator

GENERATOR_HINT = (
    "train one on the A and B images first (terradiff train configs/change/levir_generator.yaml) "
    "and set change.generator to its run folder"
)


class DDPMCDConfig(ChangeMethodConfig):
    """``change.method: ddpm_cd`` (DDPM-CD features of a frozen generator + a light head)."""

    uses_model_unet: ClassVar[bool] = False

    method: Literal["ddpm_cd"] = "ddpm_cd"
    generator: str | None = Field(
        None,
        description="Run folder (or step_* folder) of an unconditional 'generation' model "
        "trained on the before and after images; required.",
    )
    timesteps: list[int] = Field(
        default_factory=lambda: [50, 100, 400],
        min_length=1,
        description="Timesteps each date is diffused to (DDPM-CD: 50, 100, 400); each below "
        "the generator's diffusion.num_timesteps.",
    )
    levels: list[int] | None = Field(
        None, description="Decoder levels to use, 0 = coarsest; null: all."
    )
    hidden: int = Field(64, ge=1, description="Width of the change head.")
    num_groups: int = Field(8, ge=1, description="GroupNorm groups of the head (divide hidden).")
    generator_config: dict[str, Any] | None = Field(
        None,
        description="Filled by terradiff train: the generator's config, bands, checkpoint and "
        "step, so that a trained detector rebuilds without the generator run.",
    )

    @model_validator(mode="after")
    def _needs_generator(self) -> DDPMCDConfig:
        if not self.generator and self.generator_config is None:
            raise ValueError(
                f"change.generator is required by method 'ddpm_cd': the run folder of an "
                f"unconditional generation model whose features the head reads; {GENERATOR_HINT}"
            )
        if self.hidden % self.num_groups:
            raise ValueError(
                f"change.num_groups={self.num_groups} must divide change.hidden={self.hidden}; "
                "e.g. hidden 64 with num_groups 8"
            )
        if any(t < 0 for t in self.timesteps):
            raise ValueError(f"change.timesteps must be >= 0, got {self.timesteps}")
        return self


def read_generator(path: str, band_info: BandInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record of ``change.generator`` (config, bands, checkpoint, step) and its weights.

    The EMA weights are used when the checkpoint has them (what its samples come from).

    Raises:
        ConfigError: no checkpoint there, not an unconditional generation model, or trained on
            other bands or another scaling than the change data (``band_info``).
    """
    generator = read_frozen_generator(
        path, key="change.generator", hint=GENERATOR_HINT, band_info=band_info, data="change data"
    )
    condition = generator.config.condition
    if condition is not None:
        raise ConfigError(
            f"{generator.where} is conditional (condition: {condition.model_dump()}); DDPM-CD "
            f"needs an unconditional generator: {GENERATOR_HINT}"
        )
    return generator.record, generator.weights


class DDPMCD(ChangeMethod):
    """DDPM-CD: frozen generator features at several timesteps and levels + a trained head."""

    name: ClassVar[str] = "ddpm_cd"
    config_class = DDPMCDConfig
    summary: ClassVar[str] = "DDPM-CD: a light head on a frozen generator's decoder features"

    def build_net(self) -> nn.Module:
        """The generator (from its run when training, else from the recorded config) + a head.

        Raises:
            ConfigError: see :func:`read_generator`; timesteps or levels the generator lacks.
        """
        cfg = self.config
        weights = None
        if getattr(self.task, "for_training", True) or cfg.generator_config is None:
            cfg.generator_config, weights = read_generator(str(cfg.generator), self.task.band_info)
        record = cfg.generator_config
        source = f"change.generator_config ({record.get('checkpoint')})"
        generator = config_from_dict(record["config"], source)
        unet = build_unet(generator, self.task.num_bands, self.task.num_bands)
        if weights is not None:
            try:
                unet.load_state_dict(weights)
            except RuntimeError as error:
                raise ConfigError(
                    f"change.generator {cfg.generator}: its weights do not fit its config: {error}"
                ) from None
        try:
            features = DiffusionFeatures(unet, build_schedule(generator), cfg.timesteps, cfg.levels)
        except ValueError as error:
            raise ConfigError(
                f"change.timesteps/change.levels do not fit the generator of {source}: {error}"
            ) from None
        return fixed_seed_net(
            self.task.config.seed,
            lambda: DDPMChangeDetector(features, hidden=cfg.hidden, num_groups=cfg.num_groups),
        )

    def logits(
        self,
        net: nn.Module,
        before: torch.Tensor,
        after: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return net(before, after, generator)
