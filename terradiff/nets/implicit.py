"""Implicit (coordinate-MLP) decoders: feature maps -> values at any continuous position / size.

Two modules, both plain ``nn.Module`` s that know nothing of diffusion:

* :class:`LocalImplicitDecoder` -- the Local Implicit Image Function of Chen, Liu & Wang (2021,
  "Learning Continuous Image Representation with Local Implicit Image Function", CVPR; LIIF):
  the value at a query coordinate ``x_q`` is an MLP of the nearest latent code ``z*`` and the
  relative coordinate ``x_q - v*`` (Eq. 2), with the 3x3 feature unfolding (Eq. 3), the local
  ensemble over the four surrounding latent codes with bilinear-like area weights (Eq. 4) and
  cell decoding (Eq. 5: the query pixel's size is an extra input).
* :class:`MultiScaleImplicitDecoder` -- the multi-scale use of that function in the decoder of
  the Implicit Diffusion Model of Gao et al. (2023, "Implicit Diffusion Models for Continuous
  Super-Resolution", CVPR; IDM, Sec. 3): every level of a multi-scale feature pyramid (e.g. the
  decoder features of :meth:`terradiff.nets.unet.UNet.forward_features`) is queried at the
  target pixel coordinates by its own local implicit function, and the per-level answers are
  combined under a modulation that depends on the scaling factor (IDM's scale-adaptive
  conditioning, where the scale sets the proportion of the features that enter the output).

Coordinates (the LIIF convention, i.e. ``align_corners=False`` semantics)
-----------------------------------------------------------------------
An image of ``H x W`` pixels covers the square ``[-1, 1] x [-1, 1]``; ``-1`` and ``1`` are the
*outer edges* of the border pixels, and pixel ``i`` of an axis of ``n`` pixels has its centre at
``-1 + (2 i + 1) / n``. A coordinate is the pair ``(y, x)`` -- row first, like the tensor
indices ``[..., H, W]`` (note: :func:`torch.nn.functional.grid_sample` takes ``(x, y)``; the
modules flip the pair internally). The *cell* of a query is the size of the pixel it stands
for, ``(2 / H, 2 / W)`` for an ``H x W`` output, in the same units.

Efficiency note
---------------
LIIF's first MLP layer acts on the concatenation ``[unfold3x3(z*), x_q - v*, cell]``. Because
that layer is linear, its feature part equals a 3x3 convolution (zero padding, as LIIF's
``F.unfold(..., padding=1)``) of the feature map evaluated at the nearest latent. The modules
therefore run that convolution *once* on the ``h x w`` feature map (:meth:`encode`) and look
the result up per query, which is mathematically the same function with the same parameter
count but costs ``h * w`` instead of ``4 * Q`` large matrix products (``Q`` queries, ``Q >> h w``
when upsampling). ``encode`` + chunked ``query`` is how :meth:`render` bounds its memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LocalImplicitDecoder", "MultiScaleImplicitDecoder", "make_cell", "make_coord"]

#: Offset that breaks ties of the local-ensemble lookups (LIIF's ``eps_shift``).
_EPS_SHIFT = 1e-6


def _size2(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """``int`` or ``(H, W)`` -> ``(H, W)`` of positive ints, with a clear error otherwise."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of them, got {size!r}")
    return int(size[0]), int(size[1])


