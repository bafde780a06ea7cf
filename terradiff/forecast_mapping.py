"""Whole-raster temporal forecasts: a before image and a target date -> the after image
(``terradiff forecast``).

:func:`forecast_raster` reads the before image's acquisition date (``source_date``, else an
acquisition-date tag of :data:`~terradiff.data.scene_metadata.DATE_TAGS`, else the file name:
``yyyymmdd``, a BioMassters ``<chip>_S2_MM.tif`` month, a bare year), builds the pair metadata of
the model's :class:`~terradiff.data.temporal.PairSchema` (target date, source date, years apart)
and runs the model over the raster with the tiling engine
(:func:`terradiff.data.tiling.predict_raster`: overlapping tiles blended in [-1, 1], CRS and
transform kept, input nodata pixels written as nodata, an atomic Cloud-Optimized GeoTIFF unless
``cog=False``). Each tile's diffusion noise is seeded by ``seed`` and the tile's position, so the
same seed gives the same raster however the tiles are batched.

With ``ensemble = N > 1`` (diffusion methods) every tile is forecast ``N`` times: bands ``1..C``
hold the per-pixel mean and bands ``C+1..2C`` the per-pixel standard deviation of the members,
both in the input's units (the std is exact for linear scalings: it travels through
:meth:`~terradiff.data.transforms.scaling.Scaling.with_spread_bands` as ``std - 1``; a scaling
with a gamma is refused).

Years apart: from the two years when both dates have one; when one lacks a year but both have a
month (a BioMassters month), the target is taken as the next occurrence of its month, ``((m_t -
m_s) mod 12) / 12`` years later, as in BioMassters training pairs. A metadata field that no
training pair held (``temporal.trained_fields``, e.g. the day of year for a BioMassters model) is
given as missing: its embedding was never trained.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from terradiff.data.dates import date_from_name
from terradiff.data.raster import inspect_raster
from terradiff.data.scene_metadata import DATE_TAGS, read_scene_metadata
from terradiff.data.temporal import BIOMASSTERS_MONTHS
from terradiff.data.tiling import TilingSummary, predict_raster
from terradiff.data.tiling.options import check_output_target
from terradiff.data.tiling.probe import with_tile_bytes
from terradiff.data.transforms.scaling import get_scaling, spread_bands
from terradiff.errors import ConfigError, DataError, WrongCheckpointError
from terradiff.mapping import input_bands

__all__ = ["ForecastSummary", "forecast_raster", "parse_forecast_date", "source_date_of"]

_DATE_FORM = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*$")
_BIOMASSTERS_NAME = re.compile(r"_S2_(\d{2})\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class ForecastSummary:
    """What :func:`forecast_raster` wrote.

    Attributes:
        tiling: the tiled run (path, size, tiles, seconds).
        source_date, target_date: the dates used (raw metadata keys).
        source_from: where the source date came from (``--source-date``, a tag, the file name).
        years_apart: target minus source time in years (None: unknown, given as missing).
        members: forecasts per tile; method: the model's method.
        missing_fields: metadata fields given as missing (unknown, or never trained).
        georeferenced: the output carries a CRS.
    """

    tiling: TilingSummary
    source_date: dict[str, int]
    target_date: dict[str, int]
    source_from: str
    years_apart: float | None
    members: int
    method: str
    missing_fields: tuple[str, ...]
    georeferenced: bool

    def describe(self) -> str:
        """One line for the command line."""
        t = self.tiling
        where = "georeferenced as the input" if self.georeferenced else "no georeferencing"
        apart = "unknown" if self.years_apart is None else f"{self.years_apart:+.2f} y"
        bands = f"{t.count} bands" + (" (mean, then std)" if self.members > 1 else "")
        text = (
            f"wrote {t.path}: {t.width}x{t.height} px, {bands}, {self.method} forecast "
            f"{_label(self.source_date)} ({self.source_from}) -> {_label(self.target_date)} "
            f"({apart}), {where}, {t.tiles} tile(s) in {t.seconds:.1f} s"
        )
        if self.missing_fields:
            text += f"; missing metadata: {', '.join(self.missing_fields)}"
        return text


def _label(date: dict[str, int]) -> str:
    if "year" not in date:
        return f"month {date.get('month', '?')}"
    if "day_of_year" in date:
        day = dt.date(date["year"], 1, 1) + dt.timedelta(days=date["day_of_year"] - 1)
        return day.isoformat()
    return f"{date['year']}-{date['month']:02d}" if "month" in date else str(date["year"])


def parse_forecast_date(text: str, *, what: str = "--date") -> dict[str, int]:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` -> raw date keys (``year``, ``month``,
    ``day_of_year``).

    Raises:
        ConfigError: another form or an impossible date, naming ``what``.
    """
    match = _DATE_FORM.match(str(text))
    fix = f"write {what} as YYYY-MM or YYYY-MM-DD (e.g. 2019-07 or 2019-07-15)"
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a date; {fix}")
    year, month, day = (int(g) if g else None for g in match.groups())
    date = {"year": year}
    try:
        if month is not None:
            dt.date(year, month, 1)
            date["month"] = month
        if day is not None:
            date["day_of_year"] = dt.date(year, month, day).timetuple().tm_yday
    except ValueError as error:
        raise ConfigError(f"{what} {text!r} is no valid date ({error}); {fix}") from None
    return date


