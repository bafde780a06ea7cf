"""Generated images to GeoTIFFs in the training data's physical units (e.g. DN, reflectance).

:func:`check_sample_outputs` checks every file ``terradiff sample`` writes (grid PNG, chain
figure, GeoTIFFs) before the model is even loaded, so a refusal leaves nothing half-written.
:func:`synthesize_dataset` writes a labelled folder of generated images (``terradiff
synthesize``) for training other models on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terradiff.checkpoint import read_checkpoint_config, resolve_checkpoint
from terradiff.data.band_info import BandInfo
from terradiff.data.raster import write_raster
from terradiff.data.tiling.options import check_output_targets
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.io import check_named_as


def check_sample_checkpoint(checkpoint: str | Path) -> None:
    """Refuse a checkpoint ``terradiff sample`` draws no images from: a carbon or change model.

    Only its ``config.json`` is read (no weights), so the refusal is immediate.

    Raises:
        WrongCheckpointError: ``checkpoint`` is a ``carbon`` model (the message names
            ``terradiff estimate``) or a ``change`` one (``terradiff change``).
        CheckpointError: no checkpoint there, or an unreadable ``config.json``.
    """
    config = read_checkpoint_config(checkpoint)
    if isinstance(config, dict) and config.get("task") == "change":
        raise WrongCheckpointError(
            resolve_checkpoint(checkpoint),
            "'change' checkpoint",
            "sample draws images from 'generation' and 'super_resolution' models; map change "
            "with `terradiff change --model RUN --before A.tif --after B.tif --out MASK.tif`",
        )
    if isinstance(config, dict) and config.get("task") == "carbon":
        raise WrongCheckpointError(
            resolve_checkpoint(checkpoint),
            "'carbon' checkpoint",
            "sample draws images from 'generation' and 'super_resolution' models; map a carbon "
            "model with `terradiff estimate --model RUN --image IMAGE.tif --out MAP.tif`",
        )


def sample_tif_paths(out_dir: str | Path, count: int, prefix: str = "sample") -> list[Path]:
    """The GeoTIFFs :func:`write_samples_geotiff` writes for ``count`` images, in order."""
    return [Path(out_dir) / f"{prefix}_{i:04d}.tif" for i in range(count)]


def check_sample_outputs(
    count: int,
    out: str | Path,
    *,
    chain: str | Path | None = None,
    tif_dir: str | Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Every file a ``terradiff sample`` run of ``count`` images writes, checked before any is.

    Args:
        count: images drawn (one GeoTIFF each under ``tif_dir``).
        out: the grid PNG (its settings go to the JSON of the same name beside it).
        chain: the denoising-chain PNG, if asked for.
        tif_dir: the folder of the GeoTIFFs, if asked for.
        overwrite: existing files may be replaced.

    Returns:
        The paths to write: ``out``, its ``.json`` record, then ``chain``, then the GeoTIFFs.

    Raises:
        DataError: ``out`` or ``chain`` does not end ``.png``, ``tif_dir`` is a file, or one of
            the paths exists without ``overwrite``, is a folder, lies below a file, or is another
            of the paths (each message names the path and the fix, e.g. ``--overwrite``).
    """
    check_named_as(out, "PNG", (".png",), "--out")
    if chain is not None:
        check_named_as(chain, "PNG", (".png",), "--chain")
    paths = [Path(out), Path(out).with_suffix(".json")]
    paths += [Path(chain)] if chain is not None else []
    if tif_dir is not None:
        if Path(tif_dir).exists() and not Path(tif_dir).is_dir():
            raise DataError(
                f"--tif-dir {tif_dir} is a file; give a folder for the GeoTIFFs (created if needed)"
            )
        paths += sample_tif_paths(tif_dir, count)
    return check_output_targets(paths, overwrite=overwrite)


def generation_tags(
    spec: Any,
    *,
    class_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
    precision: str | None = None,
) -> dict[str, str]:
    """GeoTIFF metadata saying how a generated image was drawn (``TERRADIFF_*`` keys).

    The class, the metadata (JSON), the guidance scale, sampler, steps, seed, checkpoint and the
    net's number format (``precision``, resolved: ``fp32``, ``bf16`` or ``fp16``; the key
    ``TERRADIFF_INFERENCE_PRECISION``); keys whose
    value is None are left out, so an unconditional sample carries only the sampler.
    """
    values: dict[str, Any] = {
        "class": class_name,
        "metadata": json.dumps(metadata, sort_keys=True) if metadata else None,
        "seed": seed,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "inference_precision": precision,
    }
    if spec is not None:
        values |= {"sampler": spec.sampler, "steps": spec.steps, "guidance": spec.guidance}
    return {f"TERRADIFF_{k.upper()}": str(v) for k, v in values.items() if v is not None}


