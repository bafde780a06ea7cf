"""Config validation errors a person can act on: each bad key named, with the value given and
the fix (:func:`describe_validation_error`; used by :mod:`terradiff.config`)."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from terradiff.config_methods import SectionError, registered_method_configs

__all__ = ["describe_validation_error"]


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section that ``loc`` points into (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            return []
    return list(current.model_fields) if hasattr(current, "model_fields") else []


def describe_validation_error(error: ValidationError, source: str, root: type[BaseModel]) -> str:
    """Turn pydantic's error on the config class ``root`` into lines naming each key, the value
    given and the fix ("did you mean", the keys known there, the method a key belongs to)."""
    lines = [f"invalid config {source}:"]
    lines += _error_lines(error.errors(), root, ())
    return "\n".join(lines)


def _error_lines(errors: list[Any], model: type[BaseModel], prefix: tuple[Any, ...]) -> list[str]:
    """One line per error of ``model`` (located under ``prefix``), method sections expanded."""
    lines = []
    for item in errors:
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, SectionError):
            lines += _error_lines(
                cause.error.errors(), cause.config_class, (*prefix, cause.section)
            )
            continue
        inner = tuple(item["loc"])
        loc = (*prefix, *inner)
        key = ".".join(str(p) for p in loc) or "(top level)"
        given = item.get("input")
        if item["type"] == "extra_forbidden":
            known = _known_keys(model, inner)
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"did you mean '{guess[0]}'? " if guess else ""
            where = "Known keys here"
            if prefix and len(inner) == 1:  # a key of a method section
                method = model.model_fields["method"].default
                where = f"Keys of method '{method}'"
                owners = sorted(
                    name
                    for name, other in registered_method_configs(str(prefix[-1])).items()
                    if loc[-1] in other.model_fields
                )
                if owners:
                    hint = f"It is a key of method {', '.join(owners)}, not '{method}'. " + hint
            lines.append(f"  - {key}: unknown key. {hint}{where}: {', '.join(sorted(known))}.")
        elif item["type"] == "missing":
            lines.append(f"  - {key}: required key is missing; add it.")
        elif item["type"] == "value_error" and isinstance(given, dict):
            # a check across keys (a model validator): its message names the keys itself
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"  - {message}" if not inner else f"  - {key}: {message}")
        else:
            fix = ""
            if isinstance(given, str) and item["type"].startswith("int"):
                try:
                    fix = f" Write it as a plain integer, e.g. {int(float(given))}."
                except ValueError:
                    fix = ""
            if isinstance(given, bool) and item["type"] == "literal_error":
                fix = (
                    " YAML reads on/off/yes/no (any case) as true/false: write one of the "
                    "choices above, in quotes if it is one of those words."
                )
            lines.append(f"  - {key}: {item['msg']} (got {given!r}).{fix}")
    return lines
