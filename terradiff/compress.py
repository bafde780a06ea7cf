"""Compress a trained terradiff model: the ``terradiff compress`` verb's work.

An application workflow (it loads checkpoints, builds data loaders, writes Markdown, JSON and
checkpoints) on top of the distillation maths of :mod:`terradiff.distill`.

``compress_carbon_unet`` (``--part unet``) distils the IIDM's denoising UNet
(:mod:`terradiff.distill.kd_unet`): ``OUT/table_a2_unet.md``, ``OUT/kd_unet.json`` and ``OUT/run``
(the IIDM with a narrower UNet, ``model.base_channels`` set).

``compress_carbon_vgg`` distils the VGG extractor of a trained IIDM carbon model into KD-VGG
(:mod:`terradiff.distill.kd_vgg`) on the model's own training data and writes:

* ``OUT/kd_vgg.safetensors`` + ``OUT/kd_vgg.json`` -- the distilled extractor (and what the
  distillation measured: the Table A2 rows, losses, the kept variance);
* ``OUT/table_a2.md`` -- the paper's Table A2 for this extractor (channels, mCEV channels,
  selected) with the KD ratio;
* ``OUT/run/checkpoints/step_*`` -- the teacher's checkpoint with KD-VGG in place of its extractor
  (``carbon.vgg_channels`` set in its config), which ``terradiff estimate`` uses like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from terradiff.checkpoint import save_checkpoint
from terradiff.config import config_from_dict
from terradiff.diffusion import objectives
from terradiff.distill.kd_unet import DenoiserInputs, KDUNetReport, distill_iidm_unet
from terradiff.distill.kd_vgg import KDVGGReport, distill_vgg
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.io import atomic_directory, atomic_write_text
from terradiff.nets.iidm import IIDMNet
from terradiff.nets.vgg import VGGFeatures, save_kd_vgg
from terradiff.tasks import load_task
from terradiff.tasks.carbon import CarbonTask

__all__ = [
    "compress_carbon_unet",
    "compress_carbon_vgg",
    "table_a2_markdown",
    "unet_table_markdown",
]


def _kind(task: Any) -> str:
    """What a loaded model is, for errors: its method (``carbon/iidm``) or its task."""
    return task.method.describe() if isinstance(task, CarbonTask) else task.config.task


def _write_compressed_run(
    task: Any, ckpt: Any, out: Path, config: dict[str, Any], state: dict[str, torch.Tensor]
) -> Path:
    """``OUT/run``: the compressed model as a checkpoint of the teacher's step (weights as both
    model and EMA), checked to load; returns the checkpoint folder."""
    config = {**config, "output_dir": str(out / "run")}
    checkpoint_config = {**task.checkpoint_config(), "config": config}
    step = f"step_{ckpt.step:08d}"
    # written whole beside an earlier OUT/run (replaced only with --overwrite, checked before the
    # work), then moved in: no stale step of an earlier teacher stays to be taken as the latest
    with atomic_directory(out / "run") as run:
        _save_compressed(run / "checkpoints" / step, ckpt, checkpoint_config, state)
        atomic_write_text(run / "config.json", json.dumps(checkpoint_config, indent=2) + "\n")
    path = out / "run" / "checkpoints" / step
    load_task(path)  # the written checkpoint loads (fails loudly otherwise)
    return path


def _save_compressed(
    path: Path, ckpt: Any, checkpoint_config: dict[str, Any], state: dict[str, torch.Tensor]
) -> None:
    """The compressed model's checkpoint at ``path`` (weights as both model and EMA)."""
    save_checkpoint(
        path,
        config=checkpoint_config,
        model_state=state,
        ema_state=state,
        trainer_meta={
            "step": ckpt.step,
            "compressed_from": str(ckpt.path),
            "losses": ckpt.trainer_meta.get("losses", []),
            "train_seconds": ckpt.trainer_meta.get("train_seconds"),
        },
    )


