"""Typed experiment configuration, loaded from YAML and validated with clear errors.

A config is the whole recipe of an experiment: data, network, diffusion maths, training and
sampling. It is stored verbatim in every checkpoint's ``config.json`` so a checkpoint can rebuild
its model and knows which bands, in which order and scaling, it was trained on.

Validation is strict on purpose (SR3 issue 69: ``1e4`` written in YAML is a *string* and silently
never triggered a save): an unknown key, a wrong type or an out-of-range value is a
:class:`ConfigError` that names the key, what was given, and how to fix it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from terradiff.config_errors import describe_validation_error
from terradiff.config_methods import (
    SECTION_TASKS,
    ConfigSection,
    MethodConfig,
    default_method,
    method_config_class,
    register_method_config,
    unregister_method_config,
    validate_method_section,
)
from terradiff.errors import ConfigError

__all__ = [
    "FAST_POLICIES",
    "INFERENCE_PRECISIONS",
    "SAMPLER_NAMES",
    "ConditionConfig",
    "ConfigSection",
    "DataConfig",
    "DiffusionConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "MethodConfig",
    "ModelConfig",
    "SampleConfig",
    "ScalingConfig",
    "TrainConfig",
    "config_from_dict",
    "format_validation_error",
    "method_config_class",
    "register_method_config",
    "unet_size_problems",
    "unregister_method_config",
]

SAMPLER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "dpm_solver")
"""The samplers configs and the CLI accept: ancestral DDPM (Ho et al. 2020), DDIM (Song et al.
2021), DPM-Solver++(2M) (Lu et al. 2022); :mod:`terradiff.diffusion.samplers` implements them."""

FAST_POLICIES: tuple[str, ...] = ("auto", "compile", "graph", "compile+graph", "off")
"""How the denoiser may run while sampling (``sample.fast``, ``--fast``):
:mod:`terradiff.nets.fast_forward` implements them."""

INFERENCE_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
"""Number formats of a net at inference (``sample.precision``, ``--precision``):
:mod:`terradiff.nets.precision` implements them."""


_Section = ConfigSection
"""Base of every config section (unknown keys are errors; assignments are validated)."""


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


#: LevirCDDataset's argument names that the data section spells with its general keys.
LEVIR_KEY_NAMES: dict[str, str] = {"crop_size": "image_size", "crops_per_pair": "crops_per_image"}
LEVIR_KEY_HELP: dict[str, str] = {
    "image_size": "the side of the random training crops, for every data.kind",
    "crops_per_image": "random training crops per file, or per before/after pair",
}


class DataConfig(_Section):
    """Where the images come from and how they become tensors in [-1, 1]."""

    kind: Literal["folder", "geotiff_chips", "paired", "mnist", "levir_cd", "temporal"] = "folder"
    root: str = Field(
        description="Folder of images (class sub-folders allowed), GeoTIFF chips, or the MNIST "
        "IDX files (kind mnist: its fixed 8,000/2,000 split is data.split train/test); kind "
        "levir_cd: the folder holding A/ (before), B/ (after) and label/ (task 'change': the "
        "crops are image_size pixels, crops_per_image per pair); kind temporal: a BioMassters "
        "chip folder or a folder of them, or a folder of dated scenes or of such folders (task "
        "'temporal'; the pairs and their split are set in the 'temporal' section)."
    )
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
    device_batches: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Cut training batches on the device from the decoded images held there "
        "(terradiff.data.device_batches: batched crops, flips and scaling): auto = on with CUDA "
        "for a cached folder/geotiff_chips dataset of equal-size images (any sizes with crop: "
        "resize, each file resized once), off = the per-item DataLoader path",
    )
    device_cache_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="With device_batches: the decoded images go to GPU memory when they take "
        "at most this share of its free memory, to pinned host memory otherwise",
    )
    rgb_bands: list[int] | None = Field(
        None, description="0-based indices of the bands shown as RGB in figures and fed to FID."
    )
    split: Literal["all", "train", "test", "fit", "val"] = Field(
        "all",
        description="Train on every file, or on the 'train' part of a stable hash partition "
        "whose 'test' part (holdout_fraction of the files) is what evaluation uses. 'val' (the "
        "next holdout_fraction, inside 'train') and 'fit' ('train' without 'val') are for "
        "choosing settings without the test files.",
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
    rule: Literal["upstream", "order"] | None = Field(
        None,
        description="kind levir_cd: the fixed split (terradiff.data.levir): 'upstream' (default) "
        "LEVIR-CD's own train_/val_/test_ names; 'order' the last holdout_fraction of the "
        "source images sorted by name are the test set.",
    )

    @model_validator(mode="before")
    @classmethod
    def _levir_key_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for wrong, right in LEVIR_KEY_NAMES.items():
                if wrong in value:
                    raise ValueError(
                        f"data.{wrong} is written data.{right} here ({LEVIR_KEY_HELP[right]}); "
                        f"rename the key to {right}"
                    )
        return value

    @model_validator(mode="after")
    def _rule_only_for_levir(self) -> DataConfig:
        if self.rule is not None and self.kind != "levir_cd":
            raise ValueError(
                f"data.rule chooses the split of data.kind 'levir_cd', not {self.kind!r}; "
                "remove it (folders are split by data.split and data.holdout_fraction)"
            )
        if self.kind == "temporal" and self.split != "all":
            raise ValueError(
                "data.split is not read for data.kind 'temporal', whose split is set by "
                "temporal.holdout (date, place or region); remove data.split"
            )
        if self.kind == "levir_cd" and self.split != "all":
            raise ValueError(
                "data.split is not read for data.kind 'levir_cd', whose split is fixed by "
                "data.rule (upstream: LEVIR-CD's names; order: the last holdout_fraction of the "
                "images); remove data.split"
            )
        return self

    @field_validator("rgb_bands")
    @classmethod
    def _rgb_band_indices(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if len(value) not in (1, 3) or min(value) < 0:
            raise ValueError(
                "give 3 band indices counted from 0 (red, green, blue), e.g. [0, 1, 2], or one "
                "index for a grey image, or null for the first three bands"
            )
        return value

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
    #: FiLM scale-shift time conditioning (Nichol & Dhariwal 2021, Sec. 3); false: the additive
    #: one of DDPM (Ho et al. 2020, App. B) -- diffusers' resnet_time_scale_shift 'default'.
    time_scale_shift: bool = True
    #: Time embedding frequencies w_i = 10000 ** (-i / (base_channels / 2 - freq_shift)):
    #: 0 = terradiff's own, 1 = the DDPM reference code (diffusers' freq_shift).
    freq_shift: float = Field(0.0, ge=0.0)
    #: Self-attention in the middle block (diffusers' add_attention).
    mid_attention: bool = True
    #: GroupNorm epsilon: 1e-5, or 1e-6 as in the DDPM reference code (diffusers' norm_eps).
    norm_eps: float = Field(1e-5, gt=0.0, lt=1.0)
    #: Stride-2 convs padded on every side (1) or bottom/right only as TF's "SAME" (0; the DDPM
    #: reference code, Ho et al. 2020; diffusers' downsample_padding).
    downsample_padding: Literal[0, 1] = 1

    @model_validator(mode="after")
    def _groups_divide_channels(self) -> ModelConfig:
        for mult in self.channel_mults:
            if (self.base_channels * mult) % self.num_groups:
                raise ValueError(
                    f"num_groups={self.num_groups} must divide every level's channels "
                    f"(base_channels {self.base_channels} x mult {mult}); choose e.g. num_groups=8"
                )
        if not self.freq_shift < self.base_channels // 2:
            raise ValueError(
                f"freq_shift={self.freq_shift:g} must be smaller than half of base_channels "
                f"({self.base_channels // 2}), the time embedding's frequency count; use 0 or 1"
            )
        return self


class DiffusionConfig(_Section):
    """Noise schedule, prediction target and loss (:mod:`terradiff.diffusion`)."""

    #: Formulas and papers: terradiff.diffusion.schedules (scaled_linear: Rombach et al. 2022,
    #: betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2, diffusers' 'scaled_linear').
    schedule: Literal["linear", "cosine", "sigmoid", "sigmoid_betas", "scaled_linear"] = "linear"
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
        if self.schedule in ("linear", "sigmoid_betas", "scaled_linear"):
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
    channels_last: bool | None = Field(
        True,
        description="Memory format of the net while training: true = weights and activations "
        "channels-last on every device, false = NCHW, null = channels-last on CPU only",
    )
    compile: Literal["auto", "on", "off", "graphs"] = Field(
        "auto",
        description="torch.compile while training (terradiff.nets.compile): on = the net's "
        "repeated blocks (regional compilation), graphs = the whole net with its forward and "
        "backward replayed as CUDA graphs (reduce-overhead mode; one process), off; auto = on "
        "with CUDA, off on CPU",
    )
    progress: bool = True


class SampleConfig(_Section):
    """Defaults of ``terradiff sample`` and of periodic sample grids."""

    sampler: str = Field("ddim", description="A sampler name: ddpm, ddim or dpm_solver.")
    steps: int = Field(20, ge=1)
    eta: float = Field(0.0, ge=0.0)
    clip_denoised: bool = True
    guidance: float | None = Field(
        None,
        ge=0.0,
        description="Classifier-free guidance scale s of a conditional model: out = out_null + "
        "s (out_cond - out_null); 0 unconditional, 1 plain conditional; null: no guidance.",
    )
    fast: Literal["auto", "compile", "graph", "compile+graph", "off"] = Field(
        "off",
        description="How the denoiser runs while sampling (terradiff.nets.fast_forward): graph = "
        "replayed as a CUDA graph per input shape, compile = torch.compile of its blocks, "
        "compile+graph = both (compile on CPU), off = eager, auto = graph on CUDA and off on "
        "CPU; the samples are the same.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="Number format of the net while sampling and mapping "
        "(terradiff.nets.precision): bf16/fp16 = autocast, fp32 = none, auto = bf16 on a CUDA "
        "device with bf16 and on a CPU with AMX-BF16 or AVX512-BF16, fp32 elsewhere. bf16 ran "
        "1.5-3x faster; its samples differ slightly (the demo generator's FID rose by 0.3).",
    )

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        if value not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler; choose one of {list(SAMPLER_NAMES)}")
        return value


class ConditionConfig(_Section):
    """What a generation model is conditioned on (classifier-free guidance, Ho & Salimans 2022;
    metadata as in DiffusionSat, Khanna et al. 2024). ``terradiff train`` fills ``class_names``
    from the data when it is null, so the checkpoint keeps the classes and their order."""

    classes: str | None = Field(
        None,
        description="'folders': the class sub-folders of data.root (AID, EuroSAT; MNIST's "
        "digits); or a CSV of path,class; null: no class conditioning.",
    )
    class_names: list[str] | None = Field(
        None, description="The classes in label order; null: found in the data at training."
    )
    metadata: list[str] = Field(
        default_factory=list,
        description="Numeric fields (gsd, month, day_of_year, lat, lon, cloud_cover, year); "
        "a missing value gets the field's learned null.",
    )
    metadata_sidecar: str | None = Field(
        None, description="CSV (path,field,...) or JSON {path: {field: value}} of the values."
    )
    metadata_from_raster: bool = Field(
        False, description="Read gsd, lat, lon (and tagged dates) from each GeoTIFF's header."
    )
    date_pattern: str | None = Field(
        None, description="File-name date pattern: yyyymmdd, yyyy-mm-dd, year or a regex."
    )
    drop_prob: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Probability that a training sample's whole condition is replaced by the "
        "null condition (trains the unconditional model that guidance needs).",
    )


class EvaluateConfig(_Section):
    """Defaults of ``terradiff evaluate`` (FID/KID over a feature extractor)."""

    num_samples: int = Field(500, ge=2)
    encoder: str = Field("aid-cnn", description="'aid-cnn' (shipped), 'inception', or a path.")
    encoder_weights: str | None = None
    batch_size: int = Field(50, ge=1)
    kid_subset_size: int = Field(100, ge=2)


class ExperimentConfig(_Section):
    """The whole experiment."""

    task: Literal["generation", "super_resolution", "carbon", "change", "temporal"] = "generation"
    name: str = "experiment"
    seed: int = Field(0, ge=0)
    output_dir: str = "runs/experiment"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    condition: ConditionConfig | None = Field(
        None, description="Conditioning of task 'generation' (classes, metadata); null: none."
    )
    sr: SerializeAsAny[MethodConfig] | None = Field(
        None,
        description="Settings of task 'super_resolution': 'method' and that method's keys "
        "(defaults when omitted).",
    )
    carbon: SerializeAsAny[MethodConfig] | None = Field(
        None,
        description="Settings of task 'carbon': 'method' and that method's keys (defaults when "
        "omitted).",
    )

    change: SerializeAsAny[MethodConfig] | None = Field(
        None,
        description="Settings of task 'change' (change detection on before/after pairs): "
        "'method' (ddpm_cd, supervised_unet) and that method's keys.",
    )

    temporal: SerializeAsAny[MethodConfig] | None = Field(
        None,
        description="Settings of task 'temporal' (before image + target date -> after image): "
        "'method' (concat, controlnet, regression) and its keys (pairs, split, metadata).",
    )

    @field_validator("sr", "carbon", "change", "temporal", mode="before")
    @classmethod
    def _method_sections(cls, value: Any, info: ValidationInfo) -> MethodConfig | None:
        return validate_method_section(str(info.field_name), value)

    @model_validator(mode="after")
    def _task_sections(self) -> ExperimentConfig:
        for section, task in SECTION_TASKS.items():
            value = getattr(self, section)
            if self.task == task and value is None:
                default = default_method(section)
                object.__setattr__(self, section, method_config_class(section)(method=default))
            if self.task != task and value is not None:
                raise ValueError(
                    f"section '{section}' is only used by task '{task}', not {self.task!r}"
                )
        for task, kind, what in (
            ("carbon", "paired", "paired rasters"),
            ("change", "levir_cd", "before/after/label pairs (LEVIR-CD layout)"),
            ("temporal", "temporal", "dated images of places (BioMassters chips, dated scenes)"),
        ):
            if (self.task == task) != (self.data.kind == kind):
                raise ValueError(
                    f"task '{task}' reads {what}: use data.kind '{kind}' with it (and only with "
                    f"it); got task {self.task!r} with data.kind {self.data.kind!r}"
                )
        if self.condition is not None and self.task != "generation":
            raise ValueError(
                f"section 'condition' is used by task 'generation' only, not {self.task!r}"
            )
        if self.condition is not None and not (self.condition.classes or self.condition.metadata):
            raise ValueError(
                "section 'condition' conditions on nothing: set condition.classes (e.g. "
                "'folders') and/or condition.metadata (e.g. [gsd, month]), or remove the section"
            )
        return self

    @model_validator(mode="after")
    def _unet_fits_image_size(self) -> ExperimentConfig:
        sections = {task: section for section, task in SECTION_TASKS.items()}
        section = getattr(self, sections[self.task]) if self.task in sections else None
        if section is not None and not type(section).uses_model_unet:
            return self
        problems = unet_size_problems(
            self.data.image_size, self.model.channel_mults, self.model.attention_resolutions
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what goes into ``config.json``)."""
        return self.model_dump(mode="json")


