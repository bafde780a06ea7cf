"""Method sections of the experiment config: their base class and their registry.

A task that offers several methods (super-resolution, carbon estimation, change detection) is
configured by one section (``sr``, ``carbon``, ``change``) whose ``method`` key picks the method;
the rest of the section holds that method's keys only. Each method declares its section's schema
as a :class:`MethodConfig` subclass (in the method's file) and registers it with
:func:`register_method_config`; :func:`validate_method_section` validates a raw section with the
class its ``method`` names, so a knob of another method is an unknown key.

Split from :mod:`terradiff.config` (which re-exports these names) to keep each file to one concern.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

__all__ = [
    "SECTION_TASKS",
    "ConfigSection",
    "MethodConfig",
    "SectionError",
    "default_method",
    "method_config_class",
    "register_method_config",
    "registered_method_configs",
    "unregister_method_config",
    "validate_method_section",
]


class ConfigSection(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated, and a
    number must be finite (``.nan``/``.inf`` in YAML would otherwise pass ``ge``/``lt`` bounds,
    or fail none of them, and reach training or sampling)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_off(cls, data: Any) -> Any:
        """Read YAML 1.1's booleans back as the words the user wrote: ``compile: on`` (and
        ``--set train.compile=on``) reach the config as ``True``, which a choice of
        ``"auto" | "on" | "off"`` would refuse with a puzzling "got True"."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            value = data.get(name)
            if isinstance(value, bool) and get_origin(field.annotation) is Literal:
                word = "on" if value else "off"
                if word in get_args(field.annotation):
                    data = {**data, name: word}
        return data


class MethodConfig(ConfigSection):
    """Base of a method's config section (``sr``, ``carbon``, ``change``): one method's keys.

    Each method of a task declares its own subclass (in the method's file, beside the method
    class) and registers it with :func:`register_method_config`; the section of an experiment is
    validated by the class its ``method`` names, so a knob of another method is an unknown key.

    Attributes:
        uses_model_unet: the method's network is (or contains) the UNet of the ``model`` section,
            so :class:`~terradiff.config.ExperimentConfig` checks ``model`` against
            ``data.image_size``; a method with a network of its own sets it to False.
    """

    uses_model_unet: ClassVar[bool] = True

    method: str


#: The config sections chosen by ``method`` and the task each belongs to.
SECTION_TASKS: dict[str, str] = {
    "sr": "super_resolution",
    "carbon": "carbon",
    "change": "change",
    "temporal": "temporal",
}

_METHOD_CONFIGS: dict[str, dict[str, type[MethodConfig]]] = {}
_DEFAULT_METHODS: dict[str, str] = {}


def register_method_config(
    section: str, name: str, config_class: type[MethodConfig], *, default: bool = False
) -> None:
    """Make ``config_class`` the schema of section ``section`` when its ``method`` is ``name``.

    Args:
        section: a key of :data:`SECTION_TASKS` (``"sr"``, ``"carbon"``, ``"change"``).
        name: the method's name as configs write it.
        config_class: a :class:`MethodConfig` subclass whose ``method`` field is ``name``.
        default: the method a task uses when its section (or its ``method`` key) is omitted.
    """
    if section not in SECTION_TASKS:
        raise ValueError(f"unknown config section {section!r}; choose one of {list(SECTION_TASKS)}")
    _METHOD_CONFIGS.setdefault(section, {})[name] = config_class
    if default or section not in _DEFAULT_METHODS:
        _DEFAULT_METHODS[section] = name


def unregister_method_config(section: str, name: str) -> None:
    """Forget ``section.method = name`` (the default falls back to the first one left)."""
    known = _METHOD_CONFIGS.get(section, {})
    known.pop(name, None)
    if _DEFAULT_METHODS.get(section) == name:
        _DEFAULT_METHODS.pop(section)
        if known:
            _DEFAULT_METHODS[section] = next(iter(known))


def registered_method_configs(section: str) -> dict[str, type[MethodConfig]]:
    """``{method name: config class}`` of ``section`` (a copy; empty when none is registered)."""
    return dict(_METHOD_CONFIGS.get(section, {}))


def default_method(section: str) -> str:
    """The method ``section`` uses when a config names none.

    Raises:
        ValueError: no method of ``section`` is registered.
    """
    if section not in _DEFAULT_METHODS:
        raise ValueError(
            f"no methods are registered for section '{section}'; import terradiff.tasks (which "
            "registers the built-in methods) before validating configs"
        )
    return _DEFAULT_METHODS[section]


def method_config_class(section: str, name: str | None = None) -> type[MethodConfig]:
    """The registered config class of ``section.method = name`` (the default method if None)."""
    known = _METHOD_CONFIGS.get(section, {})
    name = name if name is not None else default_method(section)
    if name not in known:
        guess = difflib.get_close_matches(str(name), list(known), n=1)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        raise ValueError(
            f"{section}.method {name!r} is not a registered method.{hint} Choose one of "
            f"{sorted(known)}"
        )
    return known[name]


class SectionError(ValueError):
    """A method section's own validation errors, re-reported under the section's key.

    Attributes:
        section: the section's key (``"sr"``).
        config_class: the class that validated it.
        error: pydantic's errors of that validation.
    """

    def __init__(self, section: str, config_class: type[MethodConfig], error: ValidationError):
        super().__init__(f"invalid {section} section")
        self.section = section
        self.config_class = config_class
        self.error = error


def validate_method_section(section: str, value: Any) -> MethodConfig | None:
    """Validate a raw ``sr``/``carbon``/``change`` section with the class its ``method`` names.

    Raises:
        ValueError: not a mapping, or an unknown method.
        SectionError: the method's own keys are invalid.
    """
    if value is None or isinstance(value, MethodConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"section '{section}' must be a mapping of keys to values")
    config_class = method_config_class(section, value.get("method"))
    data = {**value, "method": value.get("method") or default_method(section)}
    try:
        return config_class.model_validate(data)
    except ValidationError as error:
        raise SectionError(section, config_class, error) from None
