"""What each ``terradiff`` verb does, given its parsed arguments (:mod:`terradiff.cli` parses).

One function per verb, ``VERB_command(args) -> exit code`` (the whole-raster verbs' are in
:mod:`terradiff.map_commands`): each loads what the verb needs and calls the library (training,
sampling, evaluation, compression); heavy imports happen inside, so ``terradiff --help`` stays
fast. No maths here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from terradiff.io import atomic_write_text


def train_command(args: argparse.Namespace) -> int:
    from terradiff.config_loading import load_config
    from terradiff.tasks import build_task
    from terradiff.train import Trainer

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_config(args.config, overrides)
    task = build_task(config)
    trainer = Trainer(task, config.output_dir, resume=args.resume, overwrite=args.overwrite)
    trainer.config_path = args.config  # named in the "continue with" hint of a stopped run
    trainer.config_overrides = tuple(overrides)  # shown in the run's model card (README.md)
    result = trainer.fit()
    print(
        f"trained {config.task} '{config.name}' to step {result.step} "
        f"({result.seconds / 60:.1f} min, {result.stop_reason}); checkpoint: {result.checkpoint}"
    )
    return 0


def sample_command(args: argparse.Namespace) -> int:
    import torch

    from terradiff.sampling_io import check_sample_checkpoint, check_sample_outputs, generation_tags
    from terradiff.tasks import load_task
    from terradiff.viz import save_chain_figure, save_image_grid

    check_sample_checkpoint(args.checkpoint)
    check_sample_outputs(
        args.n, args.out, chain=args.chain, tif_dir=args.tif_dir, overwrite=args.overwrite
    )
    task, _ = load_task(
        args.checkpoint, use_ema=not args.no_ema, device=args.device or "auto", data_root=args.data
    )
    task.use_fast(args.fast)
    task.use_precision(args.precision)
    generator = torch.Generator().manual_seed(args.seed)
    spec = task.sampling_spec(args.sampler, args.steps, guidance=args.guidance)
    if args.chain is not None and (spec is None or not task.keeps_trajectories):
        from terradiff.errors import ConfigError

        why = "a one-pass model" if spec is None else f"a {task.config.task!r} model"
        raise ConfigError(
            f"--chain draws the denoising steps of a generation or super-resolution diffusion "
            f"model; {args.checkpoint} is {why}, whose sampling keeps no steps: leave --chain out"
        )
    request = {"class": args.class_name, "metadata": parse_metadata(args.metadata)}
    extra: dict[str, Any] = {}
    if any(request.values()) or args.guidance is not None:
        make_condition = getattr(task, "make_condition", None)
        if make_condition is None:
            from terradiff.errors import ConfigError

            raise ConfigError(
                f"--class/--metadata/--guidance steer a conditional generation model; "
                f"{args.checkpoint} is a {task.config.task!r} model"
            )
        extra["condition"] = make_condition(
            args.n, class_name=args.class_name, metadata=request["metadata"]
        )
    batch = args.n if args.batch_size is None else min(args.batch_size, args.n)
    condition = extra.pop("condition", None)
    if batch < args.n and condition is None:
        if getattr(task, "make_condition", None) is None:
            from terradiff.errors import ConfigError

            raise ConfigError(
                f"--batch-size draws a generation model's images in parts; {args.checkpoint} is "
                f"a {task.config.task!r} model, whose --n images come from its data: leave "
                "--batch-size out"
            )
        condition = task.make_condition(args.n)  # type: ignore[attr-defined]
    parts, trajectory = [], None
    for start in range(0, args.n, batch):  # one noise stream: images depend on --batch-size
        stop = min(start + batch, args.n)
        if condition is not None:
            extra["condition"] = condition.rows(start, stop)
        out = task.sample(
            task.net,
            stop - start,
            generator=generator,
            spec=spec,
            return_trajectory=args.chain is not None and start == 0,
            progress=True,
            **extra,
        )
        parts.append(out.sample.cpu())
        if start == 0:
            trajectory = out.trajectory
    rgb = task.config.data.rgb_bands
    out_path = Path(args.out)
    samples = torch.cat(parts)
    precision = task.inference_precision()
    tags = generation_tags(
        spec,
        class_name=args.class_name,
        metadata=request["metadata"],
        seed=args.seed,
        checkpoint=args.checkpoint,
        precision=precision,
    )
    save_image_grid(samples, out_path, rgb_bands=rgb, text=tags)
    record = {
        "checkpoint": str(args.checkpoint),
        "data_root": task.config.data.root,
        "n": args.n,
        "batch_size": batch,  # one noise stream: the images depend on it
        "seed": args.seed,
        "sampling": None if spec is None else spec.to_dict(),
        "inference_precision": precision,
        "condition": request,
    }
    atomic_write_text(out_path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    how = f"{spec.sampler}, {spec.steps} steps" if spec is not None else "one pass"
    if spec is not None and spec.guidance is not None:
        how += f", guidance {spec.guidance:g}"
    how += f", {precision}"
    print(f"wrote {args.n} samples ({how}) to {out_path} (settings in {out_path.stem}.json)")
    if args.chain is not None:
        save_chain_figure(trajectory, Path(args.chain), rgb_bands=rgb)
        print(f"wrote the denoising chain to {args.chain}")
    if args.tif_dir is not None:
        from terradiff.sampling_io import write_samples_geotiff

        paths = write_samples_geotiff(
            samples,
            task.band_info,
            Path(args.tif_dir),
            overwrite=args.overwrite,
            tags=tags,
            cog=not args.no_cog,
        )
        print(f"wrote {len(paths)} GeoTIFFs in physical units to {args.tif_dir}")
    return 0


def synthesize_command(args: argparse.Namespace) -> int:
    from terradiff.sampling_io import check_sample_checkpoint, synthesize_dataset
    from terradiff.tasks import load_task

    check_sample_checkpoint(args.checkpoint)
    task, _ = load_task(args.checkpoint, use_ema=True, device=args.device or "auto")
    task.use_precision(args.precision)
    spec = task.sampling_spec(args.sampler, args.steps, guidance=args.guidance)
    classes = args.classes.split(",") if args.classes else None
    written = synthesize_dataset(
        task,
        Path(args.out),
        args.per_class,
        spec=spec,
        seed=args.seed,
        batch_size=args.batch_size,
        classes=classes,
        overwrite=args.overwrite,
        cog=not args.no_cog,
    )
    record = {
        "checkpoint": str(args.checkpoint),
        "per_class": args.per_class,
        "seed": args.seed,
        "sampling": spec.to_dict() if spec is not None else None,
        "classes": {name: len(paths) for name, paths in written.items()},
    }
    atomic_write_text(Path(args.out) / "synthesize.json", json.dumps(record, indent=2) + "\n")
    total = sum(len(paths) for paths in written.values())
    print(
        f"wrote {total} images of {len(written)} classes to {args.out} (settings in "
        "synthesize.json)"
    )
    return 0


def parse_metadata(text: str | None) -> dict[str, float | str] | None:
    """``--metadata month=7,gsd=10`` as ``{"month": 7.0, "gsd": 10.0}`` (checked by the model's
    metadata schema; non-numbers such as dates stay strings)."""
    if not text:
        return None
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            from terradiff.errors import ConfigError

            raise ConfigError(
                f"--metadata {text!r}: {item!r} is not KEY=VALUE; write e.g. month=7,gsd=10"
            )
        try:
            pairs[key.strip()] = float(value)
        except ValueError:
            pairs[key.strip()] = value.strip()  # e.g. date=2019-07-04
    return pairs


def _without(record: Any, keys: tuple[str, ...]) -> Any:
    """``record`` without the entries named ``keys`` at any depth (a summary for the terminal)."""
    if isinstance(record, dict):
        return {k: _without(v, keys) for k, v in record.items() if k not in keys}
    return record


EVALUATE_OPTIONS_READ: dict[str, frozenset[str]] = {
    "generation": frozenset({"n", "sampler", "steps", "guidance", "encoder", "encoder_weights"}),
    "super_resolution": frozenset(
        {
            "n",
            "sampler",
            "steps",
            "scale",
            "image_size",
            "lpips_weights",
            "distance_encoder",
            "ensemble",
        }
    ),
    "temporal": frozenset({"n", "sampler", "steps", "guidance"}),
    "change": frozenset({"split", "threshold"}),
    "carbon": frozenset({"split", "sampler", "steps", "ensemble"}),
}
"""The ``evaluate`` options (beyond ``--data``, ``--seed``, ``--device``, ``--precision`` and
``--out``, which every task reads) that each task's evaluation reads."""


