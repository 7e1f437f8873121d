"""The core never imports opentelemetry or prometheus_client when a module loads.

Both are extras (``otel``, ``metrics``): a gate without telemetry must work
without them, and pay nothing for them. Only code inside functions (run
when telemetry is turned on) and ``TYPE_CHECKING`` blocks may name them.
(redis-py itself imports the OpenTelemetry API when it is installed; that
is its choice, not a dependency of gatekeeper's.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import gatekeeper

OPTIONAL = ("opentelemetry", "prometheus_client")


def module_level_imports(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(sub, ast.Import):
                names += [a.name for a in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                names.append(sub.module)
    return names


def function_bodies_skipped(tree: ast.Module) -> ast.Module:
    """``tree`` with every function's body emptied (imports there run only when called)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = [ast.Pass()]
    return tree


def test_no_module_of_gatekeeper_imports_an_optional_telemetry_package_at_load() -> None:
    root = Path(gatekeeper.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = function_bodies_skipped(ast.parse(path.read_text(encoding="utf-8")))
        for name in module_level_imports(tree):
            if name.split(".")[0] in OPTIONAL:
                found.append(f"{path.relative_to(root)}: {name}")
    assert found == []


def test_the_scan_would_see_such_an_import() -> None:
    tree = function_bodies_skipped(ast.parse("import prometheus_client\ndef f():\n import x\n"))
    assert module_level_imports(tree) == ["prometheus_client"]
