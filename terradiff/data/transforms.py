"""Scaling presets (physical units <-> [0, 1] <-> [-1, 1]), band statistics and augmentations.

Scaling: every image enters the library through a named, invertible and serialisable
:class:`Scaling` (``to_unit``: physical -> [0, 1]; ``from_unit``: back), then
:func:`to_model` maps [0, 1] to the [-1, 1] of DDPM (Ho et al. 2020, Sec. 3.3: "We assume that
image data consists of integers in {0, ..., 255} scaled linearly to [-1, 1]"). Presets:

* ``"uint8"``: ``x / 255`` (8-bit RGB such as AID, LEVIR-CD).
* ``"sentinel2"``: ``clip(x / 10000, 0, 1)`` — Sentinel-2 L1C/L2A digital numbers are reflectance x
  10,000.
* ``"sen12ms"``: ``clip(x / 5000, 0, 1) ** (1 / 2.2)`` — the preset of the noise-schedule study on
  SEN12MS Sentinel-2 data: reflectance saturating at 0.5, then a display gamma that spreads the
  dark land-surface values over more of the range.
* ``"minmax"``: ``clip((x - min_b) / (max_b - min_b), 0, 1)`` per band ``b`` (e.g. from the
  percentiles of :func:`compute_band_stats`).
* ``"none"``: identity (data already in [0, 1]).

``from_unit`` inverts ``to_unit`` exactly for values inside the clip range; clipped values come
back at the range's edge.

Augmentations (crop, resize, flip) work on tensors ``[C, H, W]`` (or ``[..., H, W]``) and take
an explicit :class:`torch.Generator`, so a dataset can make item ``i`` at epoch ``e`` a pure
function of ``(seed, e, i)`` (:func:`item_generator`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from terradiff.errors import DataError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# --------------------------------------------------------------------------------------------
# scaling presets
# --------------------------------------------------------------------------------------------

_PRESETS: dict[str, dict[str, Any]] = {
    "uint8": {"divisor": 255.0, "clip": True},
    "sentinel2": {"divisor": 10000.0, "clip": True},
    "sen12ms": {"divisor": 5000.0, "clip": True, "gamma": 1.0 / 2.2},
    "minmax": {"clip": True},
    "none": {},
}

#: Names accepted by :func:`get_scaling`.
SCALING_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _as_float(x: ArrayT) -> ArrayT:
    """Float copy/view: float64 stays float64, everything else becomes float32."""
    if _is_torch(x):
        return x if x.is_floating_point() else x.float()
    arr = np.asarray(x)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def _band_vector(values: Sequence[float], x: ArrayT) -> ArrayT:
    """Per-band values shaped to broadcast over the channel axis (-3) of ``x``."""
    if _is_torch(x):
        return torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    return np.asarray(values, dtype=x.dtype).reshape(-1, 1, 1)


def _clip01(x: ArrayT) -> ArrayT:
    return x.clamp(0.0, 1.0) if _is_torch(x) else np.clip(x, 0.0, 1.0)


@dataclass(frozen=True)
class Scaling:
    """An invertible map from physical values to [0, 1] (see the module docstring for presets).

    Attributes:
        name: the preset's name (``"uint8"``, ``"sentinel2"``, ``"sen12ms"``, ``"minmax"``,
            ``"none"``) or a custom label.
        divisor: ``x / divisor`` (ignored when ``mins``/``maxs`` are given).
        clip: clip to [0, 1] after dividing (before the gamma).
        gamma: exponent applied to the clipped unit value (``1 / 2.2`` for ``"sen12ms"``).
        mins: per-band minimum (``"minmax"``), one value per band.
        maxs: per-band maximum (``"minmax"``), one value per band.
    """

    name: str
    divisor: float = 1.0
    clip: bool = False
    gamma: float = 1.0
    mins: tuple[float, ...] | None = None
    maxs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.divisor) or self.divisor <= 0:
            raise DataError(f"scaling {self.name!r}: divisor must be > 0, got {self.divisor}")
        if not math.isfinite(self.gamma) or self.gamma <= 0:
            raise DataError(f"scaling {self.name!r}: gamma must be > 0, got {self.gamma}")
        if self.gamma != 1.0 and not self.clip:
            raise DataError(
                f"scaling {self.name!r}: a gamma needs clip=True (negative values have no power)"
            )
        if (self.mins is None) != (self.maxs is None):
            raise DataError(f"scaling {self.name!r}: give both mins and maxs, or neither")
        if self.mins is not None and self.maxs is not None:
            object.__setattr__(self, "mins", tuple(float(v) for v in self.mins))
            object.__setattr__(self, "maxs", tuple(float(v) for v in self.maxs))
            if len(self.mins) != len(self.maxs) or not self.mins:
                raise DataError(
                    f"scaling {self.name!r}: {len(self.mins)} mins but {len(self.maxs)} maxs; "
                    "give one per band"
                )
            bad = [i for i, (a, b) in enumerate(zip(self.mins, self.maxs, strict=True)) if b <= a]
            if bad:
                raise DataError(
                    f"scaling {self.name!r}: max must exceed min for every band; bands (0-based) "
                    f"{bad} have min {[self.mins[i] for i in bad]} >= max "
                    f"{[self.maxs[i] for i in bad]}"
                )
        elif self.name == "minmax":
            raise DataError(
                "scaling 'minmax' needs per-band mins and maxs, e.g. "
                "get_scaling('minmax', mins=stats.percentiles[2], maxs=stats.percentiles[98])"
            )

    @property
    def num_bands(self) -> int | None:
        """Bands the scaling is defined for (``minmax``), None when it applies to any band count."""
        return None if self.mins is None else len(self.mins)

    def _check_bands(self, x: Any) -> None:
        if self.mins is not None and (x.ndim < 3 or x.shape[-3] != len(self.mins)):
            raise DataError(
                f"scaling {self.name!r} has min/max for {len(self.mins)} bands, the image has "
                f"shape {tuple(x.shape)} (bands on axis -3); compute the statistics on the same "
                "bands"
            )

    def to_unit(self, x: ArrayT) -> ArrayT:
        """Physical values -> [0, 1] (for clipped presets); NaN stays NaN.

        Args:
            x: numpy array or torch tensor; bands on axis -3 (``[C, H, W]`` or ``[B, C, H, W]``)
                for ``minmax``.

        Returns:
            Float values of the same kind (float32, or float64 for float64 input).
        """
        self._check_bands(x)
        y = _as_float(x)
        if self.mins is not None and self.maxs is not None:
            lo = _band_vector(self.mins, y)
            hi = _band_vector(self.maxs, y)
            y = (y - lo) / (hi - lo)
        elif self.divisor != 1.0:
            y = y / self.divisor
        if self.clip:
            y = _clip01(y)
        if self.gamma != 1.0:
            y = y**self.gamma
        return y

    def from_unit(self, y: ArrayT) -> ArrayT:
        """[0, 1] -> physical values (the inverse of :meth:`to_unit` inside the clip range)."""
        self._check_bands(y)
        x = _as_float(y)
        if self.clip:
            x = _clip01(x)
        if self.gamma != 1.0:
            x = x ** (1.0 / self.gamma)
        if self.mins is not None and self.maxs is not None:
            lo = _band_vector(self.mins, x)
            hi = _band_vector(self.maxs, x)
            return x * (hi - lo) + lo
        return x * self.divisor if self.divisor != 1.0 else x

    def to_model(self, x: ArrayT) -> ArrayT:
        """Physical values -> the model's [-1, 1]."""
        return to_model(self.to_unit(x))

    def from_model(self, x: ArrayT) -> ArrayT:
        """The model's [-1, 1] -> physical values."""
        return self.from_unit(from_model(x))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stored in checkpoints); :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "divisor": self.divisor,
            "clip": self.clip,
            "gamma": self.gamma,
            "mins": None if self.mins is None else list(self.mins),
            "maxs": None if self.maxs is None else list(self.maxs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scaling:
        """Rebuild a scaling from :meth:`to_dict` output."""
        known = {"name", "divisor", "clip", "gamma", "mins", "maxs"}
        unknown = set(data) - known
        if unknown or "name" not in data:
            raise DataError(
                f"not a scaling description: {dict(data)!r}; expected keys {sorted(known)} "
                "(with 'name')"
            )
        kwargs = dict(data)
        for key in ("mins", "maxs"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)


def get_scaling(name: str | Scaling | Mapping[str, Any], **params: Any) -> Scaling:
    """The scaling preset ``name`` with ``params`` overriding its defaults.

    Args:
        name: a preset name (:data:`SCALING_PRESETS`), a :class:`Scaling` (returned as is) or a
            :meth:`Scaling.to_dict` mapping.
        **params: ``divisor``, ``clip``, ``gamma``, ``mins``, ``maxs``.

    Raises:
        DataError: an unknown preset or invalid parameters.
    """
    if isinstance(name, Scaling):
        return name if not params else Scaling.from_dict({**name.to_dict(), **params})
    if isinstance(name, Mapping):
        return Scaling.from_dict({**name, **params})
    if name not in _PRESETS:
        raise DataError(f"unknown scaling {name!r}; choose one of {list(SCALING_PRESETS)}")
    unknown = set(params) - {"divisor", "clip", "gamma", "mins", "maxs"}
    if unknown:
        raise DataError(
            f"unknown scaling parameters {sorted(unknown)}; use divisor, clip, gamma, mins, maxs"
        )
    kwargs = {**_PRESETS[name], **params}
    for key in ("mins", "maxs"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(float(v) for v in np.asarray(kwargs[key]).reshape(-1))
    return Scaling(name=name, **kwargs)


def to_model(x01: ArrayT) -> ArrayT:
    """[0, 1] -> [-1, 1]: ``2 x - 1`` (Ho et al. 2020, Sec. 3.3)."""
    return x01 * 2.0 - 1.0


def from_model(x: ArrayT) -> ArrayT:
    """[-1, 1] -> [0, 1]: ``(x + 1) / 2``."""
    return (x + 1.0) / 2.0


# --------------------------------------------------------------------------------------------
# band statistics
# --------------------------------------------------------------------------------------------


@dataclass
class BandStats:
    """Per-band statistics of a dataset in physical units (valid pixels only).

    ``percentiles`` maps a percentile (e.g. 2.0) to one value per band; they are computed on a
    seeded random sample of the valid pixels of every image (exact when an image has fewer pixels
    than the sample size). Mean, std, min and max are exact.
    """

    count: list[int]
    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    percentiles: dict[float, list[float]] = field(default_factory=dict)

    @property
    def num_bands(self) -> int:
        """Number of bands described."""
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (percentile keys as strings)."""
        return {
            "count": list(self.count),
            "mean": list(self.mean),
            "std": list(self.std),
            "min": list(self.min),
            "max": list(self.max),
            "percentiles": {str(k): list(v) for k, v in self.percentiles.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            count=[int(v) for v in data["count"]],
            mean=[float(v) for v in data["mean"]],
            std=[float(v) for v in data["std"]],
            min=[float(v) for v in data["min"]],
            max=[float(v) for v in data["max"]],
            percentiles={
                float(k): [float(x) for x in v] for k, v in data.get("percentiles", {}).items()
            },
        )


def _image_and_mask(item: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Accept an array/tensor, ``(array, mask)``, a RasterData or a dataset item dict."""
    mask = None
    if isinstance(item, Mapping):
        array, mask = item["image"], item.get("mask")
    elif isinstance(item, tuple | list) and len(item) == 2:
        array, mask = item
    elif hasattr(item, "array") and hasattr(item, "valid_mask"):
        array, mask = item.array, item.valid_mask
    else:
        array = item
    if _is_torch(array):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"band statistics need images [C, H, W], got shape {array.shape}")
    if mask is not None:
        if _is_torch(mask):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask).reshape(array.shape[1:]).astype(bool)
    return array, mask


