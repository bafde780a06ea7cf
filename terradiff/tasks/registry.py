"""Methods: one class per way of solving a task, found through one registry.

A task (super-resolution, carbon estimation) owns what every method of it shares: the data, the
bands, the pairs, the previews. A *method* (SR3, regression, IIDM, VAE, ...) owns the rest: its
config keys, its network, its training loss and its prediction. Each method is one file holding a
:class:`Method` subclass and its :class:`~terradiff.config.MethodConfig` subclass; one call to
:func:`register_method` makes both known, so configs validate its section, the task builds it, and
the contract tests (``tests/tasks/test_method_contract.py``) exercise it. Code outside a method's
file asks for its *capabilities* (``stochastic``, ``any_scale``, ``needs_teacher``), never its name.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from terradiff.config import MethodConfig, register_method_config, unregister_method_config

_REGISTRY: dict[str, dict[str, type[Method]]] = {}


class Method(abc.ABC):
    """One method of a task: its network, its loss and how it predicts.

    Class attributes (declared by every subclass):
        section: the config section it is chosen in (``"sr"``, ``"carbon"``).
        name: its ``method`` value in that section.
        config_class: the schema of its section (a :class:`MethodConfig` subclass).
        stochastic: its prediction is drawn by a diffusion sampler (so it takes a
            :class:`~terradiff.diffusion.spec.SamplingSpec` and can give ensembles).
        any_scale: it super-resolves at any scale, not only the trained one.
        needs_teacher: training with its default settings reads another trained checkpoint
            (distillation).
        summary: one line for ``--help`` texts and error messages.

    Args:
        task: the task it serves (bands, schedule, experiment config).
    """

    section: ClassVar[str]
    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    stochastic: ClassVar[bool] = False
    any_scale: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.config: Any = getattr(task.config, self.section)

    @abc.abstractmethod
    def build_net(self) -> nn.Module:
        """The network the Trainer optimises (initialised from the experiment seed)."""

    @abc.abstractmethod
    def training_loss(self, net: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of one batch; all randomness drawn from ``generator``."""

    def check_training(self) -> None:
        """Refuse what training would fail on after the run folder is made (default: nothing)."""
        return None

    def describe(self) -> str:
        """``section/name`` (what error messages call it)."""
        return f"{self.task.config.task}/{self.name}"


def register_method(method: type[Method], *, default: bool = False) -> type[Method]:
    """Register ``method`` and its config class (usable as a decorator).

    Args:
        method: a :class:`Method` subclass with ``section``, ``name`` and ``config_class``.
        default: the method its task uses when the config names none.

    Raises:
        ValueError: the class misses a declaration, or its config class's ``method`` default
            is not its name.
    """
    for attribute in ("section", "name", "config_class"):
        if not hasattr(method, attribute):
            raise ValueError(f"{method.__name__} must declare '{attribute}'")
    field = method.config_class.model_fields.get("method")
    if field is None or field.default != method.name:
        raise ValueError(
            f"{method.config_class.__name__}.method must default to {method.name!r} "
            f"(the name {method.__name__} registers)"
        )
    _REGISTRY.setdefault(method.section, {})[method.name] = method
    register_method_config(method.section, method.name, method.config_class, default=default)
    return method


def method_class(section: str, name: str) -> type[Method]:
    """The registered method ``name`` of config section ``section``."""
    known = _REGISTRY.get(section, {})
    if name not in known:
        raise ValueError(f"no method {name!r} in section '{section}'; known: {sorted(known)}")
    return known[name]


def registered_methods(section: str | None = None) -> list[type[Method]]:
    """Every registered method (of ``section``), in registration order."""
    sections = [section] if section is not None else list(_REGISTRY)
    return [m for s in sections for m in _REGISTRY.get(s, {}).values()]


def unregister_method(section: str, name: str) -> None:
    """Forget a method (tests register toy methods and clean up after themselves)."""
    _REGISTRY.get(section, {}).pop(name, None)
    unregister_method_config(section, name)
