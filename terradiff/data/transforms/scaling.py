"""Scaling presets: named, invertible maps physical units <-> [0, 1] <-> the model's [-1, 1].

:class:`Scaling` (``to_unit``/``from_unit``), the presets of :func:`get_scaling` and
:func:`to_model`/:func:`from_model`, the linear map of [0, 1] onto the [-1, 1] of DDPM (Ho et al.
2020, Sec. 3.3); see :mod:`terradiff.data.transforms` for the presets' formulas.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from terradiff.errors import DataError

#: A NumPy array or a torch tensor: the scaling functions return the kind they are given.
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

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

    def with_spread_bands(self, num_bands: int) -> Scaling:
        """The scaling of an ensemble output: ``num_bands`` means, then their ``num_bands``
        standard deviations, each written in model units as ``std - 1``.

        A linear scaling maps a model-unit std ``s`` to ``s (hi - lo) / 2`` physical units; the
        std bands get ``lo = 0`` and the same span, so :meth:`from_model` of ``s - 1`` is that
        std exactly (the means' ``lo`` must not be added to a spread).

        Raises:
            DataError: a scaling with a gamma (not linear: no std maps through it exactly), or
                min/max for another band count.
        """
        if self.gamma != 1.0:
            raise DataError(
                f"scaling {self.name!r} has a gamma of {self.gamma:g}: an ensemble std cannot be "
                "written in its physical units; use a linear scaling or one member"
            )
        if self.mins is None or self.maxs is None:
            return self  # the same divisor for every band
        if len(self.mins) != num_bands:
            raise DataError(
                f"scaling {self.name!r} has min/max for {len(self.mins)} bands, not {num_bands}"
            )
        spans = tuple(hi - lo for lo, hi in zip(self.mins, self.maxs, strict=True))
        return dataclasses.replace(
            self, mins=(*self.mins, *(0.0,) * num_bands), maxs=(*self.maxs, *spans)
        )

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


def spread_bands(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``[B, C, ...]`` means and stds in model units -> ``[B, 2C, ...]``: the means, then the
    stds written as ``std - 1``, the values :meth:`Scaling.with_spread_bands` maps back to
    physical units (a std of 0 is the bottom of the model range)."""
    return torch.cat([mean, std - 1.0], dim=1)


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


__all__ = ["SCALING_PRESETS", "ArrayT", "Scaling", "from_model", "get_scaling", "to_model"]