def compute_band_stats(
    images: Iterable[Any],
    *,
    percentiles: Sequence[float] = (1.0, 2.0, 98.0, 99.0),
    sample_per_image: int = 4096,
    seed: int = 0,
) -> BandStats:
    """Per-band mean, std, min, max and percentiles over a collection of images.

    Mean and variance are accumulated exactly in float64 (sums of ``x`` and of ``(x - shift)^2``
    around the first image's mean, for numerical stability); percentiles use up to
    ``sample_per_image`` random valid pixels of each image (seeded, so reproducible).

    Args:
        images: arrays/tensors ``[C, H, W]``, ``(array, mask)`` pairs, RasterData or dataset item
            dicts (``{"image", "mask"}``); masks (True/1 = valid) exclude pixels.
        percentiles: percentiles in [0, 100] to estimate.
        sample_per_image: pixels sampled per image for the percentiles.
        seed: seed of the pixel sampling.

    Raises:
        DataError: no images, mixed band counts, or a band without a valid pixel.
    """
    rng = np.random.default_rng(seed)
    n: np.ndarray | None = None
    total = sq = shift = lo = hi = None
    samples: list[np.ndarray] = []
    for item in images:
        array, mask = _image_and_mask(item)
        flat = array.reshape(array.shape[0], -1).astype(np.float64)
        valid = np.isfinite(flat).all(axis=0)
        if mask is not None:
            valid &= mask.reshape(-1)
        values = flat[:, valid]
        if n is None:
            bands = array.shape[0]
            n = np.zeros(bands, dtype=np.int64)
            total, sq = np.zeros(bands), np.zeros(bands)
            lo, hi = np.full(bands, np.inf), np.full(bands, -np.inf)
            shift = values.mean(axis=1) if values.shape[1] else np.zeros(bands)
        elif array.shape[0] != n.shape[0]:
            raise DataError(
                f"band statistics: an image has {array.shape[0]} bands, earlier ones "
                f"{n.shape[0]}; give images with the same bands"
            )
        if values.shape[1] == 0:
            continue
        centred = values - shift[:, None]
        n += values.shape[1]
        total += centred.sum(axis=1)
        sq += (centred**2).sum(axis=1)
        lo = np.minimum(lo, values.min(axis=1))
        hi = np.maximum(hi, values.max(axis=1))
        if values.shape[1] > sample_per_image:
            pick = rng.choice(values.shape[1], size=sample_per_image, replace=False)
            values = values[:, pick]
        samples.append(values)
    if n is None:
        raise DataError("band statistics: no images given")
    if not samples or (n == 0).any():
        raise DataError("band statistics: some band has no valid pixel in any image")
    assert total is not None and sq is not None and shift is not None
    mean_c = total / n
    var = np.maximum(sq / n - mean_c**2, 0.0)
    pooled = np.concatenate(samples, axis=1)
    pct = {float(p): np.percentile(pooled, p, axis=1).tolist() for p in percentiles}
    return BandStats(
        count=n.tolist(),
        mean=(mean_c + shift).tolist(),
        std=np.sqrt(var).tolist(),
        min=np.asarray(lo).tolist(),
        max=np.asarray(hi).tolist(),
        percentiles=pct,
    )


