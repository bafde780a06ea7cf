"""Super-resolution degradations: bicubic down/up-sampling and a second-order "real-world" pipeline.

Two ways to make a low-resolution (LR) image from a high-resolution (HR) one, both working on
float tensors ``[C, H, W]`` or ``[B, C, H, W]`` in [-1, 1] with any number of bands:

* **Bicubic** (:func:`bicubic_downsample`): the classic SR benchmark degradation, an anti-aliased
  bicubic shrink by a factor ``scale`` (integer or not). The LR size is
  ``round(H / scale) x round(W / scale)`` rounded half up (:func:`lr_size`). With
  ``antialias=True``, :func:`torch.nn.functional.interpolate` widens the cubic kernel (``a = -0.5``)
  by the scale factor, which equals PIL's ``Image.resize(..., BICUBIC)`` to float precision.
  :func:`upsample_to` is the inverse direction used by SR3 conditioning (Saharia et al. 2021,
  "Image Super-Resolution via Iterative Refinement", Sec. 2.4: the LR image is bicubic-upsampled
  to the HR size and concatenated with ``x_t``).
* **Real-world** (:func:`degrade_real`): the high-order degradation model of Real-ESRGAN (Wang
  et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
  Data", Sec. 3.1-3.3 and Fig. 2), applied twice::

      x -> [blur -> random resize -> noise -> JPEG]          first order  (Sec. 3.1)
        -> [blur -> random resize -> noise]                   second order (Sec. 3.2)
        -> {resize to LR size + sinc filter, JPEG} in random order       (Sec. 3.3)

  Blur kernels are isotropic/anisotropic Gaussian, generalized Gaussian and plateau kernels
  (Sec. 3.1, "Blur") or 2-D sinc filters (Sec. 3.3, ringing/overshoot); resizing picks "up",
  "down" or "keep" and a mode among area/bilinear/bicubic; noise is Gaussian or Poisson, per band
  ("color") or shared by all bands ("gray"); JPEG goes through PIL at a random quality. The default
  ranges of :class:`RealDegradationConfig` are those of Real-ESRGAN's released training options
  (``train_realesrnet_x4plus.yml``). JPEG only exists for 8-bit RGB: it is applied to 3-band
  images, to each band of other images as a grayscale JPEG when ``jpeg_per_band=True``, and
  skipped otherwise (recorded as ``"skipped"`` in the parameters).

Randomness comes only from the ``generator`` argument (a :class:`torch.Generator` or an ``int``
seed), never from the global RNG, so the same seed gives the same LR image. Internally the
pipeline works in [0, 1] (where Real-ESRGAN's noise levels, given on the 0-255 scale, are
defined), clips to [0, 1] after every stage, and returns [-1, 1].
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from terradiff.errors import ConfigError, DataError

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
_ALLOWED_RESIZE_MODES = ("area", "bilinear", "bicubic", "nearest")
#: Values of ``kind`` accepted by :func:`make_lr`.
LR_KINDS: tuple[str, ...] = ("bicubic", "real")

# Inputs may exceed [-1, 1] by this much (round-off of an earlier float op) before it is an error.
_RANGE_TOL = 1e-3

GeneratorLike = torch.Generator | int | None


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _check_scale(scale: float) -> float:
    """``scale`` as a finite float > 1, or a :class:`DataError` saying what a scale is."""
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise DataError(
            f"scale must be a number > 1 (the HR/LR size ratio, e.g. 4 or 2.5), got {scale!r}"
        )
    value = float(scale)
    if not math.isfinite(value) or value <= 1.0:
        raise DataError(
            f"scale must be a finite number > 1 (the HR/LR size ratio, e.g. 4 or 2.5), "
            f"got {scale!r}; a scale <= 1 would not make a low-resolution image"
        )
    return value


def _as_batch(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, bool]:
    """``x`` as ``[B, C, H, W]`` (and whether it was ``[C, H, W]``), checked float and finite."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor [C, H, W] or [B, C, H, W], got {type(x)}")
    if x.ndim not in (3, 4):
        raise DataError(
            f"{name} must have shape [C, H, W] or [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DataError(
            f"{name} has dtype {x.dtype}; degradations need a float image in [-1, 1] "
            "(convert with terradiff.data.transforms.to_model(scaling.to_unit(x)))"
        )
    if x.numel() == 0:
        raise DataError(f"{name} is empty (shape {tuple(x.shape)})")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise DataError(
            f"{name} contains {bad} non-finite value(s) (NaN/Inf); fill nodata pixels "
            "(e.g. with the raster's mask) before making a low-resolution image"
        )
    return (x[None], True) if x.ndim == 3 else (x, False)


