"""Figures: image grids, denoising-chain figures and loss curves (PNG, written atomically).

* :func:`save_image_grid` — samples ``[N, C, H, W]`` in ``[-1, 1]`` as one PNG grid, any band count
  (RGB from chosen bands, a single band as grey, optional percentile stretch for multispectral).
* :func:`save_chain_figure` — the reverse-diffusion chain: one row per sample, columns ``x_t`` at
  decreasing ``t`` (as Fig. 3 of the DDPM satellite-imagery report, after Ho et al., 2020, Fig. 6).
* :func:`save_loss_curves` — training curves with exponential-moving-average smoothing.

Grids are drawn with PIL at the images' own pixels (so their size is exact); the other figures with
matplotlib's object API on the Agg canvas (no pyplot global state, no display needed). Every file
is written to a temporary name and moved into place (:func:`os.replace`): an interrupted run never
leaves a truncated PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from terradiff.io import atomic_path

__all__ = [
    "save_chain_figure",
    "save_image_grid",
    "save_loss_curve",
    "save_loss_curves",
    "to_display",
]

Stretch = bool | str | None


def _as_numpy4d(images: Tensor | np.ndarray, what: str = "images") -> np.ndarray:
    if isinstance(images, Tensor):
        arr = images.detach().float().cpu().numpy()
    elif isinstance(images, np.ndarray):
        arr = images.astype(np.float32, copy=False)
    else:
        raise TypeError(
            f"{what} must be a torch.Tensor or numpy array, got {type(images).__name__}"
        )
    if arr.ndim != 4:
        hint = " (a single image? add a batch axis: x[None])" if arr.ndim == 3 else ""
        raise ValueError(f"{what} must have shape [N, C, H, W], got {tuple(arr.shape)}{hint}")
    if arr.shape[0] == 0 or arr.shape[2] == 0 or arr.shape[3] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(arr.shape)}")
    return arr


def _choose_bands(c: int, rgb_bands: Sequence[int] | None) -> list[int]:
    if rgb_bands is None:
        if c >= 3:
            return [0, 1, 2]
        if c == 1:
            return [0]
        raise ValueError(
            f"images have {c} bands: pass rgb_bands=(i,) for one band as grey or three indices "
            "for an RGB composite"
        )
    bands = [int(b) for b in rgb_bands]
    if len(bands) not in (1, 3):
        raise ValueError(f"rgb_bands needs 1 (grey) or 3 (RGB) indices, got {bands}")
    bad = [b for b in bands if not 0 <= b < c]
    if bad:
        raise ValueError(f"rgb_bands {bands} out of range for images with {c} bands")
    return bands


def _stretch_mode(stretch: Stretch) -> str:
    if stretch in (None, False, "none", "linear"):
        return "linear"
    if stretch in (True, "percentile"):
        return "percentile"
    raise ValueError(f"stretch must be False/'linear' or True/'percentile', got {stretch!r}")


def to_display(
    images: Tensor | np.ndarray,
    rgb_bands: Sequence[int] | None = None,
    *,
    stretch: Stretch = False,
    percentiles: tuple[float, float] = (2.0, 98.0),
    reference: Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """Map ``[N, C, H, W]`` images in ``[-1, 1]`` to displayable ``[N, H, W, 3|1]`` in ``[0, 1]``.

    Args:
        images: Model-space images (values outside ``[-1, 1]``, e.g. noisy ``x_t``, are clipped).
        rgb_bands: Bands to show: 3 indices (RGB) or 1 (grey). Default: the first three bands, or
            the only band of single-band images.
        stretch: ``False``/``"linear"``: ``(x + 1) / 2``. ``True``/``"percentile"``: per band,
            map the ``percentiles`` of all pixels of ``reference`` (default: ``images``) to 0 and
            1 — for multispectral data whose reflectances fill only part of ``[-1, 1]``.
        percentiles: Low/high percentiles of the stretch.
        reference: Images that define the stretch (e.g. the final samples of a chain).

    Returns:
        float32 array ``[N, H, W, k]`` with ``k`` = 3 or 1.
    """
    arr = _as_numpy4d(images)
    bands = _choose_bands(arr.shape[1], rgb_bands)
    x = arr[:, bands]
    mode = _stretch_mode(stretch)
    if mode == "linear":
        out = (x + 1.0) * 0.5
    else:
        lo_p, hi_p = percentiles
        if not 0.0 <= lo_p < hi_p <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        ref = x if reference is None else _as_numpy4d(reference, "reference")[:, bands]
        lo = np.nanpercentile(ref, lo_p, axis=(0, 2, 3)).reshape(1, -1, 1, 1)
        hi = np.nanpercentile(ref, hi_p, axis=(0, 2, 3)).reshape(1, -1, 1, 1)
        out = (x - lo) / np.maximum(hi - lo, 1e-8)
    out = np.nan_to_num(out, nan=0.0)
    return np.clip(out, 0.0, 1.0).transpose(0, 2, 3, 1).astype(np.float32)


def _save_figure(fig: Figure, path: Path, dpi: float) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)
    return path


def save_image_grid(
    images: Tensor | np.ndarray,
    path: str | Path,
    nrow: int = 8,
    rgb_bands: Sequence[int] | None = None,
    *,
    stretch: Stretch = False,
    percentiles: tuple[float, float] = (2.0, 98.0),
    padding: int = 2,
    pad_value: float = 1.0,
    scale: int = 1,
    text: dict[str, str] | None = None,
) -> Path:
    """Save images as one PNG grid with ``nrow`` images per row.

    The PNG is ``ncol * W * scale + (ncol + 1) * padding`` pixels wide and
    ``rows * H * scale + (rows + 1) * padding`` high, with ``ncol = min(nrow, N)``.

    Args:
        images: ``[N, C, H, W]`` in ``[-1, 1]``, any band count.
        path: Output ``.png``.
        nrow: Images per row.
        rgb_bands: 3 band indices (RGB) or 1 (grey); default first three bands / the single band.
        stretch: ``"percentile"`` (or ``True``) for a per-band percentile stretch (multispectral).
        percentiles: Low/high percentiles of the stretch.
        padding: Pixels between and around images.
        pad_value: Grey level of the padding in ``[0, 1]``.
        scale: Integer nearest-neighbour upscaling of each image (for small chips).
        text: PNG text chunks to store (e.g. how generated images were drawn).

    Returns:
        The written path.
    """
    if nrow < 1 or scale < 1 or padding < 0:
        raise ValueError(
            f"need nrow >= 1, scale >= 1, padding >= 0; got {nrow}, {scale}, {padding}"
        )
    disp = to_display(images, rgb_bands, stretch=stretch, percentiles=percentiles)
    n, h, w, k = disp.shape
    if scale > 1:
        disp = disp.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = np.full(
        (rows * h + (rows + 1) * padding, ncol * w + (ncol + 1) * padding, k),
        float(pad_value),
        dtype=np.float32,
    )
    for i in range(n):
        r, c = divmod(i, ncol)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = disp[i]
    pixels = np.round(grid * 255.0).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if k == 1 else pixels, mode="L" if k == 1 else "RGB")
    path = Path(path)
    with atomic_path(path) as tmp:
        info = PngInfo()
        for key, value in (text or {}).items():
            info.add_text(str(key), str(value))
        image.save(tmp, format="PNG", pnginfo=info)
        os.chmod(tmp, 0o644)
    return path


def _trajectory_list(trajectory: Any) -> list[tuple[int, np.ndarray]]:
    items = getattr(trajectory, "trajectory", trajectory)  # accept a SamplerOutput
    if not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError("trajectory must be a non-empty list of (timestep, tensor [B, C, H, W])")
    out: list[tuple[int, np.ndarray]] = []
    shape = None
    for i, entry in enumerate(items):
        if not (isinstance(entry, Sequence) and len(entry) == 2):
            raise ValueError(
                f"trajectory[{i}] must be a (timestep, tensor) pair, got {entry!r:.80}"
            )
        t, x = entry
        arr = _as_numpy4d(x, f"trajectory[{i}] tensor")
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise ValueError(
                f"trajectory tensors differ in shape: {shape} at index 0, {arr.shape} at {i}"
            )
        out.append((int(t.item() if isinstance(t, Tensor) else t), arr))
    return out


def save_chain_figure(
    trajectory: Sequence[tuple[int, Tensor]] | Any,
    path: str | Path,
    n_rows: int = 4,
    n_cols: int = 11,
    *,
    rgb_bands: Sequence[int] | None = None,
    stretch: Stretch = False,
    percentiles: tuple[float, float] = (2.0, 98.0),
    title: str | None = None,
    cell_inches: float = 1.0,
    dpi: float = 100,
) -> Path:
    """Save the reverse-diffusion chain: rows = samples, columns = ``x_t`` at decreasing ``t``.

    ``n_cols`` entries are chosen evenly (always including the noisiest and the final one) from the
    trajectory sorted by decreasing timestep, each column labelled ``t=...``. The PNG is
    ``n_cols * cell_inches * dpi`` pixels wide and ``(rows * cell_inches + title band) * dpi``
    high (title band ``0.35`` in when ``title`` is given).

    Args:
        trajectory: ``[(t, x_t [B, C, H, W]), ...]`` as returned in
            ``SamplerOutput.trajectory`` (a ``SamplerOutput`` itself is accepted too).
        path: Output ``.png``.
        n_rows: Samples shown (at most ``B``).
        n_cols: Timesteps shown (at most the trajectory length).
        rgb_bands: Bands to show (see :func:`to_display`).
        stretch: Percentile stretch for multispectral data; its range is taken from the least noisy
            column, so noise columns are shown on the same scale.
        percentiles: Low/high percentiles of the stretch.
        title: Figure title (e.g. the command that made it).
        cell_inches: Size of one image cell.
        dpi: Resolution.

    Returns:
        The written path.
    """
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"n_rows and n_cols must be >= 1, got {n_rows}, {n_cols}")
    steps = sorted(_trajectory_list(trajectory), key=lambda e: -e[0])
    if len(steps) > n_cols:
        picks = np.unique(np.round(np.linspace(0, len(steps) - 1, n_cols)).astype(int))
        steps = [steps[i] for i in picks]
    rows = min(n_rows, steps[0][1].shape[0])
    cols = len(steps)
    reference = steps[-1][1][:rows]
    panels = [
        to_display(
            x[:rows], rgb_bands, stretch=stretch, percentiles=percentiles, reference=reference
        )
        for _, x in steps
    ]
    title_in = 0.35 if title else 0.0
    fig = Figure(figsize=(cols * cell_inches, rows * cell_inches + title_in))
    top = 1.0 - title_in / (rows * cell_inches + title_in)
    label_band = 0.18 / cell_inches  # fraction of a cell kept for the "t=" labels
    for j, ((t, _), panel) in enumerate(zip(steps, panels, strict=True)):
        for i in range(rows):
            cell_h = top / rows
            ax = fig.add_axes(
                (
                    j / cols + 0.02 / cols,
                    top - (i + 1) * cell_h + 0.02 * cell_h,
                    0.96 / cols,
                    cell_h * (1.0 - label_band - 0.02),
                )
            )
            img = panel[i]
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(f"t={t}", fontsize=8, pad=2)
    if title:
        fig.suptitle(title, fontsize=9, y=1.0 - 0.05 * title_in / (rows * cell_inches + title_in))
    return _save_figure(fig, Path(path), dpi)


def ema_smooth(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard's smoothing slider); NaNs are skipped."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if smoothing == 0.0:
        return values.copy()
    out = np.empty_like(values)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            avg = smoothing * avg + (1.0 - smoothing) * v
            weight = smoothing * weight + (1.0 - smoothing)
        out[i] = avg / weight if weight > 0 else np.nan
    return out


def save_loss_curves(
    curves: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    path: str | Path,
    smoothing: float = 0.0,
    *,
    log_y: bool | None = None,
    title: str | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: float = 100,
) -> Path:
    """Plot ``{name: (steps, losses)}`` curves; raw values faint, EMA-smoothed values solid.

    The PNG is ``figsize * dpi`` pixels.

    Args:
        curves: One ``(steps, losses)`` pair per curve (equal lengths).
        path: Output ``.png``.
        smoothing: EMA factor in ``[0, 1)`` (0 = raw only, 0.9 = strong smoothing).
        log_y: Log-scale y axis; default: when all finite values are positive.
        title: Figure title.
        xlabel: x-axis label.
        ylabel: y-axis label.
        figsize: Figure size in inches.
        dpi: Resolution.

    Returns:
        The written path.
    """
    if not curves:
        raise ValueError("curves is empty: give {name: (steps, losses)}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    data = {}
    for name, pair in curves.items():
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise ValueError(f"curve {name!r} must be a (steps, losses) pair")
        steps = np.asarray(pair[0], dtype=np.float64).ravel()
        losses = np.asarray(pair[1], dtype=np.float64).ravel()
        if len(steps) != len(losses) or len(steps) == 0:
            raise ValueError(
                f"curve {name!r}: steps and losses must be non-empty and of equal length, got "
                f"{len(steps)} and {len(losses)}"
            )
        data[name] = (steps, losses)
    finite = np.concatenate([v[np.isfinite(v)] for _, v in data.values()])
    if log_y is None:
        log_y = finite.size > 0 and bool(np.all(finite > 0))
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for name, (steps, losses) in data.items():
        if smoothing > 0:
            (raw,) = ax.plot(steps, losses, alpha=0.25, linewidth=0.8)
            ax.plot(steps, ema_smooth(losses, smoothing), color=raw.get_color(), label=name)
        else:
            ax.plot(steps, losses, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (f" (EMA {smoothing:g})" if smoothing > 0 else ""))
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    return _save_figure(fig, Path(path), dpi)


def save_loss_curve(
    steps: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    path: str | Path,
    smoothing: float = 0.0,
    **kwargs: Any,
) -> Path:
    """One curve: ``save_loss_curves({"loss": (steps, losses)}, path, smoothing, **kwargs)``."""
    return save_loss_curves({"loss": (steps, losses)}, path, smoothing, **kwargs)


def save_comparison_figure(
    panels: Mapping[str, Tensor | np.ndarray],
    path: str | Path,
    *,
    zoom: tuple[int, int, int] | None = None,
    rgb_bands: Sequence[int] | None = None,
    stretch: Stretch = False,
    panel_inches: float = 2.0,
    dpi: float = 100,
) -> Path:
    """Side-by-side columns (e.g. LR, bicubic, models, HR) of the same images, with zoomed crops.

    Args:
        panels: ``{column title: [N, C, H, W] in [-1, 1]}``; every column has the same N and the
            same H, W (up-sample an LR column with nearest neighbours first, to show its pixels).
        path: the PNG to write (atomically).
        zoom: ``(top, left, size)`` of a square region drawn as a box on each image and shown
            enlarged in a row below it; None: no zoom rows.
        rgb_bands, stretch: as :func:`to_display`; a percentile stretch is taken from the last
            column (the reference, e.g. HR) so all columns share one colour scale.

    Returns:
        ``path``.
    """
    from matplotlib.patches import Rectangle

    names = list(panels)
    if not names:
        raise ValueError("save_comparison_figure needs at least one panel")
    arrays = [_as_numpy4d(panels[k], k) for k in names]
    shape = arrays[0].shape
    for name, arr in zip(names, arrays, strict=True):
        if arr.shape[0] != shape[0] or arr.shape[2:] != shape[2:]:
            raise ValueError(
                f"panel {name!r} has shape {arr.shape}, the first panel {shape}; give every "
                "column the same images at the same size"
            )
    reference = arrays[-1]
    shown = [to_display(a, rgb_bands, stretch=stretch, reference=reference) for a in arrays]
    rows_per_image = 2 if zoom is not None else 1
    n_rows, n_cols = shape[0] * rows_per_image, len(names)
    fig = Figure(figsize=(panel_inches * n_cols, panel_inches * n_rows))
    for i in range(shape[0]):
        for j, (name, images) in enumerate(zip(names, shown, strict=True)):
            ax = fig.add_subplot(n_rows, n_cols, i * rows_per_image * n_cols + j + 1)
            image = images[i]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if zoom is None:
                continue
            top, left, size = zoom
            ax.add_patch(Rectangle((left, top), size, size, fill=False, color="yellow", lw=1))
            zoomed = image[top : top + size, left : left + size]
            axz = fig.add_subplot(n_rows, n_cols, (i * rows_per_image + 1) * n_cols + j + 1)
            axz.imshow(
                zoomed[..., 0] if zoomed.shape[-1] == 1 else zoomed,
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            axz.set_xticks([])
            axz.set_yticks([])
    fig.tight_layout()
    return _save_figure(fig, Path(path), dpi)


def save_map_panel(
    maps: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    unit: str = "",
    vmax: float | None = None,
    cmap: str = "YlGn",
    panel_inches: float = 3.0,
    dpi: float = 100,
) -> Path:
    """Maps side by side with one shared colour bar (e.g. each model's carbon map and the truth).

    Args:
        maps: ``{title: [H, W] array}`` (NaN is drawn as no data, white).
        path: the PNG to write (atomically).
        unit: label of the colour bar (e.g. ``"Mg C/ha"``).
        vmax: top of the colour scale (default: the 99th percentile over all maps).
        cmap: matplotlib colour map.

    Returns:
        ``path``.
    """
    if not maps:
        raise ValueError("save_map_panel needs at least one map")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in maps.items()}
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays.values()])
    top = vmax if vmax is not None else (float(np.percentile(finite, 99)) if finite.size else 1.0)
    fig = Figure(figsize=(panel_inches * len(arrays) + 0.8, panel_inches))
    axes = [fig.add_subplot(1, len(arrays), i + 1) for i in range(len(arrays))]
    image = None
    for ax, (title, array) in zip(axes, arrays.items(), strict=True):
        image = ax.imshow(np.ma.masked_invalid(array), cmap=cmap, vmin=0.0, vmax=top)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    cax = fig.add_axes((0.93, 0.15, 0.015, 0.7))
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(unit)
    return _save_figure(fig, Path(path), dpi)
