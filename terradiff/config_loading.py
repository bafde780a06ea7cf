"""Reading an experiment config from a YAML file and ``--set`` overrides.

:func:`load_config` turns every problem with the file itself (missing, a folder, not UTF-8,
not YAML, empty, not a mapping) and with a ``--set KEY=VALUE`` item into a :class:`ConfigError`
naming the file or the item and the fix; the keys and values are then validated by
:func:`terradiff.config.config_from_dict`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from terradiff.config import ExperimentConfig, config_from_dict
from terradiff.errors import ConfigError
from terradiff.run_paths import config_file_bases, rebase_relative_paths

log = logging.getLogger(__name__)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate a YAML (or JSON) experiment config.

    Args:
        path: the YAML file.
        overrides: ``key.sub=value`` strings applied on top (values parsed as YAML), e.g.
            ``["train.max_steps=100", "diffusion.schedule=cosine"]``.

    A relative path of the config (``data.root`` and the others of
    :data:`terradiff.run_paths.PATH_FIELDS`) that does not exist from the current folder is
    looked for beside the file and in the folders above it, and made absolute where found.

    Raises:
        ConfigError: the file is missing or malformed, or a key/value is invalid.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder; give the YAML file, e.g. {path}/config.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"config {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} on line {line}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {_yaml_problem(error)}") from None
    if data is None:
        raise ConfigError(
            f"config {path} is empty; it needs at least 'data: {{root: FOLDER}}' "
            "(see configs/demo_aid.yaml)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {path} holds a {_yaml_kind(data)} at the top level; it must be a mapping of "
            "keys to values, e.g. 'data: {root: FOLDER}' (see configs/demo_aid.yaml)"
        )
    for override in overrides or []:
        apply_override(data, override)
    for base in config_file_bases(path):
        for note in rebase_relative_paths(data, base):
            log.info(
                "%s (not found from %s; found from the config file's folder or one above it)",
                note,
                Path.cwd(),
            )
    return config_from_dict(data, str(path))


def _yaml_kind(value: Any) -> str:
    """How YAML calls the type of ``value`` (for messages)."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return f"single value ({value!r})"


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML parse error: what was wrong and where (PyYAML's text spans lines)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return str(problem)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested dict in place.

    Raises:
        ConfigError: ``override`` is not ``KEY=VALUE``, its value is not valid YAML, or a part of
            its key is a value rather than a section. The message names the ``--set`` item.
    """
    item = f"--set {override!r}"
    if "=" not in override:
        raise ConfigError(
            f"{item}: expected KEY=VALUE with the key's sections joined by dots, e.g. "
            "--set train.max_steps=500"
        )
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(part.strip() for part in parts):
        raise ConfigError(
            f"{item}: the key {key.strip()!r} has an empty part; write KEY=VALUE with sections "
            "joined by dots, e.g. --set train.max_steps=500"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"{item}: the value {raw!r} is not valid YAML ({_yaml_problem(error)}); fix it or "
            f"quote it as a string, e.g. --set '{key}=\"{raw}\"'"
        ) from None
    target = data
    for depth, part in enumerate(parts[:-1]):
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            section = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"{item}: '{section}' is a value, not a section with keys; set it directly, "
                f"e.g. --set {section}=VALUE"
            )
    target[parts[-1]] = value