def _check_range(x: torch.Tensor, name: str = "x") -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - _RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise DataError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}] but must lie in [-1, 1]; scale it with "
            "terradiff.data.transforms.to_model (or pass clamp=False to bicubic resizing)"
        )


def lr_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of the LR image of an ``height x width`` HR image: ``round(side / scale)``, half up.

    Args:
        height: HR height in pixels.
        width: HR width in pixels.
        scale: HR/LR size ratio, > 1 (integer or not, e.g. 4 or 1.5).

    Returns:
        ``(lr_height, lr_width)``, both >= 1.

    Raises:
        DataError: ``scale`` is not a finite number > 1, or the image is smaller than ``scale``
            pixels on a side (its LR version would be empty).
    """
    s = _check_scale(scale)
    if height < s or width < s:
        raise DataError(
            f"image of {height}x{width} pixels is smaller than the scale factor {scale:g}: its "
            f"low-resolution version would have no pixels; use HR images of at least "
            f"{math.ceil(s)}x{math.ceil(s)} pixels (ideally a multiple of the scale)"
        )
    # floor(v + 0.5): half-up rounding, so 37.5 -> 38 (Python's round() would give 38 but 2.5 -> 2).
    return max(1, math.floor(height / s + 0.5)), max(1, math.floor(width / s + 0.5))


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, bool):
        raise DataError(f"size must be an int or (height, width), got {size!r}")
    if isinstance(size, int):
        out = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2:
        out = (int(size[0]), int(size[1]))
    else:
        raise DataError(f"size must be an int or (height, width), got {size!r}")
    if out[0] <= 0 or out[1] <= 0:
        raise DataError(f"size must be positive, got {size!r}")
    return out


def _interpolate(
    x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool
) -> torch.Tensor:
    """:func:`F.interpolate` of a float ``[B, C, H, W]`` batch (no-op when the size matches)."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    return F.interpolate(x, size=size, mode=mode)


# --------------------------------------------------------------------------------------------
# bicubic
# --------------------------------------------------------------------------------------------


def bicubic_downsample(x: torch.Tensor, scale: float, *, clamp: bool = True) -> torch.Tensor:
    """Anti-aliased bicubic down-sampling by ``scale`` (the standard SR benchmark degradation).

    The LR size is :func:`lr_size` (``round(H / scale)``, half up), so integer scales of sizes
    divisible by the scale give exactly ``H / scale``. The bicubic kernel (``a = -0.5``) is
    stretched by the scale factor (``antialias=True``), which low-pass filters before
    sub-sampling and equals PIL's ``BICUBIC`` resize of a float image.

    Args:
        x: HR image ``[C, H, W]`` or ``[B, C, H, W]``, float, any band count.
        scale: HR/LR size ratio > 1, e.g. 2, 3, 4, 8 or 1.5, 2.5.
        clamp: clip the result to [-1, 1] (bicubic overshoots at edges); then ``x`` must lie in
            [-1, 1]. With ``False`` any value range is accepted and nothing is clipped.

    Returns:
        The LR image, same layout and dtype as ``x``.

    Raises:
        DataError: bad ``scale``, image smaller than ``scale``, non-float/non-finite ``x``, or
            ``x`` outside [-1, 1] with ``clamp=True``.
    """
    batch, squeeze = _as_batch(x)
    if clamp:
        _check_range(batch)
    out_size = lr_size(batch.shape[-2], batch.shape[-1], scale)
    y = _interpolate(batch, out_size, "bicubic", antialias=True)
    if clamp:
        y = y.clamp(-1.0, 1.0)
    return y[0] if squeeze else y


