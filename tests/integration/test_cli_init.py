"""`gatekeeper init` writes a store the next command in another terminal can use."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper._config import load_config
from gatekeeper.cli import _commands, main
from tests.conftest import RedisServer


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def test_init_finds_a_local_redis_and_pending_works_next(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The starter used to be memory://, so `gatekeeper pending` failed right after init."""
    for var in ("GATEKEEPER_REDIS_URL", "GATEKEEPER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_commands, "LOCAL_REDIS", ("127.0.0.1", redis_server.port))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("init")
    assert code == 0
    assert f"store: the Redis at 127.0.0.1:{redis_server.port}" in out and "note:" not in out
    assert load_config("gatekeeper.yaml").store.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert run("pending") == (0, "no pending requests\n", "")


@pytest.fixture
def redis_wanting_a_password() -> Iterator[int]:
    """A stand-in that answers every command as a Redis with requirepass does."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"-NOAUTH Authentication required.\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield port
    thread.join(5)
    server.close()


def test_init_says_when_the_local_redis_wants_a_password(
    tmp_path: Path, redis_wanting_a_password: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEKEEPER_REDIS_URL", raising=False)
    monkeypatch.setattr(_commands, "LOCAL_REDIS", ("127.0.0.1", redis_wanting_a_password))
    code, out, _ = run("init", str(tmp_path / "g.yaml"))
    assert code == 0
    assert f"note: the Redis at 127.0.0.1:{redis_wanting_a_password} wants a password" in out
    assert load_config(tmp_path / "g.yaml").store.url == "memory://"