def table_a2_markdown(report: KDVGGReport) -> str:
    """The paper's Table A2 (per convolution: channels, mCEV channels, selected) as Markdown."""
    lines = [
        f"| layer | channels | mCEV channels (>= {report.threshold:.0%}) | selected | mCEV there |",
        "|---|---|---|---|---|",
    ]
    for row in report.layers:
        lines.append(
            f"| {row.layer} | {row.channels} | {row.mcev_channels} | {row.selected} | "
            f"{row.mcev_at_selected:.3f} |"
        )
    lines += [
        "",
        f"Parameters: teacher {report.teacher_parameters:,}, KD-VGG {report.student_parameters:,} "
        f"(KD ratio {report.kd_ratio:.1f}x). Images analysed: {report.images}. Variance kept by "
        "the learned eigenbases (per stage): "
        + ", ".join(f"{v:.3f}" for v in report.basis_kept_variance)
        + ". Relative RMS error of KD-VGG's back-projected features (per stage): "
        + ", ".join(f"{v:.3f}" for v in report.relative_feature_error)
        + "; the floor of these bases (a perfect student): "
        + ", ".join(f"{v:.3f}" for v in report.basis_floor_error)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _check_out(out: str | Path, names: tuple[str, ...], overwrite: bool) -> Path:
    """Refuse an ``out`` that is a file, or that already holds one of ``names`` (the files this
    compression writes, and ``run``) unless ``overwrite``: a second compression into the same
    folder replaced the first one's model without a word."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder for the compressed model")
    held = [name for name in (*names, "run") if (out / name).exists()]
    if held and not overwrite:
        raise DataError(
            f"--out {out} already holds {', '.join(held)} of an earlier compression; pass "
            "--overwrite (overwrite=True from Python) to replace them, or give another folder"
        )
    return out


def _check_counts(basis_epochs: int, **steps: int) -> None:
    """Refuse a pass count below 1 or a step count below 0 (0 skips that training phase), naming
    the ``terradiff compress`` flag; negative counts used to be taken as 0 without a word."""
    if basis_epochs < 1:
        raise ConfigError(
            f"--basis-epochs {basis_epochs} (basis_epochs from Python): the eigenbases need at "
            "least 1 pass over the training crops; pass --basis-epochs 1 or more"
        )
    for name, value in steps.items():
        if value < 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} ({name} from Python): a step count is >= 0 (0 skips that "
                f"phase); pass {flag} 0 or more"
            )


def compress_carbon_vgg(
    run: str | Path,
    out: str | Path,
    *,
    threshold: float = 0.85,
    epochs_of_data: int = 1,
    basis_epochs: int = 3,
    block_steps: int = 300,
    chain_steps: int = 100,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Distil the extractor of the IIDM checkpoint ``run`` into KD-VGG (see the module docstring).

    Args:
        run: The teacher: a carbon ``iidm`` run folder or checkpoint.
        out: Output folder.
        threshold: mCEV threshold in (0, 1].
        epochs_of_data: Passes of the training crops that make one "epoch" of the distillation
            data (more = more random crops per pass).
        basis_epochs, block_steps, chain_steps: See :func:`distill_vgg`.
        progress: Progress bars.
        overwrite: Replace the outputs of an earlier compression in ``out``.

    Returns:
        A summary (paths, widths, parameters, KD ratio).

    Raises:
        WrongCheckpointError: ``run`` is not an IIDM carbon model with a full VGG extractor.
        ConfigError: ``basis_epochs`` < 1 or a step count < 0.
        DataError: ``out`` is a file, or holds an earlier compression and not ``overwrite``.
    """
    _check_counts(basis_epochs, block_steps=block_steps, chain_steps=chain_steps)
    _check_out(out, ("kd_vgg.safetensors", "kd_vgg.json", "table_a2.md"), overwrite)
    task, ckpt = load_task(run, use_ema=True)
    net = task.net
    carbon = isinstance(task, CarbonTask)
    if not carbon or not isinstance(net, IIDMNet) or not isinstance(net.extractor, VGGFeatures):
        kind = _kind(task)
        if carbon and isinstance(net, IIDMNet) and net.extractor is not None:
            kind += " (its extractor is already distilled)"
        raise WrongCheckpointError(
            ckpt.path,
            f"{kind} model",
            "'terradiff compress' distils the VGG extractor of a carbon IIDM model "
            "(carbon.method: iidm, no carbon.vgg_channels)",
        )
    teacher = net.extractor
    dataset = task.dataset("train", train=True)
    batch_size = task.config.train.batch_size
    generator = torch.Generator().manual_seed(task.config.seed)

    def batches() -> Any:
        for _ in range(epochs_of_data):
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
            for batch in loader:
                yield batch["image"]  # invalid pixels are already 0

    kd, report = distill_vgg(
        teacher,
        batches,
        threshold=threshold,
        basis_epochs=basis_epochs,
        block_steps=block_steps,
        chain_steps=chain_steps,
        progress=progress,
    )
    out = Path(out)
    weights = save_kd_vgg(kd, out, {"teacher": str(ckpt.path), **report.to_dict()})
    atomic_write_text(out / "table_a2.md", table_a2_markdown(report))

    config = task.config.to_dict()
    config["carbon"]["vgg_channels"] = report.student_channels
    config["carbon"]["vgg_weights"] = None
    config["carbon"]["kd_vgg"] = None  # the weights are in the checkpoint
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("extractor.")}
    state.update({f"extractor.{k}": v for k, v in kd.state_dict().items()})
    path = _write_compressed_run(task, ckpt, out, config, state)
    return {
        "kd_vgg": str(weights),
        "checkpoint": str(path),
        "vgg_channels": report.student_channels,
        "teacher_parameters": report.teacher_parameters,
        "student_parameters": report.student_parameters,
        "kd_ratio": report.kd_ratio,
        "relative_feature_error": report.relative_feature_error,
        "basis_floor_error": report.basis_floor_error,
    }


