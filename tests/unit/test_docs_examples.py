"""Every example in README.md and docs/*.md runs (or, for config files, validates).

- Each ```python block runs in a fresh namespace with a temporary directory as
  the working directory. A block immediately preceded by
  ``<!-- not-run: REASON -->`` is skipped for that reason (it needs Redis or a
  second terminal).
- Each ```yaml block that starts with ``version: 1`` and contains ``store:``,
  ``approvers:`` or ``mcp:`` is a config file and must pass ``parse_config``;
  a ``${VAR}`` it reads without a default stands for a secret, and is set to a
  placeholder for the check.
- Any other ```yaml block that starts with ``version: 1`` is a policy and must
  load. Those of policy.md are checked, with what they say, by
  ``test_policy_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatekeeper._config import parse_config
from gatekeeper.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A fenced block at the start of a line, with what comes right before it.
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*([^\n]*?)\s*-->\s*\Z")
# A ${VAR} without a default: a secret the example reads from the environment.
SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _blocks(language: str) -> list[tuple[str, int, str, str | None]]:
    """(file name, index among this language's blocks, code, skip reason)."""
    found = []
    for file in FILES:
        text = file.read_text(encoding="utf-8")
        index = 0
        for match in FENCE.finditer(text):
            if match.group(1) != language:
                continue
            before = text[: match.start()]
            skip = NOT_RUN.search(before)
            found.append((file.name, index, match.group(2), skip.group(1) if skip else None))
            index += 1
    return found


def _is_config(code: str) -> bool:
    return any(key in code for key in ("store:", "approvers:", "mcp:"))


PYTHON = _blocks("python")
CONFIGS = [
    (name, i, code)
    for name, i, code, _ in _blocks("yaml")
    if code.startswith("version: 1") and _is_config(code)
]
POLICIES = [
    (name, i, code)
    for name, i, code, _ in _blocks("yaml")
    if code.startswith("version: 1") and not _is_config(code) and name != "policy.md"
]


def test_the_docs_have_examples_to_check() -> None:
    """Guard against the extraction silently finding nothing."""
    assert len([b for b in PYTHON if b[3] is None]) >= 8
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("block", PYTHON, ids=[f"{b[0]}-python-{b[1]}" for b in PYTHON])
def test_python_example_runs(
    block: tuple[str, int, str, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block runs to the end without raising, on its own."""
    name, index, code, skip = block
    if skip is not None:
        pytest.skip(f"{name} python block {index}: {skip}")
    monkeypatch.chdir(tmp_path)
    for var in ("GATEKEEPER_CONFIG", "GATEKEEPER_REDIS_URL", "GATEKEEPER_APPROVER"):
        monkeypatch.delenv(var, raising=False)
    namespace: dict[str, object] = {"__name__": f"docs_example_{index}"}
    exec(compile(code, f"{name}[python {index}]", "exec"), namespace)


@pytest.mark.parametrize(
    ("name", "index", "code"), CONFIGS, ids=[f"{c[0]}-yaml-{c[1]}" for c in CONFIGS]
)
def test_config_example_validates(
    name: str, index: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file in the docs is one gatekeeper accepts (policy files beside it are stubbed)."""
    for var in ("GATEKEEPER_REDIS_URL", "SLACK_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var in SECRET.findall(code):
        monkeypatch.setenv(var, f"placeholder-for-{var}")
    referenced = re.search(r"^policy:\s*(\S+\.ya?ml)\s*$", code, re.MULTILINE)
    if referenced:  # a config that names a policy file: give it a minimal one
        (tmp_path / referenced.group(1)).write_text("version: 1\n", encoding="utf-8")
    parse_config(code, source=f"{name}[yaml {index}]", base_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("name", "index", "code"), POLICIES, ids=[f"{c[0]}-yaml-{c[1]}" for c in POLICIES]
)
def test_policy_example_loads(name: str, index: int, code: str) -> None:
    """A whole policy shown outside policy.md is one gatekeeper loads."""
    Policy.from_yaml(code, source=f"{name}[yaml {index}]")
