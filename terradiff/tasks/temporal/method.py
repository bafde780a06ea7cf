"""What every temporal-generation method shares: the pair and split keys, and the prediction.

A method of :class:`~terradiff.tasks.temporal.task.TemporalTask` is a :class:`TemporalMethod` in a
file of its own beside this one. The task reads the (before, after, metadata) pairs of
:class:`~terradiff.data.temporal.TemporalPairDataset` and scores forecasts; the method builds its
network, its loss and how it turns a before image and the pair metadata into the after image
(:meth:`TemporalMethod.predict`). The setting is DiffusionSat's temporal generation
``X_post ~ p(X | X_pre, C)`` (Khanna et al. 2024, Sec. 3.3), with ``C`` the target date, the
source date and the years between them (:class:`~terradiff.data.temporal.PairSchema`).
"""

from __future__ import annotations

import abc
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from terradiff.config import MethodConfig
from terradiff.data.temporal import PairSchema
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError
from terradiff.nets.conditioning import Condition
from terradiff.tasks.registry import Method


class TemporalMethodConfig(MethodConfig):
    """Keys of every temporal method (``config.temporal``): which pairs, which split, which
    metadata.

    ``data`` (``kind: temporal``) points at the dated images: a BioMassters chip folder
    (``<chip>_S2_MM.tif``) or a folder of chip folders, or a folder of dated GeoTIFFs of one
    place or a folder of such folders (:mod:`terradiff.data.temporal.series`); ``data.image_size``
    is the crop side (training crops and the test grid), ``data.crops_per_image`` the random crops
    per pair, ``data.scaling`` the scaling of every image (``sentinel2`` for BioMassters).
    """

    holdout: Literal["date", "place", "region"] = Field(
        "date",
        description="The fixed test split: 'date' (the last test_dates dates of every place are "
        "targets never trained on), 'place' (the test_places), 'region' (the right test_fraction "
        "of every image).",
    )
    test_dates: int | list[str] | dict[str, list[str]] = Field(
        1,
        description="holdout 'date': how many latest dates, their labels (['11 (Aug)']), or "
        "labels per place ({'0060c0a5': ['03 (Dec)'], ...}: a month held out at one place can "
        "stay a training target at another).",
    )
    test_places: list[str] = Field(
        default_factory=list, description="holdout 'place': the held-out place (folder) names."
    )
    test_fraction: float = Field(
        0.25, gt=0.0, lt=1.0, description="holdout 'region': held-out share of the columns."
    )
    order: Literal["forward", "both"] = Field(
        "forward", description="Pairs forward in time only, or both directions."
    )
    target_fields: list[str] = Field(
        default_factory=lambda: ["month", "day_of_year"],
        description="Metadata fields of the target date (month, day_of_year, year).",
    )
    source_fields: list[str] = Field(
        default_factory=lambda: ["month", "day_of_year"],
        description="Metadata fields of the source (before) date; [] for none.",
    )
    years_apart: bool = Field(True, description="Condition on the years from source to target.")
    cloud_threshold: float = Field(
        50.0,
        ge=0.0,
        le=100.0,
        description="BioMassters: cloud probability above which a pixel is cloudy.",
    )
    min_clear_fraction: float = Field(
        0.8, ge=0.0, le=1.0, description="BioMassters: months with fewer clear pixels are skipped."
    )
    align: Literal["strict", "reference"] = Field(
        "strict",
        description="Dated scenes: 'strict' refuses a date on another grid (naming both files); "
        "'reference' resamples it onto the first date's grid.",
    )
    date_pattern: str | None = Field(
        None, description="Dated scenes: file-name date pattern (yyyymmdd, year or a regex)."
    )
    trained_fields: list[str] | None = Field(
        None,
        description="Filled by terradiff train: the metadata fields some training pair held "
        "(a forecast treats the others as missing, since their embeddings were never trained).",
    )

    @model_validator(mode="after")
    def _split_keys(self) -> TemporalMethodConfig:
        if self.holdout == "place" and not self.test_places:
            raise ValueError(
                "temporal.holdout 'place' needs temporal.test_places: the names of the held-out "
                "place folders (e.g. ['0060c0a5'])"
            )
        if self.test_places and self.holdout != "place":
            raise ValueError(
                f"temporal.test_places is read with temporal.holdout 'place' only, not "
                f"{self.holdout!r}; remove it or set holdout: place"
            )
        if isinstance(self.test_dates, int) and self.test_dates < 1:
            raise ValueError(
                f"temporal.test_dates must be >= 1 (or a list of date labels), got "
                f"{self.test_dates}"
            )
        try:
            self.pair_schema()
        except ConfigError as error:
            raise ValueError(
                f"temporal.target_fields/source_fields/years_apart: {error}; e.g. target_fields: "
                "[month, day_of_year]"
            ) from None
        return self

    def pair_schema(self) -> PairSchema:
        """The pair metadata these keys describe (target fields, source fields, years apart)."""
        return PairSchema(self.target_fields, self.source_fields, years_apart=self.years_apart)


class TemporalMethod(Method):
    """One way to generate the after image (see :class:`terradiff.tasks.registry.Method`)."""

    section: ClassVar[str] = "temporal"

    @abc.abstractmethod
    def predict(
        self,
        net: nn.Module,
        before: torch.Tensor,
        condition: Condition,
        *,
        spec: SamplingSpec | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The after images ``[B, C, H, W]`` in [-1, 1] of ``before`` (same shape, on the net's
        device) under ``condition`` (the pair metadata); ``spec``/``generator`` drive a sampler
        (ignored by one-pass methods). Sides are multiples of the net's ``downsample_factor``."""


#: ``temporal.target`` of the methods that may model the change instead of the after image.
TargetKind = Literal["after", "change"]
TARGET_DESCRIPTION = (
    "What the network models: 'after', the after image itself, or 'change', the change "
    "(after - before) / 2, so the forecast is before + 2 x output: a net that outputs zero is "
    "persistence, and it learns only what changes (the residual form of SRDiff, Li et al. 2022)."
)


def to_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The change target ``(after - before) / 2`` (in [-1, 1] for images in [-1, 1])."""
    return (after - before) / 2.0


def from_change(before: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """The after image ``before + 2 change``, clipped to the data range [-1, 1]."""
    return (before + 2.0 * change).clamp(-1.0, 1.0)
