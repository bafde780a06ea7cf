"""What every task offers the Trainer and the CLI.

A task composes a network, the diffusion maths and a dataset. The :class:`terradiff.train.Trainer`
knows nothing but this interface, so generation, super-resolution and estimation share one training
loop, one checkpoint format and one resume path.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from terradiff import __version__
from terradiff.config import FAST_POLICIES, INFERENCE_PRECISIONS, ExperimentConfig
from terradiff.data.band_info import BandInfo
from terradiff.data.datasets import GeoTiffChipDataset, ImageFolderDataset
from terradiff.diffusion import objectives
from terradiff.diffusion.guidance import guided
from terradiff.diffusion.samplers import SamplerOutput
from terradiff.diffusion.schedules import NoiseSchedule
from terradiff.diffusion.spec import SamplingSpec, run_spec
from terradiff.errors import ConfigError, DataError
from terradiff.nets.conditioning import Condition, ConditionSpec
from terradiff.nets.fast_forward import fast_forward
from terradiff.nets.precision import inference_autocast, resolve_inference_precision
from terradiff.nets.unet import UNet
from terradiff.run_paths import WORKING_DIR_KEY

NetT = TypeVar("NetT", bound=nn.Module)

CONFIG_FORMAT = 2
"""Version of ``config.json``: 2 = method sections hold only their method's keys (see
:func:`terradiff.tasks.migrate_checkpoint_config` for older checkpoints)."""


class Task(abc.ABC):
    """A trainable, sampleable model recipe.

    Attributes:
        config: the validated experiment config.
        net: the network the Trainer optimises.
        band_info: the bands the net was trained on (:class:`BandInfo`), stored in every
            checkpoint so the net never receives other bands without an error.
    """

    config: ExperimentConfig
    net: nn.Module
    band_info: BandInfo
    _dataset: Dataset | None = None
    keeps_trajectories: bool = True
    """:meth:`sample` honours ``return_trajectory`` (the states ``sample --chain`` draws) when it
    samples with a diffusion sampler."""

    @property
    def num_bands(self) -> int:
        """Bands the net reads and writes (``band_info.count``)."""
        return self.band_info.count

    def build_dataset(self) -> Dataset:
        """The training dataset of ``config.data`` (built once; items are dicts with ``image``)."""
        if self._dataset is None:
            dataset = build_dataset(self.config, train=True)
            if getattr(self, "band_info", None) is not None:  # not while training derives it
                check_data_bands(dataset, self.band_info, self.config.data.root)
            self._dataset = dataset
        return self._dataset

    def preview_items(self, num_images: int, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """``num_images`` training items spread evenly over the dataset, unaugmented (epoch 0),
        stacked per key in ``keys``; read once, then kept (what training previews show)."""
        cached = getattr(self, "_preview", None)
        if cached is None or len(cached[keys[0]]) < num_images:
            data = self.build_dataset()
            step = max(1, len(data) // num_images)
            items = [data.get(i * step, epoch=0) for i in range(min(num_images, len(data)))]
            cached = {k: torch.stack([it[k] for it in items]) for k in keys}
            self._preview = cached
        return {k: v[:num_images] for k, v in cached.items()}

    @abc.abstractmethod
    def training_loss(
        self, net: nn.Module, batch: dict[str, Any], generator: torch.Generator
    ) -> torch.Tensor:
        """The scalar loss of one batch; all randomness drawn from ``generator``."""

    @abc.abstractmethod
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
        """Draw ``num_images`` images in [-1, 1] (``spec``: default :meth:`sampling_spec`)."""

    @property
    def stochastic(self) -> bool:
        """Its predictions are drawn by a diffusion sampler (else: one forward pass)."""
        return True

    def inference_precision(self, device: torch.device | str | None = None) -> str:
        """``config.sample.precision`` resolved on ``device`` (default: the net's):
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:func:`~terradiff.nets.precision.
        resolve_inference_precision`), what outputs record as the format that ran."""
        if device is None:
            device = next(self.net.parameters()).device
        return resolve_inference_precision(self.config.sample.precision, device)

    def one_pass_precision(self, net: nn.Module) -> contextlib.AbstractContextManager[object]:
        """The ``config.sample.precision`` context of a one-pass prediction with ``net``.

        A stochastic task's net runs at that precision inside :func:`run_sampler` (its sampler
        stays fp32), so for it this context does nothing; a one-pass net runs inside it.
        """
        if self.stochastic:
            return contextlib.nullcontext()
        return inference_autocast(self.config.sample.precision, next(net.parameters()).device)

    def sampling_spec(
        self,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        guidance: float | None = None,
    ) -> SamplingSpec | None:
        """The sampling this task's predictions will run: ``config.sample`` with overrides.

        None for a one-pass model, which samples nothing (overrides are then ignored).

        Raises:
            ConfigError: an unknown sampler or steps outside ``1..T``.
        """
        if not self.stochastic:
            return None
        try:
            return SamplingSpec.resolve(
                self.config.sample,
                self.schedule.num_timesteps,
                sampler=sampler,
                steps=steps,
                eta=eta,
                guidance=guidance,
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def use_fast(self, fast: str | None) -> None:
        """Run the denoiser the ``fast`` way from now on (``config.sample.fast``: ``auto``,
        ``compile``, ``graph``, ``off``; :mod:`terradiff.nets.fast_forward`); None keeps the
        checkpoint's.

        Raises:
            ConfigError: ``fast`` is not one of :data:`~terradiff.config.FAST_POLICIES`.
        """
        self._set_sample_choice("fast", fast, FAST_POLICIES)

    def use_precision(self, precision: str | None) -> None:
        """Run the net at ``precision`` at inference from now on (``config.sample.precision``:
        ``auto``, ``fp32``, ``bf16``, ``fp16``; :mod:`terradiff.nets.precision`); None keeps the
        checkpoint's.

        Raises:
            ConfigError: ``precision`` is not one of :data:`~terradiff.config.INFERENCE_PRECISIONS`.
        """
        self._set_sample_choice("precision", precision, INFERENCE_PRECISIONS)

    def _set_sample_choice(self, key: str, value: str | None, allowed: tuple[str, ...]) -> None:
        """``config.sample.<key> = value`` when ``value`` is given and one of ``allowed``."""
        if value is None:
            return
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
        setattr(self.config.sample, key, value)

    schedule: NoiseSchedule

    def check_training(self) -> None:
        """Refuse what training would fail on after the run folder is made (the Trainer's
        preflight calls it); a task with a method asks its method. Default: nothing."""
        method = getattr(self, "method", None)
        if method is not None:
            method.check_training()

    def checkpoint_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: the config, the bands, the version and the folder its
        relative paths start from (:mod:`terradiff.run_paths`)."""
        return {
            "terradiff_version": __version__,
            "config_format": CONFIG_FORMAT,
            "task": self.config.task,
            "bands": self.band_info.to_dict(),
            "config": self.config.to_dict(),
            WORKING_DIR_KEY: str(Path.cwd()),
        }

    def preview(self, net: nn.Module, num_images: int, generator: torch.Generator) -> torch.Tensor:
        """Images for the Trainer's periodic sample grid (``[N, C, H, W]`` in [-1, 1])."""
        return self.sample(net, num_images, generator=generator).sample

    preview_columns: int = 8
    """Images per row of the preview grid."""

    @property
    def preview_rgb_bands(self) -> list[int] | None:
        """Bands of :meth:`preview`'s images shown as RGB (default: ``data.rgb_bands``)."""
        return self.config.data.rgb_bands


