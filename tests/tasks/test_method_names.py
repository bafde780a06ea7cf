"""No code outside a method's own file compares anything with that method's name.

Code that needs to know what a method can do asks for its capabilities (``stochastic``,
``any_scale``, ``needs_teacher``, ``can_teach``), so a new method never needs edits elsewhere.
The check reads every module of ``terradiff/`` with :mod:`ast`: a comparison (``==``, ``!=``,
``in``, ``not in``, ``match``) whose literal side is a registered method's name is a violation
unless it sits in that method's file.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from terradiff.tasks.registry import registered_methods

PACKAGE = Path(__file__).resolve().parents[2] / "terradiff"


def _literals(node: ast.AST) -> list[str]:
    """String constants of ``node`` (a constant, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for element in node.elts for v in _literals(element)]
    return []


def method_name_comparisons(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` of each comparison of something with one of ``names``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found += [(node.lineno, v) for v in _literals(side) if v in names]
        elif isinstance(node, ast.match_case):
            for sub in ast.walk(node.pattern):
                if isinstance(sub, ast.MatchValue):
                    found += [(sub.lineno, v) for v in _literals(sub.value) if v in names]
    return found


def test_the_checker_finds_comparisons_in_every_form() -> None:
    source = (
        "a = x == 'sr3'\n"
        "b = 'vae' != y\n"
        "c = z in ('gan', 'other')\n"
        "match w:\n"
        "    case 'iidm':\n"
        "        pass\n"
        "d = {'sr3': 1}\n"  # a mapping key is not a comparison
        "e = f(method='sr3')\n"
    )
    found = method_name_comparisons(source, {"sr3", "vae", "gan", "iidm"})
    assert found == [(1, "sr3"), (2, "vae"), (3, "gan"), (5, "iidm")]


def test_no_method_name_is_compared_outside_its_own_file() -> None:
    owners: dict[str, set[Path]] = {}
    for method in registered_methods():
        owners.setdefault(method.name, set()).add(Path(inspect.getfile(method)).resolve())
    assert {"sr3", "regression", "iidm", "vae"} <= set(owners)
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, name in method_name_comparisons(path.read_text(), set(owners)):
            if path.resolve() not in owners[name]:
                violations.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: compares with "
                    f"method name {name!r}; ask the method's capabilities instead"
                )
    assert not violations, "\n".join(violations)
