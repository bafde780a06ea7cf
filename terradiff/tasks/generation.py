"""Image generation: a UNet denoiser trained with the DDPM objective, optionally conditioned.

Training follows Ho et al. (2020), Algorithm 1: draw ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)``, form
``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` and regress the chosen target (eps, x0
or v) with an L2/L1 loss under the nodata mask, optionally min-SNR weighted (Hang et al. 2023).
Sampling runs any sampler of :mod:`terradiff.diffusion.samplers` with the net as ``model_fn``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.data.conditioned import ConditionedDataset
from terradiff.data.labels import ClassIndex
from terradiff.data.metadata import MetadataSchema
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import CheckpointError, ConfigError, DataError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.tasks.base import (
    Task,
    band_info_of,
    build_dataset,
    build_schedule,
    build_unet,
    diffusion_loss,
    run_sampler,
)

__all__ = ["GenerationTask", "build_dataset", "build_schedule"]


class GenerationTask(Task):
    """Unconditional generation of ``C``-band images of ``image_size`` pixels.

    Args:
        config: the experiment config.
        band_info: bands the net works on (``count``, ``names``, ``scaling``); read from the dataset
            when None (training) or from a checkpoint (inference).
    """

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        self.config = config
        self.band_info = band_info or band_info_of(self.build_dataset(), config)
        self.class_index, self.schema = self._condition_parts()
        self.schedule = build_schedule(config)
        spec = None
        if config.condition is not None:
            spec = ConditionSpec(
                num_classes=len(self.class_index) if self.class_index is not None else 0,
                metadata_fields=tuple(self.schema.fields) if self.schema is not None else (),
            )
        self.net = build_unet(config, self.num_bands, self.num_bands, condition_spec=spec)

    # ------------------------------------------------------------------ conditioning
    def build_dataset(self) -> Dataset:
        """The training dataset; with a ``condition`` section its items carry ``label`` and/or
        ``metadata``/``present``, and ``condition.class_names`` is filled from the data."""
        if self._dataset is not None:
            return self._dataset
        dataset = build_dataset(self.config, train=True)
        cond = self.config.condition
        if cond is not None and (cond.metadata or hasattr(dataset, "files")):
            names = cond.class_names
            dataset = ConditionedDataset(
                dataset,
                class_index=ClassIndex.from_names(names, sort=False) if names else None,
                labels=None if cond.classes in (None, "folders") else cond.classes,
                schema=cond.metadata or None,
                sidecar=cond.metadata_sidecar,
                from_raster=cond.metadata_from_raster,
                date_pattern=cond.date_pattern,
            )
        if cond is not None and cond.classes and cond.class_names is None:
            found = getattr(dataset, "class_index", None)
            names = list(found.names) if found is not None else getattr(dataset, "class_names", [])
            if not names:
                raise DataError(
                    f"condition.classes {cond.classes!r}: no classes found in "
                    f"{self.config.data.root} (class sub-folders or the CSV's class column)"
                )
            cond.class_names = list(names)
        self._dataset = dataset
        return dataset

    def _condition_parts(self) -> tuple[ClassIndex | None, MetadataSchema | None]:
        cond = self.config.condition
        if cond is None:
            return None, None
        if cond.classes and not cond.class_names:
            raise CheckpointError(
                "condition.classes is set but condition.class_names is empty: the checkpoint "
                "was not written by 'terradiff train'; retrain, or list the classes in order"
            )
        classes = ClassIndex.from_names(cond.class_names, sort=False) if cond.classes else None
        return classes, (MetadataSchema(cond.metadata) if cond.metadata else None)

    def batch_condition(self, batch: dict[str, Any]) -> Condition | None:
        """The condition of a training batch (None for an unconditional model)."""
        if self.config.condition is None:
            return None
        labels = batch["label"] if self.class_index is not None else None
        if labels is not None and not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        metadata = batch.get("metadata") if self.schema is not None else None
        present = batch.get("present") if self.schema is not None else None
        return Condition(
            labels=None if labels is None else labels.long(), metadata=metadata, present=present
        )

    def make_condition(
        self,
        num_images: int,
        *,
        class_name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Condition | None:
        """The condition of a request (``--class``, ``--metadata``); None when unconditional.

        Omitted parts are null (a missing metadata field uses its learned null). With neither
        part given, a class-conditional model cycles through its classes (one per image).

        Raises:
            ConfigError: a class or metadata for a model that is not conditioned on them.
            DataError: an unknown class name or metadata key (the message lists the valid ones).
        """
        cond = self.config.condition
        if cond is None:
            if class_name is not None or metadata:
                raise ConfigError(
                    "this model is unconditional (its config has no 'condition' section): leave "
                    "--class, --metadata and --guidance out, or train with condition.classes"
                )
            return None
        labels = None
        if self.class_index is not None:
            if class_name is not None:
                index = self.class_index.lookup(class_name, where="--class")
                labels = torch.full((num_images,), index, dtype=torch.long)
            elif not metadata:
                labels = torch.arange(num_images) % len(self.class_index)
            else:
                labels = torch.full((num_images,), -1, dtype=torch.long)
        elif class_name is not None:
            raise ConfigError(
                f"--class {class_name}: this model is conditioned on metadata "
                f"{cond.metadata} only, not on classes"
            )
        values = present = None
        if self.schema is not None:
            one, mask = self.schema.normalise(metadata or {}, where="--metadata")
            values, present = one.expand(num_images, -1), mask.expand(num_images, -1)
        elif metadata:
            raise ConfigError(
                f"--metadata {sorted(metadata)}: this model is conditioned on classes only"
            )
        return Condition(labels=labels, metadata=values, present=present)

    def check_bands(self, dataset: Dataset) -> None:
        """Refuse a dataset whose band count differs from the net's."""
        if int(dataset.num_bands) != self.num_bands:
            raise CheckpointError(
                f"the model works on {self.num_bands} bands {list(self.band_info.names)}, but the "
                f"dataset gives {dataset.num_bands} bands {list(dataset.band_names)}; select the "
                "same bands with data.bands"
            )

    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """DDPM loss (Ho et al. 2020, Algorithm 1 / Eq. 14) for one batch, with condition
        dropout when conditional (Ho & Salimans 2022, Algorithm 1)."""
        condition = self.batch_condition(batch)
        if condition is not None:
            condition = condition.with_dropped(self.config.condition.drop_prob, generator)
        return diffusion_loss(
            net,
            self.schedule,
            self.config,
            batch["image"],
            generator,
            mask=batch.get("mask"),
            condition=condition,
        )

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        num_images: int,
        *,
        generator: torch.Generator | None = None,
        spec: SamplingSpec | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
        image_size: int | None = None,
        condition: Condition | None = None,
    ) -> SamplerOutput:
        """Generate ``num_images`` images in [-1, 1] (``spec``: default :meth:`sampling_spec`).

        ``condition`` (see :meth:`make_condition`) steers a conditional model; None gives a
        class-conditional model's classes in turn and is unconditional otherwise.
        """
        size = image_size or self.config.data.image_size
        if condition is None:
            condition = self.make_condition(num_images)
        shape = (num_images, self.num_bands, size, size)
        return run_sampler(
            net,
            self.schedule,
            self.config,
            shape,
            spec or self.sampling_spec(),
            condition=condition,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
