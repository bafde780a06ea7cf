"""The second-order "real-world" degradation of Real-ESRGAN (Wang et al. 2021, Sec. 3, Fig. 2).

:func:`degrade_real` draws every random choice of an image's degradation from an explicit
generator (blur kernel, resize, noise, JPEG quality; first order Sec. 3.1, second order Sec. 3.2,
final resize + sinc and JPEG in random order Sec. 3.3) and applies it in [0, 1];
:func:`blur_kernel` builds the sampled kernels. :func:`make_lr` picks this pipeline or the
bicubic one of :mod:`terradiff.data.degrade.resample`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from terradiff.data.degrade.config import DegradationStage, RealDegradationConfig
from terradiff.data.degrade.resample import (
    as_batch,
    bicubic_downsample,
    check_range,
    interpolate,
    lr_size,
)
from terradiff.errors import ConfigError

#: Values of ``kind`` accepted by :func:`make_lr`.
LR_KINDS: tuple[str, ...] = ("bicubic", "real")

GeneratorLike = torch.Generator | int | None


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
    return interpolate(x, (int(size[0]), int(size[1])), mode, antialias=False).clamp(0.0, 1.0)


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
    batch, squeeze = as_batch(x)
    check_range(batch)
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


__all__ = ["LR_KINDS", "GeneratorLike", "blur_kernel", "degrade_real", "make_lr"]
