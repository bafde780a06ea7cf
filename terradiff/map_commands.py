"""What the whole-raster verbs do (``super-resolve``, ``estimate``, ``change``, ``forecast``),
given their parsed arguments (:mod:`terradiff.cli` parses; the other verbs are in
:mod:`terradiff.commands`).

Each reads its inputs (GeoTIFFs or local STAC Items), calls the library's mapping function and
writes a STAC Item beside every georeferenced output. Heavy imports happen inside, so
``terradiff --help`` stays fast. No maths here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from terradiff.io import atomic_write_text


def super_resolve_command(args: argparse.Namespace) -> int:
    from terradiff.data.tiling.options import check_output_targets
    from terradiff.sr_mapping import super_resolve_raster

    outputs = [args.output, *([args.summary] if args.summary else [])]
    check_output_targets(outputs, overwrite=args.overwrite, inputs=[("input", args.input)])
    from terradiff.interop.stac import stac_inputs, write_output_items

    kwargs = mapping_kwargs(args)
    with stac_inputs([args.input], args.model, kwargs["bands"]) as (rasters, bands, sources):
        kwargs["bands"] = bands or kwargs["bands"]
        summary = super_resolve_raster(
            args.model, rasters[0], args.output, scale=args.scale, ensemble=args.ensemble, **kwargs
        )
    items = write_output_items(
        [args.output], model=args.model, command=command_line(args), sources=sources
    )
    print(
        f"wrote {summary.path}: {summary.width}x{summary.height} px, {summary.count} bands"
        + (f" (mean, then std of {args.ensemble} draws)" if args.ensemble > 1 else "")
        + ", "
        f"x{summary.scale}, {summary.tiles} tiles in {summary.seconds:.1f} s"
        + (f" (STAC Item {items[0].name})" if items else "")
    )
    if args.summary:
        from dataclasses import asdict

        record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(summary).items()}
        atomic_write_text(Path(args.summary), json.dumps(record, indent=2) + "\n")
    return 0


def estimate_command(args: argparse.Namespace) -> int:
    from terradiff.interop.stac import stac_inputs, write_output_items
    from terradiff.mapping import estimate_carbon_maps

    kwargs = mapping_kwargs(args)
    with stac_inputs(args.image, args.model, kwargs["bands"]) as (rasters, bands, sources):
        kwargs["bands"] = bands or kwargs["bands"]
        result = estimate_carbon_maps(
            args.model,
            rasters,
            args.out,
            mask_path=args.mask,
            ensemble=args.ensemble,
            uncertainty=args.uncertainty,
            summary_path=args.summary,
            on_map=lambda item: print(item.describe()),
            **kwargs,
        )
    write_output_items(
        [m.path for m in result.maps],
        model=args.model,
        command=command_line(args),
        sources=sources,
        properties=[
            {f"terradiff:{k}": v for k, v in m.record().items() if k != "map"} for m in result.maps
        ],
    )
    if result.panel is not None:
        print(f"wrote {result.panel}")
    return 0


def change_command(args: argparse.Namespace) -> int:
    from terradiff.change_mapping import detect_change
    from terradiff.interop.stac import stac_inputs, write_output_items

    pair = [args.before, args.after]
    with stac_inputs(pair, args.model, None) as (rasters, _, (before, after)):
        summary = detect_change(
            args.model,
            rasters[0],
            rasters[1],
            args.out,
            threshold=args.threshold,
            input_scaling=input_scaling(args.input_scaling),
            png=args.png,
            probability=args.probability,
            tile=args.tile,
            overlap=args.overlap,
            device=args.device,
            overwrite=args.overwrite,
            cog=not args.no_cog,
            precision=args.precision,
        )
    items = write_output_items(
        [summary.path],
        model=args.model,
        command=command_line(args),
        sources=[after],
        properties=[summary.stac_properties(before, after)],
        also_from=[before] if before is not None else [],
    )
    print(summary.describe() + (f" (STAC Item {items[0].name})" if items else ""))
    return 0


def forecast_command(args: argparse.Namespace) -> int:
    from terradiff.forecast_mapping import forecast_raster
    from terradiff.interop.stac import stac_inputs, write_output_items

    with stac_inputs([args.image], args.model, band_list(args.bands)) as (rasters, picked, sources):
        source_date, source_from = args.source_date, "--source-date"
        stac = sources[0]
        if source_date is None and stac is not None and stac.datetime:
            # the Item's acquisition date is the before image's (ISO 8601: date in 10 chars)
            source_date, source_from = stac.datetime[:10], f"STAC Item {stac.item.name} datetime"
        summary = forecast_raster(
            args.model,
            rasters[0],
            args.out,
            date=args.date,
            source_date=source_date,
            source_date_from=source_from,
            bands=picked or band_list(args.bands),
            input_scaling=input_scaling(args.input_scaling),
            nodata=args.nodata,
            ensemble=args.ensemble,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            overwrite=args.overwrite,
            cog=not args.no_cog,
            precision=args.precision,
        )
    items = write_output_items(
        [args.out], model=args.model, command=command_line(args), sources=sources
    )
    print(summary.describe() + (f" (STAC Item {items[0].name})" if items else ""))
    return 0


def command_line(args: argparse.Namespace) -> list[str]:
    """The command that is running (``main`` records it; else this process's arguments)."""
    import sys

    return list(getattr(args, "command_line", None) or ["terradiff", *sys.argv[1:]])


def mapping_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the whole-raster functions from :func:`_add_mapping_options`."""
    return {
        "bands": band_list(args.bands),
        "input_scaling": input_scaling(args.input_scaling),
        "nodata": args.nodata,
        "sampler": args.sampler,
        "steps": args.steps,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "overwrite": args.overwrite,
        "device": args.device,
        "fast": args.fast,
        "precision": args.precision,
        "dask": args.dask or args.scheduler is not None,
        "scheduler": args.scheduler,
        "n_workers": args.workers,
        "rows_per_task": args.dask_rows,
        "cog": not args.no_cog,
    }


def input_scaling(text: str | None) -> str | dict[str, Any] | None:
    """``--input-scaling``: a preset name, or a JSON mapping of a scaling (``{"divisor": ...}``)."""
    if text is None or not text.strip().startswith("{"):
        return text
    from terradiff.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--input-scaling {text!r} is not valid JSON ({error.msg}); give a preset name such "
            'as sentinel2, or a mapping such as \'{"name": "dn", "divisor": 10000, "clip": true}\''
        ) from None
    return value


def band_list(text: str | None) -> list[int | str] | None:
    """``--bands`` as 1-based indices or names (``4,3,2`` or ``B04,B03``), None if not given."""
    if not text:
        return None
    return [int(b) if b.isdigit() else b for b in text.split(",")]
