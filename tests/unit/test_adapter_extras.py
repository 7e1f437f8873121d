"""An adapter imported without its framework says which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# adapter package -> (its extra, the framework modules it imports)
EXTRAS = {
    "gatekeeper_langchain": ("langchain", ("langchain", "langchain_core", "langgraph")),
    "gatekeeper_openai": ("openai", ("agents", "openai")),
    "gatekeeper_pydantic_ai": ("pydantic-ai", ("pydantic_ai",)),
    "gatekeeper_mcp": ("mcp", ("mcp",)),
}
CASES = [(adapter, module) for adapter, (_, modules) in EXTRAS.items() for module in modules]


def test_every_adapter_is_listed() -> None:
    found = {p.parent.name for p in (ROOT / "adapters").glob("*/__init__.py")}
    assert found == set(EXTRAS)


def import_without(adapter: str, module: str) -> subprocess.CompletedProcess[str]:
    """Import ``adapter`` in a fresh interpreter where ``module`` can't be imported."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None  # what Python does with a module it can't find\n"
        f"import {adapter}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.parametrize(("adapter", "module"), CASES)
def test_a_missing_framework_names_the_extra(adapter: str, module: str) -> None:
    done = import_without(adapter, module)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    extra = EXTRAS[adapter][0]
    assert last.startswith(f"ModuleNotFoundError: {adapter} needs ")
    assert last.endswith(f'pip install "hitl-gatekeeper[{extra}]"')
    assert f"(no module named '{module}" in last


def test_the_error_is_an_import_error_with_the_missing_name() -> None:
    from gatekeeper._extras import needs_extra

    with (
        pytest.raises(ImportError, match=r'pip install "hitl-gatekeeper\[x\]"') as caught,
        needs_extra("gatekeeper_x", "x", "X", ("xframework",)),
    ):
        raise ModuleNotFoundError("No module named 'xframework.sub'", name="xframework.sub")
    assert caught.value.name == "xframework.sub"
    with (
        pytest.raises(ModuleNotFoundError, match=r"^No module named 'other'$"),
        needs_extra("gatekeeper_x", "x", "X", ("xframework",)),
    ):
        raise ModuleNotFoundError("No module named 'other'", name="other")
