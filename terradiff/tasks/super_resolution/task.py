"""Super-resolution of ``C``-band images: pairs, previews, and the method that does the work.

Training pairs are made on the fly: HR crops come from the configured dataset and their LR
versions from :mod:`terradiff.data.degrade` (bicubic, or the Real-ESRGAN-style second-order
pipeline), seeded by the Trainer's per-step generator so that a resumed run sees the same pairs.
The method (``config.sr.method``: SR3, regression, implicit, single-step teacher, light student;
one file each beside this one) builds the network, its loss and its prediction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from terradiff.config import ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.data.degrade import make_lr, upsample_to
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.spec import SamplingSpec
from terradiff.errors import ConfigError, DataError
from terradiff.tasks.base import (
    Task,
    band_info_of,
    build_dataset,
    build_schedule,
    check_data_bands,
)
from terradiff.tasks.registry import method_class, registered_methods
from terradiff.tasks.super_resolution.method import SRBatch, SRMethod


class SuperResolutionTask(Task):
    """``scale``-times super-resolution of ``C``-band images (``config.sr``).

    Args:
        config: the experiment config; ``data.image_size`` is the HR crop size.
        band_info: bands the net works on; read from the dataset when None (training) or from a
            checkpoint (inference).

    Attributes:
        method: the :class:`SRMethod` of ``config.sr.method``.
    """

    preview_columns = 3  # preview rows read: bicubic | super-resolved | HR

    def __init__(self, config: ExperimentConfig, band_info: BandInfo | None = None) -> None:
        if config.sr is None:
            raise DataError("task 'super_resolution' needs the config section 'sr'")
        self.config = config
        self.sr: Any = config.sr
        self.band_info = band_info or band_info_of(self.build_dataset(), config)
        self.schedule = build_schedule(config)
        self.method: SRMethod = method_class("sr", self.sr.method)(self)  # type: ignore[assignment]
        self.net = self.method.build_net()

    @property
    def stochastic(self) -> bool:
        """The method samples its output with a diffusion sampler."""
        return self.method.stochastic

    # ------------------------------------------------------------------ pairs
    def degrade(
        self,
        hr: torch.Tensor,
        generator: torch.Generator | None = None,
        scale: float | None = None,
    ) -> torch.Tensor:
        """The LR image of ``hr`` under the configured degradation (on the CPU, seeded)."""
        factor = scale or self.sr.scale
        lr = make_lr(hr.detach().float().cpu(), factor, self.sr.degradation, generator)
        return lr.to(hr.device)

    def check_input(self, lr: torch.Tensor) -> None:
        """Refuse an LR batch with other bands than the net's."""
        if lr.ndim != 4 or lr.shape[1] != self.num_bands:
            raise DataError(
                f"the model super-resolves {self.num_bands}-band images "
                f"{list(self.band_info.names)}; got a tensor of shape {tuple(lr.shape)}. Give "
                "[B, C, H, W] with the checkpoint's bands, in its order"
            )

    def check_scale(self, scale: float, source: str) -> float:
        """``scale`` if the method can super-resolve at it (else a :class:`DataError`): a finite
        factor above 1, and the trained one unless the method takes any scale."""
        if not math.isfinite(scale) or scale <= 1.0:
            raise DataError(
                f"{source}: x{scale:g} is not a super-resolution scale; give a factor above 1 "
                f"(this model was trained for x{self.sr.scale:g})"
            )
        if self.method.any_scale or abs(scale - self.sr.scale) < 1e-9:
            return float(scale)
        capable = [m.name for m in registered_methods("sr") if m.any_scale]
        raise DataError(
            f"{source} is a {self.method.describe()} model for x{self.sr.scale:g} only; "
            f"x{scale:g} needs a model trained for it or one that takes any scale "
            f"(sr.method {capable}); or use x{self.sr.scale:g}"
        )

    def check_ensemble(self, members: int, source: str) -> int:
        """``members`` draws per image, if they can differ (else a :class:`ConfigError`)."""
        if members < 1:
            raise ConfigError(f"--ensemble must be >= 1, got {members}")
        if members > 1 and not self.stochastic:
            raise ConfigError(
                f"--ensemble {members}: {source} is a one-pass {self.method.name!r} model, whose "
                "draws would all be equal; drop --ensemble (it is for diffusion models such as "
                "sr3)"
            )
        return members

    # ------------------------------------------------------------------ training
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The method's loss on pairs made from the batch's HR crops."""
        hr = batch["image"]
        lr = self.degrade(hr, generator, self.method.train_scale(generator))
        return self.method.training_loss(net, SRBatch(hr, lr, batch.get("mask")), generator)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def super_resolve(
        self,
        net: nn.Module,
        lr: torch.Tensor,
        *,
        out_size: tuple[int, int] | None = None,
        spec: SamplingSpec | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> SamplerOutput:
        """HR images ``[B, C, round(H * scale), round(W * scale)]`` in [-1, 1] from LR ``lr``.

        Args:
            net: the (EMA) network.
            lr: LR images in [-1, 1] with the checkpoint's bands.
            out_size: output size (default: the LR size times ``sr.scale``).
            spec: the sampling of stochastic methods (default :meth:`sampling_spec`); one-pass
                methods ignore it.
            generator: seeds the noise of stochastic methods.

        Returns:
            The images (float32; the net ran at ``config.sample.precision``), with the spec
            that ran (None for one-pass methods).
        """
        self.check_input(lr)
        if out_size is None:
            out_size = (round(lr.shape[-2] * self.sr.scale), round(lr.shape[-1] * self.sr.scale))
        if spec is None and self.stochastic:
            spec = self.sampling_spec()
        with self.one_pass_precision(net):
            output = self.method.predict(
                net,
                lr,
                (int(out_size[0]), int(out_size[1])),
                spec=spec if self.stochastic else None,
                generator=generator,
                progress=progress,
                return_trajectory=return_trajectory,
            )
        return dataclasses.replace(output, sample=output.sample.float())

    def _preview_hr(self, num_images: int) -> torch.Tensor:
        """``num_images`` unaugmented HR images spread over the dataset (read once, then kept)."""
        cached = getattr(self, "_preview", None)
        if cached is None or len(cached) < num_images:
            dataset = build_dataset(self.config, train=False)
            check_data_bands(dataset, self.band_info, self.config.data.root)
            count = min(num_images, len(dataset))
            step = max(1, len(dataset) // count)
            cached = torch.stack([dataset[i * step]["image"] for i in range(count)])
            self._preview = cached
        return cached[:num_images]

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
    ) -> SamplerOutput:
        """Super-resolve the (bicubic-degraded) first ``num_images`` images of the dataset."""
        hr = self._preview_hr(num_images)
        lr = make_lr(hr, self.sr.scale, "bicubic")
        return self.super_resolve(
            net,
            lr,
            out_size=tuple(hr.shape[-2:]),
            spec=spec,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of (bicubic, super-resolved, HR) for the Trainer's sample grid."""
        hr = self._preview_hr(min(num_images, 8))
        lr = make_lr(hr, self.sr.scale, "bicubic")
        sr = self.super_resolve(net, lr, out_size=tuple(hr.shape[-2:]), generator=generator)
        bicubic = upsample_to(lr, hr.shape[-2:])
        return torch.stack([bicubic, sr.sample.cpu(), hr], dim=1).flatten(0, 1)
