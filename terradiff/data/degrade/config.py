"""Sampling ranges of the Real-ESRGAN degradation (Wang et al. 2021, Sec. 3), checked when made.

:class:`DegradationStage` holds the ranges of one order (blur, resize, noise, JPEG) with
Real-ESRGAN's first-order defaults, :data:`SECOND_ORDER_DEFAULTS` those of the second order, and
:class:`RealDegradationConfig` the two stages and the final step; the defaults are the released
training options (``train_realesrnet_x4plus.yml``). :mod:`terradiff.data.degrade.real` draws from
them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from terradiff.data.degrade.resample import ALLOWED_RESIZE_MODES
from terradiff.errors import ConfigError

#: Blur kernel families of Real-ESRGAN (Sec. 3.1): Gaussian, generalized Gaussian, plateau; each
#: isotropic (one sigma, no rotation) or anisotropic (two sigmas, random rotation).
KERNEL_TYPES: tuple[str, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
#: Interpolation modes that the random resize stages may draw from.
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class DegradationStage:
    """Sampling ranges of one order of the Real-ESRGAN degradation (Wang et al. 2021, Sec. 3).

    Defaults are Real-ESRGAN's first-order options (``train_realesrnet_x4plus.yml``); the second
    order's defaults are in :data:`SECOND_ORDER_DEFAULTS`. Ranges are ``(low, high)`` sampled
    uniformly; probabilities are in [0, 1].

    Attributes:
        blur_prob: probability of blurring at all (first order 1.0, second order 0.8).
        kernel_types: kernel families to choose from (:data:`KERNEL_TYPES`).
        kernel_probs: probability of each family (Real-ESRGAN: 0.45, 0.25, 0.12, 0.03, 0.12,
            0.03); must sum to 1.
        kernel_sizes: odd kernel sizes to choose from uniformly (Real-ESRGAN: 7, 9, ..., 21).
        blur_sigma: Gaussian standard deviation range in pixels (first 0.2-3, second 0.2-1.5).
        betag_range: shape ``beta`` of the generalized Gaussian ``exp(-0.5 q^beta)`` (0.5-4).
        betap_range: shape ``beta`` of the plateau kernel ``1 / (1 + q^beta)`` (1-2).
        sinc_prob: probability that the blur is a 2-D sinc (circular low-pass) filter instead
            (0.1); its cutoff is drawn in [pi/3, pi] (size < 13) or [pi/5, pi].
        resize_probs: probabilities of resizing ``(up, down, keep)`` (first 0.2, 0.7, 0.1;
            second 0.3, 0.4, 0.3); must sum to 1.
        resize_range: factor range; "up" draws in ``[1, high]``, "down" in ``[low, 1]``
            (first 0.15-1.5 of the HR size, second 0.3-1.2 of the target LR size).
        resize_modes: interpolation modes to choose from uniformly (area, bilinear, bicubic).
        gaussian_noise_prob: probability of Gaussian noise; Poisson noise otherwise (0.5).
        noise_sigma: Gaussian noise standard deviation on the 0-255 scale (first 1-30, second
            1-25).
        poisson_scale: Poisson noise scale (first 0.05-3, second 0.05-2.5).
        gray_noise_prob: probability that one noise field is shared by all bands (0.4).
        jpeg_prob: probability of JPEG compression (1.0).
        jpeg_quality: JPEG quality range (30-95), rounded to an integer for PIL.
    """

    blur_prob: float = 1.0
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_quality: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # from YAML/JSON
                object.__setattr__(self, f.name, tuple(value))
        for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            _check_prob(name, getattr(self, name))
        _check_prob("jpeg_prob", self.jpeg_prob)
        _check_range_pair("blur_sigma", self.blur_sigma, minimum=0.0, strict=True)
        _check_range_pair("betag_range", self.betag_range, minimum=0.0, strict=True)
        _check_range_pair("betap_range", self.betap_range, minimum=0.0, strict=True)
        _check_range_pair("resize_range", self.resize_range, minimum=0.0, strict=True)
        lo, hi = self.resize_range
        if not lo <= 1.0 <= hi:
            raise ConfigError(
                f"resize_range must contain 1 ('down' draws in [low, 1], 'up' in [1, high]), "
                f"got {self.resize_range}"
            )
        _check_range_pair("noise_sigma", self.noise_sigma, minimum=0.0)
        _check_range_pair("poisson_scale", self.poisson_scale, minimum=0.0)
        _check_range_pair("jpeg_quality", self.jpeg_quality, minimum=1.0, maximum=100.0)
        unknown = [k for k in self.kernel_types if k not in KERNEL_TYPES]
        if unknown or not self.kernel_types:
            raise ConfigError(
                f"kernel_types {self.kernel_types} has unknown or no entries; use {KERNEL_TYPES}"
            )
        _check_probs("kernel_probs", self.kernel_probs, len(self.kernel_types))
        _check_probs("resize_probs", self.resize_probs, 3)
        if not self.kernel_sizes or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0
            for k in self.kernel_sizes
        ):
            raise ConfigError(f"kernel_sizes must be odd positive ints, got {self.kernel_sizes}")
        _check_modes("resize_modes", self.resize_modes)


def _check_prob(name: str, p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_probs(name: str, probs: Sequence[float], n: int) -> None:
    if len(probs) != n or any(not isinstance(p, int | float) or p < 0 for p in probs):
        raise ConfigError(f"{name} must be {n} non-negative probabilities, got {probs}")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError(f"{name} must sum to 1, got {probs} (sum {sum(probs):g})")


def _check_range_pair(
    name: str,
    pair: Sequence[float],
    *,
    minimum: float,
    maximum: float = math.inf,
    strict: bool = False,
) -> None:
    ok = (
        isinstance(pair, Sequence)
        and len(pair) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair)
        and all(math.isfinite(v) for v in pair)
        and pair[0] <= pair[1]
        and (pair[0] > minimum if strict else pair[0] >= minimum)
        and pair[1] <= maximum
    )
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        top = "" if math.isinf(maximum) else f" and <= {maximum:g}"
        raise ConfigError(
            f"{name} must be a (low, high) pair with low <= high, low {bound}{top}; got {pair!r}"
        )


def _check_modes(name: str, modes: Sequence[str]) -> None:
    if not modes or any(m not in ALLOWED_RESIZE_MODES for m in modes):
        raise ConfigError(f"{name} {modes} must be non-empty and within {ALLOWED_RESIZE_MODES}")


#: Real-ESRGAN's second-order options: blur with probability 0.8, sigma 0.2-1.5, resize
#: up/down/keep 0.3/0.4/0.3 over 0.3-1.2 of the target LR size, noise sigma 1-25, Poisson
#: scale 0.05-2.5 (the rest as in the first order).
SECOND_ORDER_DEFAULTS = DegradationStage(
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_probs=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_sigma=(1.0, 25.0),
    poisson_scale=(0.05, 2.5),
)


def _stage_from(value: Any, defaults: DegradationStage, name: str) -> DegradationStage:
    if isinstance(value, DegradationStage):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(DegradationStage)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in {name}; valid keys: {sorted(known)}")
        return replace(defaults, **dict(value))
    raise ConfigError(f"{name} must be a DegradationStage or a mapping, got {type(value)}")


@dataclass(frozen=True)
class RealDegradationConfig:
    """Parameters of the second-order degradation of Real-ESRGAN (Wang et al. 2021, Sec. 3).

    ``RealDegradationConfig()`` reproduces Real-ESRGAN's released training options. Stages may be
    given as mappings (e.g. from YAML); missing keys take that order's defaults.

    Attributes:
        first: first-order stage (blur, resize relative to the HR size, noise, JPEG).
        second: second-order stage (blur, resize relative to the target LR size, noise); its
            JPEG settings are used in the final step.
        final_sinc_prob: probability of the final sinc filter (Sec. 3.3; Real-ESRGAN 0.8), with
            a size from ``second.kernel_sizes`` and a cutoff in [pi/3, pi].
        final_resize_modes: modes of the final resize to the LR size (area/bilinear/bicubic).
        jpeg_per_band: compress each band of non-RGB images as a grayscale JPEG; when False,
            JPEG is applied to 3-band images only.
    """

    first: DegradationStage = field(default_factory=DegradationStage)
    second: DegradationStage = field(default_factory=lambda: SECOND_ORDER_DEFAULTS)
    final_sinc_prob: float = 0.8
    final_resize_modes: tuple[str, ...] = RESIZE_MODES
    jpeg_per_band: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "first", _stage_from(self.first, DegradationStage(), "first"))
        object.__setattr__(
            self, "second", _stage_from(self.second, SECOND_ORDER_DEFAULTS, "second")
        )
        if isinstance(self.final_resize_modes, list):
            object.__setattr__(self, "final_resize_modes", tuple(self.final_resize_modes))
        _check_prob("final_sinc_prob", self.final_sinc_prob)
        _check_modes("final_resize_modes", self.final_resize_modes)
        if not isinstance(self.jpeg_per_band, bool):
            raise ConfigError(f"jpeg_per_band must be true or false, got {self.jpeg_per_band!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples) that ``RealDegradationConfig(**d)`` reads back."""

        def _plain(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: _plain(w) for k, w in v.items()}
            return list(v) if isinstance(v, tuple) else v

        return _plain(asdict(self))


__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "SECOND_ORDER_DEFAULTS",
    "DegradationStage",
    "RealDegradationConfig",
]
