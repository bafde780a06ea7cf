"""What a sampling run does, decided once: sampler, steps, eta, clipping.

A :class:`SamplingSpec` is resolved from a config's ``sample`` section and the caller's overrides
(CLI flags, function arguments) in one place, :meth:`SamplingSpec.resolve`, and then travels with
the run: :func:`run_spec` hands it to the sampler and returns it on the
:class:`~terradiff.diffusion.samplers.SamplerOutput`, so a report records what actually ran. A
one-pass model (regression, single-step, student) samples nothing and records no spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from terradiff.config import SAMPLER_NAMES
from terradiff.diffusion.guidance import check_scale, guidance_scale_of
from terradiff.diffusion.samplers import SAMPLERS, ModelFn, SamplerOutput
from terradiff.diffusion.schedules import NoiseSchedule

if tuple(SAMPLERS) != SAMPLER_NAMES:  # pragma: no cover - a developer's slip, caught at import
    raise ImportError(f"SAMPLERS {tuple(SAMPLERS)} and SAMPLER_NAMES {SAMPLER_NAMES} disagree")

__all__ = ["FULL_CHAIN_SAMPLERS", "SAMPLER_NAMES", "SamplingSpec", "run_spec"]

FULL_CHAIN_SAMPLERS: frozenset[str] = frozenset({"ddpm"})
"""Samplers that always run all ``T`` steps (ancestral DDPM, Ho et al. 2020, Algorithm 2)."""


@dataclass(frozen=True)
class SamplingSpec:
    """One resolved sampling setting.

    Attributes:
        sampler: a key of :data:`terradiff.diffusion.samplers.SAMPLERS`.
        steps: model evaluations; ``T`` for ``ddpm`` (which always runs the whole chain).
        eta: DDIM's stochasticity (Song et al. 2021, Eq. 16; 0 is deterministic); recorded as 0
            for samplers that have no eta.
        clip_denoised: clip each step's ``x_0`` estimate to [-1, 1].
        guidance: classifier-free guidance scale ``s >= 0`` (Ho & Salimans 2022, Eq. 6 with
            ``s = 1 + w``; 0 unconditional, 1 conditional, > 1 guided; see
            :mod:`terradiff.diffusion.guidance`), None = no guidance. The caller applies it by
            handing :func:`run_spec` a :func:`~terradiff.diffusion.guidance.guided` model_fn of
            this scale; :func:`run_spec` checks that the two agree, so the record is what ran.
    """

    sampler: str
    steps: int
    eta: float = 0.0
    clip_denoised: bool = True
    guidance: float | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLER_NAMES)}"
            )
        if self.steps < 1:
            raise ValueError(f"sampling steps must be at least 1, got {self.steps}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if self.guidance is not None:
            object.__setattr__(self, "guidance", check_scale(self.guidance))

    @classmethod
    def resolve(
        cls,
        defaults: Any,
        num_timesteps: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        guidance: float | None = None,
    ) -> SamplingSpec:
        """The spec of ``defaults`` (a config's ``sample`` section) with overrides applied.

        Args:
            defaults: has ``sampler``, ``steps``, ``eta`` and ``clip_denoised`` (and may have
                ``guidance``; a section without it means no guidance).
            num_timesteps: ``T`` of the model's schedule (the steps of ``ddpm``; the most any
                sampler can take).
            sampler, steps, eta, guidance: overrides (None keeps the default).

        Raises:
            ValueError: an unknown sampler, or steps outside ``1..T`` (given ``steps`` are
                checked for every sampler, even ``ddpm``, which then runs all ``T``); the message
                names the ``--steps`` flag, or the config's ``sample.steps`` when it is the
                default that is out of range.
        """
        name = sampler or defaults.sampler
        n_steps = int(steps if steps is not None else defaults.steps)
        if (steps is not None or name not in FULL_CHAIN_SAMPLERS) and not (
            1 <= n_steps <= num_timesteps
        ):
            _raise_steps(n_steps, num_timesteps, given=steps is not None)
        if name in FULL_CHAIN_SAMPLERS:
            n_steps = num_timesteps
        uses_eta = name == "ddim"
        return cls(
            sampler=name,
            steps=n_steps,
            eta=float(eta if eta is not None else defaults.eta) if uses_eta else 0.0,
            clip_denoised=bool(defaults.clip_denoised),
            guidance=guidance if guidance is not None else getattr(defaults, "guidance", None),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the spec (what reports store)."""
        return asdict(self)


def _raise_steps(steps: int, num_timesteps: int, *, given: bool) -> None:
    """Raise the ValueError of a step count outside ``1..num_timesteps``."""
    where = f"--steps {steps} (steps={steps} from Python)" if given else f"sample.steps {steps}"
    fix = f"pass --steps between 1 and {num_timesteps}"
    if steps < 1:
        raise ValueError(f"{where}: a sampler takes at least 1 step; {fix}")
    raise ValueError(
        f"{where} is more than the {num_timesteps} timesteps of the model's schedule "
        f"(diffusion.num_timesteps); {fix}"
    )


def run_spec(
    spec: SamplingSpec,
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,  # noqa: N803 - the papers' name
    *,
    prediction: str = "eps",
    cond: Tensor | None = None,
    generator: Any = None,
    progress: bool = False,
    return_trajectory: bool = False,
) -> SamplerOutput:
    """Run the sampler ``spec`` names from ``x_T``; the output carries ``spec``.

    Raises:
        ValueError: ``spec.guidance`` is not the scale of ``model_fn`` (a
            :func:`~terradiff.diffusion.guidance.guided` one, or a plain one for None).
    """
    scale = guidance_scale_of(model_fn)
    if scale != spec.guidance:
        wanted = "no guidance" if spec.guidance is None else f"guidance {spec.guidance}"
        actual = "is not guided" if scale is None else f"guides with scale {scale}"
        raise ValueError(
            f"the sampling spec asks for {wanted} but model_fn {actual}; hand run_spec a "
            "terradiff.diffusion.guidance.guided(...) model_fn of the spec's scale (or none)"
        )
    kwargs: dict[str, Any] = {
        "prediction": prediction,
        "generator": generator,
        "progress": progress,
        "return_trajectory": return_trajectory,
        "clip_denoised": spec.clip_denoised,
        "cond": cond,
    }
    if spec.sampler not in FULL_CHAIN_SAMPLERS:
        kwargs["steps"] = spec.steps
    if spec.sampler == "ddim":
        kwargs["eta"] = spec.eta
    out = SAMPLERS[spec.sampler](model_fn, schedule, x_T, **kwargs)
    return SamplerOutput(sample=out.sample, trajectory=out.trajectory, spec=spec)
