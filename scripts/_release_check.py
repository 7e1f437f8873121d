"""Build the sdist and the wheel as a release would, and check them before anything is uploaded.

Run through ``scripts/release-check`` (which sets up .venv first); the tests
run it too (tests/integration/test_release_check.py). Steps:

1. ``python -m build``: the sdist, then the wheel built from that sdist (so a
   file the sdist forgets breaks the wheel here, not on a user's machine);
2. the wheel holds every file of gatekeeper/ that git tracks, each adapter as
   a top-level package, the ``gatekeeper`` console script, and metadata whose
   name, version, URLs and extras are the project's; the sdist holds the
   tests, docs and licence;
3. ``twine check --strict``: the metadata and README render as the package
   index will show them.

It uploads nothing; it prints the upload command when all is well. Exit
status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"web", "langchain", "openai", "pydantic-ai", "docs", "dev"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/release-check", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--outdir", default=str(ROOT / "dist"), help="where to build (default dist/)"
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="build with this environment's hatchling instead of a fresh one (offline)",
    )
    args = parser.parse_args(argv)
    outdir = Path(args.outdir)
    version = _version()
    for old in (*outdir.glob("hitl_gatekeeper-*"), *outdir.glob("hitl-gatekeeper-*")):
        old.unlink()
    build = [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)]
    if args.no_isolation:
        build.insert(3, "--no-isolation")
    _step(f"building hitl-gatekeeper {version}", build)
    wheels = list(outdir.glob(f"hitl_gatekeeper-{version}-*.whl"))
    sdists = list(outdir.glob(f"hitl_gatekeeper-{version}.tar.gz"))
    problems = []
    if len(wheels) != 1 or len(sdists) != 1:
        problems.append(f"expected one wheel and one sdist of {version} in {outdir}")
    else:
        problems += wheel_problems(wheels[0], version) + sdist_problems(sdists[0])
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        return 1
    print(f"ok: {wheels[0].name} and {sdists[0].name} hold what they should")
    _step(
        "twine check",
        [
            sys.executable,
            "-m",
            "twine",
            "--no-color",
            "check",
            "--strict",
            *map(str, wheels + sdists),
        ],
    )
    if f"## [{version}]" not in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"):
        print(f"note: CHANGELOG.md has no [{version}] section yet; move Unreleased under it")
    print(f"ready: python -m twine upload {outdir}/hitl_gatekeeper-{version}*")
    return 0


def wheel_problems(wheel: Path, version: str) -> list[str]:
    """What is wrong with the wheel's files and metadata (nothing: an empty list)."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"hitl_gatekeeper-{version}.dist-info"
        metadata = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "gatekeeper", "adapters"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in tracked:
        if path == "adapters/README.md":
            continue
        shipped = path.removeprefix("adapters/")
        if shipped not in names:
            problems.append(f"the wheel lacks {shipped} (from {path})")
    for name in names:
        if name.startswith(("tests/", "adapters/", "docs/", "bench/")):
            problems.append(f"the wheel ships {name}, which is not part of the package")
    if "gatekeeper = gatekeeper.cli:main" not in entry_points:
        problems.append("the wheel has no `gatekeeper` console script")
    if metadata["Name"] != "hitl-gatekeeper" or metadata["Version"] != version:
        problems.append(f"metadata says {metadata['Name']} {metadata['Version']}")
    urls = metadata.get_all("Project-URL") or []
    if not any(u.startswith("Documentation, ") for u in urls):
        problems.append("metadata has no Documentation URL")
    missing = EXTRAS - set(metadata.get_all("Provides-Extra") or [])
    if missing:
        problems.append(f"metadata lacks the extras {sorted(missing)}")
    if metadata.get("Description-Content-Type") != "text/markdown":
        problems.append("the README is not declared as markdown")
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    wanted = [
        *("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "tests/conftest.py"),
        *("docs/quickstart.md", "gatekeeper/__init__.py", "adapters/gatekeeper_openai/__init__.py"),
    ]
    return [f"the sdist lacks {name}" for name in wanted if name not in names]


def _version() -> str:
    text = (ROOT / "gatekeeper" / "_version.py").read_text(encoding="utf-8")
    return text.split("=", 1)[1].strip().strip("\"'")


def _step(what: str, argv: list[str]) -> None:
    print(f"-- {what}: {' '.join(argv)}", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stdout.write(done.stdout + done.stderr)
        print(f"FAIL: {what} exited with {done.returncode}")
        raise SystemExit(1)
    tail = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    for line in tail:
        print(f"   {line}")


if __name__ == "__main__":
    sys.exit(main())