def source_date_of(
    image: str | Path, given: str | None = None, given_from: str = "--source-date"
) -> tuple[dict[str, int], str]:
    """The before image's date and where it was found (see the module docstring).

    ``given`` (``YYYY-MM[-DD]``, e.g. a STAC Item's datetime) wins over the image's tags and
    name; ``given_from`` says where it came from.

    Raises:
        DataError: no date in ``given``, the tags or the file name, naming the file.
    """
    if given is not None:
        return parse_forecast_date(given, what=given_from), given_from
    path = Path(image)
    found = read_scene_metadata(path, date_pattern="yyyymmdd", use_tiff_datetime=False)
    keys = ("year", "month", "day_of_year")
    date = {k: int(found.values[k]) for k in keys if k in found.values}
    if date:
        return date, found.date_source or "file name"
    match = _BIOMASSTERS_NAME.search(path.name)
    if match is not None and int(match[1]) <= 11:
        return {"month": BIOMASSTERS_MONTHS[int(match[1])]}, "file name (BioMassters month)"
    year = date_from_name(path, "year")
    if year:
        return year, "file name"
    raise DataError(
        f"{path}: no acquisition date in its tags ({', '.join(DATE_TAGS[:3])}, ...) or its file "
        "name (yyyymmdd, <chip>_S2_MM, a year); give it with --source-date YYYY-MM[-DD]"
    )


def _decimal_year(date: dict[str, int]) -> float:
    year = date["year"]
    if "day_of_year" in date:
        return year + (date["day_of_year"] - 1) / (366 if year % 4 == 0 else 365)
    return year + (date["month"] - 1) / 12.0 if "month" in date else float(year)


def years_between(source: dict[str, int], target: dict[str, int]) -> float | None:
    """Target minus source time in years (see the module docstring); None when unknown."""
    if "year" in source and "year" in target:
        return _decimal_year(target) - _decimal_year(source)
    if "month" in source and "month" in target:
        return ((target["month"] - source["month"]) % 12) / 12.0
    return None