def write_samples_geotiff(
    images: torch.Tensor,
    band_info: BandInfo,
    out_dir: str | Path,
    *,
    prefix: str = "sample",
    overwrite: bool = False,
    tags: dict[str, str] | None = None,
    cog: bool = True,
) -> list[Path]:
    """Write each ``[C, H, W]`` image of ``images`` (model range [-1, 1]) as one GeoTIFF.

    Values are mapped back with the scaling the model was trained with (``band_info.scaling``),
    so a Sentinel-2 model writes DN / reflectance * 10,000 and an 8-bit model writes 0..255
    (as uint8). The band descriptions are the training bands' names. The files carry no
    georeference: generated images are not of a place. Every path is checked before the first
    file is written, so an existing one (without ``overwrite``) leaves the folder as it was.
    ``tags`` (e.g. :func:`generation_tags`) are stored in every file's GeoTIFF metadata. Each
    file is a Cloud-Optimized GeoTIFF unless ``cog`` is False (``--no-cog``).

    Returns:
        The paths written (``out_dir/{prefix}_0000.tif`` ...).

    Raises:
        DataError: a file to write exists and ``overwrite`` is False, or ``out_dir`` is a file.
    """
    out_dir = Path(out_dir)
    targets = check_output_targets(
        sample_tif_paths(out_dir, len(images), prefix), overwrite=overwrite
    )
    scaling = band_info.band_scaling()
    names = band_info.name_list
    out_dir.mkdir(parents=True, exist_ok=True)
    physical = scaling.from_model(images.detach().float().clamp(-1, 1).cpu().numpy())
    if scaling.name == "uint8":
        physical = np.clip(np.rint(physical), 0, 255).astype(np.uint8)
    else:
        physical = physical.astype(np.float32)
    paths = []
    for target, image in zip(targets, physical, strict=True):
        paths.append(
            write_raster(
                target,
                image,
                band_names=list(names) if names and len(names) == image.shape[0] else None,
                overwrite=overwrite,
                tags=tags,
                cog=cog,
            )
        )
    return paths


def synthesize_dataset(
    task: Any,
    out_dir: str | Path,
    per_class: int,
    *,
    spec: Any,
    seed: int = 0,
    batch_size: int = 64,
    classes: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cog: bool = True,
) -> dict[str, list[Path]]:
    """A labelled folder of generated images: ``out_dir/<class>/<class>_0000.tif`` ...

    Draws ``per_class`` images of every class of a class-conditional generation ``task`` (with
    ``spec``, e.g. a guidance scale) and writes them as GeoTIFFs in the training data's units
    (:func:`write_samples_geotiff`), in the layout :class:`~terradiff.data.ImageFolderDataset`
    and most training scripts read. Every file is checked before the first is written. Class
    ``k`` is drawn with the seed ``seed + k``, so one class can be remade alone. The files are
    Cloud-Optimized GeoTIFFs unless ``cog`` is False.

    Raises:
        ConfigError: ``task`` is not class-conditional.
        DataError: an unknown class, or an existing file without ``overwrite``.
    """
    from terradiff.progress import progress_bar

    index = getattr(task, "class_index", None)
    if index is None:
        raise ConfigError(
            "synthesize draws a labelled dataset from a class-conditional generation model "
            "(condition.classes in its config); this checkpoint has no classes"
        )
    # "Forest, Beach" and "Forest,Forest" (which wrote Forest/ and then refused its own file)
    # name each class once, without the spaces
    given = list(index) if classes is None else [name.strip() for name in classes]
    names = list(dict.fromkeys(name for name in given if name))
    for name in names:
        index.lookup(name, where="--classes")
    out_dir = Path(out_dir)
    precision = task.inference_precision()
    for name in names:
        check_output_targets(sample_tif_paths(out_dir / name, per_class, name), overwrite=overwrite)
    written: dict[str, list[Path]] = {}
    for name in progress_bar(names, desc="classes", disable=not progress):
        generator = torch.Generator().manual_seed(seed + index.lookup(name))
        images = []
        for start in range(0, per_class, batch_size):
            n = min(batch_size, per_class - start)
            condition = task.make_condition(n, class_name=name)
            out = task.sample(task.net, n, generator=generator, spec=spec, condition=condition)
            images.append(out.sample.cpu())
        written[name] = write_samples_geotiff(
            torch.cat(images),
            task.band_info,
            out_dir / name,
            prefix=name,
            overwrite=overwrite,
            tags=generation_tags(
                spec, class_name=name, seed=seed + index.lookup(name), precision=precision
            ),
            cog=cog,
        )
    return written


__all__ = [
    "check_sample_checkpoint",
    "check_sample_outputs",
    "generation_tags",
    "sample_tif_paths",
    "synthesize_dataset",
    "write_samples_geotiff",
]