def refuse_unread_evaluate_options(args: argparse.Namespace, task_name: str | None) -> None:
    """A :class:`ConfigError` for an ``evaluate`` option that the checkpoint's task would ignore
    (``--guidance`` of a super-resolution model, ``--scale`` of a generator): silently dropped,
    it would make the user believe the scores were measured with it."""
    from terradiff.errors import ConfigError

    read = EVALUATE_OPTIONS_READ.get(task_name or "generation")  # no task: an early generator
    if read is None:
        return
    defaults = {"ensemble": 1}
    for name in sorted(set().union(*EVALUATE_OPTIONS_READ.values()) - read):
        value = getattr(args, name)
        if value is not None and value != defaults.get(name):
            flag = "--" + name.replace("_", "-")
            users = [t for t, options in EVALUATE_OPTIONS_READ.items() if name in options]
            raise ConfigError(
                f"{flag} is read when evaluating {' and '.join(users)} models; "
                f"{args.checkpoint} is a {task_name!r} checkpoint: drop {flag}"
            )


def evaluate_command(args: argparse.Namespace) -> int:
    from terradiff.checkpoint import read_checkpoint_config
    from terradiff.evaluate import evaluate_checkpoint
    from terradiff.sr_evaluate import evaluate_super_resolution

    saved = read_checkpoint_config(args.checkpoint)  # a broken one is named by load_task
    task_name = saved.get("task") if isinstance(saved, dict) else None
    refuse_unread_evaluate_options(args, task_name)
    if task_name == "carbon":
        from terradiff.carbon_evaluate import evaluate_carbon

        result = evaluate_carbon(
            args.checkpoint,
            split=args.split or "test",
            data_root=args.data,
            ensemble=args.ensemble,
            sampler=args.sampler,
            steps=args.steps,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
        )
    elif task_name == "change":
        from terradiff.evaluate import evaluate_change

        result = evaluate_change(
            args.checkpoint,
            data_root=args.data,
            threshold=args.threshold,
            split=args.split or "test",
            device=args.device,
            precision=args.precision,
        )
    elif task_name == "temporal":
        from terradiff.temporal_evaluate import evaluate_temporal

        result = evaluate_temporal(
            args.checkpoint,
            data_root=args.data,
            max_windows=args.n,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
        )
    elif task_name == "super_resolution":
        result = evaluate_super_resolution(
            args.checkpoint,
            num_images=args.n or 64,
            sampler=args.sampler,
            steps=args.steps,
            seed=args.seed,
            data_root=args.data,
            scale=args.scale,
            image_size=args.image_size,
            lpips_weights=args.lpips_weights,
            distance_encoder=args.distance_encoder,
            device=args.device,
            precision=args.precision,
            ensemble=args.ensemble,
        )
    else:
        result = evaluate_checkpoint(
            args.checkpoint,
            num_samples=args.n,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            encoder=args.encoder,
            encoder_weights=args.encoder_weights,
            seed=args.seed,
            data_root=args.data,
            device=args.device,
            precision=args.precision,
        )
    long_lists = ("per_image", "per_window", "per_window_scores")  # the terminal: a summary
    print(json.dumps(_without(result, long_lists), indent=2))
    kept = [k for k in long_lists if k in result]
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}" + (f" (with {', '.join(kept)})" if kept else ""))
    elif kept:
        print(f"({', '.join(kept)} values not shown: --out FILE writes them)")
    if "f1_optimal_threshold" in result:
        print(threshold_hint(result))
    if task_name == "carbon":
        print(carbon_hint(result))
    return 0