def upsample_to(
    x: torch.Tensor,
    size: int | Sequence[int],
    *,
    mode: str = "bicubic",
    clamp: bool = True,
) -> torch.Tensor:
    """Bicubic resize of an LR image to ``size``, e.g. back to the HR size for SR3 conditioning.

    SR3 (Saharia et al. 2021, Sec. 2.4) conditions the denoiser on the LR image upsampled to the
    target resolution with bicubic interpolation and concatenated with ``x_t`` along channels.
    Anti-aliasing is used only if ``size`` shrinks the image.

    Args:
        x: image ``[C, H, W]`` or ``[B, C, H, W]``, float, any band count.
        size: output ``(height, width)`` or a square side.
        mode: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"`` or ``"area"``.
        clamp: clip the result to [-1, 1] (bicubic overshoots); then ``x`` must lie in [-1, 1].

    Returns:
        The resized image, same layout and dtype as ``x``.

    Raises:
        DataError: bad ``size`` or ``mode``, non-float/non-finite ``x``, or ``x`` outside
            [-1, 1] with ``clamp=True``.
    """
    if mode not in _ALLOWED_RESIZE_MODES:
        raise DataError(f"unknown resize mode {mode!r}; use one of {_ALLOWED_RESIZE_MODES}")
    batch, squeeze = _as_batch(x)
    if clamp:
        _check_range(batch)
    out_size = _size2(size)
    shrink = out_size[0] < batch.shape[-2] or out_size[1] < batch.shape[-1]
    y = _interpolate(batch, out_size, mode, antialias=shrink)
    if clamp:
        y = y.clamp(-1.0, 1.0)
    return y[0] if squeeze else y


# --------------------------------------------------------------------------------------------
# configuration of the real-world pipeline
# --------------------------------------------------------------------------------------------


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
    if not modes or any(m not in _ALLOWED_RESIZE_MODES for m in modes):
        raise ConfigError(f"{name} {modes} must be non-empty and within {_ALLOWED_RESIZE_MODES}")


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


# --------------------------------------------------------------------------------------------
# random draws (all from an explicit generator)
# --------------------------------------------------------------------------------------------


def _make_generator(generator: GeneratorLike) -> tuple[torch.Generator, int | None]:
    """The generator to draw from and the seed to record (None for a caller's generator)."""
    if isinstance(generator, torch.Generator):
        return generator, None
    if generator is None:
        # Fresh OS entropy from a throw-away generator; the global RNG is not touched.
        seed = torch.Generator().seed() % 2**63
        return torch.Generator().manual_seed(seed), seed
    if isinstance(generator, int) and not isinstance(generator, bool):
        seed = generator % 2**63
        return torch.Generator().manual_seed(seed), seed
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


def _rand(g: torch.Generator) -> float:
    return float(torch.rand(1, generator=g, device=g.device)[0])


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _rand(g)


def _pick(g: torch.Generator, options: Sequence[Any], probs: Sequence[float] | None = None) -> Any:
    """One of ``options`` (uniformly, or with ``probs``), from a single uniform draw."""
    u = _rand(g)
    if probs is None:
        return options[min(int(u * len(options)), len(options) - 1)]
    total = 0.0
    for option, p in zip(options, probs, strict=True):
        total += p
        if u < total:
            return option
    return next(o for o, p in zip(reversed(options), reversed(probs), strict=True) if p > 0)


def _split_beta(g: torch.Generator, beta_range: tuple[float, float]) -> float:
    """Shape parameter: half the time in ``[low, 1]``, otherwise in ``[1, high]``.

    Follows basicsr's ``random_bivariate_generalized_gaussian``/``random_bivariate_plateau``
    (Real-ESRGAN's kernels), which keep kernels sharper and flatter than a Gaussian equally
    likely.
    """
    lo, hi = beta_range
    if _rand(g) < 0.5:
        return _uniform(g, lo, min(1.0, hi))
    return _uniform(g, max(1.0, lo), hi)


