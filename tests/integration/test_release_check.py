"""scripts/release-check builds the sdist and wheel, checks what they hold, and runs twine check."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "_release_check.py"


def release_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The release check, run as the wrapper runs it (offline: this venv's hatchling)."""
    # build and twine come with the dev extra: missing, this fails rather than skips.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip(
            "not a git clone (an unpacked sdist): the release check compares the wheel "
            "with the files git tracks, so it runs from a clone"
        )
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--outdir", str(out), "--no-isolation"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return done, out


def test_the_release_check_passes_on_this_tree(
    built: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = built
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: hitl_gatekeeper-" in done.stdout and "hold what they should" in done.stdout
    assert "PASSED" in done.stdout  # twine check, on both files
    assert "FAIL" not in done.stdout
    assert "ready: python -m twine upload" in done.stdout
    assert len(list(out.glob("*.whl"))) == 1 and len(list(out.glob("*.tar.gz"))) == 1


def test_it_catches_a_wheel_that_lacks_a_file(
    built: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """What a forgotten Lua script or template in the build config would look like."""
    _, out = built
    (wheel,) = out.glob("*.whl")
    broken = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if item.filename != "gatekeeper/store/lua/decide.lua":
                dst.writestr(item, src.read(item))
        dst.writestr("tests/conftest.py", "")
    check = release_check()
    version = check._version()
    problems = check.wheel_problems(broken, version)
    assert (
        "the wheel lacks gatekeeper/store/lua/decide.lua (from gatekeeper/store/lua/decide.lua)"
        in problems
    )
    assert "the wheel ships tests/conftest.py, which is not part of the package" in problems
    assert check.wheel_problems(wheel, version) == []
