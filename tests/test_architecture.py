"""Architecture rules of the terradiff package, checked on the source text (``ast``, no imports).

1. Layers: a module never imports (at module level or inside a function) a module of a higher
   layer; :data:`LAYERS` gives the layer of every top-level module and package of ``terradiff/``.
2. No private name (``_x``, not a dunder) is imported from another module.
3. No Python file under ``terradiff/`` is longer than :data:`MAX_LINES` lines.

Each violation is reported as ``path:line: rule: what``. The allowlists below name the violations
that exist while the refactoring that removes them is under way; they must shrink to empty, and
:func:`test_allowlists_name_only_current_violations` fails as soon as an entry is no longer needed
(delete it then).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "terradiff"
MAX_LINES = 600

#: Layer of every top-level module / package of terradiff, lowest first. A module may import
#: modules of its own layer or lower ones, never higher ones. ``__init__`` is the package root
#: (``from terradiff import __version__``).
LAYERS: dict[str, int] = {
    # 0: the package root and the exception hierarchy
    "__init__": 0,
    "errors": 0,
    # 1: file and process utilities
    "io": 1,
    "weights": 1,
    "runtime": 1,
    "signals": 1,
    "provenance": 1,
    "report_format": 1,
    "progress": 1,
    "extras": 1,
    # 2: configuration and persistent training state
    "config": 2,
    "config_loading": 2,
    "config_methods": 2,
    "config_errors": 2,
    "config_diff": 2,
    "checkpoint": 2,
    "run_folder": 2,
    "run_paths": 2,
    "model_card": 2,
    "ema": 2,
    "loss_meter": 2,
    "lr_schedule": 2,
    "batching": 2,
    "accelerate_steps": 2,
    # 3: the library's building blocks
    "diffusion": 3,
    "nets": 3,
    "data": 3,
    "metrics": 3,
    # 4: methods built from the blocks
    "carbon": 4,
    "distill": 4,
    "change": 4,
    # 5: what a user trains
    "tasks": 5,
    # 6: application workflows on top of tasks
    "train": 6,
    "evaluate": 6,
    "mapping": 6,
    "change_mapping": 6,
    "forecast_mapping": 6,
    "sr_mapping": 6,
    "temporal_evaluate": 6,
    "sr_evaluate": 6,
    "carbon_evaluate": 6,
    "compress": 6,
    "sampling_io": 6,
    "viz": 6,
    "interop": 6,
    "api": 6,
    # 7: the command line
    "commands": 7,
    "map_commands": 7,
    "cli": 7,
    "cli_options": 7,
}

#: (file, imported top-level module) pairs allowed to import upward, for now. Must shrink to empty.
ALLOWED_UPWARD: set[tuple[str, str]] = set()

#: (file, "module.name") private imports allowed for now. Must shrink to empty: give the name a
#: public, documented spelling in its module instead.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()

#: Files over MAX_LINES lines while they are being split (e.g. "terradiff/data/x.py"). Must
#: shrink to empty; it is empty now (data/degrade, data/tiling, data/transforms were split).
KNOWN_LONG: set[str] = set()


# --------------------------------------------------------------------------- the checkers


def _module_name(path: str) -> str:
    """``terradiff/a/b.py`` -> ``terradiff.a.b``; ``terradiff/a/__init__.py`` -> ``terradiff.a``."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level(path: str) -> str:
    """The top-level module or package of terradiff that ``path`` belongs to (a LAYERS key)."""
    parts = path.split("/")
    return parts[1].removesuffix(".py") if len(parts) > 1 else "__init__"