def _sample_sinc(g: torch.Generator, sizes: Sequence[int], final: bool) -> dict[str, Any]:
    size = int(_pick(g, sizes))
    lo = math.pi / 3 if (final or size < 13) else math.pi / 5
    return {"kind": "sinc", "size": size, "omega_c": _uniform(g, lo, math.pi)}


def _sample_blur(stage: DegradationStage, g: torch.Generator) -> dict[str, Any] | None:
    if _rand(g) >= stage.blur_prob:
        return None
    if _rand(g) < stage.sinc_prob:
        return _sample_sinc(g, stage.kernel_sizes, final=False)
    size = int(_pick(g, stage.kernel_sizes))
    kind = _pick(g, stage.kernel_types, stage.kernel_probs)
    sigma_x = _uniform(g, *stage.blur_sigma)
    if kind.endswith("aniso"):
        sigma_y = _uniform(g, *stage.blur_sigma)
        theta = _uniform(g, -math.pi, math.pi)
    else:
        sigma_y, theta = sigma_x, 0.0
    params: dict[str, Any] = {
        "kind": kind,
        "size": size,
        "sigma_x": sigma_x,
        "sigma_y": sigma_y,
        "theta": theta,
    }
    if kind.startswith("generalized"):
        params["beta"] = _split_beta(g, stage.betag_range)
    elif kind.startswith("plateau"):
        params["beta"] = _split_beta(g, stage.betap_range)
    return params


def _sample_resize(
    stage: DegradationStage, g: torch.Generator, ref: tuple[int, int]
) -> dict[str, Any]:
    direction = _pick(g, ("up", "down", "keep"), stage.resize_probs)
    lo, hi = stage.resize_range
    if direction == "up":
        factor = _uniform(g, 1.0, hi)
    elif direction == "down":
        factor = _uniform(g, lo, 1.0)
    else:
        factor = 1.0
    mode = _pick(g, stage.resize_modes)
    size = [max(1, int(ref[0] * factor)), max(1, int(ref[1] * factor))]
    return {"direction": direction, "factor": factor, "mode": mode, "size": size}


def _sample_noise(stage: DegradationStage, g: torch.Generator) -> dict[str, Any]:
    gaussian = _rand(g) < stage.gaussian_noise_prob
    gray = _rand(g) < stage.gray_noise_prob
    if gaussian:
        return {"kind": "gaussian", "sigma": _uniform(g, *stage.noise_sigma), "gray": gray}
    return {"kind": "poisson", "scale": _uniform(g, *stage.poisson_scale), "gray": gray}


def _sample_jpeg(
    stage: DegradationStage, g: torch.Generator, bands: int, per_band: bool
) -> dict[str, Any] | None:
    if _rand(g) >= stage.jpeg_prob:
        return None
    quality = round(_uniform(g, *stage.jpeg_quality))
    mode = "rgb" if bands == 3 else ("per_band" if per_band else "skipped")
    return {"quality": quality, "mode": mode}


def _sample_image_params(
    cfg: RealDegradationConfig,
    g: torch.Generator,
    hr: tuple[int, int],
    lr: tuple[int, int],
    bands: int,
) -> dict[str, Any]:
    """Every random choice of one image's degradation (noise fields are drawn when applied)."""
    first = {
        "blur": _sample_blur(cfg.first, g),
        "resize": _sample_resize(cfg.first, g, hr),
        "noise": _sample_noise(cfg.first, g),
        "jpeg": _sample_jpeg(cfg.first, g, bands, cfg.jpeg_per_band),
    }
    second = {
        "blur": _sample_blur(cfg.second, g),
        "resize": _sample_resize(cfg.second, g, lr),
        "noise": _sample_noise(cfg.second, g),
        "jpeg": _sample_jpeg(cfg.second, g, bands, cfg.jpeg_per_band),
    }
    # Real-ESRGAN Sec. 3.3: [resize back + sinc] and JPEG are applied in random order.
    order = "resize_then_jpeg" if _rand(g) < 0.5 else "jpeg_then_resize"
    mode = _pick(g, cfg.final_resize_modes)
    sinc = (
        _sample_sinc(g, cfg.second.kernel_sizes, final=True)
        if _rand(g) < cfg.final_sinc_prob
        else None
    )
    final = {"order": order, "mode": mode, "size": list(lr), "sinc": sinc}
    return {"first": first, "second": second, "final": final}