# --------------------------------------------------------------------------------------------
# augmentation on tensors [..., H, W] with an explicit generator
# --------------------------------------------------------------------------------------------


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose state is a pure function of ``(seed, epoch, index)``.

    The three integers are mixed with NumPy's ``SeedSequence`` (so nearby triples give unrelated
    streams), which makes the augmentation of item ``index`` at ``epoch`` reproducible no matter
    which worker, process or resumed run draws it.
    """
    entropy = [int(seed) % 2**63, int(epoch) % 2**63, int(index) % 2**63]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a size given as one int or a pair (checked positive)."""
    out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out[0] <= 0 or out[1] <= 0:
        raise DataError(f"image size must be positive, got {size}")
    return out


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``x[..., top:top+height, left:left+width]`` (checked to lie inside ``x``)."""
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise DataError(f"crop ({top}, {left}, {height}, {width}) outside an image of {h}x{w}")
    return x[..., top : top + height, left : left + width]


def random_crop_params(
    height: int, width: int, size: int | Sequence[int], generator: torch.Generator
) -> tuple[int, int]:
    """Uniform top-left corner ``(top, left)`` of a ``size`` crop in a ``height x width`` image."""
    th, tw = size2(size)
    if th > height or tw > width:
        raise DataError(f"crop of {th}x{tw} larger than the image {height}x{width}; resize first")
    top = int(torch.randint(0, height - th + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - tw + 1, (1,), generator=generator))
    return top, left


def random_crop(
    x: torch.Tensor, size: int | Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """A uniformly placed ``size`` crop of ``x [..., H, W]``."""
    th, tw = size2(size)
    top, left = random_crop_params(x.shape[-2], x.shape[-1], (th, tw), generator)
    return crop(x, top, left, th, tw)


def center_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """The central ``size`` crop of ``x [..., H, W]`` (offset rounded down)."""
    th, tw = size2(size)
    h, w = x.shape[-2:]
    if th > h or tw > w:
        raise DataError(f"crop of {th}x{tw} larger than the image {h}x{w}; resize first")
    return crop(x, (h - th) // 2, (w - tw) // 2, th, tw)


def resize(
    x: torch.Tensor,
    size: int | Sequence[int],
    *,
    mode: str = "bilinear",
    antialias: bool | None = None,
) -> torch.Tensor:
    """Resize ``x [C, H, W]`` or ``[B, C, H, W]`` with :func:`torch.nn.functional.interpolate`.

    Args:
        x: float tensor.
        size: output ``(H, W)`` or a square side.
        mode: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"area"``.
        antialias: low-pass before downsampling; default: on when shrinking with
            bilinear/bicubic (without it, a 150 -> 64 shrink aliases).
    """
    out = size2(size)
    if tuple(x.shape[-2:]) == out:
        return x
    squeeze = x.ndim == 3
    batch = x[None] if squeeze else x
    if batch.ndim != 4:
        raise DataError(f"resize needs [C, H, W] or [B, C, H, W], got shape {tuple(x.shape)}")
    smooth = mode in ("bilinear", "bicubic")
    if antialias is None:
        antialias = smooth and (out[0] < x.shape[-2] or out[1] < x.shape[-1])
    kwargs: dict[str, Any] = {"size": out, "mode": mode}
    if smooth:
        kwargs.update(align_corners=False, antialias=bool(antialias))
    dtype = batch.dtype
    y = F.interpolate(batch if dtype.is_floating_point else batch.float(), **kwargs)
    y = y.to(dtype) if not dtype.is_floating_point else y
    return y[0] if squeeze else y


def resize_short_side(x: torch.Tensor, size: int, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize so that the shorter side equals ``size`` (aspect ratio kept)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    scale = size / min(h, w)
    return resize(x, (max(size, round(h * scale)), max(size, round(w * scale))), mode=mode)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (last axis)."""
    return x.flip(-1)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom (second-last axis)."""
    return x.flip(-2)


def random_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    horizontal: bool = True,
    vertical: bool = False,
    p: float = 0.5,
) -> torch.Tensor:
    """Flip left-right and/or top-bottom, each with probability ``p``.

    Two random numbers are always drawn (one per axis), so the stream a generator leaves behind
    does not depend on the options.
    """
    draws = torch.rand(2, generator=generator)
    if horizontal and draws[0] < p:
        x = hflip(x)
    if vertical and draws[1] < p:
        x = vflip(x)
    return x


CROP_MODES: tuple[str, ...] = ("random", "center", "resize", "none")


def spatial_augment(
    x: torch.Tensor,
    size: int | Sequence[int] | None,
    generator: torch.Generator,
    *,
    crop_mode: str = "random",
    horizontal_flip: bool = True,
    vertical_flip: bool = False,
    mode: str = "bilinear",
) -> torch.Tensor:
    """The datasets' spatial pipeline: crop/resize to ``size``, then random flips.

    ``crop_mode``: ``"random"`` (uniform crop), ``"center"``, ``"resize"`` (whole image resized to
    ``size``, aspect ratio not kept) or ``"none"``. For the two crops an image smaller than
    ``size`` is first resized so its shorter side fits. Stack the image and its mask along the
    channel axis to transform both identically.
    """
    if crop_mode not in CROP_MODES:
        raise DataError(f"unknown crop {crop_mode!r}; choose one of {list(CROP_MODES)}")
    if size is not None and crop_mode != "none":
        th, tw = size2(size)
        if crop_mode == "resize":
            x = resize(x, (th, tw), mode=mode)
        else:
            if x.shape[-2] < th or x.shape[-1] < tw:
                x = resize_short_side(x, max(th, tw), mode=mode)
            if crop_mode == "random":
                x = random_crop(x, (th, tw), generator)
            else:
                x = center_crop(x, (th, tw))
    if horizontal_flip or vertical_flip:
        x = random_flip(x, generator, horizontal=horizontal_flip, vertical=vertical_flip)
    return x


__all__ = [
    "CROP_MODES",
    "SCALING_PRESETS",
    "BandStats",
    "Scaling",
    "center_crop",
    "compute_band_stats",
    "crop",
    "from_model",
    "get_scaling",
    "hflip",
    "item_generator",
    "random_crop",
    "random_crop_params",
    "random_flip",
    "resize",
    "resize_short_side",
    "spatial_augment",
    "to_model",
    "vflip",
]
