"""A terradiff run folder <-> a diffusers folder (``terradiff export-/import-diffusers``).

Export writes, into one folder (atomically)::

    config.json                          UNet2DModel config  (UNet2DModel.from_pretrained(DIR))
    diffusion_pytorch_model.safetensors  the weights (EMA by default) under diffusers' names
    scheduler_config.json                DDPMScheduler / DDIMScheduler  (*.from_pretrained(DIR))
    terradiff.json                       what diffusers does not record: bands, their scaling to
                                         [-1, 1], the source checkpoint

Import reads such a folder (or a pipeline folder with ``unet/`` and ``scheduler/``) and writes a
generation run, ``RUN/checkpoints/step_00000000/`` + ``RUN/config.json``, that ``terradiff
sample`` and ``terradiff evaluate`` load like a trained one. The run's ``model`` section
records what the DDPM reference nets (Ho et al. 2020; ``google/ddpm-*``) do differently from
terradiff's defaults -- ``time_scale_shift`` (diffusers' ``resnet_time_scale_shift``),
``freq_shift``, ``mid_attention`` (``add_attention``), ``norm_eps``, ``downsample_padding`` --
so every net :func:`~terradiff.interop.diffusers_unet.unet_kwargs_from_diffusers` accepts becomes
a run, except one with ``out_channels != in_channels`` (a generation run denoises images of one
band count) or a value outside the run config's ranges (e.g. ``attention_head_dim`` below 8),
which are refused by their diffusers key.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors.torch import save_file

from terradiff.checkpoint import save_checkpoint
from terradiff.config import ModelConfig, config_from_dict
from terradiff.data.band_info import BandInfo
from terradiff.errors import CheckpointError, ConfigError
from terradiff.interop.diffusers_schedule import (
    SCHEDULER_CONFIG_NAME,
    run_sections_from_scheduler,
    scheduler_config,
)
from terradiff.interop.diffusers_unet import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    diffusers_unet_config,
    read_diffusers_unet,
    state_dict_from_diffusers,
    state_dict_to_diffusers,
    unet_kwargs_from_diffusers,
)
from terradiff.io import atomic_directory, atomic_write_text
from terradiff.nets.unet import UNet
from terradiff.run_folder import check_run_folder, delete_previous_run

__all__ = ["export_diffusers", "import_diffusers"]

log = logging.getLogger(__name__)

NO_DATA_ROOT = "(none: imported from diffusers; give terradiff evaluate --data DIR)"
"""``data.root`` of a run imported without ``data_root``: what ``evaluate`` then names."""

IMPORT_STEP_DIR = "step_00000000"
"""The one checkpoint of an imported run (step 0: terradiff trained nothing)."""


def _check_target(path: Path, overwrite: bool, what: str) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it ({what})")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file; {what} is a folder: choose another path")


def export_diffusers(
    run: str | Path, out: str | Path, *, use_ema: bool = True, overwrite: bool = False
) -> Path:
    """Write a run's UNet and schedule as a diffusers folder (see the module docstring).

    Raises:
        WrongCheckpointError / CheckpointError: no loadable checkpoint at ``run``.
        ConfigError: the run's net is not a plain terradiff UNet diffusers can represent, or
            ``out`` exists and ``overwrite`` is False.
    """
    from terradiff.tasks import load_task

    out = Path(out)
    _check_target(out, overwrite, "the diffusers folder")
    task, ckpt = load_task(run, use_ema=use_ema)
    net = task.net
    if not isinstance(net, UNet):
        raise ConfigError(
            f"{ckpt.path}: its net is a {type(net).__name__}, not terradiff's UNet; only UNet "
            "denoisers (generation, SR3 super-resolution) export to diffusers' UNet2DModel"
        )
    schedule = getattr(task, "schedule", None)
    unet_config = diffusers_unet_config(net.config)
    weights = state_dict_to_diffusers(net.state_dict())
    record: dict[str, Any] = {
        "source": str(ckpt.path),
        "task": task.config.task,
        "bands": task.band_info.to_dict(),
        "cond_channels": net.cond_channels,
        "note": "inputs are the bands scaled to [-1, 1] as 'scaling' says; a conditional net "
        "takes torch.cat([x, cond], dim=1)",
    }
    with atomic_directory(out) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(unet_config, indent=2) + "\n")
        save_file(weights, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if schedule is not None:
            scheduler = scheduler_config(
                schedule,
                prediction=task.config.diffusion.prediction,
                clip_denoised=task.config.sample.clip_denoised,
                sampler=task.config.sample.sampler,
                diffusers_version=unet_config["_diffusers_version"],
            )
            (tmp / SCHEDULER_CONFIG_NAME).write_text(json.dumps(scheduler, indent=2) + "\n")
        (tmp / "terradiff.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def _scheduler_file(folder: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        path = Path(explicit)
        path = path / SCHEDULER_CONFIG_NAME if path.is_dir() else path
        if not path.is_file():
            raise CheckpointError(f"scheduler config {path} not found")
        return path
    for candidate in (folder / SCHEDULER_CONFIG_NAME, folder / "scheduler" / SCHEDULER_CONFIG_NAME):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{folder} has no {SCHEDULER_CONFIG_NAME} (nor scheduler/{SCHEDULER_CONFIG_NAME}): the "
        "schedule the net was trained with is needed; pass --scheduler PATH"
    )


#: (UNet keyword, run config ``model`` key, the diffusers key it comes from).
_MODEL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("base_channels", "base_channels", "block_out_channels"),
    ("channel_mults", "channel_mults", "block_out_channels"),
    ("num_res_blocks", "num_res_blocks", "layers_per_block"),
    ("attention_resolutions", "attention_resolutions", "down_block_types"),
    ("dropout", "dropout", "dropout"),
    ("num_groups", "num_groups", "norm_num_groups"),
    ("head_channels", "head_channels", "attention_head_dim"),
    ("scale_shift", "time_scale_shift", "resnet_time_scale_shift"),
    ("time_freq_shift", "freq_shift", "freq_shift"),
    ("mid_attention", "mid_attention", "add_attention"),
    ("norm_eps", "norm_eps", "norm_eps"),
    ("downsample_padding", "downsample_padding", "downsample_padding"),
)


def _model_section(kwargs: dict[str, Any], config: dict[str, Any], source: str) -> dict[str, Any]:
    """The run's ``model`` section; a value outside its range is refused by its diffusers key."""
    model = {key: kwargs[name] for name, key, _ in _MODEL_KEYS}
    try:
        ModelConfig(**model)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        origin = next((d for _, key, d in _MODEL_KEYS if key == field), field)
        raise ConfigError(
            f"{source}: diffusers key {origin!r} = {config.get(origin)!r} gives a run config's "
            f"model.{field} = {model.get(field)!r}, which a run refuses ({first['msg']}); load "
            "it from Python with terradiff.interop.diffusers_unet.unet_from_diffusers"
        ) from None
    return model