def unet_table_markdown(report: KDUNetReport) -> str:
    """Table A2 for a UNet: per level, the channels, mCEV channels (encoder, decoder), selected."""
    lines = [
        f"| level | channels | mCEV channels, encoder (>= {report.threshold:.0%}) | "
        "mCEV channels, decoder | selected |",
        "|---|---|---|---|---|",
    ]
    for row in report.levels:
        lines.append(
            f"| {row.level} | {row.channels} | {row.mcev_encoder} | {row.mcev_decoder} | "
            f"{row.selected} |"
        )
    errors = report.feature_errors
    if errors:
        levels = len(report.levels)
        names = [f"encoder {i}" for i in range(levels)] + [f"decoder {i}" for i in range(levels)]
        lines += [
            "",
            "Feature error of the student read back through the eigenbasis, relative to the "
            "teacher's feature variance (one batch; the floor is the eigenbasis' own error, "
            "which no student of these widths can beat):",
            "",
            "| level | floor | before distillation | after |",
            "|---|---|---|---|",
        ]
        for name, floor, initial, final in zip(
            names, errors["floor"], errors["initial"], errors["final"], strict=True
        ):
            lines.append(f"| {name} | {floor:.3f} | {initial:.3f} | {final:.3f} |")
    lines += [
        "",
        f"UNet parameters: teacher {report.teacher_parameters:,}, KD-UNet "
        f"{report.student_parameters:,} (KD ratio {report.kd_ratio:.1f}x); student base width "
        f"{report.base_channels}. Inputs analysed: {report.images}.",
    ]
    return "\n".join(lines) + "\n"


def compress_carbon_unet(
    run: str | Path,
    out: str | Path,
    *,
    threshold: float = 0.85,
    basis_epochs: int = 2,
    encoder_steps: int = 200,
    decoder_steps: int = 200,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Distil the denoising UNet of the IIDM/IDM checkpoint ``run`` into KD-UNet.

    Writes ``OUT/table_a2_unet.md``, ``OUT/kd_unet.json`` and ``OUT/run`` (the model with
    ``model.base_channels`` set to the selected width and the distilled weights).

    Raises:
        WrongCheckpointError: ``run`` is not a carbon IIDM/IDM model.
        ConfigError: ``basis_epochs`` < 1 or a step count < 0.
        DataError: ``out`` is a file, or holds an earlier compression and not ``overwrite``.
    """
    _check_counts(basis_epochs, encoder_steps=encoder_steps, decoder_steps=decoder_steps)
    _check_out(out, ("kd_unet.json", "table_a2_unet.md"), overwrite)
    task, ckpt = load_task(run, use_ema=True)
    net = task.net
    if not isinstance(task, CarbonTask) or not isinstance(net, IIDMNet):
        raise WrongCheckpointError(
            ckpt.path,
            f"{_kind(task)} model",
            "'terradiff compress --part unet' distils the UNet of a carbon IIDM or IDM model",
        )
    dataset = task.dataset("train", train=True)
    generator = torch.Generator().manual_seed(task.config.seed)
    schedule = task.schedule
    prediction = task.config.diffusion.prediction

    def inputs() -> Any:
        loader = DataLoader(
            dataset, batch_size=task.config.train.batch_size, shuffle=True, generator=generator
        )
        for batch in loader:
            target = batch["target"]
            with torch.no_grad():
                cond, context = net.condition(batch["image"])
            y_t, t, _, truth = objectives.noised_batch(schedule, target, generator, prediction)
            yield DenoiserInputs(y_t, t.float(), truth, cond, context, task.loss_mask(batch))

    def build_student(base: int) -> IIDMNet:
        raw = task.config.to_dict()
        raw["model"]["base_channels"] = base
        student = CarbonTask(config_from_dict(raw), band_info=task.band_info).net
        assert isinstance(student, IIDMNet)
        return student

    student, report = distill_iidm_unet(
        net,
        inputs,
        build_student,
        channel_mults=task.config.model.channel_mults,
        num_groups=task.config.model.num_groups,
        threshold=threshold,
        basis_epochs=basis_epochs,
        encoder_steps=encoder_steps,
        decoder_steps=decoder_steps,
        progress=progress,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table_a2_unet.md", unet_table_markdown(report))
    atomic_write_text(
        out / "kd_unet.json",
        json.dumps({"teacher": str(ckpt.path), **report.to_dict()}, indent=1) + "\n",
    )
    config = task.config.to_dict()
    config["model"]["base_channels"] = report.base_channels
    path = _write_compressed_run(task, ckpt, out, config, student.state_dict())
    return {
        "checkpoint": str(path),
        "base_channels": report.base_channels,
        "teacher_parameters": report.teacher_parameters,
        "student_parameters": report.student_parameters,
        "kd_ratio": report.kd_ratio,
        "levels": report.to_dict()["levels"],
        "feature_errors": report.feature_errors,
    }
