"""Temporal generation: a before image of a place and a target date -> the after image.

The task reads dated images of places (``data.kind: temporal``: BioMassters chips or folders of
dated scenes, :mod:`terradiff.data.temporal.series`) as (before, after, metadata) pairs of
:class:`~terradiff.data.temporal.TemporalPairDataset` with the fixed split of
``temporal.holdout``, trains the method of ``config.temporal.method`` (``concat``: SR3-style
diffusion; ``controlnet``: a frozen date-conditioned generator steered by the before image;
``regression``: the one-pass baseline; one file each beside this one) and forecasts
with :meth:`TemporalTask.forecast`. The pair metadata (target date, source date, years apart;
:class:`~terradiff.data.temporal.PairSchema`) reaches the UNet through the metadata conditioning
of :mod:`terradiff.nets.conditioning`. Scoring against persistence is
:func:`terradiff.temporal_evaluate.evaluate_temporal`; whole rasters are forecast by
:mod:`terradiff.forecast_mapping` (``terradiff forecast``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.data.temporal import (
    PairSchema,
    TemporalPairDataset,
    TimeSeries,
    biomassters_series,
    scene_series,
)
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.tasks.base import Task, build_schedule, evaluating
from terradiff.tasks.registry import method_class
from terradiff.tasks.temporal.method import TemporalMethod

_S2_GLOB = "*_S2_[0-9][0-9].tif"
_RASTERS = (".tif", ".tiff")
#: What previews read of a training item (one cache for :meth:`TemporalTask.sample` and
#: :meth:`TemporalTask.preview`).
_PREVIEW_KEYS = ("before", "after", "metadata", "present")


def _rasters(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _RASTERS]


class TemporalTask(Task):
    """Forecast the image of a place at a target date from an earlier one (``config.temporal``).

    Args:
        config: the experiment config (``task: temporal``, ``data.kind: temporal``).
        band_info: the bands the net reads; None when training (read from the data), the
            checkpoint's when loading (:func:`terradiff.tasks.load_task`).

    Attributes:
        method: the :class:`TemporalMethod` of ``config.temporal.method``.
        for_training: built to be trained (a ``controlnet`` method then reads its generator).
        schema: the pair metadata (:class:`PairSchema`); condition_spec: the UNet's condition.
    """

    preview_columns = 3  # preview rows read: before | after | forecast

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        if config.temporal is None:
            raise ConfigError("task 'temporal' needs the config section 'temporal'")
        self.config = config
        self.temporal: Any = config.temporal
        self.schema: PairSchema = self.temporal.pair_schema()
        self.condition_spec = ConditionSpec(metadata_fields=self.schema.fields)
        self._series: list[TimeSeries] | None = None
        self.for_training = band_info is None
        if band_info is None:
            data = self.build_dataset()
            band_info = BandInfo(
                count=data.num_bands,
                names=tuple(data.band_names),
                scaling=config.data.scaling_spec(),
            )
            seen = torch.stack([present for _, present in data.metadata_items()]).any(dim=0)
            fields = zip(self.schema.fields, seen.tolist(), strict=True)
            self.temporal.trained_fields = [f for f, held in fields if held]
        self.band_info = band_info
        self.schedule = build_schedule(config)
        self.method: TemporalMethod = method_class("temporal", self.temporal.method)(self)  # type: ignore[assignment]
        self.net = self.method.build_net()

    keeps_trajectories = False  # a forecast returns the final state only

    @property
    def stochastic(self) -> bool:
        """Drawn by a diffusion sampler (``concat``) or one pass (``regression``)."""
        return bool(self.method.stochastic)

    def refuse_sampling_flags(self, source: str | Path, **given: object) -> None:
        """Refuse options that only a diffusion model uses (``ensemble=3``, ``guidance=2.0``;
        named as their ``--flag``) when this model is one-pass, instead of ignoring them.

        Raises:
            ConfigError: a one-pass model and a value other than None (or 1 for ``ensemble``).
        """
        if self.stochastic:
            return
        for name, value in given.items():
            if value is not None and not (name == "ensemble" and value == 1):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} {value} needs a diffusion model; {source} is a one-pass "
                    f"{self.method.name!r} model: leave {flag} out"
                )

    # ------------------------------------------------------------------ data
    def series(self) -> list[TimeSeries]:
        """The time series under ``data.root`` (read once; see :func:`find_series`)."""
        if self._series is None:
            self._series = find_series(self.config)
        return self._series

    def dataset(self, split: str, *, train: bool = False) -> TemporalPairDataset:
        """Random crops of ``split`` (``train=True``); else its fixed grid of unflipped crops."""
        data, t = self.config.data, self.temporal
        series = self.series()
        if data.scaling == "uint8" and series[0].dtype != "uint8":
            raise ConfigError(
                f"data.scaling 'uint8' divides by 255, but the images under {data.root} are "
                f"{series[0].dtype}; set data.scaling (sentinel2 for BioMassters reflectance)"
            )
        return TemporalPairDataset(
            series,
            split=split,
            holdout=t.holdout,
            test_dates=t.test_dates,
            test_places=t.test_places,
            test_fraction=t.test_fraction,
            crop_size=data.image_size,
            crops_per_pair=data.crops_per_image,
            order=t.order,
            schema=self.schema,
            scaling=data.scaling_spec(),
            random_flip=data.random_flip and train,
            seed=self.config.seed,
        )

    def build_dataset(self) -> TemporalPairDataset:
        """The training split's random crops (built once)."""
        if self._dataset is None:
            self._dataset = self.dataset("train", train=True)
        return self._dataset  # type: ignore[return-value]

    def condition(self, batch: dict[str, Any]) -> Condition:
        """The metadata condition of a batch holding ``metadata`` and ``present`` ``[B, F]``."""
        return Condition(metadata=batch["metadata"].float(), present=batch["present"].bool())

    # ------------------------------------------------------------------ training
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The method's loss on one batch of crops."""
        return self.method.training_loss(net, batch, generator)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def forecast(
        self,
        net: nn.Module,
        before: torch.Tensor,
        metadata: torch.Tensor,
        present: torch.Tensor,
        *,
        spec: SamplingSpec | None = None,
        generator: torch.Generator | None = None,
        members: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mean, std)`` of ``members`` forecasts of ``before`` ``[B, C, H, W]`` in [-1, 1]
        under the pair metadata ``[B, F]`` (std None for one member), on the net's device.

        Raises:
            DataError: other bands than the net's, or sides that are not multiples of its
                down-sampling factor.
            ConfigError: ``members > 1`` for a one-pass method.
        """
        if before.ndim != 4 or before.shape[1] != self.num_bands:
            raise DataError(
                f"the model reads {self.band_info.describe()}; the before batch has shape "
                f"{tuple(before.shape)}: give [B, C, H, W] with the checkpoint's bands, in order"
            )
        multiple = int(getattr(net, "downsample_factor", 1))
        if before.shape[-2] % multiple or before.shape[-1] % multiple:
            raise DataError(
                f"image sides {tuple(before.shape[-2:])} must be multiples of {multiple} for "
                "this UNet; crop or tile the image"
            )
        if members > 1 and not self.stochastic:
            raise ConfigError(
                f"an ensemble of {members} needs a diffusion method; temporal.method "
                f"{self.method.name!r} is one pass (leave --ensemble out)"
            )
        device = next(net.parameters()).device
        condition = Condition(metadata=metadata.float(), present=present.bool()).to(device)
        x = before.float().to(device)
        if self.stochastic and spec is None:
            spec = self.sampling_spec()
        with evaluating(net), self.one_pass_precision(net):
            draws = [
                self.method.predict(net, x, condition, spec=spec, generator=generator).float()
                for _ in range(members)
            ]
        stack = torch.stack(draws)
        std = stack.std(dim=0, unbiased=False) if members > 1 else None
        return stack.mean(dim=0), std

    def sample(
        self,
        net: nn.Module,
        num_images: int,
        *,
        generator: torch.Generator | None = None,
        spec: SamplingSpec | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SamplerOutput:
        """Forecasts (in [-1, 1]) of ``num_images`` training crops (the preview's); the spec it
        sampled with (None for a one-pass method, which ignores ``spec``). No trajectory is kept
        (:attr:`keeps_trajectories` is False): ``return_trajectory`` is ignored."""
        items = self.preview_items(num_images, _PREVIEW_KEYS)
        used = (spec or self.sampling_spec()) if self.stochastic else None
        mean, _ = self.forecast(
            net,
            items["before"],
            items["metadata"],
            items["present"],
            spec=used,
            generator=generator,
        )
        return SamplerOutput(sample=mean.cpu(), spec=used)

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of before | after | forecast."""
        items = self.preview_items(min(num_images, 8), _PREVIEW_KEYS)
        forecast = self.sample(net, len(items["before"]), generator=generator).sample
        rows = []
        for i in range(len(forecast)):
            rows += [items["before"][i], items["after"][i], forecast[i]]
        return torch.stack(rows)


def find_series(config: ExperimentConfig) -> list[TimeSeries]:
    """The time series of ``data.root`` (``data.kind: temporal``), one per place.

    ``data.root`` is a BioMassters chip folder (``<chip>_S2_MM.tif``), a folder of them, a
    folder of dated GeoTIFFs of one place, or a folder of such folders.

    Raises:
        DataError: none of these layouts, or a series that cannot be read (the message of
            :mod:`terradiff.data.temporal.series` names the file).
        ConfigError: ``data.bands`` with BioMassters (its 10 reflectance bands are fixed) or
            given as names.
    """
    data, t = config.data, config.temporal
    assert t is not None
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder; point it at the dated images")
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    chips = [f for f in folders if any(f.glob(_S2_GLOB))]
    if chips:
        if data.bands is not None:
            raise ConfigError(
                "data.bands is not read for BioMassters chips (their 10 reflectance bands are "
                "the series' bands); remove data.bands"
            )
        return [
            biomassters_series(
                chip,
                cloud_threshold=t.cloud_threshold,
                min_clear_fraction=t.min_clear_fraction,
            )
            for chip in chips
        ]
    if data.bands is not None and not all(isinstance(b, int) for b in data.bands):
        raise ConfigError(f"data.bands {data.bands}: give 1-based band indices for dated scenes")
    bands = None if data.bands is None else [int(b) for b in data.bands]
    places = [f for f in folders if len(_rasters(f)) >= 2]
    if root in places:
        places = [root]
    if not places:
        raise DataError(
            f"data.root {root} holds no BioMassters chip (<chip>_S2_MM.tif) and no folder of "
            "two or more dated GeoTIFFs; point it at one of these or a folder of them"
        )
    return [
        scene_series(place, bands=bands, date_pattern=t.date_pattern, align=t.align)
        for place in places
    ]
