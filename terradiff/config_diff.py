"""What differs between the config a checkpoint was trained with and the config of a resumed run.

``terradiff train --resume`` loads the weights into the network the *current* config builds. A
changed architecture (``--set model.base_channels=16``) then fails inside torch with one line per
mismatched tensor; a changed noise schedule or condition loads fine and silently changes what the
network is trained for. :func:`changed_settings` lists such differences so the trainer can name
them: as the error when the weights do not fit, as a warning when they do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from terradiff.config_methods import SECTION_TASKS

ARCHITECTURE_SECTIONS: tuple[str, ...] = ("task", "model", *SECTION_TASKS)
"""Top-level keys whose values shape the network (a method section, e.g. ``sr``, included)."""

MEANING_SECTIONS: tuple[str, ...] = ("diffusion", "condition")
"""Sections that leave the weights loadable but change what the network learns."""


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
    """``"model.base_channels 32 -> 16"`` for every setting under ``sections`` that differs
    between ``saved`` (the checkpoint's experiment config) and ``current``, sorted; a key present
    on one side only shows ``(unset)`` on the other."""
    changes = []
    for section in sections:
        before = _leaves(saved.get(section, {}), section) if section in saved else {}
        after = _leaves(current.get(section, {}), section) if section in current else {}
        for key in sorted(before.keys() | after.keys()):
            old, new = before.get(key, "(unset)"), after.get(key, "(unset)")
            if old != new:
                changes.append(f"{key} {old} -> {new}")
    return changes


__all__ = ["ARCHITECTURE_SECTIONS", "MEANING_SECTIONS", "changed_settings"]