# --------------------------------------------------------------------------------------------
# the operations (on [1, C, H, W] in [0, 1])
# --------------------------------------------------------------------------------------------


def blur_kernel(params: Mapping[str, Any]) -> torch.Tensor:
    """The normalised ``[k, k]`` blur kernel (float64) described by a sampled ``params`` dict.

    Gaussian-type kernels (Real-ESRGAN Sec. 3.1, "Blur") use the quadratic form
    ``q = x^T Sigma^-1 x`` with ``Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T``:
    Gaussian ``exp(-q / 2)``, generalized Gaussian ``exp(-q^beta / 2)`` and plateau
    ``1 / (1 + q^beta)``. The sinc kernel (Sec. 3.3) is the ideal circular low-pass
    ``omega_c J1(omega_c r) / (2 pi r)``. All are divided by their sum.

    Args:
        params: ``{"kind", "size", ...}`` as recorded by :func:`degrade_real` (``sigma_x``,
            ``sigma_y``, ``theta`` and optionally ``beta``; or ``omega_c`` for ``"sinc"``).
    """
    size = int(params["size"])
    r = size // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    kind = params["kind"]
    if kind == "sinc":
        wc = float(params["omega_c"])
        rr = torch.sqrt(xx**2 + yy**2)
        safe = torch.where(rr > 0, rr, torch.ones_like(rr))
        kernel = wc * torch.special.bessel_j1(wc * safe) / (2 * math.pi * safe)
        kernel = torch.where(rr > 0, kernel, torch.full_like(rr, wc**2 / (4 * math.pi)))
    else:
        c, s = math.cos(params["theta"]), math.sin(params["theta"])
        u = c * xx + s * yy  # coordinates in the kernel's principal axes (R^T x)
        v = -s * xx + c * yy
        q = (u / params["sigma_x"]) ** 2 + (v / params["sigma_y"]) ** 2
        if kind.startswith("generalized"):
            kernel = torch.exp(-0.5 * q ** params["beta"])
        elif kind.startswith("plateau"):
            kernel = 1.0 / (1.0 + q ** params["beta"])
        else:
            kernel = torch.exp(-0.5 * q)
    return kernel / kernel.sum()


def _filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 'same' convolution of ``[1, C, H, W]`` with a centrally symmetric kernel."""
    k = kernel.shape[-1]
    pad = k // 2
    h, w = x.shape[-2:]
    mode = "reflect" if pad < min(h, w) else "replicate"  # reflect needs pad < size
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    weight = kernel.to(device=x.device, dtype=x.dtype)[None, None]
    # Bands as a batch of 1-channel images: the same kernel for every band, and faster on the
    # CPU than a grouped (depthwise) convolution.
    return F.conv2d(xp.transpose(0, 1), weight).transpose(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """One-band luminance: ITU-R BT.601 weights for 3 bands, the band mean otherwise."""
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        return (x * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def _add_noise(x: torch.Tensor, params: Mapping[str, Any], g: torch.Generator) -> torch.Tensor:
    """Gaussian or Poisson noise as in basicsr's ``random_add_*_noise_pt`` (Real-ESRGAN)."""
    _, c, h, w = x.shape
    bands = 1 if params["gray"] else c
    if params["kind"] == "gaussian":
        field_ = torch.randn((1, bands, h, w), generator=g, device=g.device, dtype=torch.float32)
        noise = field_.to(device=x.device, dtype=x.dtype) * (params["sigma"] / 255.0)
    else:
        src = _gray(x) if params["gray"] else x
        # Poisson (shot) noise of an 8-bit image whose number of photon levels is the number of
        # distinct 8-bit values, rounded up to a power of two (basicsr add_poisson_noise_pt).
        q = (src * 255.0).round().clamp(0, 255) / 255.0
        levels = 2.0 ** math.ceil(math.log2(max(1, torch.unique(q).numel())))
        rates = (q * levels).to(device=g.device, dtype=torch.float32)
        counts = torch.poisson(rates, generator=g).to(device=x.device, dtype=x.dtype)
        noise = (counts / levels - q) * params["scale"]
    return (x + noise).clamp(0.0, 1.0)


