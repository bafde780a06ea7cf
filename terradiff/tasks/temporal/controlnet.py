"""ControlNet temporal generation: a frozen date-conditioned generator steered by the before image.

DiffusionSat's temporal ControlNet (Khanna et al. 2024, Sec. 3.3) on ControlNet (Zhang, Rao &
Agrawala 2023, Sec. 3): ``temporal.generator`` names a trained ``generation`` run conditioned on
the **target date** (``condition.metadata`` equal to ``temporal.target_fields``, e.g. ``[month,
day_of_year]``); it stays locked, and a trainable copy of its encoder reads the before image
through a hint block and zero convolutions (:class:`~terradiff.nets.controlnet.ControlNet`), so
at initialisation the model *is* the generator. The source date and the years apart (the
:meth:`~terradiff.data.temporal.PairSchema.part` ``"branch"`` columns) condition the copy only.
Trained with the generator's diffusion objective (Ho et al. 2020, Eq. 14) on pixels valid in both
dates; the whole metadata vector is dropped with probability ``temporal.drop_prob``.

**What a checkpoint holds (as the change task's ``ddpm_cd``).** The generator's weights are part
of the network, so every checkpoint stores them, and ``terradiff train`` records the generator's
config, bands, checkpoint and step in ``temporal.generator_config``: a trained model loads
without the generator run. The ``model`` and ``diffusion`` sections of a ``controlnet`` config
are not used: the generator's are (its ``diffusion`` section replaces the run's).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.config import config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.data.metadata import MetadataSchema
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.controlnet import ControlNet
from terradiff.tasks.base import (
    build_schedule,
    build_unet,
    diffusion_loss,
    fixed_seed_net,
    run_sampler,
)
from terradiff.tasks.frozen_generator import read_frozen_generator
from terradiff.tasks.temporal.method import TemporalMethod, TemporalMethodConfig

GENERATOR_HINT = (
    "train a 'generation' model on the same images with condition.metadata equal to "
    "temporal.target_fields (e.g. [month]) and set temporal.generator to its run folder"
)


class ControlNetConfig(TemporalMethodConfig):
    """``temporal.method: controlnet`` (frozen date-conditioned generator + ControlNet branch)."""

    uses_model_unet: ClassVar[bool] = False

    method: Literal["controlnet"] = "controlnet"
    generator: str | None = Field(
        None,
        description="Run folder (or step_* folder) of a 'generation' model conditioned on the "
        "target date fields; required.",
    )
    drop_prob: float = Field(
        0.1, ge=0.0, lt=1.0, description="Probability that a pair's metadata is dropped (null)."
    )
    hint_channels: int | None = Field(
        None, ge=1, description="Width of the hint block (null: the generator's first level)."
    )
    generator_config: dict[str, Any] | None = Field(
        None,
        description="Filled by terradiff train: the generator's config, bands, checkpoint and "
        "step, so that a trained model rebuilds without the generator run.",
    )

    @model_validator(mode="after")
    def _needs_generator(self) -> ControlNetConfig:
        if not self.generator and self.generator_config is None:
            raise ValueError(
                f"temporal.generator is required by method 'controlnet': {GENERATOR_HINT}"
            )
        return self


def read_generator(
    path: str, band_info: BandInfo, target_fields: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record of ``temporal.generator`` (config, bands, checkpoint, step) and its weights
    (EMA when present).

    Raises:
        ConfigError: no checkpoint there, not a generation model, conditioned on classes or on
            other metadata than ``target_fields``, or trained on other bands or scaling.
    """
    generator = read_frozen_generator(
        path,
        key="temporal.generator",
        hint=GENERATOR_HINT,
        band_info=band_info,
        data="temporal data",
    )
    condition = generator.config.condition
    fields = MetadataSchema(condition.metadata).fields if condition is not None else ()
    if condition is None or condition.classes or tuple(fields) != tuple(target_fields):
        given = None if condition is None else condition.model_dump(include={"classes", "metadata"})
        raise ConfigError(
            f"{generator.where} is conditioned on {given}; the ControlNet's locked generator "
            f"must be conditioned on the target date fields {list(target_fields)} only "
            f"(temporal.target_fields): {GENERATOR_HINT}"
        )
    return generator.record, generator.weights