def compare_hint(teacher: str | Path, student: str | Path) -> str:
    """How to check a compressed model against its teacher on chips neither was tuned on."""
    return (
        "  compare with the teacher on the validation chips (choose step counts there):\n"
        f"    terradiff evaluate {teacher} --split val\n"
        f"    terradiff evaluate {student} --split val"
    )


def carbon_hint(result: dict[str, Any]) -> str:
    """The carbon evaluation in one line: the model against the constant map, and what the
    split may be used for."""
    rmse, diff = result["model"]["rmse"], result["model_minus_constant"]["rmse"]
    line = (
        f"RMSE {rmse['mean']:.2f} [{rmse['low']:.2f}, {rmse['high']:.2f}] on "
        f"{result['forest_pixels']:,} forest pixels of {len(result['chips'])} {result['split']} "
        f"chip(s); minus the constant map {diff['mean']:+.2f} [{diff['low']:+.2f}, "
        f"{diff['high']:+.2f}]: {result['reading']['rmse_vs_constant']}"
    )
    if result["split"] == "test":
        line += (
            "\n(choose checkpoints and settings with --split val; the test chips score the "
            "final choice once)"
        )
    return line


def threshold_hint(result: dict[str, Any]) -> str:
    """What a change evaluation's F1-optimal threshold may be used for: on the training tiles,
    a threshold to map with; on the test tiles, an oracle bound only."""
    best = result["f1_optimal_threshold"]
    if math.isnan(best):
        return "no changed pixel on these tiles: F1 cannot choose a threshold here"
    if result.get("split") == "train":
        return (
            f"F1-optimal threshold on the training tiles: {best:g} (F1 "
            f"{result['f1_at_optimal_threshold']:.3f} there); map with it: terradiff change ... "
            f"--threshold {best:g}"
        )
    return (
        f"f1_optimal_threshold {best:g} is chosen on the tiles it scores: an upper bound, not a "
        "result; choose a threshold on the training tiles with --split train"
    )