def build_schedule(config: ExperimentConfig) -> NoiseSchedule:
    """The noise schedule described by ``config.diffusion``."""
    diffusion = config.diffusion
    return NoiseSchedule.create(
        diffusion.schedule, diffusion.num_timesteps, **diffusion.schedule_kwargs()
    )


def build_dataset(
    config: ExperimentConfig, *, train: bool = True, split: str | None = None
) -> Dataset:
    """The dataset described by ``config.data`` (augmented when ``train``).

    ``split`` overrides ``config.data.split`` (evaluation asks for ``"test"``).
    """
    data = config.data
    common: dict[str, Any] = {
        "image_size": data.image_size,
        "bands": data.bands,
        "scaling": data.scaling_spec(),
        "random_flip": data.random_flip and train,
        "crop": data.crop if train else ("center" if data.crop == "random" else data.crop),
        "max_images": data.max_images,
        "seed": config.seed,
        "split": split or data.split,
        "holdout_fraction": data.holdout_fraction,
        "include": data.include,
        "crops_per_image": data.crops_per_image if train else 1,
    }
    if data.kind == "paired":
        raise DataError(
            "data.kind 'paired' (image/target/mask rasters) is the carbon task's data, which "
            "build_dataset does not read: from Python use CarbonTask.dataset(split); a carbon "
            "model is mapped by `terradiff estimate` (not `terradiff sample`/`evaluate`)"
        )
    if data.kind == "levir_cd":
        raise DataError(
            "data.kind 'levir_cd' (before/after/label pairs) is the change task's data, which "
            "build_dataset does not read: from Python use ChangeTask.dataset(split); score a "
            "change model with `terradiff evaluate` and map pairs with `terradiff change`"
        )
    if data.kind == "temporal":
        raise DataError(
            "data.kind 'temporal' (dated images of places) is the temporal task's data, which "
            "build_dataset does not read: from Python use TemporalTask.dataset(split); score a "
            "temporal model with `terradiff evaluate` and forecast with `terradiff forecast`"
        )
    if data.kind == "mnist":
        from terradiff.data.mnist import MNISTDataset

        return MNISTDataset(data.root, split=split or data.split, image_size=data.image_size)
    if data.kind == "folder":
        return ImageFolderDataset(data.root, classes=data.classes, cache=data.cache, **common)
    return GeoTiffChipDataset(data.root, **common)


