"""The wheel carries everything the package reads at run time, and maps adapters/ packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("hitl_gatekeeper-*.whl")
    return zipfile.ZipFile(wheel)


def test_wheel_contents_and_adapter_mapping(tmp_path: Path) -> None:
    """Lua scripts, templates and py.typed ship; adapters/X/ installs as top-level X."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "site", "*.pyc", "__pycache__", ".*_cache"),
    )
    dummy = source / "adapters" / "gatekeeper_dummy"
    dummy.mkdir()
    (dummy / "__init__.py").write_text("NAME = 'dummy'\n")
    with _build_wheel(source, tmp_path / "dist") as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    assert "gatekeeper/py.typed" in names
    assert "gatekeeper/store/lua/decide.lua" in names
    assert "gatekeeper/store/lua/_prelude.lua" in names
    assert "gatekeeper/templates/gatekeeper.yaml" in names
    assert "gatekeeper_dummy/__init__.py" in names
    assert not any(n.startswith("adapters/") for n in names)
    assert "gatekeeper = gatekeeper.cli:main" in scripts


def test_editable_install_puts_adapters_on_the_path() -> None:
    assert str(ROOT / "adapters") in sys.path
