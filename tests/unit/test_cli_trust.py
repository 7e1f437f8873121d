"""`gatekeeper keys generate` and `gatekeeper acl`: what they print, and from which config."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gatekeeper._config import parse_config
from gatekeeper.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_config_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts where no ./gatekeeper.yaml and no $GATEKEEPER_CONFIG are found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEKEEPER_CONFIG", raising=False)


def test_keys_generate_prints_the_signing_key_for_deciders_and_the_trusted_keys(
    tmp_path: Path,
) -> None:
    code, out, _ = run("keys", "generate", "--dir", str(tmp_path / "k"), "--id", "k1")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("decisions:")
    signing, trusted = lines[start + 1], lines[start + 2]
    pem = (tmp_path / "k" / "decider.pem").resolve()
    assert signing == f"  signing_key: {pem}  # deciding processes only"
    assert trusted.startswith("  trusted_keys: {k1: ") and trusted.endswith("  # every process")
    config = parse_config("version: 1\n" + "\n".join(lines[start : start + 3]) + "\n")
    keys = config.decision_keys()  # what was printed is a config that loads, and can decide
    assert keys.can_decide
    assert keys.signer().key_id == "k1"
