"""Change detection: before/after image pairs -> a binary change map.

The task reads LEVIR-CD-style pairs (``data.kind: levir_cd``; :mod:`terradiff.data.levir`: 8-bit
RGB before/after images and 0/255 change labels, LEVIR's fixed split), trains the method of
``config.change.method`` (``ddpm_cd``: DDPM-CD's head on a frozen generator's features;
``supervised_unet``: a UNet from scratch; one file each beside this one) with the BCE of
:mod:`~terradiff.tasks.change.method`, and turns a pair into a change probability
(:meth:`ChangeTask.change_probability`). It is not a sampler: a prediction is one pass (DDPM-CD's
diffusion noise is drawn from a generator seeded by the experiment seed, so it is repeatable).
Scoring (F1, IoU, precision, recall, OA) is :func:`terradiff.evaluate.evaluate_change`; whole
images are mapped by :mod:`terradiff.change_mapping` (``terradiff change``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.data.levir import LevirCDDataset
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError
from terradiff.tasks.base import Task, build_schedule, evaluating
from terradiff.tasks.change.method import ChangeMethod
from terradiff.tasks.registry import method_class

#: The bands of LEVIR-CD images (8-bit RGB, scaled by 255 to [0, 1], then to [-1, 1]).
LEVIR_BANDS = BandInfo(count=3, names=("red", "green", "blue"), scaling="uint8")

#: Side of the windows :meth:`ChangeTask.dataset` cuts evaluation tiles into: LEVIR-CD's tile
#: size, so the standard 256x256 tiles are scored whole.
EVALUATION_WINDOW = 256


class ChangeTask(Task):
    """Detect change between two co-registered images of a place (``config.change``).

    Args:
        config: the experiment config (``task: change``, ``data.kind: levir_cd``).
        band_info: the bands the net reads; None when training (``terradiff train``), the
            checkpoint's when loading (:func:`terradiff.tasks.load_task`).

    Attributes:
        method: the :class:`ChangeMethod` of ``config.change.method``.
        for_training: built to be trained (a ``ddpm_cd`` method then reads its generator run).
    """

    preview_columns = 4  # preview rows read: before | after | truth | change probability

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        if config.change is None:
            raise ConfigError("task 'change' needs the config section 'change'")
        data = config.data
        if data.scaling != "uint8" or data.bands is not None:
            raise ConfigError(
                f"data.kind 'levir_cd' reads 8-bit RGB pairs: data.scaling must be 'uint8' "
                f"(got {data.scaling!r}) and data.bands null (got {data.bands}); remove them"
            )
        self.config = config
        self.change: Any = config.change
        self.for_training = band_info is None
        self.band_info = band_info or LEVIR_BANDS
        self.schedule = build_schedule(config)
        self.method: ChangeMethod = method_class("change", self.change.method)(self)  # type: ignore[assignment]
        self.net = self.method.build_net()

    @property
    def stochastic(self) -> bool:
        """A change map is one pass of the network (no sampler, no ensemble)."""
        return False

    # ------------------------------------------------------------------ data
    def dataset(self, split: str, *, train: bool = False) -> LevirCDDataset:
        """Random crops of ``split`` (``train=True``); else its tiles (``split`` ``"test"``,
        ``"train"`` or ``"all"``) in :data:`EVALUATION_WINDOW` windows, unaugmented."""
        data = self.config.data
        return LevirCDDataset(
            data.root,
            split=split,
            rule=data.rule or "upstream",
            test_fraction=data.holdout_fraction,
            crop_size=data.image_size if train else EVALUATION_WINDOW,
            crops_per_pair=data.crops_per_image,
            random_flip=data.random_flip and train,
            seed=self.config.seed,
            grid=not train,
        )

    def build_dataset(self) -> LevirCDDataset:
        """The training split's random crops (built once)."""
        if self._dataset is None:
            self._dataset = self.dataset("train", train=True)
        return self._dataset  # type: ignore[return-value]

    def check_pair(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """Refuse pairs of other bands than the net's, or of two shapes."""
        for name, image in (("before", before), ("after", after)):
            if image.ndim != 4 or image.shape[1] != self.num_bands:
                raise DataError(
                    f"the model reads {self.num_bands}-band images {list(self.band_info.names)}; "
                    f"the {name} batch has shape {tuple(image.shape)}. Give [B, C, H, W] with the "
                    "checkpoint's bands, in its order"
                )
        if before.shape != after.shape:
            raise DataError(
                f"before {tuple(before.shape)} and after {tuple(after.shape)} must have one shape"
            )

    # ------------------------------------------------------------------ training
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The method's BCE on one batch of crops."""
        return self.method.training_loss(net, batch, generator)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def change_probability(
        self,
        net: nn.Module,
        before: torch.Tensor,
        after: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The change probability ``[B, 1, H, W]`` in [0, 1] of pairs in [-1, 1] (CPU tensor).

        Sides that are not multiples of the net's down-sampling factor are padded by reflection
        and cropped back. ``generator`` (default: seeded by the experiment seed) feeds the
        diffusion noise of DDPM-CD.
        """
        self.check_pair(before, after)
        device = next(net.parameters()).device
        height, width = before.shape[-2:]
        multiple = int(getattr(net, "downsample_factor", 1))
        pad = (0, (-width) % multiple, 0, (-height) % multiple)
        mode = "reflect" if pad[1] < width and pad[3] < height else "replicate"
        pair = [x.float().to(device) for x in (before, after)]
        if any(pad):
            pair = [F.pad(x, pad, mode=mode) for x in pair]
        if generator is None:
            generator = torch.Generator().manual_seed(self.config.seed)
        with evaluating(net), self.one_pass_precision(net):
            logits = self.method.logits(net, pair[0], pair[1], generator)
        return torch.sigmoid(logits.float())[..., :height, :width].cpu()

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
        """Change probabilities (in [-1, 1]) of ``num_images`` training crops (the preview's)."""
        items = self.preview_items(num_images, ("before", "after", "label"))
        probability = self.change_probability(net, items["before"], items["after"])
        return SamplerOutput(sample=probability * 2 - 1, spec=None)

    @property
    def preview_rgb_bands(self) -> list[int] | None:
        """The preview is already 3-band (RGB images, grey maps)."""
        return None

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of before | after | truth | change probability (the maps in grey)."""
        items = self.preview_items(min(num_images, 8), ("before", "after", "label"))
        estimate = self.sample(net, len(items["before"])).sample
        rows = []
        for i in range(len(estimate)):
            truth = items["label"][i] * 2 - 1
            rows += [
                items["before"][i],
                items["after"][i],
                truth.repeat(3, 1, 1),
                estimate[i].repeat(3, 1, 1),
            ]
        return torch.stack(rows)