def export_diffusers_command(args: argparse.Namespace) -> int:
    from terradiff.interop.diffusers_run import export_diffusers

    out = export_diffusers(args.run, args.out, use_ema=not args.no_ema, overwrite=args.overwrite)
    print(f"wrote a diffusers UNet2DModel + scheduler folder to {out}")
    return 0


def import_diffusers_command(args: argparse.Namespace) -> int:
    from terradiff.interop.diffusers_run import import_diffusers

    checkpoint = import_diffusers(
        args.folder,
        args.out,
        scheduler=args.scheduler,
        data_root=args.data_root,
        bands=args.bands.split(",") if args.bands else None,
        scaling=args.scaling,
        image_size=args.image_size,
        overwrite=args.overwrite,
    )
    print(f"wrote the run {args.out} (checkpoint {checkpoint}); try: terradiff sample {args.out}")
    return 0


def info_command(args: argparse.Namespace) -> int:
    from terradiff.checkpoint import load_checkpoint
    from terradiff.config_methods import SECTION_TASKS
    from terradiff.run_paths import training_folder
    from terradiff.tasks import checkpoint_experiment

    ckpt = load_checkpoint(args.checkpoint)
    config, bands = checkpoint_experiment(ckpt)
    trained_in = training_folder(ckpt.path, ckpt.config)
    saved_root = ckpt.config["config"].get("data", {}).get("root")
    data_line = f"data         {saved_root}"
    if config.data.root != saved_root:
        data_line += f" -> {config.data.root} (relative to the training folder)"
    if not Path(config.data.root).exists():
        data_line += " (not found from here: give sample/evaluate --data DIR)"
    cfg = config.to_dict()
    section = {task: name for name, task in SECTION_TASKS.items()}.get(config.task)
    method = cfg.get(section) if section else None
    if isinstance(method, dict):  # records filled by training (a generator's config) are long
        method = {k: v for k, v in method.items() if not isinstance(v, dict)}
    n_params = sum(v.numel() for v in ckpt.model_state.values())
    losses = ckpt.trainer_meta.get("losses", [])
    lines = [
        f"checkpoint   {ckpt.path}",
        f"task         {config.task}  (terradiff {ckpt.config.get('terradiff_version')})",
        f"method       {json.dumps(method)}" if isinstance(method, dict) else "",
        f"step         {ckpt.step}",
        f"last loss    {losses[-1][1]:.5f}" if losses else "last loss    -",
        f"bands        {bands.count}  {list(bands.names)}  scaling={bands.scaling}",
        data_line,
        f"trained in   {trained_in}" if trained_in is not None else "",
        f"image size   {config.data.image_size}",
        f"parameters   {n_params:,}",
        f"EMA weights  {'yes' if ckpt.ema_state is not None else 'no'}",
        f"schedule     {json.dumps(cfg['diffusion'])}",
        f"model        {json.dumps(cfg['model'])}",
        f"sampler      {json.dumps(cfg['sample'])}",
        f"condition    {json.dumps(cfg['condition'])}" if cfg.get("condition") else "",
    ]
    print("\n".join(line for line in lines if line))
    return 0


