"""A new user's first commands: init, policy explain on what init wrote, serve, the docs link."""

from __future__ import annotations

import gc
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 backport, a dependency there
    import tomli as tomllib

from gatekeeper._config import load_config
from gatekeeper.cli import _commands, main

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What `gatekeeper init` writes where no Redis answers (the test's probe finds none)."""
    for var in ("GATEKEEPER_REDIS_URL", "GATEKEEPER_CONFIG", "GATEKEEPER_WEB_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert run("init")[0] == 0
    return tmp_path / "gatekeeper.yaml"


def test_policy_explain_reads_the_file_init_writes(starter: Path) -> None:
    """`policy check` took it but `policy explain` said `store: unknown key`."""
    code, out, err = run(
        "policy", "explain", str(starter), "refund", '{"order_id": "A-1", "amount": 500}',
        "--agent", "billing-bot",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "verdict: require_approval" in out and "rules:   big-refund" in out
    assert "approval: 2 approver(s) from finance, waits 900s" in out


def test_init_without_a_redis_says_what_memory_means(tmp_path: Path) -> None:
    target = tmp_path / "gatekeeper.yaml"
    code, out, _ = run("init", str(target))
    assert code == 0
    assert load_config(target).store.url == "memory://"
    assert "note: no Redis answered at 127.0.0.1:" in out
    assert "can't see them" in out and "GATEKEEPER_REDIS_URL=redis://" in out
    code, _, err = run("--config", str(target), "pending")
    assert code == 1 and err.startswith("error: ") and "memory://" in err


def test_init_writes_a_web_section_and_links_the_published_docs(starter: Path) -> None:
    text = starter.read_text()
    web = yaml.safe_load(text)["web"]
    assert web == {"secret_key": "${GATEKEEPER_WEB_SECRET}", "base_url": "http://127.0.0.1:8000"}
    assert "docs/quickstart.md" not in text.replace(f"{_commands.DOCS_URL}/quickstart.md", "")
    assert f"{_commands.DOCS_URL}/quickstart.md" in text
    assert "@" + "DOCS@" not in text and "@STORE_URL@" not in text


def test_the_docs_link_is_the_projects_documentation_url() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Documentation"].replace("/tree/", "/blob/") == _commands.DOCS_URL
    assert _commands.DOCS_URL.startswith(urls["Source"])


def test_serve_refuses_the_embedded_store_unless_told_it_is_a_demo(
    starter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody else can reach a memory:// store: a console on it would stay empty."""
    pytest.importorskip("uvicorn")
    monkeypatch.setenv("GATEKEEPER_WEB_SECRET", "s" * 40)
    code, out, err = run("serve")
    assert (code, out) == (1, "")
    assert err.startswith("refused: gatekeeper.yaml: store.url is memory://") and "--demo" in err
    served: list[dict[str, Any]] = []

    def serving(app: Any, **kw: Any) -> None:
        served.append({**kw, "frozen": gc.get_freeze_count()})

    monkeypatch.setattr(sys.modules["uvicorn"], "run", serving, raising=True)
    gc.unfreeze()
    try:
        code, out, _ = run("serve", "--demo", "--port", "8123")
    finally:
        gc.unfreeze()  # serve froze this test process's heap: give it back to the collector
    assert code == 0 and served[0]["port"] == 8123
    assert out.startswith("gatekeeper console on http://127.0.0.1:8123")
    # What was built before serving is left out of full collections (docs/performance.md).
    assert served[0]["frozen"] > 10_000


def test_keys_generate_prints_the_environment_line_the_quickstart_uses(tmp_path: Path) -> None:
    """The quickstart's second terminal decides with $GATEKEEPER_SIGNING_KEY; the agent trusts
    $GATEKEEPER_TRUSTED_KEYS as printed, so a signed vote checks out on the agent's side."""
    from gatekeeper._signing import SIGNING_ENV, TRUSTED_ENV, DecisionKeys

    code, out, _ = run("keys", "generate", "--dir", str(tmp_path))
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith(f"export {TRUSTED_ENV}=")]
    trusted = line.removeprefix(f"export {TRUSTED_ENV}=")
    decider = DecisionKeys.from_env({SIGNING_ENV: str(tmp_path / "decider.pem")})
    agent = DecisionKeys.from_env({TRUSTED_ENV: trusted})
    signed = decider.signer().sign("gatekeeper.test", {"x": 1})
    assert agent.trusted.verify("gatekeeper.test", signed) == {"x": 1}