class Steered(nn.Module):
    """A :class:`ControlNet` with its control image and branch condition bound, so that it is a
    plain ``net(x_t, t, condition=...)`` for :func:`~terradiff.tasks.base.diffusion_loss` and
    :func:`~terradiff.tasks.base.run_sampler` (a guided batch ``[cond; null]`` of twice the
    size gets the control image twice and a null branch condition for its second half)."""

    def __init__(self, net: nn.Module, before: torch.Tensor, branch: Condition | None) -> None:
        super().__init__()
        self.net, self.before, self.branch = net, before, branch

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, *, condition: Condition | None = None
    ) -> torch.Tensor:
        before, branch = self.before, self.branch
        if branch is not None:
            branch = branch.to(x.device)
        if x.shape[0] == 2 * before.shape[0]:
            before = torch.cat([before, before])
            if branch is not None:
                branch = Condition.concat(branch, branch.null_like())
        return self.net(x, t, control_image=before, condition=condition, branch_condition=branch)


class ControlNetTemporal(TemporalMethod):
    """A frozen date-conditioned generator steered by the before image (ControlNet)."""

    name: ClassVar[str] = "controlnet"
    config_class = ControlNetConfig
    stochastic: ClassVar[bool] = True
    summary: ClassVar[str] = "ControlNet: a frozen date-conditioned generator + a branch"

    def build_net(self) -> nn.Module:
        """The generator (from its run when training, else from the record) + the branch.

        Raises:
            ConfigError: see :func:`read_generator`.
        """
        cfg, task = self.config, self.task
        schema = task.schema
        target = schema.part_fields("target")
        weights = None
        if getattr(task, "for_training", True) or cfg.generator_config is None:
            record, weights = read_generator(str(cfg.generator), task.band_info, target)
            cfg.generator_config = record
        record = cfg.generator_config
        source = f"temporal.generator_config ({record.get('checkpoint')})"
        generator = config_from_dict(record["config"], source)
        task.config.diffusion = generator.diffusion
        task.schedule = build_schedule(generator)
        spec = ConditionSpec(metadata_fields=target)
        unet = build_unet(generator, task.num_bands, task.num_bands, condition_spec=spec)
        if weights is not None:
            try:
                unet.load_state_dict(weights)
            except RuntimeError as error:
                raise ConfigError(
                    f"temporal.generator {cfg.generator}: its weights do not fit its config: "
                    f"{error}"
                ) from None
        branch = schema.part_fields("branch")
        return fixed_seed_net(
            task.config.seed,
            lambda: ControlNet(
                unet,
                task.num_bands,
                hint_channels=cfg.hint_channels,
                branch_spec=ConditionSpec(metadata_fields=branch) if branch else None,
            ),
        )

    def split_condition(self, condition: Condition) -> tuple[Condition, Condition | None]:
        """The target-date condition (locked model and copy) and the branch's (None: the
        schema has no source date and no years apart)."""
        schema = self.task.schema
        assert condition.metadata is not None and condition.present is not None
        parts = [
            Condition(
                metadata=schema.part(condition.metadata, which),
                present=schema.part(condition.present, which),
            )
            for which in ("target", "branch")
        ]
        return parts[0], parts[1] if schema.part_fields("branch") else None

    def training_loss(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        dropped = self.task.condition(batch).with_dropped(self.config.drop_prob, generator)
        target, branch = self.split_condition(dropped)
        return diffusion_loss(
            Steered(net, batch["before"], branch),
            self.task.schedule,
            self.task.config,
            batch["after"],
            generator,
            mask=batch["valid"],
            condition=target,
        )

    def predict(
        self,
        net: nn.Module,
        before: torch.Tensor,
        condition: Condition,
        *,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        target, branch = self.split_condition(condition)
        return run_sampler(
            Steered(net, before, branch),
            self.task.schedule,
            self.task.config,
            tuple(before.shape),
            spec if spec is not None else self.task.sampling_spec(),
            condition=target,
            generator=generator,
        ).sample
