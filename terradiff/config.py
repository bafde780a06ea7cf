"""Typed experiment configuration, loaded from YAML and validated with clear errors.

A config is the whole recipe of an experiment: data, network, diffusion maths, training and
sampling. It is stored verbatim in every checkpoint's ``config.json`` so a checkpoint can rebuild
its model and knows which bands, in which order and scaling, it was trained on.

Validation is strict on purpose (SR3 issue 69: ``1e4`` written in YAML is a *string* and silently
never triggered a save): an unknown key, a wrong type or an out-of-range value is a
:class:`ConfigError` that names the key, what was given, and how to fix it."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from terradiff.errors import ConfigError


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScalingConfig(_Section):
    """A custom linear scaling of physical values to [0, 1] (see :class:`terradiff.data.Scaling`).

    ``{divisor: 20000, clip: true}`` divides; ``{mins: [6000], maxs: [16000], clip: true}``
    stretches each band between its own limits (one value per selected band).
    """

    name: str = "custom"
    divisor: float = Field(1.0, gt=0.0)
    clip: bool = True
    gamma: float = Field(1.0, gt=0.0)
    mins: list[float] | None = None
    maxs: list[float] | None = None


class DataConfig(_Section):
    """Where the images come from and how they become tensors in [-1, 1]."""

    kind: Literal["folder", "geotiff_chips", "paired"] = "folder"
    root: str = Field(description="Folder of images (class sub-folders allowed) or GeoTIFF chips.")
    image_size: int = Field(64, ge=8, le=4096)
    bands: list[int | str] | None = Field(
        None, description="Band indices (1-based) or names to read; null keeps all bands."
    )
    scaling: Literal["uint8", "sentinel2", "sen12ms", "none"] | ScalingConfig = Field(
        "uint8",
        description="A preset name, or {divisor | mins/maxs, clip, gamma} for other products "
        "(e.g. Landsat DN).",
    )
    crop: Literal["random", "center", "resize"] = "random"
    random_flip: bool = True
    classes: list[str] | None = None
    max_images: int | None = Field(None, ge=1)
    cache: bool = True
    rgb_bands: list[int] | None = Field(
        None, description="0-based indices of the bands shown as RGB in figures and fed to FID."
    )
    split: Literal["all", "train", "test"] = Field(
        "all",
        description="Train on every file, or on the 'train' part of a stable hash partition "
        "whose 'test' part (holdout_fraction of the files) is what evaluation uses.",
    )
    holdout_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    include: list[str] | None = Field(
        None,
        description="Glob patterns (file name or path under root) of the files to use, e.g. "
        "['*_B3.TIF', '*_B4.TIF']; null: every image file.",
    )
    crops_per_image: int = Field(
        1,
        ge=1,
        description="Training items per file: >1 for a few large scenes (a random crop each).",
    )

    def scaling_spec(self) -> str | dict[str, Any]:
        """``scaling`` as the data layer takes it (a preset name or a plain mapping)."""
        if isinstance(self.scaling, ScalingConfig):
            return self.scaling.model_dump()
        return self.scaling


class ModelConfig(_Section):
    """The SR3-style UNet (:class:`terradiff.nets.unet.UNet`)."""

    base_channels: int = Field(64, ge=8, le=1024)
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2, 2, 4], min_length=1)
    num_res_blocks: int = Field(2, ge=1, le=8)
    attention_resolutions: list[int] = Field(default_factory=lambda: [16, 8])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    num_groups: int = Field(32, ge=1)
    head_channels: int = Field(64, ge=8)

    @model_validator(mode="after")
    def _groups_divide_channels(self) -> ModelConfig:
        for mult in self.channel_mults:
            if (self.base_channels * mult) % self.num_groups:
                raise ValueError(
                    f"num_groups={self.num_groups} must divide every level's channels "
                    f"(base_channels {self.base_channels} x mult {mult}); choose e.g. num_groups=8"
                )
        return self


class DiffusionConfig(_Section):
    """Noise schedule, prediction target and loss (:mod:`terradiff.diffusion`)."""

    schedule: Literal["linear", "cosine", "sigmoid", "sigmoid_betas"] = "linear"
    num_timesteps: int = Field(1000, ge=2, le=100_000)
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(2e-2, gt=0.0, lt=1.0)
    cosine_s: float = Field(8e-3, ge=0.0)
    sigmoid_start: float = -3.0
    sigmoid_end: float = 3.0
    sigmoid_tau: float = Field(1.0, gt=0.0)
    prediction: Literal["eps", "x0", "v"] = "eps"
    loss: Literal["l2", "l1"] = "l2"
    min_snr_gamma: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _beta_range(self) -> DiffusionConfig:
        if self.beta_end <= self.beta_start:
            raise ValueError(
                f"beta_end ({self.beta_end}) must be larger than beta_start ({self.beta_start})"
            )
        if self.sigmoid_end <= self.sigmoid_start:
            raise ValueError("sigmoid_end must be larger than sigmoid_start")
        return self

    def schedule_kwargs(self) -> dict[str, float]:
        """Keyword arguments of :func:`terradiff.diffusion.schedules.make_betas` for it."""
        if self.schedule in ("linear", "sigmoid_betas"):
            return {"beta_start": self.beta_start, "beta_end": self.beta_end}
        if self.schedule == "cosine":
            return {"cosine_s": self.cosine_s}
        return {
            "sigmoid_start": self.sigmoid_start,
            "sigmoid_end": self.sigmoid_end,
            "sigmoid_tau": self.sigmoid_tau,
        }


class TrainConfig(_Section):
    """Optimisation and bookkeeping of :class:`terradiff.train.Trainer`."""

    batch_size: int = Field(16, ge=1, description="Per process.")
    max_steps: int = Field(10_000, ge=1)
    max_minutes: float | None = Field(
        None,
        gt=0.0,
        description="Stop (and checkpoint) after this wall time, whatever max_steps is.",
    )
    lr: float = Field(2e-4, gt=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(500, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)
    ema_warmup: bool = True
    ema_start_step: int = Field(0, ge=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = Field(10, ge=1)
    save_every: int = Field(1000, ge=1)
    sample_every: int = Field(1000, ge=1)
    num_sample_images: int = Field(16, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    num_workers: int = Field(0, ge=0)
    channels_last: bool = True
    progress: bool = True


class SampleConfig(_Section):
    """Defaults of ``terradiff sample`` and of periodic sample grids."""

    sampler: Literal["ddpm", "ddim", "dpm_solver"] = "ddim"
    steps: int = Field(20, ge=1)
    eta: float = Field(0.0, ge=0.0)
    clip_denoised: bool = True


class EvaluateConfig(_Section):
    """Defaults of ``terradiff evaluate`` (FID/KID over a feature extractor)."""

    num_samples: int = Field(500, ge=2)
    encoder: str = Field("aid-cnn", description="'aid-cnn' (shipped), 'inception', or a path.")
    encoder_weights: str | None = None
    batch_size: int = Field(50, ge=1)
    kid_subset_size: int = Field(100, ge=2)


class SuperResolutionConfig(_Section):
    """The super-resolution task (:mod:`terradiff.tasks.super_resolution`).

    ``data.image_size`` is the high-resolution (HR) crop size; the low-resolution (LR) input is made
    from it by ``degradation`` at ``scale``.
    """

    method: Literal["sr3", "regression", "implicit", "single_step", "student"] = Field(
        "sr3",
        description="'sr3': conditional diffusion (Saharia et al. 2021); 'regression': the same "
        "UNet trained with L1 to predict the HR image directly (baseline); 'implicit': IDM-style "
        "continuous scales (Gao et al. 2023), trained on random scales in train_scales; "
        "'single_step': SlimDiffSR's uncertainty-guided one-step teacher; 'student': SlimDiffSR's "
        "light one-pass student, distilled from sr.teacher.",
    )
    scale: float = Field(4.0, gt=1.0, le=16.0, description="The scale of sr3/regression models.")
    degradation: Literal["bicubic", "real"] = "bicubic"
    train_scales: tuple[float, float] = Field(
        (1.5, 4.0), description="'implicit': each batch draws its scale uniformly in this range."
    )
    render_channels: int = Field(32, ge=1, description="'implicit': rendered feature channels.")
    uncertainty_weight: float = Field(
        1.0, ge=0.0, description="'single_step': weight of the uncertainty loss (Eq. 5)."
    )
    alpha_weight: float = Field(
        1.0, ge=0.0, description="'single_step': weight of the L1 loss of the alpha_bar head."
    )
    tv_weight: float = Field(
        0.1, ge=0.0, description="'single_step': total variation of alpha_bar (Eq. 21)."
    )
    power_window: int = Field(
        7, ge=1, description="'single_step': box size of the local HR power in Eq. 9-10 (odd)."
    )
    lpips_weight: float = Field(
        0.0, ge=0.0, description="'single_step': weight of LPIPS to HR (needs sr.lpips_weights)."
    )
    lpips_weights: str | None = Field(
        None,
        description="'single_step': local LPIPS weights file (.safetensors or .pth; never "
        "downloaded), read when lpips_weight > 0.",
    )
    adversarial_weight: float = Field(
        0.0,
        ge=0.0,
        description="'single_step': weight of the generator's non-saturating GAN loss against a "
        "PatchGAN on (bicubic, output) pairs; 0: no discriminator.",
    )
    teacher: str | None = Field(
        None, description="'student': the teacher run/checkpoint (single_step or regression)."
    )
    distill: Literal["none", "mse", "mse_mmd"] = Field(
        "mse_mmd",
        description="'student': no distillation (L1 to HR only), + MSE to the teacher's output "
        "and 1x1-adapted features, or + lambda MMD on the features too (SlimDiffSR Eq. 16-19).",
    )
    mmd_weight: float = Field(0.1, ge=0.0, description="'student': lambda of the MMD term.")
    student_channels: int = Field(16, ge=1, description="'student': width of its first level.")
    student_mults: list[int] = Field(
        default_factory=lambda: [1, 2], description="'student': width multipliers of its levels."
    )
    student_blocks: int = Field(1, ge=1, description="'student': light blocks per level.")
    fs_conv: bool = Field(True, description="'student': frequency-separable convolutions.")
    ds_conv: bool = Field(True, description="'student': direction-separable convolutions.")
    global_aggregation: bool = Field(
        True, description="'student': query-driven global aggregation at the bottom."
    )

    @model_validator(mode="after")
    def _scale_range(self) -> SuperResolutionConfig:
        low, high = self.train_scales
        if not 1.0 < low <= high <= 16.0:
            raise ValueError(f"train_scales must satisfy 1 < low <= high <= 16, got {low}, {high}")
        if self.power_window % 2 == 0:
            raise ValueError(f"power_window must be odd, got {self.power_window}")
        if self.lpips_weight > 0 and not self.lpips_weights:
            raise ValueError(
                "sr.lpips_weight > 0 needs sr.lpips_weights: the path of a local LPIPS weights "
                "file (terradiff never downloads weights); or set sr.lpips_weight: 0"
            )
        if self.method != "single_step" and (self.lpips_weight > 0 or self.adversarial_weight > 0):
            raise ValueError(
                "sr.lpips_weight and sr.adversarial_weight are losses of the 'single_step' "
                f"teacher; sr.method is {self.method!r}"
            )
        if self.method == "student" and not self.teacher:
            raise ValueError(
                "sr.method 'student' needs sr.teacher: the run or checkpoint to distil from"
            )
        return self


class CarbonConfig(_Section):
    """Carbon-density estimation as image-to-image translation (:mod:`terradiff.tasks.carbon`).

    ``data`` (``kind: paired``) points at pairs ``<root>/<chip>/{image,target,mask}.tif`` (see
    ``terradiff carbon-prepare``); ``data.scaling`` scales the image, ``max_density`` the target.
    """

    method: Literal["iidm", "idm", "regression", "vae", "gan"] = Field(
        "iidm",
        description="'iidm': VGG features + cross-attention/MLP fusion + implicit decoder (the "
        "IIDM paper); 'idm': the image as the only condition, no fusion; 'regression': the same "
        "UNet trained with L1 to predict the map directly; 'vae': a convolutional VAE; 'gan': "
        "pix2pix (U-Net generator + PatchGAN).",
    )
    max_density: float = Field(
        150.0, gt=0.0, description="Mg C/ha mapped to 1 (the target is clipped to [0, max])."
    )
    unit: str = "Mg C/ha"
    mask_loss: bool = Field(True, description="Loss only under the forest mask (paper Eq. 4).")
    train_chips: list[str] | None = Field(
        None, description="Pair folders to train on (null: a stable hash split of all pairs)."
    )
    val_chips: list[str] | None = None
    test_chips: list[str] | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    vgg_layout: Literal["vgg11", "vgg16", "vgg19"] = "vgg16"
    vgg_width: float = Field(0.25, gt=0.0, le=1.0)
    vgg_stages: int = Field(3, ge=1, le=5)
    vgg_weights: str | None = Field(
        None, description="Local VGG weights to start from (never downloaded); null: trained."
    )
    vgg_channels: list[list[int]] | None = Field(
        None,
        description="Widths of a PCA-distilled extractor (KD-VGG), one list per stage, as "
        "'terradiff compress' prints them; null: the full extractor. The vgg_* fields above "
        "still describe the teacher, whose feature widths KD-VGG reproduces.",
    )
    kd_vgg: str | None = Field(
        None,
        description="Local KD-VGG weights (kd_vgg.safetensors from 'terradiff compress') to "
        "start from; needs vgg_channels.",
    )
    feature_channels: int = Field(32, ge=1)
    attention: bool = Field(True, description="Cross-attention + MLP fusion at the bottleneck.")
    implicit_decoder: bool = True
    decoder_hidden: int = Field(64, ge=1)
    ensemble: int = Field(1, ge=1, description="Samples per image (mean map + std map).")
    vae_beta: float = Field(1e-3, ge=0.0, description="'vae': weight of the KL term.")
    vae_latent: int = Field(8, ge=1, description="'vae': latent channels (at 1/4 resolution).")
    gan_l1_weight: float = Field(100.0, ge=0.0, description="'gan': lambda of L1 (pix2pix: 100).")

    @model_validator(mode="after")
    def _kd_vgg(self) -> CarbonConfig:
        if self.kd_vgg and not self.vgg_channels:
            raise ValueError("carbon.kd_vgg needs carbon.vgg_channels (the student's widths)")
        if self.kd_vgg and self.vgg_weights:
            raise ValueError("give carbon.kd_vgg or carbon.vgg_weights, not both")
        if self.vgg_channels is not None and (
            len(self.vgg_channels) != self.vgg_stages
            or any(not stage or min(stage) < 1 for stage in self.vgg_channels)
        ):
            raise ValueError(
                f"carbon.vgg_channels must hold {self.vgg_stages} lists (vgg_stages) of "
                f"positive widths, got {self.vgg_channels}"
            )
        return self

    @model_validator(mode="after")
    def _disjoint_splits(self) -> CarbonConfig:
        lists = {
            "train_chips": self.train_chips or [],
            "val_chips": self.val_chips or [],
            "test_chips": self.test_chips or [],
        }
        names = list(lists)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = sorted(set(lists[a]) & set(lists[b]))
                if both:
                    raise ValueError(
                        f"chips {both} are in both {a} and {b}; a chip is in one split"
                    )
        return self


class ExperimentConfig(_Section):
    """The whole experiment."""

    task: Literal["generation", "super_resolution", "carbon"] = "generation"
    name: str = "experiment"
    seed: int = Field(0, ge=0)
    output_dir: str = "runs/experiment"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    sr: SuperResolutionConfig | None = Field(
        None, description="Settings of task 'super_resolution' (defaults when omitted)."
    )
    carbon: CarbonConfig | None = Field(
        None, description="Settings of task 'carbon' (defaults when omitted)."
    )

    @model_validator(mode="after")
    def _task_sections(self) -> ExperimentConfig:
        if self.task == "super_resolution" and self.sr is None:
            self.sr = SuperResolutionConfig()
        if self.task != "super_resolution" and self.sr is not None:
            raise ValueError(
                f"section 'sr' is only used by task 'super_resolution', not {self.task!r}"
            )
        if self.task == "carbon" and self.carbon is None:
            self.carbon = CarbonConfig()
        if self.task != "carbon" and self.carbon is not None:
            raise ValueError(f"section 'carbon' is only used by task 'carbon', not {self.task!r}")
        if (self.task == "carbon") != (self.data.kind == "paired"):
            raise ValueError(
                "task 'carbon' reads paired rasters: use data.kind 'paired' with it (and only "
                "with it)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what goes into ``config.json``)."""
        return self.model_dump(mode="json")


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section that ``loc`` points into (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            return []
    return list(current.model_fields) if hasattr(current, "model_fields") else []


def format_validation_error(error: ValidationError, source: str) -> str:
    """Turn pydantic's error into lines naming each key, the value given and the fix."""
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        given = item.get("input")
        if item["type"] == "extra_forbidden":
            known = _known_keys(ExperimentConfig, loc)
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"did you mean '{guess[0]}'? " if guess else ""
            lines.append(
                f"  - {key}: unknown key. {hint}Known keys here: {', '.join(sorted(known))}."
            )
        elif item["type"] == "missing":
            lines.append(f"  - {key}: required key is missing; add it.")
        else:
            fix = ""
            if isinstance(given, str) and item["type"].startswith("int"):
                try:
                    fix = f" Write it as a plain integer, e.g. {int(float(given))}."
                except ValueError:
                    fix = ""
            lines.append(f"  - {key}: {item['msg']} (got {given!r}).{fix}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain dict into an :class:`ExperimentConfig`, or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping of keys to values, got {type(data)}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate a YAML (or JSON) experiment config.

    Args:
        path: the YAML file.
        overrides: ``key.sub=value`` strings applied on top (values parsed as YAML), e.g.
            ``["train.max_steps=100", "diffusion.schedule=cosine"]``.

    Raises:
        ConfigError: the file is missing or malformed, or a key/value is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    data = data or {}
    for override in overrides or []:
        apply_override(data, override)
    return config_from_dict(data, str(path))


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested dict in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {override!r}: '{part}' is not a section")
    target[parts[-1]] = yaml.safe_load(raw)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the config as JSON (atomically)."""
    from terradiff.io import atomic_write_text

    atomic_write_text(Path(path), json.dumps(config.to_dict(), indent=2) + "\n")