def unet_size_problems(
    image_size: int, channel_mults: list[int], attention_resolutions: list[int]
) -> list[str]:
    """Why a UNet with these ``model`` settings cannot train on ``image_size`` crops (if it can't).

    The UNet halves the size between its ``len(channel_mults)`` levels, so ``image_size`` must be
    a multiple of ``2 ** (len(channel_mults) - 1)``, and every attention resolution must be the
    size of one level (``image_size / 2**i``).

    Returns:
        One message per problem, naming the keys and a valid choice (empty: it fits).
    """
    levels = len(channel_mults)
    factor = 2 ** (levels - 1)
    problems = []
    if image_size % factor:
        fitting = 1  # the most levels whose sizes stay whole for this image size
        while image_size % 2**fitting == 0:
            fitting += 1
        below, above = (image_size // factor) * factor, (image_size // factor + 1) * factor
        sizes = " or ".join(str(s) for s in (below, above) if s >= 8)
        problems.append(
            f"data.image_size={image_size} is not a multiple of {factor}, which a UNet with "
            f"{levels} levels (model.channel_mults={channel_mults}) needs as it halves the size "
            f"{levels - 1} times; choose data.image_size={sizes}, or at most {fitting} "
            f"level{'s' if fitting > 1 else ''}, "
            f"e.g. model.channel_mults={channel_mults[:fitting]}"
        )
        return problems
    sizes = [image_size // 2**i for i in range(levels)]
    wrong = [r for r in attention_resolutions if r not in sizes]
    if wrong:
        fitting = [r for r in attention_resolutions if r in sizes] or sizes[-2:]
        problems.append(
            f"model.attention_resolutions {wrong} match no UNet level: with "
            f"data.image_size={image_size} and {levels} levels (model.channel_mults) the levels "
            f"work at {', '.join(map(str, sizes))} pixels; choose among these, e.g. "
            f"model.attention_resolutions={fitting}, or [] for no attention"
        )
    return problems


def format_validation_error(error: ValidationError, source: str) -> str:
    """Turn pydantic's error into lines naming each key, the value given and the fix
    (:func:`terradiff.config_errors.describe_validation_error`)."""
    return describe_validation_error(error, source, ExperimentConfig)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain dict into an :class:`ExperimentConfig`, or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping of keys to values, got {type(data)}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