def check_data_bands(dataset: Dataset, band_info: BandInfo, root: str | Path) -> None:
    """Refuse images under ``root`` whose band count is not the model's (a folder of 13-band
    chips given to an RGB model failed deep inside with a tensor shape); a dataset that does not
    say its band count passes."""
    found = getattr(dataset, "num_bands", None)
    if found is not None and int(found) != band_info.count:
        raise DataError(
            f"images under {root} have {found} bands, the model reads {band_info.describe()}; "
            "pass --data with images of the training bands"
        )


def band_info_of(dataset: Dataset, config: ExperimentConfig) -> BandInfo:
    """What a checkpoint records of the bands a net is trained on."""
    return BandInfo(
        count=int(dataset.num_bands),
        names=tuple(dataset.band_names),
        scaling=config.data.scaling_spec(),
    )


def fixed_seed_net(seed: int, build: Callable[[], NetT]) -> NetT:
    """``build()`` with the global RNG seeded by ``seed`` (and restored afterwards), so a net's
    initial weights are a function of the config, not of what ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_unet(
    config: ExperimentConfig,
    in_channels: int,
    out_channels: int,
    cond_channels: int = 0,
    context_channels: int = 0,
    condition_spec: ConditionSpec | None = None,
) -> UNet:
    """The UNet of ``config.model``, initialised from ``config.seed`` (not the global RNG)."""
    model = config.model
    return fixed_seed_net(
        config.seed,
        lambda: UNet(
            in_channels,
            out_channels,
            cond_channels=cond_channels,
            context_channels=context_channels,
            base_channels=model.base_channels,
            channel_mults=tuple(model.channel_mults),
            num_res_blocks=model.num_res_blocks,
            attention_resolutions=tuple(model.attention_resolutions),
            image_size=config.data.image_size,
            dropout=model.dropout,
            num_groups=model.num_groups,
            head_channels=model.head_channels,
            condition_spec=condition_spec,
            scale_shift=model.time_scale_shift,
            mid_attention=model.mid_attention,
            time_freq_shift=model.freq_shift,
            norm_eps=model.norm_eps,
            downsample_padding=model.downsample_padding,
        ),
    )


def diffusion_loss(
    net: nn.Module,
    schedule: NoiseSchedule,
    config: ExperimentConfig,
    x0: torch.Tensor,
    generator: torch.Generator,
    *,
    mask: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    condition: Condition | None = None,
) -> torch.Tensor:
    """The denoising loss of one batch (Ho et al. 2020, Algorithm 1 / Eq. 14).

    Draws ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)`` from ``generator`` (on the CPU, so a resumed
    run draws the same numbers on any device), forms ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t)
    eps`` and regresses ``config.diffusion.prediction`` (eps, x0 or v) with the configured L1/L2
    loss under ``mask``, optionally min-SNR weighted (Hang et al. 2023). ``cond`` is passed to
    the net (SR3: the up-sampled low-resolution image); ``condition`` (classes, metadata) goes
    to a conditional UNet (already dropped out for classifier-free guidance by the caller).
    """
    diffusion = config.diffusion
    x_t, timesteps, _, target = objectives.noised_batch(
        schedule, x0, generator, diffusion.prediction
    )
    inputs = (x_t, timesteps.float()) if cond is None else (x_t, timesteps.float(), cond)
    extra = {} if condition is None else {"condition": condition.to(x_t.device)}
    prediction = net(*inputs, **extra)
    weights = None
    if diffusion.min_snr_gamma is not None:
        weights = objectives.min_snr_weights(
            schedule, timesteps, diffusion.prediction, gamma=diffusion.min_snr_gamma
        )
    return objectives.diffusion_loss(
        prediction.float(), target, loss_type=diffusion.loss, mask=mask, weights=weights
    )


@torch.no_grad()
def run_sampler(
    net: nn.Module,
    schedule: NoiseSchedule,
    config: ExperimentConfig,
    shape: tuple[int, ...],
    spec: SamplingSpec,
    *,
    cond: torch.Tensor | None = None,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
) -> SamplerOutput:
    """Run the sampler of ``spec`` with ``net`` as ``model_fn``; the output carries ``spec``.

    ``x_T ~ N(0, I)`` of ``shape`` is drawn from ``generator`` on the CPU (so the same seed gives
    the same images on any device, to the rounding of the precision that runs there).
    ``condition`` goes to a conditional net; with ``spec.guidance`` the model_fn is
    classifier-free guided
    (:func:`terradiff.diffusion.guidance.guided`: one batched forward of conditional and null).
    The net is called the ``config.sample.fast`` way (:func:`terradiff.nets.fast_forward.
    fast_forward`: eager, compiled, or a CUDA graph per shape; the samples are the same) at
    ``config.sample.precision`` (:func:`terradiff.nets.precision.inference_autocast`; its
    outputs are cast back to fp32, so the sampler's arithmetic stays fp32).

    Raises:
        ConfigError: ``spec.guidance`` without a ``condition``.
    """
    device = next(net.parameters()).device
    x_T = torch.randn(shape, generator=generator).to(device)
    forward = fast_forward(net, config.sample.fast, device=device)

    def conditioned_fn(
        x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None, given: Condition | None
    ) -> torch.Tensor:
        extra = {} if given is None else {"condition": given}
        with inference_autocast(config.sample.precision, device):
            out = forward(x_t, t, c, **extra) if c is not None else forward(x_t, t, **extra)
        return out.float()

    if spec.guidance is not None:
        if condition is None:
            raise ConfigError(
                f"guidance {spec.guidance} needs a conditional model and a condition; this "
                "model is unconditional: leave --guidance out"
            )
        model_fn: Any = guided(conditioned_fn, condition.to(device), spec.guidance)
    else:
        on_device = None if condition is None else condition.to(device)

        def model_fn(x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
            return conditioned_fn(x_t, t, c, on_device)

    was_training = net.training
    net.eval()
    try:
        return run_spec(
            spec,
            model_fn,
            schedule,
            x_T,
            prediction=config.diffusion.prediction,
            cond=None if cond is None else cond.to(device),
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
    finally:
        net.train(was_training)


@contextlib.contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode for the block, then back in the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def unwrap(net: nn.Module) -> Any:
    """The module under a distributed/compiled wrapper (its own methods are needed)."""
    while hasattr(net, "module") and isinstance(net.module, nn.Module):
        net = net.module
    return getattr(net, "_orig_mod", net)