def _imports(path: str, tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """Every import of a terradiff module in ``tree``, anywhere (functions included).

    Returns:
        ``(line, absolute module, imported names)``; names are empty for ``import x.y``.
    """
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the file's package
                package = _module_name(path).split(".")
                if not path.endswith("__init__.py"):
                    package = package[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] == PACKAGE:
                found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def _targets(module: str, names: list[str]) -> list[str]:
    """The top-level terradiff modules an import reaches (``from terradiff import io`` -> io)."""
    parts = module.split(".")
    if len(parts) > 1:
        return [parts[1]]
    reached = {n if n in LAYERS else "__init__" for n in names} or {"__init__"}
    return sorted(reached)


def check_layers(path: str, source: str) -> list[str]:
    """Violations of the layer rule in one file (``path`` relative to the repository root)."""
    own = _top_level(path)
    if own not in LAYERS:
        return [f"{path}:1: layer rule: top-level module {own!r} has no layer; add it to LAYERS"]
    problems = []
    for line, module, names in _imports(path, ast.parse(source, path)):
        for target in _targets(module, names):
            problems.extend(_layer_problems(path, line, own, module, target))
    return problems


def _layer_problems(path: str, line: int, own: str, module: str, target: str) -> list[str]:
    """The layer-rule violation (if any) of ``own`` importing ``module`` (in ``target``)."""
    problems = []
    if target not in LAYERS:
        problems.append(
            f"{path}:{line}: layer rule: imports {module}, whose top-level module "
            f"{target!r} has no layer; add it to LAYERS"
        )
    elif LAYERS[target] > LAYERS[own] and (path, target) not in ALLOWED_UPWARD:
        problems.append(
            f"{path}:{line}: layer rule: {own} (layer {LAYERS[own]}) imports {module} "
            f"({target}, layer {LAYERS[target]}), a higher layer"
        )
    return problems


def check_private_imports(path: str, source: str) -> list[str]:
    """Private names (``_x``, not dunders) imported from another module in one file."""
    problems = []
    for line, module, names in _imports(path, ast.parse(source, path)):
        if module == _module_name(path):
            continue
        for name in names:
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            if private and (path, f"{module}.{name}") not in KNOWN_PRIVATE_IMPORTS:
                problems.append(
                    f"{path}:{line}: private-import rule: imports the private name {name} from "
                    f"{module}; make it public (and documented) there, or keep it in one module"
                )
    return problems


def check_length(path: str, source: str) -> list[str]:
    """The file-length rule for one file."""
    count = len(source.splitlines())
    if count > MAX_LINES and path not in KNOWN_LONG:
        return [
            f"{path}:{MAX_LINES + 1}: file-length rule: {count} lines > {MAX_LINES}; split it "
            "by concern"
        ]
    return []


def _sources() -> list[tuple[str, str]]:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    return [(f.relative_to(ROOT).as_posix(), f.read_text(encoding="utf-8")) for f in files]


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def sources() -> list[tuple[str, str]]:
    found = _sources()
    assert found, f"no Python files under {ROOT / PACKAGE}"
    return found


def test_no_upward_imports(sources: list[tuple[str, str]]) -> None:
    problems = [p for path, text in sources for p in check_layers(path, text)]
    assert not problems, "\n".join(problems)


def test_no_private_names_imported_across_modules(sources: list[tuple[str, str]]) -> None:
    problems = [p for path, text in sources for p in check_private_imports(path, text)]
    assert not problems, "\n".join(problems)


def test_no_long_files(sources: list[tuple[str, str]]) -> None:
    problems = [p for path, text in sources for p in check_length(path, text)]
    assert not problems, "\n".join(problems)


def test_allowlists_name_only_current_violations(sources: list[tuple[str, str]]) -> None:
    """Every allowlist entry still excuses a violation; delete the ones that do not."""
    by_path = dict(sources)
    stale = []
    for path, target in sorted(ALLOWED_UPWARD):
        text = by_path.get(path)
        reached = text is not None and any(
            target in _targets(m, n) for _, m, n in _imports(path, ast.parse(text, path))
        )
        if not reached:
            stale.append(f"{path}: ALLOWED_UPWARD entry ({path!r}, {target!r}) is not needed")
    for path, name in sorted(KNOWN_PRIVATE_IMPORTS):
        text = by_path.get(path)
        module, _, attr = name.rpartition(".")
        used = text is not None and any(
            m == module and attr in n for _, m, n in _imports(path, ast.parse(text, path))
        )
        if not used:
            stale.append(f"{path}: KNOWN_PRIVATE_IMPORTS entry {name!r} is not needed")
    for path in sorted(KNOWN_LONG):
        text = by_path.get(path)
        if text is None or len(text.splitlines()) <= MAX_LINES:
            stale.append(f"{path}: KNOWN_LONG entry is not needed (gone or <= {MAX_LINES} lines)")
    assert not stale, "allowlists must shrink; remove:\n" + "\n".join(stale)


# --------------------------------------------------------------------------- the checkers fail


def test_checkers_report_violations() -> None:
    upward = "import torch\n\n\ndef f():\n    from terradiff.tasks import load_task\n"
    assert check_layers("terradiff/nets/x.py", upward) == [
        "terradiff/nets/x.py:5: layer rule: nets (layer 3) imports terradiff.tasks "
        "(tasks, layer 5), a higher layer"
    ]
    assert check_layers("terradiff/cli.py", upward) == []  # downward is fine
    relative = "from ..tasks.base import Task\n"
    assert "layer rule" in check_layers("terradiff/data/y.py", relative)[0]
    assert "no layer" in check_layers("terradiff/newthing.py", "x = 1\n")[0]
    private = "from terradiff.data.raster import _open, read_raster, __version__\n"
    assert check_private_imports("terradiff/mapping.py", private) == [
        "terradiff/mapping.py:1: private-import rule: imports the private name _open from "
        "terradiff.data.raster; make it public (and documented) there, or keep it in one module"
    ]
    assert check_length("terradiff/x.py", "x = 1\n" * (MAX_LINES + 1))[0].startswith(
        f"terradiff/x.py:{MAX_LINES + 1}: file-length rule"
    )
    assert check_length("terradiff/x.py", "x = 1\n" * MAX_LINES) == []
