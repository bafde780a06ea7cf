"""What differs between the config a checkpoint was trained with and the config of a resumed run.

``terradiff train --resume`` loads the weights into the network the *current* config builds. A
changed architecture (``--set model.base_channels=16``) then fails inside torch with one line per
mismatched tensor; a changed noise schedule or condition loads fine and silently changes what the
network is trained for; a changed learning rate, batch size or seed makes the resumed run differ
from an uninterrupted one. :func:`changed_settings` lists such differences so the trainer can
name them: as the error when the weights do not fit, as warnings (:func:`resume_warnings`) when
they do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from terradiff.config_methods import SECTION_TASKS

ARCHITECTURE_SECTIONS: tuple[str, ...] = ("task", "model", *SECTION_TASKS)
"""Top-level keys whose values shape the network (a method section, e.g. ``sr``, included)."""

MEANING_SECTIONS: tuple[str, ...] = ("diffusion", "condition")
"""Sections that leave the weights loadable but change what the network learns."""

TRAJECTORY_SETTINGS: tuple[str, ...] = (
    "seed",
    *(
        f"train.{key}"
        for key in (
            "batch_size",
            "lr",
            "weight_decay",
            "betas",
            "warmup_steps",
            "min_lr_ratio",
            "grad_clip",
            "ema_decay",
            "ema_warmup",
            "ema_start_step",
            "mixed_precision",
        )
    ),
    *(
        f"data.{key}"
        for key in (
            "kind",
            "image_size",
            "bands",
            "scaling",
            "crop",
            "random_flip",
            "classes",
            "max_images",
            "split",
            "holdout_fraction",
            "include",
            "crops_per_image",
        )
    ),
)
"""Settings that change the updates a resumed run makes, so that it no longer matches an
uninterrupted run. Left out on purpose: ``train.max_steps`` and ``train.max_minutes`` (raising
them is how a run is continued), ``data.root`` (data may move) and what only changes speed,
logging or saving (workers, caches, compile, ``log_every``)."""


_MISSING = object()


def _value_at(config: Mapping[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``; ``_MISSING`` when a key on the way is absent."""
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    """``{"a.b.c": leaf}`` of a nested mapping (a non-mapping is its own leaf)."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    leaves: dict[str, Any] = {}
    for key, inner in value.items():
        leaves |= _leaves(inner, f"{prefix}.{key}")
    return leaves


def changed_settings(
    saved: Mapping[str, Any], current: Mapping[str, Any], sections: Iterable[str]
) -> list[str]:
    """``"model.base_channels 32 -> 16"`` for every setting under ``sections`` (top-level keys
    or dotted paths such as ``"train.lr"``) that differs between ``saved`` (the checkpoint's
    experiment config) and ``current``, sorted within each section; a key present on one side
    only shows ``(unset)`` on the other."""
    changes = []
    for section in sections:
        old_value, new_value = _value_at(saved, section), _value_at(current, section)
        before = {} if old_value is _MISSING else _leaves(old_value, section)
        after = {} if new_value is _MISSING else _leaves(new_value, section)
        for key in sorted(before.keys() | after.keys()):
            old, new = before.get(key, "(unset)"), after.get(key, "(unset)")
            if old != new:
                changes.append(f"{key} {old} -> {new}")
    return changes


def resume_warnings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The warnings of resuming a run trained with config ``saved`` under config ``current``
    (whose weights load): one for settings that change what the network learns
    (:data:`MEANING_SECTIONS`), one for settings that change its updates
    (:data:`TRAJECTORY_SETTINGS`); empty when neither changed."""
    warnings = []
    if drift := changed_settings(saved, current, MEANING_SECTIONS):
        warnings.append(f"resuming with other settings than trained so far: {'; '.join(drift)}")
    if drift := changed_settings(saved, current, TRAJECTORY_SETTINGS):
        warnings.append(
            f"resuming with other training settings than the checkpoint's ({'; '.join(drift)}): "
            "the run goes on, but no longer makes the updates of an uninterrupted run"
        )
    return warnings


__all__ = [
    "ARCHITECTURE_SECTIONS",
    "MEANING_SECTIONS",
    "TRAJECTORY_SETTINGS",
    "changed_settings",
    "resume_warnings",
]
