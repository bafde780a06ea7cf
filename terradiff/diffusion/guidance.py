"""Classifier-free guidance as a ``model_fn`` wrapper (Ho & Salimans 2022).

Ho & Salimans ("Classifier-Free Diffusion Guidance", 2022, Eq. 6) sample with
``eps~ = (1 + w) eps(z, c) - w eps(z, null)``. terradiff uses **one** convention, the guidance
scale ``s = 1 + w`` (as in GLIDE, Nichol et al. 2022, Sec. 2.4, and diffusers'
``guidance_scale``)::

    out = out_null + s * (out_cond - out_null)

* ``s = 1``: the plain conditional model (``w = 0``);
* ``s = 0``: the unconditional model (the null condition);
* ``s > 1``: guided; e.g. ``s = 3`` is the paper's ``w = 2``.

The mix is applied to the model output whatever it predicts (``eps``, ``x0`` or ``v``): for a
fixed ``x_t`` the implied noise is affine in the output, ``eps = a_t x_t + b_t out`` (eps: ``a =
0, b = 1``; x0: ``a = 1 / sigma, b = -alpha / sigma``; v: ``a = sigma, b = alpha``), and the mix's
weights ``1 - s`` and ``s`` sum to one, so the guided output implies exactly ``eps_null + s
(eps_cond - eps_null)``: guiding an ``x0`` or ``v`` model is guiding its ``eps``.

:func:`guided` turns a ``model_fn(x_t, t, cond, condition)`` that takes a condition object (e.g.
:class:`terradiff.nets.conditioning.Condition`; anything with ``null_like`` and ``concat``, see
:class:`GuidanceCondition`) into the ``model_fn(x_t, t, cond)`` every sampler of
:mod:`terradiff.diffusion.samplers` takes. This module imports no network code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, cat, lerp

from terradiff.diffusion.samplers import ModelFn

__all__ = [
    "ConditionedModelFn",
    "GuidanceCondition",
    "GuidedModelFn",
    "check_scale",
    "guidance_scale_of",
    "guided",
]


class GuidanceCondition(Protocol):
    """What :func:`guided` needs of a condition object.

    :class:`terradiff.nets.conditioning.Condition` is one.
    """

    def null_like(self, batch: int | None = None) -> Any:
        """The all-null condition of the same batch size (and parts)."""
        ...

    @staticmethod
    def concat(a: Any, b: Any) -> Any:
        """``a`` then ``b`` along the batch."""
        ...


ConditionedModelFn = Callable[[Tensor, Tensor, Tensor | None, Any], Tensor]
"""``model_fn(x_t, t, cond, condition) -> prediction``: a :data:`ModelFn` that also takes a
condition object (``cond`` is the sampler's image condition, e.g. SR3's low-resolution input)."""


def check_scale(scale: float) -> float:
    """``scale`` as a float, or a ValueError unless it is a finite number >= 0."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"the guidance scale must be a finite number >= 0, got {scale!r}")
    if scale < 0:
        raise ValueError(
            f"the guidance scale must be >= 0 (0 = unconditional, 1 = conditional, > 1 = "
            f"guided), got {scale}"
        )
    return float(scale)


class GuidedModelFn:
    """The :data:`ModelFn` of :func:`guided`; :attr:`scale` records the guidance scale.

    Attributes:
        scale: The guidance scale ``s``.
        condition: The condition of the guided samples.
        null_condition: The all-null condition of the same batch.
    """

    def __init__(self, model_fn: ConditionedModelFn, condition: Any, scale: float) -> None:
        self.model_fn = model_fn
        self.scale = check_scale(scale)
        self.condition = condition
        self.null_condition = condition.null_like()
        # [condition; null], built once: every step reuses it.
        self._pair = (
            type(condition).concat(condition, self.null_condition)
            if self.scale not in (0.0, 1.0)
            else None
        )

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """The guided prediction for ``x_t`` ``[B, ...]`` at timesteps ``t`` ``[B]``."""
        if self.scale == 1.0:  # exactly the conditional model: one call on B samples
            return self.model_fn(x_t, t, cond, self.condition)
        if self.scale == 0.0:  # exactly the unconditional model
            return self.model_fn(x_t, t, cond, self.null_condition)
        batch = x_t.shape[0]
        out = self.model_fn(
            cat([x_t, x_t]), cat([t, t]), None if cond is None else cat([cond, cond]), self._pair
        )
        if out.shape[0] != 2 * batch:
            raise ValueError(
                f"the guided model_fn returned batch {out.shape[0]} for a doubled batch of "
                f"{2 * batch}"
            )
        out_cond, out_null = out[:batch], out[batch:]
        # lerp(a, b, s) = a + s (b - a): out_null + s (out_cond - out_null) in one pass
        return lerp(out_null, out_cond, self.scale)


def guided(model_fn: ConditionedModelFn, condition: Any, scale: float) -> GuidedModelFn:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6, with ``s = 1 + w``).

    Returns a ``model_fn(x_t, t, cond)`` for any sampler: ``out_null + s (out_cond - out_null)``
    where ``out_cond = model_fn(x_t, t, cond, condition)`` and ``out_null`` is the same with
    ``condition.null_like()``. The two come from **one** forward of the doubled batch ``[x_t;
    x_t]`` with ``concat(condition, null)`` (and ``[cond; cond]``). ``s = 1`` and ``s = 0`` call
    ``model_fn`` once on the ``B`` samples with ``condition`` / the null condition, so they
    reproduce the conditional / unconditional sampler exactly. See the module docstring for why
    the mix applies to eps, x0 and v outputs alike.

    Args:
        model_fn: ``model_fn(x_t, t, cond, condition) -> prediction``.
        condition: The condition of the ``B`` samples (``null_like()`` and ``concat(a, b)``,
            see :class:`GuidanceCondition`), on the sampling device.
        scale: ``s >= 0``: 0 unconditional, 1 conditional, > 1 guided.

    Raises:
        ValueError: ``scale`` negative or not finite.
    """
    return GuidedModelFn(model_fn, condition, scale)


def guidance_scale_of(model_fn: ModelFn) -> float | None:
    """The guidance scale of a :func:`guided` ``model_fn``; None for any other."""
    return model_fn.scale if isinstance(model_fn, GuidedModelFn) else None
