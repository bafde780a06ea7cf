"""Does an input raster hold the kind of values the model was trained on?

A model trained on 8-bit imagery (scaling ``uint8``: 0-255) that is given 16-bit Landsat digital
numbers saturates almost every pixel and writes a map of nonsense without complaint; a model
trained on digital numbers given reflectance in [0, 1] sees a black image. Before a tiled run
writes anything, :func:`check_input_values` reads a decimated sample of the input (at most
:data:`SAMPLE_PIXELS` pixels, one read) and refuses:

* an input with no valid pixel at all (nodata, NaN or masked everywhere);
* a band whose valid values lie mostly above the top, or below the bottom, of a clipping
  scaling (the clip would destroy them): more than :data:`SATURATED_FRACTION` of them;
* floating-point values all inside [0, 1] for a scaling whose range tops 100 or more (the input
  was scaled already).

The error names the file, the band, what was found and the two fixes: rescale the input, or give
the scaling that maps it (``--input-scaling``). NaN and +-inf pixels are treated as nodata
everywhere in terradiff (they are excluded here and written as the output's nodata).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import NodataShadowWarning

from terradiff.data.transforms import Scaling
from terradiff.errors import DataError

#: Pixels read (per band) for the check: a decimated read, never the whole raster.
SAMPLE_PIXELS = 512 * 512
#: A band with more of its valid values above the scaling's top than this is refused.
SATURATED_FRACTION = 0.25

_FIX = (
    "Either rescale the input to the training range, or pass --input-scaling (a preset name such "
    "as 'uint8', 'sentinel2', or a JSON mapping) to say how its values map to the model's"
)


@dataclass(frozen=True)
class BandSample:
    """Valid values of one band in the decimated sample."""

    name: str
    values: np.ndarray


def sample_bands(
    src: Any,
    indices: list[int],
    names: list[str],
    nodata: list[float | None],
    force_nodata: bool,
) -> tuple[list[BandSample], int]:
    """A decimated nearest-neighbour read of the bands ``indices`` (1-based) of ``src``.

    Returns:
        ``(one BandSample per band with its valid values, pixels sampled per band)``. Invalid
        pixels (nodata, NaN, masked) are left out of every band's values.
    """
    factor = max(1.0, float(np.sqrt(src.height * src.width / SAMPLE_PIXELS)))
    shape = (max(1, int(src.height / factor)), max(1, int(src.width / factor)))
    with warnings.catch_warnings():  # a nodata value that shadows an alpha band is fine here
        warnings.simplefilter("ignore", NodataShadowWarning)
        data = src.read(indices, out_shape=(len(indices), *shape), masked=True)
    invalid = np.ma.getmaskarray(data).any(axis=0)
    values = np.ma.getdata(data)
    if np.issubdtype(values.dtype, np.floating):
        invalid |= ~np.isfinite(values).all(axis=0)
    if force_nodata:
        for k, value in enumerate(nodata):
            if value is not None and not np.isnan(value):
                invalid |= values[k] == value
    valid = ~invalid
    samples = [
        BandSample(names[i - 1], values[k][valid].astype(np.float64)) for k, i in enumerate(indices)
    ]
    return samples, shape[0] * shape[1]


def samples_of_array(
    array: np.ndarray, valid: np.ndarray, names: list[str]
) -> tuple[list[BandSample], int]:
    """:func:`sample_bands` of an image already in memory (``[C, H, W]`` and its ``[H, W]``
    validity): every k-th valid value of each band, at most :data:`SAMPLE_PIXELS`."""
    stride = max(1, int(np.ceil(valid.size / SAMPLE_PIXELS)))
    samples = [
        BandSample(name, band[valid][::stride].astype(np.float64))
        for band, name in zip(array, names, strict=True)
    ]
    return samples, int(np.ceil(valid.size / stride))


def scaling_range(scaling: Scaling, band: int) -> tuple[float, float]:
    """The physical values ``[low, high]`` that ``scaling`` maps onto the model's [-1, 1]."""
    if scaling.mins is not None and scaling.maxs is not None:
        return scaling.mins[band], scaling.maxs[band]
    return 0.0, scaling.divisor


def check_input_values(
    path: Path,
    samples: list[BandSample],
    sampled: int,
    scaling: Scaling,
    dtype: np.dtype,
    fix: str = _FIX,
) -> None:
    """Refuse an input that is empty or out of ``scaling``'s range (see the module docstring);
    ``fix`` ends the message (default: rescale, or ``--input-scaling``).

    Raises:
        DataError: naming ``path``, the band, the values found and the fix.
    """
    if all(s.values.size == 0 for s in samples):
        raise DataError(
            f"{path}: no valid pixel in the {sampled:,} sampled of bands "
            f"{[s.name for s in samples]} (all nodata, NaN or masked); nothing to map. Check the "
            "file, the band selection (--bands) and the nodata value (--nodata)"
        )
    for band, sample in enumerate(samples):
        if sample.values.size == 0:
            continue
        low, high = scaling_range(scaling, band)
        where = f"{path}: band {band + 1} ({sample.name!r})"
        trained = f"the model was trained on values {low:g}..{high:g} (scaling {scaling.name!r})"
        if scaling.clip:
            above = float(np.mean(sample.values > high * 1.01 + 1e-9))
            if above > SATURATED_FRACTION:
                raise DataError(
                    f"{where}: {above:.1%} of the valid values are above {high:g} (largest "
                    f"{sample.values.max():g}, {dtype} data) and would all be clipped; {trained}. "
                    f"{fix}"
                )
            below = float(np.mean(sample.values < low - 0.01 * (high - low) - 1e-9))
            if below > SATURATED_FRACTION:
                raise DataError(
                    f"{where}: {below:.1%} of the valid values are below {low:g} (smallest "
                    f"{sample.values.min():g}, {dtype} data) and would all be clipped; {trained}. "
                    f"{fix}"
                )
        if (
            np.issubdtype(dtype, np.floating)
            and high >= 100
            and sample.values.min() >= 0.0
            and sample.values.max() <= 1.0
        ):
            raise DataError(
                f"{where}: every valid value lies in [0, 1] (scaled data?) but {trained}; the "
                f"model would see an almost black image. {fix}"
            )


__all__ = [
    "SAMPLE_PIXELS",
    "SATURATED_FRACTION",
    "BandSample",
    "check_input_values",
    "samples_of_array",
]
