"""Noise schedules of the forward diffusion process and the :class:`NoiseSchedule` tables.

Indexing: timesteps are 0-based table indices ``t in [0, T-1]``; ``alphas_cumprod[t]`` is the
``alpha_bar`` of the state the model sees at index ``t`` (``x_{t+1}`` in the 1-based notation of
Ho et al. 2020). ``alphas_cumprod_prev[0] = 1`` is the clean data.

Schedule kinds (:data:`SCHEDULE_KINDS`):

* ``"linear"`` — Ho et al. (2020), Sec. 4: ``beta_t`` evenly spaced from ``beta_start`` to
  ``beta_end`` (DDPM: ``1e-4 .. 0.02``; SR3, Saharia et al. 2022: ``1e-6 .. 0.01``). Same as
  diffusers' ``beta_schedule="linear"``.
* ``"cosine"`` — Nichol & Dhariwal (2021), Eq. 17: ``alpha_bar(t) = f(t)/f(0)`` with
  ``f(t) = cos(((t/T + s)/(1 + s)) * pi/2)^2`` and ``beta_t = min(1 - alpha_bar_{t+1}/alpha_bar_t,
  max_beta)``, ``max_beta = 0.999``. Same as diffusers' ``squaredcos_cap_v2``.
* ``"sigmoid"`` — Chen (2023), "On the importance of noise scheduling for diffusion models",
  Algorithm 1 (sigmoid over ``alpha_bar``): ``alpha_bar(t) ∝ (sigmoid(end/tau) -
  sigmoid((t/T (end - start) + start)/tau))``, normalised to ``alpha_bar(0) = 1``, betas capped at
  ``max_beta``; defaults ``start=-3, end=3, tau=1`` give ``alpha_bar_{T-1} ~ 3e-7`` at ``T=1000``.
  Same as lucidrains' ``denoising-diffusion-pytorch`` ``sigmoid_beta_schedule``. **Not** diffusers'
  ``"sigmoid"``.
* ``"sigmoid_betas"`` — GeoDiff (Xu et al. 2022): the *betas* follow a sigmoid,
  ``beta = sigmoid(linspace(-6, 6, T)) (beta_end - beta_start) + beta_start`` (close to linear,
  ``alpha_bar_{T-1} ~ 4e-5``). This is what diffusers calls ``beta_schedule="sigmoid"``.
* ``"scaled_linear"`` — Rombach et al. (2022), "High-resolution image synthesis with latent
  diffusion models" (LDM; their released code): the *square roots* of the betas are evenly
  spaced, ``beta_t = (sqrt(beta_start) + t/(T-1) (sqrt(beta_end) - sqrt(beta_start)))^2``
  (LDM / Stable Diffusion: ``0.00085 .. 0.012``). Same as diffusers'
  ``beta_schedule="scaled_linear"``. Less total noise than ``"linear"`` with the same endpoints:
  with ``1e-4 .. 0.02``, ``alpha_bar_{T-1} ~ 7e-4`` at ``T=1000`` (``~ 3e-2`` at ``T=500``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import torch
from torch import Tensor

SCHEDULE_KINDS: Final[tuple[str, ...]] = (
    "linear",
    "cosine",
    "sigmoid",
    "sigmoid_betas",
    "scaled_linear",
)

TABLE_NAMES: Final[tuple[str, ...]] = (
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "snr",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
"""Names of the per-timestep tables of a :class:`NoiseSchedule` (:meth:`NoiseSchedule.table`)."""

# Tables that are functions of alpha_bar alone, so defined at float (interpolated) timesteps.
_INTERPOLATED: Final[tuple[str, ...]] = (
    "alphas_cumprod",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "snr",
)

# Parameters of make_betas that each kind uses (what NoiseSchedule.to_dict stores).
_KIND_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "linear": ("beta_start", "beta_end"),
    "cosine": ("cosine_s", "max_beta"),
    "sigmoid": ("sigmoid_start", "sigmoid_end", "sigmoid_tau", "max_beta"),
    "sigmoid_betas": ("beta_start", "beta_end"),
    "scaled_linear": ("beta_start", "beta_end"),
}
_DEFAULTS: Final[dict[str, float]] = {
    "beta_start": 1e-4,
    "beta_end": 2e-2,
    "cosine_s": 8e-3,
    "sigmoid_start": -3.0,
    "sigmoid_end": 3.0,
    "sigmoid_tau": 1.0,
    "max_beta": 0.999,
}


def make_betas(
    kind: str,
    num_timesteps: int,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 2e-2,
    cosine_s: float = 8e-3,
    sigmoid_start: float = -3.0,
    sigmoid_end: float = 3.0,
    sigmoid_tau: float = 1.0,
    max_beta: float = 0.999,
) -> Tensor:
    """The betas of a named schedule (see the module docstring for the formulas and papers).

    Args:
        kind: One of :data:`SCHEDULE_KINDS`.
        num_timesteps: ``T``, the number of diffusion steps (>= 1).
        beta_start: First beta of ``"linear"`` and ``"scaled_linear"`` / lower bound of
            ``"sigmoid_betas"``.
        beta_end: Last beta of ``"linear"`` and ``"scaled_linear"`` / upper bound of
            ``"sigmoid_betas"``.
        cosine_s: Offset ``s`` of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17).
        sigmoid_start: ``start`` of Chen (2023), Algorithm 1.
        sigmoid_end: ``end`` of Chen (2023), Algorithm 1.
        sigmoid_tau: Temperature ``tau`` of Chen (2023), Algorithm 1.
        max_beta: Cap on the betas of ``"cosine"`` and ``"sigmoid"`` (their last beta would be 1).

    Returns:
        float64 CPU tensor ``[T]`` with every beta in ``(0, 1)``.

    Raises:
        ValueError: unknown ``kind`` or parameters outside their range.
    """
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}")
    T = num_timesteps
    f64 = torch.float64
    if kind in ("linear", "sigmoid_betas", "scaled_linear"):
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"{kind} schedule needs 0 < beta_start <= beta_end < 1, got beta_start="
                f"{beta_start}, beta_end={beta_end}"
            )
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=f64)
        elif kind == "scaled_linear":  # Rombach et al. (2022): linear in sqrt(beta)
            betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=f64) ** 2
        else:
            grid = torch.linspace(-6.0, 6.0, T, dtype=f64)
            betas = torch.sigmoid(grid) * (beta_end - beta_start) + beta_start
    elif kind in ("cosine", "sigmoid"):
        if not 0.0 < max_beta < 1.0:
            raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
        s = torch.arange(T + 1, dtype=f64) / T
        if kind == "cosine":
            if cosine_s < 0.0:
                raise ValueError(f"cosine_s must be >= 0, got {cosine_s}")
            f = torch.cos((s + cosine_s) / (1.0 + cosine_s) * (math.pi / 2.0)) ** 2
        else:
            if not sigmoid_end > sigmoid_start:
                raise ValueError(
                    f"sigmoid_end ({sigmoid_end}) must be larger than sigmoid_start "
                    f"({sigmoid_start})"
                )
            if not sigmoid_tau > 0.0:
                raise ValueError(f"sigmoid_tau must be > 0, got {sigmoid_tau}")
            v_end = 1.0 / (1.0 + math.exp(-sigmoid_end / sigmoid_tau))
            z = (s * (sigmoid_end - sigmoid_start) + sigmoid_start) / sigmoid_tau
            f = v_end - torch.sigmoid(z)
        alpha_bar = f / f[0]
        betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; choose one of {list(SCHEDULE_KINDS)}")
    _check_betas(betas)
    return betas


def _check_betas(betas: Tensor) -> None:
    if betas.ndim != 1 or betas.numel() < 1:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
    if not bool(torch.isfinite(betas).all()) or not bool(((betas > 0) & (betas < 1)).all()):
        bad = int(torch.nonzero(~((betas > 0) & (betas < 1))).flatten()[0])
        raise ValueError(f"every beta must be in (0, 1); beta[{bad}] = {float(betas[bad])}")


class NoiseSchedule:
    """The tables of a discrete forward process ``q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I)``.

    Immutable: every table is float64 on the CPU and the public properties return copies. Methods
    move what they need to the device of their inputs (cached per device) and compute the
    coefficients in the input's float dtype.

    Timesteps ``t`` are 0-based indices in ``[0, T-1]``. Integer tensors index the tables; float
    tensors are continuous timesteps and use ``alpha_bar`` linearly interpolated between table
    entries (clamped to ``[0, T-1]``), as :meth:`timestep_from_alpha_bar` inverts.

    Args:
        betas: ``[T]`` betas, each in ``(0, 1)``. Prefer :meth:`create` for a named schedule so that
            :meth:`to_dict` can store it by name instead of by value.
    """

    def __init__(self, betas: Tensor | Sequence[float]) -> None:
        b = torch.as_tensor(betas).detach().to(device="cpu", dtype=torch.float64).clone()
        _check_betas(b)
        alphas = 1.0 - b
        ab = torch.cumprod(alphas, dim=0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        post_var = b * (1.0 - ab_prev) / (1.0 - ab)
        # Ho et al. (2020) code: log variance with the t=0 entry (which is 0) replaced by t=1's.
        post_log_var = torch.log(
            torch.cat([post_var[1:2], post_var[1:]]) if b.numel() > 1 else post_var.clamp_min(1e-20)
        )
        tables = {
            "betas": b,
            "alphas": alphas,
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": ab.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - ab).sqrt(),
            "snr": ab / (1.0 - ab),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_log_var,
            "posterior_mean_coef1": b * ab_prev.sqrt() / (1.0 - ab),
            "posterior_mean_coef2": (1.0 - ab_prev) * alphas.sqrt() / (1.0 - ab),
        }
        d = self.__dict__
        d["_tables"] = tables
        d["_kind"] = "custom"
        d["_params"] = {}
        d["_cache"] = {}

    # -- construction / serialisation ------------------------------------------------------------

    @classmethod
    def create(cls, kind: str, num_timesteps: int, **kwargs: float) -> NoiseSchedule:
        """A named schedule; ``kwargs`` are those of :func:`make_betas`.

        Raises:
            ValueError: unknown kind, unknown keyword, or parameters out of range.
        """
        unknown = set(kwargs) - set(_DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown schedule parameter(s) {sorted(unknown)}; known: {sorted(_DEFAULTS)}"
            )
        schedule = cls(make_betas(kind, num_timesteps, **kwargs))
        params = {k: float(kwargs.get(k, _DEFAULTS[k])) for k in _KIND_PARAMS[kind]}
        schedule.__dict__["_kind"] = kind
        schedule.__dict__["_params"] = params
        return schedule

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: ``{"kind", "num_timesteps", "params"}``.

        Named schedules store their parameters; a schedule built from raw betas stores
        ``kind="custom"`` and ``params={"betas": [...]}`` (floats round-trip exactly through JSON).
        """
        if self._kind == "custom":
            params: dict[str, Any] = {"betas": self._tables["betas"].tolist()}
        else:
            params = dict(self._params)
        return {"kind": self._kind, "num_timesteps": self.num_timesteps, "params": params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseSchedule:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing keys, or a ``num_timesteps`` that disagrees with the betas.
        """
        if "kind" not in data or "num_timesteps" not in data:
            raise ValueError(
                f"a schedule dict needs 'kind' and 'num_timesteps', got keys {sorted(data)}"
            )
        kind = str(data["kind"])
        T = int(data["num_timesteps"])
        params = dict(data.get("params", {}))
        if kind == "custom":
            if "betas" not in params:
                raise ValueError("a 'custom' schedule dict needs params.betas")
            schedule = cls(torch.tensor(params["betas"], dtype=torch.float64))
            if schedule.num_timesteps != T:
                raise ValueError(
                    f"num_timesteps={T} but params.betas has {schedule.num_timesteps} entries"
                )
            return schedule
        return cls.create(kind, T, **params)

    # -- immutability, equality, pickling ----------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"NoiseSchedule is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"NoiseSchedule is immutable; cannot delete {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_cache"] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoiseSchedule):
            return NotImplemented
        return (
            self._kind == other._kind
            and self._params == other._params
            and torch.equal(self._tables["betas"], other._tables["betas"])
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"NoiseSchedule(kind={self._kind!r}, num_timesteps={self.num_timesteps}" + (
            f", {params})" if params else ")"
        )

    # -- tables ----------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """Schedule name (one of :data:`SCHEDULE_KINDS`, or ``"custom"``)."""
        return self._kind

    @property
    def params(self) -> dict[str, float]:
        """Parameters of a named schedule (empty for ``"custom"``)."""
        return dict(self._params)

    @property
    def num_timesteps(self) -> int:
        """``T``."""
        return int(self._tables["betas"].numel())

    @property
    def betas(self) -> Tensor:
        """``beta_t``, float64 ``[T]``."""
        return self._tables["betas"].clone()

    @property
    def alphas(self) -> Tensor:
        """``alpha_t = 1 - beta_t``, float64 ``[T]``."""
        return self._tables["alphas"].clone()

    @property
    def alphas_cumprod(self) -> Tensor:
        """``alpha_bar_t = prod_{s<=t} alpha_s``, float64 ``[T]``, strictly decreasing."""
        return self._tables["alphas_cumprod"].clone()

    @property
    def alphas_cumprod_prev(self) -> Tensor:
        """``alpha_bar_{t-1}`` with ``alpha_bar_{-1} = 1``, float64 ``[T]``."""
        return self._tables["alphas_cumprod_prev"].clone()

    @property
    def posterior_variance(self) -> Tensor:
        """``beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (Ho et al. Eq. 7)."""
        return self._tables["posterior_variance"].clone()

    def _table(self, name: str, device: torch.device) -> Tensor:
        """Float64 table ``name`` on ``device`` (float32 where float64 is unsupported)."""
        key = (name, device)
        cached = self._cache.get(key)
        if cached is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            cached = self._tables[name].to(device=device, dtype=dtype)
            self._cache[key] = cached
        return cached

    def _interp_alpha_bar(self, t: Tensor) -> Tensor:
        """Piecewise-linear ``alpha_bar`` at float timesteps (float64 unless on MPS)."""
        table = self._table("alphas_cumprod", t.device)
        T = table.numel()
        tt = t.to(table.dtype).clamp(0.0, float(T - 1))
        if T == 1:
            return table[0].expand_as(tt).clone()
        i0 = tt.floor().long().clamp(max=T - 2)
        w = tt - i0.to(tt.dtype)
        lo = table[i0]
        return lo + w * (table[i0 + 1] - lo)

    def table(self, name: str) -> Tensor:
        """Table ``name`` (one of :data:`TABLE_NAMES`) as a float64 CPU copy ``[T]``.

        The per-timestep quantities of Ho et al. (2020): ``betas``, ``alphas``, ``alphas_cumprod``
        (``alpha_bar_t``, Eq. 4), ``alphas_cumprod_prev``, ``sqrt_alphas_cumprod``,
        ``sqrt_one_minus_alphas_cumprod``, ``snr`` (Kingma et al. 2021, Eq. 1), and the posterior
        ``q(x_{t-1} | x_t, x_0)`` of Eqs. 6-7: ``posterior_variance``,
        ``posterior_log_variance_clipped``, ``posterior_mean_coef1``, ``posterior_mean_coef2``.
        Samplers read their per-step coefficients from here (e.g. ``.tolist()``).

        Raises:
            ValueError: unknown ``name``.
        """
        return self._checked(name).clone()

    def at(
        self,
        name: str,
        t: Tensor | int | float,
        dtype: torch.dtype | None = None,
        *,
        ndim: int | None = None,
    ) -> Tensor:
        """Table ``name`` at timesteps ``t``, on ``t``'s device.

        Integer ``t`` gathers the table entries. Float ``t`` is a continuous timestep: the value
        comes from ``alpha_bar`` interpolated linearly between neighbouring entries (SlimDiffSR,
        Eq. 11; clamped to ``[0, T-1]``), which defines ``alphas_cumprod``,
        ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod`` and ``snr`` only.

        Args:
            name: One of :data:`TABLE_NAMES`.
            t: Timesteps, any shape (e.g. ``[B]``).
            dtype: Result dtype; default ``t``'s float dtype, else float32. The lookup itself is
                float64 (float32 on devices without float64).
            ndim: Append singleton dimensions up to ``ndim``, so a per-sample ``[B]`` coefficient
                broadcasts against a ``[B, C, H, W]`` batch (``ndim=x.ndim``).

        Returns:
            The values, shaped like ``t`` (plus the singleton dimensions).

        Raises:
            ValueError: unknown ``name``, or a float ``t`` for a table that is not a function of
                ``alpha_bar``.
        """
        self._checked(name)
        t = torch.as_tensor(t)
        if dtype is None:
            dtype = t.dtype if t.is_floating_point() else torch.float32
        if not t.is_floating_point():
            out = self._table(name, t.device)[t.long()].to(dtype)
        elif name not in _INTERPOLATED:
            raise ValueError(
                f"table {name!r} is not defined at float (continuous) timesteps; use integer "
                f"timesteps, or one of {list(_INTERPOLATED)}"
            )
        else:
            ab = self._interp_alpha_bar(t)
            if name == "alphas_cumprod":
                out = ab
            elif name == "sqrt_alphas_cumprod":
                out = ab.sqrt()
            elif name == "sqrt_one_minus_alphas_cumprod":
                out = (1.0 - ab).sqrt()
            else:  # snr
                out = ab / (1.0 - ab)
            out = out.to(dtype)
        if ndim is not None:
            out = out.reshape(out.shape + (1,) * (ndim - out.ndim))
        return out

    def _checked(self, name: str) -> Tensor:
        """The float64 CPU table ``name``; ``ValueError`` naming the known ones if there is none."""
        table = self._tables.get(name)
        if table is None:
            raise ValueError(f"unknown schedule table {name!r}; choose one of {list(TABLE_NAMES)}")
        return table

    # -- public maths ----------------------------------------------------------------------------

    def alpha_bar(self, t: Tensor | int | float) -> Tensor:
        """``alpha_bar`` at timesteps ``t``.

        Args:
            t: Integer timesteps (gathered from the table) or float timesteps (piecewise-linear
                interpolation between neighbouring entries, SlimDiffSR Eq. 11; clamped to
                ``[0, T-1]``).

        Returns:
            Tensor of ``t``'s shape on ``t``'s device; float64 for float64 ``t``, else float32
            (the input float dtype for other float ``t``).
        """
        return self.at("alphas_cumprod", t)

    def snr(self, t: Tensor | int | float) -> Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` (Kingma et al. 2021, Eq. 1).

        Same ``t`` and dtype rules as :meth:`alpha_bar`.
        """
        return self.at("snr", t)

    def timestep_from_alpha_bar(self, alpha_bar: Tensor | float) -> Tensor:
        """Continuous timestep whose (interpolated) ``alpha_bar`` equals the given value.

        Inverts the piecewise-linear interpolation of :meth:`alpha_bar` (SlimDiffSR, Eq. 11): for
        ``alpha_bar_{i} >= a >= alpha_bar_{i+1}``, ``t = i + (alpha_bar_i - a) / (alpha_bar_i -
        alpha_bar_{i+1})``. Values above ``alpha_bar_0`` give 0 and values below
        ``alpha_bar_{T-1}`` give ``T-1``.

        Args:
            alpha_bar: Values in any shape.

        Returns:
            Float timesteps in ``[0, T-1]`` with the input's shape and device; float64 for
            float64 input, else float32.
        """
        a = torch.as_tensor(alpha_bar)
        out_dtype = a.dtype if a.is_floating_point() else torch.float32
        table = self._table("alphas_cumprod", a.device)
        T = table.numel()
        av = a.to(table.dtype)
        if T == 1:
            return torch.zeros_like(av, dtype=out_dtype)
        # -table is increasing; idx = first i with table[i] <= a, so table[idx-1] > a.
        idx = torch.searchsorted(-table, (-av).contiguous(), right=False)
        i = (idx - 1).clamp(0, T - 2)
        hi = table[i]
        lo = table[i + 1]
        t = i.to(av.dtype) + (hi - av) / (hi - lo)
        return t.clamp(0.0, float(T - 1)).to(out_dtype)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Diffuse ``x0`` to timestep ``t``: ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        Ho et al. (2020), Eq. 4.

        Args:
            x0: Clean data ``[B, ...]``.
            t: Timesteps ``[B]`` (integer, or float for interpolated ``alpha_bar``).
            noise: Standard normal noise shaped like ``x0``.

        Returns:
            ``x_t`` in ``x0``'s dtype.
        """
        t = torch.as_tensor(t, device=x0.device)
        a = self.at("sqrt_alphas_cumprod", t, x0.dtype, ndim=x0.ndim)
        s = self.at("sqrt_one_minus_alphas_cumprod", t, x0.dtype, ndim=x0.ndim)
        return a * x0 + s * noise

    def posterior_mean_variance(
        self, x0: Tensor, x_t: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (Ho et al. 2020, Eqs. 6-7).

        ``mean = beta_t sqrt(ab_{t-1}) / (1 - ab_t) x0 + (1 - ab_{t-1}) sqrt(alpha_t) /
        (1 - ab_t) x_t`` and ``variance = beta_tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t)``.

        Args:
            x0: (Predicted) clean data ``[B, ...]``.
            x_t: State at ``t``, same shape.
            t: Integer timesteps ``[B]`` (float tensors are rounded to the nearest index).

        Returns:
            ``(mean, variance, log_variance_clipped)``; the last two shaped ``[B, 1, ..., 1]``.
            ``log_variance_clipped`` replaces the ``t=0`` entry (variance 0) with ``t=1``'s, as
            in Ho et al.'s code.
        """
        t = torch.as_tensor(t, device=x_t.device)
        if t.is_floating_point():
            t = t.round().long()
        dtype = x_t.dtype
        c1 = self.at("posterior_mean_coef1", t, dtype, ndim=x_t.ndim)
        c2 = self.at("posterior_mean_coef2", t, dtype, ndim=x_t.ndim)
        var = self.at("posterior_variance", t, dtype, ndim=x_t.ndim)
        log_var = self.at("posterior_log_variance_clipped", t, dtype, ndim=x_t.ndim)
        return c1 * x0 + c2 * x_t, var, log_var