def carbon_prepare_command(args: argparse.Namespace) -> int:
    from terradiff.carbon.prepare import prepare_biomassters

    chips = prepare_biomassters(
        args.root,
        args.out,
        chips=args.chips,
        method=args.method,
        cloud_threshold=args.cloud_threshold,
        min_clear_fraction=args.min_clear,
        carbon_fraction=args.carbon_fraction,
        overwrite=args.overwrite,
    )
    print(f"prepared {len(chips)} chip(s) under {args.out} (see {args.out}/manifest.json)")
    return 0


def compress_command(args: argparse.Namespace) -> int:
    from terradiff.compress import compress_carbon_unet, compress_carbon_vgg

    if args.part == "unet":
        result = compress_carbon_unet(
            args.run,
            args.out,
            threshold=args.threshold,
            basis_epochs=args.basis_epochs,
            encoder_steps=args.encoder_steps,
            decoder_steps=args.decoder_steps,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        print(
            f"KD-UNet: base width {result['base_channels']}, {result['student_parameters']:,} "
            f"parameters (teacher {result['teacher_parameters']:,}; KD ratio "
            f"{result['kd_ratio']:.1f}x)\n"
            f"  table:      {Path(args.out) / 'table_a2_unet.md'}\n"
            f"  checkpoint: {result['checkpoint']} (use it with 'terradiff estimate --model')\n"
            f"{compare_hint(args.run, result['checkpoint'])}"
        )
        return 0

    summary = compress_carbon_vgg(
        args.run,
        args.out,
        threshold=args.threshold,
        basis_epochs=args.basis_epochs,
        block_steps=args.block_steps,
        chain_steps=args.chain_steps,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    errors = ", ".join(f"{e:.3f}" for e in summary["relative_feature_error"])
    floor = ", ".join(f"{e:.3f}" for e in summary["basis_floor_error"])
    print(
        f"KD-VGG: {summary['student_parameters']:,} parameters (teacher "
        f"{summary['teacher_parameters']:,}; KD ratio {summary['kd_ratio']:.1f}x), widths "
        f"{summary['vgg_channels']}; relative feature error per stage {errors} (a perfect "
        f"student with these bases: {floor})\n"
        f"  weights:    {summary['kd_vgg']}\n"
        f"  table:      {Path(args.out) / 'table_a2.md'}\n"
        f"  checkpoint: {summary['checkpoint']} (use it with 'terradiff estimate --model')\n"
        f"  to train a new IIDM with it: carbon.vgg_channels={json.dumps(summary['vgg_channels'])}"
        f" carbon.kd_vgg={summary['kd_vgg']}\n"
        f"{compare_hint(args.run, summary['checkpoint'])}"
    )
    return 0


def carbon_inventory_command(args: argparse.Namespace) -> int:
    from terradiff.carbon.inventory import inventory_to_carbon
    from terradiff.carbon.stock import CarbonFactors

    result = inventory_to_carbon(
        args.polygons,
        args.canopy_height,
        args.out,
        volume_field=args.volume_field,
        factors=CarbonFactors(args.delta, args.rho, args.gamma),
        mask_path=args.mask,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {result.density_path}: {result.polygons_used} polygon(s), total carbon "
        f"{result.total_carbon_mg:,.1f} Mg C"
    )
    for index, reason in result.skipped:
        print(f"skipped polygon {index}: {reason}")
    return 0