def _jpeg(x: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
    """JPEG encode/decode with PIL at ``quality``: RGB for 3 bands, else one grayscale per band."""
    if params["mode"] == "skipped":
        return x
    arr = (x[0].clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()

    def _roundtrip(img: np.ndarray, mode: str) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(params["quality"]))
        buf.seek(0)
        with Image.open(buf) as decoded:
            return np.array(decoded.convert(mode))

    if params["mode"] == "rgb":
        out = _roundtrip(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB").transpose(2, 0, 1)
    else:
        out = np.stack([_roundtrip(np.ascontiguousarray(band), "L") for band in arr])
    decoded01 = torch.from_numpy(np.ascontiguousarray(out)).float() / 255.0
    return decoded01.to(device=x.device, dtype=x.dtype)[None]


def _resize01(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    # Real-ESRGAN resizes without anti-aliasing: aliasing is one of the real-world artefacts.
    return _interpolate(x, (int(size[0]), int(size[1])), mode, antialias=False).clamp(0.0, 1.0)


def _apply_stage(
    x: torch.Tensor, stage: Mapping[str, Any], g: torch.Generator, with_jpeg: bool
) -> torch.Tensor:
    if stage["blur"] is not None:
        x = _filter2d(x, blur_kernel(stage["blur"])).clamp(0.0, 1.0)
    x = _resize01(x, stage["resize"]["size"], stage["resize"]["mode"])
    x = _add_noise(x, stage["noise"], g)
    if with_jpeg and stage["jpeg"] is not None:
        x = _jpeg(x, stage["jpeg"])
    return x


def _apply_image(x: torch.Tensor, params: Mapping[str, Any], g: torch.Generator) -> torch.Tensor:
    x = _apply_stage(x, params["first"], g, with_jpeg=True)
    x = _apply_stage(x, params["second"], g, with_jpeg=False)
    final = params["final"]
    jpeg = params["second"]["jpeg"]
    if final["order"] == "jpeg_then_resize" and jpeg is not None:
        x = _jpeg(x, jpeg)
    x = _resize01(x, final["size"], final["mode"])
    if final["sinc"] is not None:
        x = _filter2d(x, blur_kernel(final["sinc"])).clamp(0.0, 1.0)
    if final["order"] == "resize_then_jpeg" and jpeg is not None:
        x = _jpeg(x, jpeg)
    return x


# --------------------------------------------------------------------------------------------
# public pipeline
# --------------------------------------------------------------------------------------------


@overload
def degrade_real(
    x: torch.Tensor,
    scale: float,
    config: RealDegradationConfig | None = ...,
    generator: GeneratorLike = ...,
    *,
    return_params: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def degrade_real(
    x: torch.Tensor,
    scale: float,
    config: RealDegradationConfig | None = ...,
    generator: GeneratorLike = ...,
    *,
    return_params: Literal[True],
) -> tuple[torch.Tensor, dict[str, Any]]: ...


@torch.no_grad()
def degrade_real(
    x: torch.Tensor,
    scale: float,
    config: RealDegradationConfig | None = None,
    generator: GeneratorLike = None,
    *,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
    """Second-order "real-world" degradation of Real-ESRGAN (Wang et al. 2021, Sec. 3, Fig. 2).

    For each image of the batch, independently: blur, random resize (relative to the HR size),
    noise, JPEG (first order, Sec. 3.1); blur, random resize (relative to the LR size), noise
    (second order, Sec. 3.2); then resize to the LR size :func:`lr_size` followed by a sinc
    filter, and JPEG, in random order (Sec. 3.3). Values are clipped to the valid range after
    every stage. Not differentiable (JPEG goes through PIL); runs under ``torch.no_grad``.

    Args:
        x: HR image ``[C, H, W]`` or ``[B, C, H, W]``, float in [-1, 1], any band count.
        scale: HR/LR size ratio > 1 (integer or not).
        config: sampling ranges; ``None`` means Real-ESRGAN's defaults.
        generator: a :class:`torch.Generator` (advanced by the call; on the CPU or ``x``'s
            device), an ``int`` seed, or ``None`` for a fresh OS-entropy seed (recorded in the
            parameters). The global RNG is never used.
        return_params: also return the sampled parameters.

    Returns:
        The LR image (same layout and dtype as ``x``, in [-1, 1]); with ``return_params``, also
        ``{"scale", "seed", "lr_size", "images": [per-image dict]}`` where each image's dict
        holds ``first``/``second`` (``blur``, ``resize``, ``noise``, ``jpeg``) and ``final``
        (``order``, ``mode``, ``size``, ``sinc``); disabled steps are ``None`` and a JPEG that
        does not apply to the band count has ``mode == "skipped"``. Plain JSON types only.

    Raises:
        DataError: bad ``scale``, image smaller than ``scale``, non-float/non-finite ``x`` or
            values outside [-1, 1].
    """
    cfg = RealDegradationConfig() if config is None else config
    if not isinstance(cfg, RealDegradationConfig):
        raise ConfigError(f"config must be a RealDegradationConfig or None, got {type(cfg)}")
    batch, squeeze = _as_batch(x)
    _check_range(batch)
    b, c, h, w = batch.shape
    target = lr_size(h, w, scale)
    gen, seed = _make_generator(generator)
    x01 = ((batch.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    outs, records = [], []
    for i in range(b):
        params = _sample_image_params(cfg, gen, (h, w), target, c)
        outs.append(_apply_image(x01[i : i + 1], params, gen))
        records.append(params)
    y = (torch.cat(outs) * 2.0 - 1.0).clamp(-1.0, 1.0).to(batch.dtype)
    y = y[0] if squeeze else y
    if not return_params:
        return y
    info = {"scale": float(scale), "seed": seed, "lr_size": list(target), "images": records}
    return y, info


def make_lr(
    x: torch.Tensor,
    scale: float,
    kind: Literal["bicubic", "real"] = "bicubic",
    generator: GeneratorLike = None,
    config: RealDegradationConfig | None = None,
) -> torch.Tensor:
    """Low-resolution version of ``x`` by :func:`bicubic_downsample` or :func:`degrade_real`.

    Args:
        x: HR image ``[C, H, W]`` or ``[B, C, H, W]``, float in [-1, 1].
        scale: HR/LR size ratio > 1.
        kind: ``"bicubic"`` (deterministic; ``generator`` and ``config`` unused) or ``"real"``
            (Real-ESRGAN second-order degradation).
        generator: generator or seed of the ``"real"`` pipeline.
        config: ranges of the ``"real"`` pipeline.

    Returns:
        The LR image of size :func:`lr_size`, same layout and dtype as ``x``.

    Raises:
        ConfigError: unknown ``kind``.
        DataError: see :func:`bicubic_downsample` and :func:`degrade_real`.
    """
    if kind == "bicubic":
        return bicubic_downsample(x, scale)
    if kind == "real":
        return degrade_real(x, scale, config, generator)
    raise ConfigError(f"unknown low-resolution kind {kind!r}; use one of {LR_KINDS}")


__all__ = [
    "KERNEL_TYPES",
    "LR_KINDS",
    "RESIZE_MODES",
    "SECOND_ORDER_DEFAULTS",
    "DegradationStage",
    "RealDegradationConfig",
    "bicubic_downsample",
    "blur_kernel",
    "degrade_real",
    "lr_size",
    "make_lr",
    "upsample_to",
]