def make_coord(
    shape: int | Sequence[int],
    flatten: bool = True,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Pixel-centre coordinates of an ``H x W`` grid in ``[-1, 1]`` (``align_corners=False``).

    Pixel ``(i, j)`` gets ``(y_i, x_j)`` with ``y_i = -1 + (2 i + 1) / H`` and
    ``x_j = -1 + (2 j + 1) / W``: the grid of LIIF (Chen et al. 2021, Sec. 3.1, where the pixel
    centres ``v`` of the latent codes and of the queries live in one continuous domain), and the
    convention of ``F.grid_sample(..., align_corners=False)`` / ``F.affine_grid`` with the
    pair in ``(y, x)`` (row, column) order instead of their ``(x, y)``.

    Args:
        shape: ``H`` (a square grid) or ``(H, W)``.
        flatten: Return ``[H * W, 2]`` (row-major: ``j`` runs fastest) instead of ``[H, W, 2]``.
        device: Device of the result.
        dtype: Floating dtype of the result.

    Returns:
        ``[H * W, 2]`` or ``[H, W, 2]`` with ``[..., 0] = y`` and ``[..., 1] = x``.
    """
    H, W = _size2(shape, "shape")
    ys = (2 * torch.arange(H, device=device, dtype=torch.float64) + 1) / H - 1
    xs = (2 * torch.arange(W, device=device, dtype=torch.float64) + 1) / W - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).to(dtype)
    return grid.reshape(H * W, 2) if flatten else grid


def make_cell(
    shape: int | Sequence[int],
    num_queries: int = 1,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The cell (pixel size ``(2 / H, 2 / W)``) of an ``H x W`` output, repeated per query.

    LIIF's cell decoding input (Chen et al. 2021, Sec. 3.3, Eq. 5), in the units of
    :func:`make_coord`.

    Returns:
        ``[num_queries, 2]``.
    """
    H, W = _size2(shape, "shape")
    cell = torch.tensor([2.0 / H, 2.0 / W], device=device, dtype=dtype)
    return cell.expand(num_queries, 2).clone()


class LocalImplicitDecoder(nn.Module):
    """LIIF: continuous values from a feature map (Chen, Liu & Wang, CVPR 2021, Sec. 3).

    For a query coordinate ``x_q`` with cell ``c`` and the latent codes ``z_t`` at pixel centres
    ``v_t`` of the feature map (``h x w`` pixels)::

        I(x_q) = sum_{t in 4 nearest} (S_t' / S) * f([z_t, (x_q - v_t) * (h, w), c * (h, w)])

    * ``f`` is an MLP (ReLU; widths ``hidden``, then ``out_channels``);
    * ``z_t`` is the unfolded code -- the 3x3 neighbourhood concatenated (Eq. 3, zero padding)
      -- when ``feat_unfold``, else the code itself;
    * relative coordinates (Eq. 2) and cells (Eq. 5) are scaled by the feature map's size so
      that they are O(1) whatever its resolution (``x_q - v_t`` in pixels of the feature map,
      times 2);
    * with ``local_ensemble`` (Eq. 4) the four latent codes around ``x_q`` each predict, and the
      predictions are averaged with the weight of each code set to the area ``S_t'`` of the
      rectangle between ``x_q`` and the *diagonally opposite* code (``S`` = the sum), which
      makes the output continuous in ``x_q`` (a bilinear interpolation of the four
      predictions); without it the nearest code alone predicts, which leaves block artefacts at
      the feature map's pixel boundaries. The weights are computed in the equivalent separable
      form ``w_y * w_x``, which differs from LIIF's only where LIIF's is degenerate (all four
      areas zero: queries on the centre line of the border rows/columns, where LIIF averages
      the four predictions evenly; here the weights stay bilinear along the other axis, so
      ``x1`` rendering returns each code's own prediction on the border too).

    The nearest codes are looked up with ``F.grid_sample(mode="nearest", align_corners=False)``
    after shifting ``x_q`` by half a feature pixel in each direction (plus a tiny tie-breaking
    offset); shifted positions are clamped into the map, so queries at the border (or outside
    ``[-1, 1]``) use the border codes with their true relative coordinates.

    Args:
        feature_channels: Channels ``C`` of the feature map.
        out_channels: Values per query (bands, or a hidden width when used inside another net).
        hidden: Widths of the MLP's hidden layers (at least one). LIIF uses
            ``(256, 256, 256, 256)``; the default is a CPU-sized MLP.
        local_ensemble: LIIF Eq. 4 (four codes, area weights) instead of the nearest code.
        feat_unfold: LIIF Eq. 3 (3x3 unfolded codes) instead of the code itself.
        cell_decode: LIIF Eq. 5 (the cell is an input of the MLP).

    Attributes:
        num_coord_inputs: 2 (relative coordinate) + 2 (cell, when ``cell_decode``).
    """

    def __init__(
        self,
        feature_channels: int,
        out_channels: int,
        hidden: Sequence[int] = (128, 128, 128),
        *,
        local_ensemble: bool = True,
        feat_unfold: bool = True,
        cell_decode: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("feature_channels", feature_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden}")
        self.feature_channels = feature_channels
        self.out_channels = out_channels
        self.hidden = hidden
        self.local_ensemble = bool(local_ensemble)
        self.feat_unfold = bool(feat_unfold)
        self.cell_decode = bool(cell_decode)
        self.num_coord_inputs = 4 if cell_decode else 2

        # First MLP layer, split: its feature part is a conv on the feature map (see the module
        # docstring), its coordinate part a bias-free linear map of [rel_coord, cell].
        k = 3 if feat_unfold else 1
        self.feature_proj = nn.Conv2d(feature_channels, hidden[0], k, padding=k // 2)
        self.coord_proj = nn.Linear(self.num_coord_inputs, hidden[0], bias=False)
        # LIIF's first layer is one nn.Linear over all inputs: initialise both parts with its
        # fan-in so that the split changes nothing at initialisation either.
        fan_in = feature_channels * k * k + self.num_coord_inputs
        bound = 1.0 / math.sqrt(fan_in)
        for p in (self.feature_proj.weight, self.feature_proj.bias, self.coord_proj.weight):
            nn.init.uniform_(p, -bound, bound)
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(hidden):
            layers += [nn.ReLU(inplace=True), nn.Linear(c_in, c_out)]
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden[-1], out_channels)]
        self.mlp = nn.Sequential(*layers)

    def extra_repr(self) -> str:
        """Summary line for ``print(decoder)``."""
        return (
            f"params={self.num_parameters():,}, local_ensemble={self.local_ensemble}, "
            f"feat_unfold={self.feat_unfold}, cell_decode={self.cell_decode}"
        )

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ the two stages

    def encode(self, features: Tensor) -> Tensor:
        """Run the feature part of the first MLP layer on the whole map, once.

        Args:
            features: ``[B, feature_channels, h, w]``.

        Returns:
            The latent map ``[B, hidden[0], h, w]`` that :meth:`query` looks up.
        """
        if features.ndim != 4 or features.shape[1] != self.feature_channels:
            raise ValueError(
                f"LocalImplicitDecoder expects features of shape [B, {self.feature_channels}, "
                f"h, w] (feature_channels), got {tuple(features.shape)}"
            )
        return self.feature_proj(features)

    def query(self, latent: Tensor, coords: Tensor, cell: Tensor | None = None) -> Tensor:
        """Values at continuous coordinates from a latent map made by :meth:`encode`.

        Args:
            latent: ``[B, hidden[0], h, w]`` from :meth:`encode`.
            coords: Query coordinates ``[B, Q, 2]`` as ``(y, x)`` in the :func:`make_coord`
                convention (values outside ``[-1, 1]`` extrapolate from the border codes).
            cell: Query pixel sizes ``[B, Q, 2]`` or ``[B, 1, 2]`` (``(2 / H, 2 / W)`` for an
                ``H x W`` output); required when ``cell_decode``, ignored otherwise.

        Returns:
            ``[B, Q, out_channels]``.
        """
        B, _, h, w = latent.shape
        coords, cell = _check_queries(coords, cell, B, self.cell_decode, latent.device)
        size = coords.new_tensor([h, w])  # (h, w): scales rel. coords and cells to O(1)
        feat_coord = make_coord((h, w), flatten=False, device=latent.device)
        feat_coord = feat_coord.permute(2, 0, 1).unsqueeze(0).expand(B, 2, h, w)

        if self.local_ensemble:
            # Shift by half a feature pixel (+ tie-break) in each direction: the nearest codes
            # of the four shifted points are the four codes around x_q.
            half = 1.0 / size
            shifts = [(dy, dx) for dy in (-1.0, 1.0) for dx in (-1.0, 1.0)]
        else:
            half = torch.zeros_like(size)
            shifts = [(0.0, 0.0)]
        grids = []
        for dy, dx in shifts:
            offset = coords.new_tensor([dy, dx]) * half
            if self.local_ensemble:
                offset = offset + _EPS_SHIFT
            shifted = (coords + offset).clamp(-1 + _EPS_SHIFT, 1 - _EPS_SHIFT)
            grids.append(shifted.flip(-1))  # grid_sample wants (x, y)
        grid = torch.stack(grids, dim=1)  # [B, T, Q, 2]: one lookup for all T shifts
        # The lookup runs in float32 (exact for "nearest"; bf16 grids would pick wrong codes).
        z = F.grid_sample(
            latent.float(), grid, mode="nearest", padding_mode="border", align_corners=False
        ).to(latent.dtype)
        v = F.grid_sample(
            feat_coord, grid, mode="nearest", padding_mode="border", align_corners=False
        )
        z = z.permute(0, 2, 3, 1)  # [B, T, Q, hidden0]
        v = v.permute(0, 2, 3, 1)  # [B, T, Q, 2]: centre v_t of each looked-up code

        rel = (coords.unsqueeze(1) - v) * size  # LIIF Eq. 2, in units of half feature pixels
        coord_in = rel
        if self.cell_decode:
            assert cell is not None
            coord_in = torch.cat([rel, (cell * size).unsqueeze(1).expand_as(rel)], dim=-1)
        # Coordinate part first: the sum takes its contiguous [B, T, Q, hidden0] layout (z is a
        # permuted view), so the MLP's matrix products run on contiguous rows.
        h0 = self.coord_proj(coord_in.to(self.coord_proj.weight.dtype)).to(z.dtype) + z
        pred = self.mlp(h0)  # [B, T, Q, out]
        if not self.local_ensemble:
            return pred[:, 0]

        # LIIF Eq. 4 in separable form: code t = (dy, dx) gets the area of the rectangle between
        # x_q and the diagonally opposite code over the total, = w_y(t) * w_x(t) with
        # w_y(t) = |rel_y(t^2)| / (|rel_y(t)| + |rel_y(t^2)|) (t^2 flips dy, t^1 flips dx).
        # The same numbers as LIIF's S_t' / S wherever the four codes are distinct; where two
        # coincide (queries on the centre line of a border row/column, e.g. the last output row
        # at x1) LIIF's areas all vanish and it averages the four evenly, this form keeps the
        # bilinear weights of the other axis (continuous there too).
        a = rel.abs()  # [B, T, Q, 2], float32
        a_opp_y = a[:, [2, 3, 0, 1], :, 0]
        a_opp_x = a[:, [1, 0, 3, 2], :, 1]
        w_y = (a_opp_y + 1e-9) / (a[..., 0] + a_opp_y + 2e-9)
        w_x = (a_opp_x + 1e-9) / (a[..., 1] + a_opp_x + 2e-9)
        weights = (w_y * w_x).unsqueeze(-1).to(pred.dtype)  # [B, T, Q, 1], sums to 1 over T
        return (pred * weights).sum(dim=1)

    # ------------------------------------------------------------------ user-facing

    def forward(self, features: Tensor, coords: Tensor, cell: Tensor | None = None) -> Tensor:
        """Values at continuous coordinates (LIIF, Chen et al. 2021, Eqs. 2-5).

        Args:
            features: ``[B, feature_channels, h, w]``.
            coords: ``[B, Q, 2]``, ``(y, x)`` in the :func:`make_coord` convention.
            cell: ``[B, Q, 2]`` (or ``[B, 1, 2]``) query pixel sizes; needed with
                ``cell_decode``.

        Returns:
            ``[B, Q, out_channels]``.
        """
        return self.query(self.encode(features), coords, cell)

    def render(
        self,
        features: Tensor,
        out_size: int | Sequence[int],
        *,
        max_queries: int | None = 65_536,
    ) -> Tensor:
        """Render the whole image at any size ``(H, W)``: pixel-centre queries with their cell.

        The latent map is computed once; the ``H * W`` queries run in chunks of at most
        ``max_queries`` per image (``None``: all at once), which bounds the memory of the
        per-query MLP activations without changing the result.

        Args:
            features: ``[B, feature_channels, h, w]``.
            out_size: ``H`` (square) or ``(H, W)``; need not be a multiple of ``(h, w)``.
            max_queries: Largest number of queries per image per MLP call.

        Returns:
            ``[B, out_channels, H, W]``.
        """
        H, W = _size2(out_size, "out_size")
        latent = self.encode(features)
        B = latent.shape[0]
        coords = make_coord((H, W), device=latent.device).unsqueeze(0).expand(B, H * W, 2)
        cell = make_cell((H, W), device=latent.device).unsqueeze(0).expand(B, 1, 2)
        out = _chunked(lambda c: self.query(latent, c, cell), coords, max_queries)
        return out.permute(0, 2, 1).reshape(B, self.out_channels, H, W)


class MultiScaleImplicitDecoder(nn.Module):
    """IDM-style decoder: a feature pyramid -> an image of any size (Gao et al., CVPR 2023).

    IDM (Sec. 3) puts LIIF's implicit function (Chen et al. 2021) into the upsampling path of
    its denoising UNet, so that the multi-resolution decoder features are read out at the
    target pixel coordinates whatever the magnification, and conditions on the scaling factor,
    which modulates how much of each source of features enters the output (its scale-adaptive
    conditioning). This module is that read-out, independent of diffusion:

    1. each level ``k`` of the pyramid (``features[k]``, coarse to fine, as
       :meth:`terradiff.nets.unet.UNet.forward_features` returns them, or the stages of a
       VGG-style encoder) has its own small :class:`LocalImplicitDecoder`
       (local ensemble, 3x3 unfolding, cell decoding) that maps the level's codes around each
       query to a ``hidden``-dimensional vector ``e_k(x_q)`` -- one MLP per level because the
       levels have different channel counts and resolutions, and the relative coordinates
       and cells are measured in each level's own pixels;
    2. the scaling factor ``s = (H / h_f, W / w_f)`` of the output relative to the *finest*
       level (``h_f x w_f``; read from the query cell, so ``s`` may be fractional, 1 or < 1)
       goes through a small MLP of ``log s`` to per-level, per-channel gates
       ``g_k(s) = 2 sigmoid(.)`` (zero-initialised, so the gates start at 1 = a plain sum);
       the fused vector is ``sum_k g_k(s) * e_k(x_q)`` -- the scale decides the proportion of
       coarse (context) and fine (detail) levels, in the manner of IDM's modulation;
    3. a shared head MLP maps the fused vector to ``out_channels`` values.

    Every step is a function of the continuous coordinate, so any output size works
    (``x1`` for dense prediction on encoder features, ``x1.5 .. x8`` or more for
    super-resolution); :meth:`forward` renders a full grid in query chunks and :meth:`query`
    evaluates arbitrary points (e.g. a random subset of pixels during training, as LIIF does).

    Args:
        feature_channels: Channels of each level, coarse to fine (e.g.
            ``UNet.feature_channels``).
        out_channels: Output bands.
        hidden: Width of each level's implicit function (``hidden=(hidden,)`` there) and of the
            fused vector.
        head_hidden: Hidden widths of the shared head MLP (may be empty: one linear layer).
        local_ensemble: LIIF Eq. 4 in every level.
        feat_unfold: LIIF Eq. 3 in every level (3x3 codes; else 1x1, ~9x fewer parameters).
        cell_decode: LIIF Eq. 5 in every level.
        scale_modulation: The scale-dependent gates of step 2 (else a plain sum).
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        out_channels: int,
        *,
        hidden: int = 64,
        head_hidden: Sequence[int] = (64,),
        local_ensemble: bool = True,
        feat_unfold: bool = True,
        cell_decode: bool = True,
        scale_modulation: bool = True,
    ) -> None:
        super().__init__()
        feature_channels = tuple(feature_channels)
        if not feature_channels or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in feature_channels
        ):
            raise ValueError(
                f"feature_channels must be a non-empty sequence of positive ints, got "
                f"{feature_channels!r}"
            )
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
        self.feature_channels = feature_channels
        self.out_channels = out_channels
        self.hidden = hidden
        self.scale_modulation = bool(scale_modulation)
        self.levels = nn.ModuleList(
            LocalImplicitDecoder(
                c,
                hidden,
                (hidden,),
                local_ensemble=local_ensemble,
                feat_unfold=feat_unfold,
                cell_decode=cell_decode,
            )
            for c in feature_channels
        )
        self.modulation: nn.Sequential | None = None
        if scale_modulation:
            self.modulation = nn.Sequential(
                nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, len(feature_channels) * hidden)
            )
            nn.init.zeros_(self.modulation[-1].weight)
            nn.init.zeros_(self.modulation[-1].bias)
        widths = (hidden, *(int(h) for h in head_hidden))
        head: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            head += [nn.ReLU(inplace=True), nn.Linear(c_in, c_out)]
        head += [nn.ReLU(inplace=True), nn.Linear(widths[-1], out_channels)]
        self.head = nn.Sequential(*head)

    def extra_repr(self) -> str:
        """Summary line for ``print(decoder)``."""
        return f"params={self.num_parameters():,}, levels={len(self.levels)}"

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def encode(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Per-level latent maps (each level's :meth:`LocalImplicitDecoder.encode`).

        Args:
            features: One ``[B, feature_channels[k], h_k, w_k]`` tensor per level, coarse to
                fine (any sizes; the last one is the reference of the scaling factor).

        Returns:
            One latent map per level.
        """
        features = list(features)
        if len(features) != len(self.levels):
            raise ValueError(
                f"MultiScaleImplicitDecoder was built for {len(self.levels)} feature levels "
                f"(feature_channels={self.feature_channels}), got {len(features)}"
            )
        B = features[0].shape[0] if features[0].ndim == 4 else None
        for k, (f, c) in enumerate(zip(features, self.feature_channels, strict=True)):
            if f.ndim != 4 or f.shape[1] != c or f.shape[0] != B:
                raise ValueError(
                    f"features[{k}] must have shape [B, {c}, h, w] (feature_channels[{k}], same "
                    f"batch as features[0]), got {tuple(f.shape)}"
                )
        return [level.encode(f) for level, f in zip(self.levels, features, strict=True)]

    def query(self, latents: Sequence[Tensor], coords: Tensor, cell: Tensor) -> Tensor:
        """Values at continuous coordinates from the latent maps of :meth:`encode`.

        Args:
            latents: From :meth:`encode`.
            coords: ``[B, Q, 2]``, ``(y, x)`` in the :func:`make_coord` convention.
            cell: ``[B, Q, 2]`` or ``[B, 1, 2]`` query pixel sizes (always needed: they give
                the scaling factor).

        Returns:
            ``[B, Q, out_channels]``.
        """
        B = latents[0].shape[0]
        coords, cell = _check_queries(coords, cell, B, True, latents[0].device)
        assert cell is not None
        fused = None
        if self.modulation is not None:
            h_f, w_f = latents[-1].shape[-2:]
            # s = (H / h_f, W / w_f) = 2 / (cell * (h_f, w_f)); the MLP sees log s (0 at x1).
            log_scale = torch.log(2.0 / (cell * cell.new_tensor([h_f, w_f])))
            gates = 2 * torch.sigmoid(self.modulation(log_scale))  # [B, Q or 1, K * hidden]
            gates = gates.unflatten(-1, (len(self.levels), self.hidden))
        for k, (level, latent) in enumerate(zip(self.levels, latents, strict=True)):
            e = level.query(latent, coords, cell)  # [B, Q, hidden]
            if self.modulation is not None:
                e = e * gates[..., k, :].to(e.dtype)
            fused = e if fused is None else fused + e
        return self.head(fused)

    def forward(
        self,
        features: Sequence[Tensor],
        out_size: int | Sequence[int],
        *,
        max_queries: int | None = 65_536,
    ) -> Tensor:
        """Render the pyramid as an ``H x W`` image (any size, any scaling factor).

        Args:
            features: One ``[B, feature_channels[k], h_k, w_k]`` tensor per level, coarse to
                fine.
            out_size: ``H`` (square) or ``(H, W)``.
            max_queries: Largest number of queries per image per call (bounds memory; the result
                does not depend on it). ``None``: all at once.

        Returns:
            ``[B, out_channels, H, W]``.
        """
        H, W = _size2(out_size, "out_size")
        latents = self.encode(features)
        B, device = latents[0].shape[0], latents[0].device
        coords = make_coord((H, W), device=device).unsqueeze(0).expand(B, H * W, 2)
        cell = make_cell((H, W), device=device).unsqueeze(0).expand(B, 1, 2)
        out = _chunked(lambda c: self.query(latents, c, cell), coords, max_queries)
        return out.permute(0, 2, 1).reshape(B, self.out_channels, H, W)


def _check_queries(
    coords: Tensor, cell: Tensor | None, batch: int, need_cell: bool, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """Validate ``coords`` ``[B, Q, 2]`` and ``cell`` ``[B, Q|1, 2]``; return them as float32."""
    if coords.ndim != 3 or coords.shape[0] != batch or coords.shape[2] != 2:
        raise ValueError(
            f"coords must have shape [{batch}, Q, 2] ((y, x) per query; batch of the features), "
            f"got {tuple(coords.shape)}"
        )
    coords = coords.to(device=device, dtype=torch.float32)
    if not need_cell:
        return coords, None
    if cell is None:
        raise ValueError(
            "cell decoding is on: pass cell [B, Q, 2] (the query pixel size, (2/H, 2/W) for an "
            "H x W output; see make_cell)"
        )
    if (
        cell.ndim != 3
        or cell.shape[0] != batch
        or cell.shape[2] != 2
        or cell.shape[1] not in (1, coords.shape[1])
    ):
        raise ValueError(
            f"cell must have shape [{batch}, {coords.shape[1]}, 2] or [{batch}, 1, 2], got "
            f"{tuple(cell.shape)}"
        )
    if not bool((cell > 0).all()):
        raise ValueError("cell sizes must be positive (2/H, 2/W for an H x W output)")
    return coords, cell.to(device=device, dtype=torch.float32)


def _chunked(fn: Callable[[Tensor], Tensor], coords: Tensor, max_queries: int | None) -> Tensor:
    """``fn(coords)`` over chunks of at most ``max_queries`` queries, concatenated along Q."""
    if max_queries is not None and (isinstance(max_queries, bool) or max_queries < 1):
        raise ValueError(f"max_queries must be a positive int or None, got {max_queries!r}")
    Q = coords.shape[1]
    if max_queries is None or max_queries >= Q:
        return fn(coords)
    return torch.cat([fn(c) for c in coords.split(max_queries, dim=1)], dim=1)