def _representable_in_run(kwargs: dict[str, Any], source: str) -> None:
    """Refuse what a run config cannot express (its UNet is built by ``tasks.base.build_unet``)."""
    if kwargs["in_channels"] != kwargs["out_channels"]:
        raise ConfigError(
            f"{source}: in_channels {kwargs['in_channels']} != out_channels "
            f"{kwargs['out_channels']}: a generation run denoises images of one band count"
        )


def import_diffusers(
    folder: str | Path,
    out: str | Path,
    *,
    scheduler: str | Path | None = None,
    data_root: str | Path | None = None,
    bands: list[str] | None = None,
    scaling: str = "none",
    image_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a diffusers UNet2DModel + scheduler folder into a terradiff generation run.

    Args:
        folder: the diffusers folder (``config.json`` + safetensors + ``scheduler_config.json``,
            or a pipeline folder with ``unet/`` and ``scheduler/``).
        out: the run folder to write.
        scheduler: the scheduler config (file or folder) when it is not in ``folder``.
        data_root: images ``terradiff evaluate`` compares with (its ``--data`` overrides it);
            without it the run's ``data.root`` is :data:`NO_DATA_ROOT`, which names the fix.
        bands: names of the net's bands, in order (default: unnamed).
        scaling: how raw band values map to [0, 1] (``uint8``, ``none``, ...), for GeoTIFF
            outputs in physical units.
        image_size: the training image size when the config's ``sample_size`` is missing.
        overwrite: replace an existing ``out``.

    Returns:
        The checkpoint folder written.

    Raises:
        ConfigError: a diffusers key terradiff cannot represent (named), or ``out`` holds a run
            and ``overwrite`` is False.
        CheckpointError: an unreadable or incomplete diffusers folder.
    """
    from terradiff.tasks import build_task

    folder, out = Path(folder), Path(out)
    check_run_folder(out, resume=False, overwrite=overwrite)
    config, state, config_path = read_diffusers_unet(folder)
    kwargs, flip = unet_kwargs_from_diffusers(
        config, image_size=image_size, source=str(config_path)
    )
    _representable_in_run(kwargs, str(config_path))
    scheduler_path = _scheduler_file(folder, scheduler)
    try:
        scheduler_raw = json.loads(scheduler_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{scheduler_path}: unreadable scheduler config ({error})") from None
    diffusion, sample, notes = run_sections_from_scheduler(scheduler_raw, str(scheduler_path))
    for note in notes:
        log.info("import-diffusers: %s", note)
    count = kwargs["in_channels"]
    if bands is not None and len(bands) != count:
        raise ConfigError(f"--bands names {len(bands)} bands; the net has {count}")
    raw = {
        "task": "generation",
        "name": folder.resolve().name,
        "output_dir": str(out),
        "data": {"root": str(data_root or NO_DATA_ROOT), "image_size": kwargs["image_size"]},
        "model": _model_section(kwargs, config, str(config_path)),
        "diffusion": diffusion,
        "sample": sample,
    }
    run_config = config_from_dict(raw, f"the run imported from {folder}")
    band_info = BandInfo(count=count, names=tuple(bands or ()), scaling=scaling)
    task = build_task(run_config, band_info)
    mapped = state_dict_from_diffusers(state, flip_sin_to_cos=flip, source=str(config_path))
    try:
        task.net.load_state_dict(mapped)
    except RuntimeError as error:
        raise ConfigError(f"{folder}: the weights do not fit its config: {error}") from None
    record = task.checkpoint_config()
    record["imported_from"] = {
        "diffusers_folder": str(folder.resolve()),
        "unet_config": config,
        "scheduler_config": {k: v for k, v in scheduler_raw.items() if k != "trained_betas"},
    }
    if overwrite:
        delete_previous_run(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(
        out / "checkpoints" / IMPORT_STEP_DIR, config=record, model_state=task.net.state_dict()
    )
    atomic_write_text(out / "config.json", json.dumps(record, indent=2) + "\n")
    return checkpoint