def forecast_raster(
    model: str | Path,
    image: str | Path,
    out: str | Path,
    *,
    date: str,
    source_date: str | None = None,
    source_date_from: str = "--source-date",
    bands: list[int | str] | None = None,
    input_scaling: str | dict[str, Any] | None = None,
    nodata: float | None = None,
    ensemble: int = 1,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cog: bool = True,
    precision: str | None = None,
) -> ForecastSummary:
    """Forecast ``image`` at ``date`` with a temporal model and write the after image.

    Args:
        model: a ``temporal`` run or checkpoint folder (EMA weights).
        image: the before image (the model's bands, in its order and units).
        out: the GeoTIFF to write (same CRS, transform and size; nodata stays nodata).
        date: the target date, ``YYYY-MM`` or ``YYYY-MM-DD``.
        source_date: the before image's date (default: its tags or file name).
        source_date_from: where ``source_date`` came from (``--source-date``, a STAC Item).
        bands: the bands of ``image`` (1-based indices or names) in the model's order; default
            all bands, which must then be the model's.
        input_scaling: how ``image``'s values map to [0, 1] when they are not in the units the
            model was trained on (a preset name or a scaling mapping,
            :func:`~terradiff.data.transforms.scaling.get_scaling`); the forecast is written in
            the same units. Default: the model's scaling.
        nodata: the input's nodata value, overriding the file's own (for a file whose fill
            value, e.g. 0, is not declared); its pixels are left out and written as nodata.
        ensemble: forecasts per tile (> 1: mean and std bands; diffusion methods only).
        sampler, steps: the diffusion sampling (default: the checkpoint's ``sample`` section).
        guidance: classifier-free guidance scale ``s`` on the dates (``out_null + s (out_cond -
            out_null)``: 0 ignores the dates, 1 plain conditional; default the checkpoint's
            ``sample.guidance``); diffusion methods trained with ``temporal.drop_prob > 0``.
        seed: seeds the noise (per tile, with the tile's position).
        tile, overlap, batch_size: the tiling (``tile`` a multiple of the UNet's factor).
        device: ``cpu``/``cuda`` (default CUDA when available).
        overwrite: replace an existing ``out`` (never the input).
        cog: a Cloud-Optimized GeoTIFF; False: a plain tiled GeoTIFF.
        precision: the net's number format (``sample.precision``; default the checkpoint's).

    Raises:
        DataError: ``out`` is the input or exists without ``overwrite``; no source date; a bad
            tile; another band count.
        ConfigError: a malformed date; ``ensemble > 1`` or ``guidance`` for a one-pass model.
        WrongCheckpointError: ``model`` is not a temporal model.
    """
    from terradiff.nets.precision import precision_tag
    from terradiff.tasks import load_task, resolve_device
    from terradiff.tasks.temporal import TemporalTask

    image, out = Path(image), Path(out)
    check_output_target(out, overwrite=overwrite, inputs=[("before image", image)])
    target = parse_forecast_date(date)
    source, source_from = source_date_of(image, source_date, source_date_from)
    if ensemble < 1:
        raise ConfigError(f"--ensemble must be >= 1, got {ensemble}")
    task, ckpt = load_task(model, use_ema=True)
    if not isinstance(task, TemporalTask):
        raise WrongCheckpointError(
            ckpt.path, f"{task.config.task!r} checkpoint", "forecast needs a 'temporal' one"
        )
    task.use_precision(precision)
    task.refuse_sampling_flags(ckpt.path, ensemble=ensemble, guidance=guidance)
    info = inspect_raster(image)
    selected = input_bands(image, task.band_info, bands)
    multiple = int(task.net.downsample_factor)
    if tile % multiple:
        raise DataError(
            f"--tile {tile} must be a multiple of {multiple} for this model; choose e.g. "
            f"--tile {multiple * max(1, tile // multiple)}"
        )
    apart = years_between(source, target)
    values, present = task.schema.normalise(
        source, target, apart, where=f"forecast {image.name} -> {date}"
    )
    trained = task.temporal.trained_fields
    if trained is not None:
        present = present & torch.tensor([f in trained for f in task.schema.fields])
    missing = tuple(f for f, p in zip(task.schema.fields, present.tolist(), strict=True) if not p)
    dev = resolve_device(device)
    spec = task.sampling_spec(sampler, steps, guidance=guidance)
    task.net.to(dev)

    def predict(
        x: torch.Tensor, valid: torch.Tensor, origins: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        row, col = origins[0] if origins else (0, 0)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + row * 65_537 + col)
        batch = x.shape[0]
        mean, std = task.forecast(
            task.net,
            x,
            values.expand(batch, -1),
            present.expand(batch, -1),
            spec=spec,
            generator=generator,
            members=ensemble,
        )
        return mean if std is None else spread_bands(mean, std)

    def one_tile(x: torch.Tensor) -> Any:  # the memory of a batch of one, one step
        one = None if spec is None else dataclasses.replace(spec, sampler="ddim", steps=1)
        return task.forecast(task.net, x, values[None], present[None], spec=one)[0]

    scaling = input_scaling or task.band_info.scaling
    out_scaling = get_scaling(scaling)
    names = list(task.band_info.names) or [f"band{i + 1}" for i in range(task.num_bands)]
    if ensemble > 1:
        try:
            out_scaling = out_scaling.with_spread_bands(task.num_bands)
        except DataError as error:
            raise ConfigError(f"--ensemble {ensemble}: {error}") from None
        names = [*names, *(f"{n}_std" for n in names)]
    summary = predict_raster(
        image,
        out,
        with_tile_bytes(predict, one_tile, task.num_bands, dev, multiple),
        bands=selected,
        nodata=nodata,
        scaling=scaling,
        out_scaling=out_scaling.to_dict(),
        tile=tile,
        overlap=overlap,
        out_bands=len(names),
        out_band_names=names,
        out_dtype="uint8" if scaling == "uint8" and ensemble == 1 else "float32",
        batch_size=batch_size,
        device=dev,
        overwrite=overwrite,
        progress=progress,
        cog=cog,
        tags=precision_tag(task.inference_precision(dev)),
    )
    return ForecastSummary(
        tiling=summary,
        source_date=source,
        target_date=target,
        source_from=source_from,
        years_apart=apart,
        members=ensemble,
        method=task.method.name,
        missing_fields=missing,
        georeferenced=info.crs is not None,
    )
