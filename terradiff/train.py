"""One Trainer for every task: accelerate, AdamW + cosine warm-up, EMA, AMP, exact resume.

Read it top to bottom: :meth:`Trainer.fit` is the whole loop.

Exact resume. Every source of randomness is a pure function of ``(seed, step, process)``: the
batch order and augmentation come from :class:`~terradiff.batching.StepBatchSampler` (a
permutation per epoch; with ``data.device_batches`` the crops and flips of a step come from
:func:`~terradiff.data.device_batches.augment_generator`), the timesteps and noise of the loss
from a generator seeded per step, and dropout from the global RNG re-seeded per step. A run
interrupted after step ``k`` and resumed from the checkpoint at ``k`` therefore performs exactly
the same updates as an uninterrupted run (tested on CPU).

Multi-process. The Trainer is built on :class:`accelerate.Accelerator`, so ``accelerate launch`` or
``torchrun`` runs it unchanged on several GPUs or CPU processes (gloo). ``batch_size`` is per
process; each process takes its own slice of the global batch. Only the main process writes files.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import reduce
from torch.utils.data import DataLoader

from terradiff.accelerate_steps import optimizer_step
from terradiff.batching import (
    EpochIndexed,
    StepBatchSampler,
    collate_batch,
    seed_global_generators,
    step_seed,
)
from terradiff.checkpoint import (
    capture_rng_state,
    flatten_optimizer_state,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    unflatten_optimizer_state,
)
from terradiff.config_diff import ARCHITECTURE_SECTIONS, changed_settings, resume_warnings
from terradiff.data.band_info import BandInfo
from terradiff.data.device_batches import DeviceBatchLoader, device_batches_for
from terradiff.ema import EMA
from terradiff.errors import (
    CheckpointError,
    ConfigError,
    StoppedBySignalError,
    TerradiffError,
)
from terradiff.io import atomic_write_text, remove_stale_temporaries
from terradiff.loss_meter import LossMeter
from terradiff.lr_schedule import cosine_warmup_lambda  # terradiff.train's name too
from terradiff.model_card import write_model_card
from terradiff.nets.compile import compile_for_training, compile_plan
from terradiff.nets.memory import set_channels_last
from terradiff.nets.precision import resolve_mixed_precision  # terradiff.train's name too
from terradiff.progress import progress_bar
from terradiff.run_folder import check_run_folder, delete_previous_run
from terradiff.runtime import enable_cudnn_autotuner
from terradiff.signals import StopRequest, deferred_signals
from terradiff.tasks.base import Task

log = logging.getLogger(__name__)


class TrainingError(TerradiffError, RuntimeError):
    """Training cannot go on (non-finite loss, ...); the last good checkpoint is named."""


class SimulatedCrash(RuntimeError):  # noqa: N818 - it is not an error of the user's
    """Raised by ``fit(crash_after_step=k)`` to test resume (a stand-in for ``kill -9``)."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        step: the last step trained (and saved).
        checkpoint: its checkpoint folder.
        losses: ``(step, mean loss)`` of every logged step, resumed runs included.
        seconds: wall time of this call of :meth:`Trainer.fit`.
        stopped_by: ``"max_steps"`` (the run is complete) or ``"max_minutes"`` (the time limit
            stopped it before ``max_steps``; ``--resume latest`` goes on).
        stop_reason: the same in words, for messages: ``"reached train.max_steps=300"`` or
            ``"stopped early by train.max_minutes=5 at step 115 of 300"``.
    """

    step: int
    checkpoint: Path | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "max_steps"
    stop_reason: str = ""


class Trainer:
    """Trains a :class:`terradiff.tasks.base.Task`.

    Args:
        task: what to train (network, loss, dataset, sampler).
        run_dir: where checkpoints, samples, TensorBoard logs and ``metrics.jsonl`` go.
        resume: ``"latest"``, a checkpoint folder, or None for a fresh run.
        accelerator: an existing Accelerator (one is made from the config otherwise).
        overwrite: a fresh run may replace a previous run in ``run_dir`` (moved aside, then
            deleted, when :meth:`fit` starts); without it a fresh run refuses a folder that
            holds one.

    Raises:
        ConfigError: ``resume`` and ``overwrite`` together (they contradict each other).
    """

    config_path: str | Path | None = None
    """The config file of the run, named in the "continue with" hint when a signal stops
    :meth:`fit` (``CONFIG`` when unset); ``terradiff train`` sets it."""
    config_overrides: tuple[str, ...] = ()
    """The ``--set`` items of the run, shown with ``config_path`` in its model card."""

    def __init__(
        self,
        task: Task,
        run_dir: str | Path,
        *,
        resume: str | None = None,
        accelerator: Accelerator | None = None,
        overwrite: bool = False,
    ) -> None:
        if resume is not None and overwrite:
            raise ConfigError(
                f"--resume {resume} continues the run in {run_dir} and --overwrite deletes it; "
                "pass only one of them"
            )
        self.task = task
        self.config = task.config
        self.train_cfg = task.config.train
        self.run_dir = Path(run_dir)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=resolve_mixed_precision(self.train_cfg.mixed_precision),
            # without a GPU, torchrun/accelerate-launch processes join one gloo group on the CPU
            cpu=not torch.cuda.is_available(),
        )
        self.resume = resume
        self.overwrite = overwrite
        self.step = 0
        self.losses: list[tuple[int, float]] = []
        self._seconds_before = 0.0  # training time of the runs this one resumes
        self._fit_start: float | None = None

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self, net: torch.nn.Module) -> torch.optim.Optimizer:
        cfg = self.train_cfg
        # one fused kernel for the whole update on CUDA (torch's fused AdamW); CPU keeps the
        # default multi-tensor implementation, whose results the committed runs were made with
        fused = True if self.accelerator.device.type == "cuda" else None
        return torch.optim.AdamW(
            net.parameters(),
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
            fused=fused,
        )

    def _resume_checkpoint(self) -> Path | None:
        if self.resume is None:
            return None
        if self.resume == "latest":
            found = list_checkpoints(self.run_dir)
            if not found:
                raise CheckpointError(
                    f"--resume latest: no complete checkpoint under {self.run_dir}/checkpoints; "
                    "start without --resume, or give the checkpoint folder"
                )
            return found[-1]
        return Path(self.resume)

    def _restore(
        self,
        path: Path,
        net: torch.nn.Module,
        ema: EMA,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
    ) -> None:
        ckpt = load_checkpoint(path, with_trainer_state=True)
        saved_bands = BandInfo.from_dict(ckpt.config.get("bands"), f"{ckpt.path}/config.json")
        if saved_bands.count != self.task.band_info.count:
            raise CheckpointError(
                f"checkpoint {ckpt.path} was trained on {saved_bands.describe()}, this run has "
                f"{self.task.band_info.describe()}; resume with the same data.bands"
            )
        saved, current = ckpt.config.get("config") or {}, self.config.to_dict()
        try:
            net.load_state_dict(ckpt.model_state)
            if ckpt.ema_state is not None:
                ema.load_state_dict(ckpt.ema_state, int(ckpt.trainer_meta.get("ema_updates", 0)))
        except RuntimeError as error:  # torch lists every mismatched tensor: name the settings
            changed = changed_settings(saved, current, ARCHITECTURE_SECTIONS)
            raise CheckpointError(
                f"checkpoint {ckpt.path} does not fit this model config ("
                + ("; ".join(changed) or str(error).splitlines()[0])
                + "): resume with the checkpoint's settings, or start a new run elsewhere"
            ) from None
        for warning in resume_warnings(saved, current):
            log.warning("%s", warning)
        meta = ckpt.trainer_meta
        optimizer.load_state_dict(
            unflatten_optimizer_state(ckpt.trainer_tensors, meta["optimizer"])
        )
        scheduler.load_state_dict(meta["scheduler"])
        restore_rng_state(ckpt.trainer_tensors, meta.get("rng", {}))
        self.step = int(meta["step"])
        self.losses = [(int(s), float(v)) for s, v in meta.get("losses", [])]
        self._seconds_before = float(meta.get("train_seconds", 0.0))
        log.info("resumed from %s at step %d", ckpt.path, self.step)

    def preflight(self) -> None:
        """Refuse now what would otherwise fail after the run folder is made (or spoil a run).

        :meth:`fit` calls it before it writes anything. It checks the data against the config
        (``data.rgb_bands`` against the band count, ``data.image_size`` against the network's
        down-sampling, one global batch of images), the task's own checks
        (:meth:`~terradiff.tasks.base.Task.check_training`, e.g. the files a loss term reads) and
        the run folder: a folder that already
        holds a run is refused unless ``resume`` continues it or ``overwrite`` replaces it, and
        ``overwrite`` never deletes a folder holding files that a run does not write.

        Raises:
            ConfigError: a setting that does not fit the data (or ``train.compile=graphs`` with
                several processes), or an occupied run folder.
            TrainingError: fewer images than one global batch.
        """
        data = self.config.data
        count = self.task.num_bands
        rgb = data.rgb_bands
        if rgb is not None and max(rgb) >= count:
            names = list(self.task.band_info.names)
            default = [0, 1, 2] if count >= 3 else [0]
            raise ConfigError(
                f"data.rgb_bands {rgb} picks band {max(rgb)}, but the data under {data.root} has "
                f"{count} bands {names} (indices 0..{count - 1}); choose e.g. "
                f"data.rgb_bands={default}, or null for the first three bands"
            )
        factor = int(getattr(self.task.net, "downsample_factor", 1))
        if data.image_size % factor:
            below = max(factor, (data.image_size // factor) * factor)
            raise ConfigError(
                f"data.image_size={data.image_size} is not a multiple of {factor}, which this "
                f"{self.config.task} network needs (it halves the size on the way down); choose "
                f"data.image_size={below} or {below + factor}"
            )
        if self.train_cfg.compile == "graphs" and self.accelerator.num_processes > 1:
            raise ConfigError(
                "train.compile=graphs replays one process's CUDA graphs; with "
                f"{self.accelerator.num_processes} processes use train.compile=on"
            )
        size = len(self.task.build_dataset())  # type: ignore[arg-type]
        batch = self.train_cfg.batch_size * self.accelerator.num_processes
        if size < batch:
            raise TrainingError(
                f"the dataset under {data.root} has {size} training items, fewer than one global "
                f"batch ({self.train_cfg.batch_size} x {self.accelerator.num_processes} "
                f"processes); lower train.batch_size to at most "
                f"{max(1, size // self.accelerator.num_processes)}"
            )
        self.task.check_training()
        self._check_run_dir()

    def _check_run_dir(self) -> None:
        """Refuse a fresh run in a folder holding one (:func:`.run_folder.check_run_folder`)."""
        if self.accelerator.is_main_process:  # what a kill -9 during --overwrite left
            remove_stale_temporaries(self.run_dir.parent)
        self.accelerator.wait_for_everyone()
        check_run_folder(self.run_dir, resume=self.resume is not None, overwrite=self.overwrite)

    def _replace_previous_run(self) -> None:
        """With ``overwrite``: the previous run is deleted (moved aside in one rename first)."""
        if self.overwrite and self.accelerator.is_main_process:
            delete_previous_run(self.run_dir)
        self.accelerator.wait_for_everyone()

    def _elapsed(self) -> float:
        """Seconds of training in this call of :meth:`fit` so far."""
        return 0.0 if self._fit_start is None else time.monotonic() - self._fit_start

    # ------------------------------------------------------------------ saving
    def _save(
        self,
        net: torch.nn.Module,
        ema: EMA,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
    ) -> Path | None:
        self.accelerator.wait_for_everyone()
        path = self.run_dir / "checkpoints" / f"step_{self.step:08d}"
        if self.accelerator.is_main_process:
            opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
            rng_tensors, rng_meta = capture_rng_state()
            meta = {
                "step": self.step,
                "ema_updates": ema.num_updates,
                "optimizer": opt_meta,
                "scheduler": scheduler.state_dict(),
                "rng": rng_meta,
                "losses": self.losses,
                "train_seconds": round(self._seconds_before + self._elapsed(), 2),
                "num_processes": self.accelerator.num_processes,
                "mixed_precision": self.accelerator.mixed_precision,
            }
            save_checkpoint(
                path,
                config=self.task.checkpoint_config(),
                model_state=self.accelerator.unwrap_model(net).state_dict(),
                ema_state=ema.state_dict(),
                trainer_tensors={**opt_tensors, **rng_tensors},
                trainer_meta=meta,
            )
            prune_checkpoints(self.run_dir, self.train_cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    def _save_samples(self, ema: EMA) -> None:
        if not self.accelerator.is_main_process:
            return
        from terradiff.viz import save_image_grid

        generator = torch.Generator().manual_seed(self.config.seed)
        images = self.task.preview(ema.shadow, self.train_cfg.num_sample_images, generator)
        save_image_grid(
            images.float().cpu(),
            self.run_dir / "samples" / f"step_{self.step:08d}.png",
            nrow=self.task.preview_columns,
            rgb_bands=self.task.preview_rgb_bands,
        )

    # ------------------------------------------------------------------ loop
    def fit(self, *, crash_after_step: int | None = None) -> TrainResult:
        """Train until ``max_steps`` (or ``max_minutes``); return the last checkpoint.

        Args:
            crash_after_step: testing aid: raise :class:`SimulatedCrash` right after this step,
                before any checkpoint of that step is written (a stand-in for ``kill -9``).

        SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, a scheduler) do not cut a step
        short: the step in progress ends, is checkpointed and logged, and then
        :class:`~terradiff.errors.StoppedBySignalError` says where (``terradiff`` exits with
        130/143). With several processes the stop (and the time limit) is agreed on every
        ``train.log_every`` steps, so all stop after the same step, at most that many steps
        after the signal. A second signal stops at once (:mod:`terradiff.signals`).

        Raises:
            ConfigError: see :meth:`preflight`, or data.device_batches=on for a dataset it
                cannot serve (nothing is written then).
            StoppedBySignalError: a signal stopped training after the step it names, saved.
            TrainingError: the loss became NaN/inf (the last good checkpoint is named).
        """
        self.preflight()
        device_batches = device_batches_for(  # before anything is written: `on` may refuse
            self.config.data, self.task.build_dataset(), self.accelerator.device
        )
        self._replace_previous_run()
        cfg = self.train_cfg
        acc = self.accelerator
        net = self.task.net
        set_channels_last(net, cfg.channels_last)
        net.to(acc.device)
        optimizer = self._build_optimizer(net)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, cosine_warmup_lambda(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        )
        ema = EMA(net, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        resume_from = self._resume_checkpoint()
        if resume_from is not None:
            self._restore(resume_from, net, ema, optimizer, scheduler)
        if acc.device.type == "cuda":  # one crop shape: time cuDNN's algorithms once
            enable_cudnn_autotuner()
        # after the EMA copy (the shadow stays eager); with CUDA graphs each step starts marked
        step_begin = compile_for_training(net, compile_plan(cfg.compile, acc.device))
        net, optimizer = acc.prepare(net, optimizer)

        dataset = self.task.build_dataset()
        batch_sampler = StepBatchSampler(
            len(dataset),
            cfg.batch_size,
            seed=self.config.seed,
            start_step=self.step,
            max_steps=cfg.max_steps,
            num_processes=acc.num_processes,
            process_index=acc.process_index,
        )
        loader: DataLoader | DeviceBatchLoader
        if device_batches is not None:  # crops, flips and scaling as batched device ops
            loader = DeviceBatchLoader(device_batches, batch_sampler)
        else:
            loader = DataLoader(
                EpochIndexed(dataset),
                batch_sampler=batch_sampler,
                num_workers=cfg.num_workers,
                collate_fn=collate_batch,
            )
        writer = None
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.run_dir / "config.json",
                json.dumps(self.task.checkpoint_config(), indent=2) + "\n",
            )
            if resume_from is not None:  # the checkpoint's history is authoritative
                atomic_write_text(
                    self.run_dir / "metrics.jsonl",
                    "".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in self.losses),
                )
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tensorboard"))

        if acc.is_main_process:  # what a run killed here before (kill -9, power cut) left
            for folder in (self.run_dir, self.run_dir / "checkpoints", self.run_dir / "samples"):
                remove_stale_temporaries(folder)
        start_time = self._fit_start = time.monotonic()
        last_checkpoint: Path | None = resume_from
        stopped_by = "max_steps"
        meter = LossMeter(acc.device)  # losses stay on the device until a log point
        progress = progress_bar(
            total=cfg.max_steps,
            initial=self.step,
            desc="train",
            disable=not (cfg.progress and acc.is_main_process),
            unit="step",
            items_per_unit=cfg.batch_size * acc.num_processes,
        )
        net.train()
        unwrapped, parameters = acc.unwrap_model(net), list(net.parameters())  # once, not per step
        step_optimizer = optimizer_step(acc, optimizer)
        # SIGINT/SIGTERM only ask to stop: the step in progress ends, is saved, then we stop
        with deferred_signals() as request:
            try:
                for batch in loader:
                    seed = step_seed(self.config.seed, self.step, acc.process_index)
                    seed_global_generators(seed, acc.device)
                    generator = torch.Generator().manual_seed(seed)
                    batch = {
                        k: v.to(acc.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()
                    }
                    step_begin()
                    with acc.autocast():
                        loss = self.task.training_loss(net, batch, generator)
                    meter.add(loss, self.step + 1)
                    acc.backward(loss)
                    if cfg.grad_clip is not None:
                        acc.clip_grad_norm_(parameters, cfg.grad_clip)
                    step_optimizer()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if self.step >= cfg.ema_start_step:
                        ema.update(unwrapped)
                    else:
                        ema.copy_from(unwrapped)
                    self.step += 1
                    progress.update(1)

                    out_of_time = cfg.max_minutes is not None and (
                        time.monotonic() - start_time > 60.0 * cfg.max_minutes
                    )
                    # several processes agree by a collective (a device sync): every log_every
                    # steps only; one process needs no agreement and checks every step
                    if acc.num_processes == 1 or self.step % cfg.log_every == 0:
                        out_of_time, signum = self._agree_on_stop(out_of_time, request)
                    else:
                        out_of_time, signum = False, 0
                    stopping = out_of_time or signum > 0
                    saving = self.step % cfg.save_every == 0 or self.step == cfg.max_steps
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps or stopping:
                        mean_loss = self._checked_mean(meter, last_checkpoint, flush=True)
                        self.losses.append((self.step, mean_loss))
                        progress.set_postfix(
                            loss=f"{mean_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}"
                        )
                        if writer is not None:
                            writer.add_scalar("train/loss", mean_loss, self.step)
                            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], self.step)
                            record: dict[str, Any] = {"step": self.step, "loss": mean_loss}
                            if signum:
                                record["stopped_by"] = signal.Signals(signum).name
                            elif out_of_time and self.step < cfg.max_steps:
                                record["stopped_by"] = "max_minutes"
                            with open(self.run_dir / "metrics.jsonl", "a") as handle:
                                handle.write(json.dumps(record) + "\n")
                    if crash_after_step is not None and self.step >= crash_after_step:
                        raise SimulatedCrash(f"simulated crash after step {self.step}")

                    if saving or stopping:
                        self._checked_mean(meter, last_checkpoint)  # never save a NaN state
                        last_checkpoint = self._save(net, ema, optimizer, scheduler)
                    if signum:  # no preview grid: a scheduler's grace period is short
                        raise self._stopped(signum, last_checkpoint)
                    if self.step % cfg.sample_every == 0:
                        self._checked_mean(meter, last_checkpoint)  # no grid of NaN weights
                        self._save_samples(ema)
                    if out_of_time:
                        if self.step < cfg.max_steps:
                            stopped_by = "max_minutes"
                        break
            finally:
                progress.close()
                if writer is not None:
                    writer.close()
            if last_checkpoint is None or (
                last_checkpoint.name != f"step_{self.step:08d}" and self.step > 0
            ):
                self._checked_mean(meter, last_checkpoint)  # never save a NaN-trained state
                last_checkpoint = self._save(net, ema, optimizer, scheduler)
            if request.signum is not None:  # came after the last step's check: all is saved
                raise self._stopped(request.signum, last_checkpoint)
        self.ema = ema
        if stopped_by == "max_minutes":
            stop_reason = (
                f"stopped early by train.max_minutes={cfg.max_minutes:g} at step {self.step} of "
                f"{cfg.max_steps}"
            )
        else:
            stop_reason = f"reached train.max_steps={cfg.max_steps}"
        result = TrainResult(
            step=self.step,
            checkpoint=last_checkpoint,
            losses=list(self.losses),
            seconds=time.monotonic() - start_time,
            stopped_by=stopped_by,
            stop_reason=stop_reason,
        )
        write_model_card(self, result)  # README.md of the run folder (main process)
        return result

    def _checked_mean(
        self, meter: LossMeter, last_checkpoint: Path | None, *, flush: bool = False
    ) -> float:
        """The mean loss since the last log point (one host sync; ``flush`` starts a new log
        window), or a :class:`TrainingError` if one of those steps had a NaN/inf loss: nothing
        is saved then, and the last good checkpoint is named. No steps: a NaN mean."""
        window = meter.flush() if flush else meter.check()
        if window is None:
            return float("nan")
        if not window.finite:
            raise TrainingError(
                f"loss is not finite (NaN/inf) at step {window.first_bad_step} (found at step "
                f"{window.last_step}); stopped without saving. The last good checkpoint is "
                f"{last_checkpoint or '(none yet)'}; lower train.lr or use "
                "train.mixed_precision=no, then --resume it"
            )
        return window.mean

    def _agree_on_stop(self, out_of_time: bool, request: StopRequest) -> tuple[bool, int]:
        """Whether every process stops after this step: (time is up, signal number or 0).

        With several processes the flags are combined by one small all-reduce (max) at each
        check (every ``train.log_every`` steps): one process out of time or signalled stops
        them all, at the same step, so that all of them reach the checkpoint save.
        """
        signum = request.signum or 0
        if self.accelerator.num_processes == 1:
            return out_of_time, signum
        flags = torch.tensor([float(out_of_time), float(signum)], device=self.accelerator.device)
        time_up, agreed = reduce(flags, reduction="max").tolist()
        return bool(time_up), int(agreed)

    def _stopped(self, signum: int, checkpoint: Path | None) -> StoppedBySignalError:
        """The error that ends :meth:`fit` after a signal (its checkpoint is saved)."""
        name = signal.Signals(signum).name
        if self.step >= self.train_cfg.max_steps:
            tail = "training is complete"
        else:
            tail = (
                f"continue with: terradiff train {self.config_path or 'CONFIG'} "
                f"--output-dir {self.run_dir} --resume latest"
            )
        return StoppedBySignalError(
            signum,
            f"stopped by {name} at step {self.step} of {self.train_cfg.max_steps}; checkpoint "
            f"saved to {checkpoint}; {tail}",
        )
