"""Test session set-up: a real redis-server of our own, on a free port, in a temp dir."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-docs-images",
        action="store_true",
        default=False,
        help="write the console screenshots into docs/images/ (scripts/docs-images); "
        "without it the browser tests write them to a temporary folder",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server this test session started and owns."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit(
                "redis-server is not installed: the integration tests need a real one "
                "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis). "
                "scripts/test installs it when run as root.",
                returncode=3,
            )
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Redis Cluster of this session: 3 masters, 3 replicas (tests/clusterkit.py)."""
    from tests.clusterkit import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Sentinel set-up of this session: primary, replica, 3 sentinels."""
    from tests.clusterkit import Sentinels

    sentinels = Sentinels(tmp_path_factory.mktemp("sentinel"))
    yield sentinels
    sentinels.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def decision_keys_in_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One deciders' key pair for the session, named by the environment.

    A ``RedisStore`` made without ``decision_keys`` takes them from there, as a
    deployment's processes do; subprocesses (``gatekeeper serve``, the CLI)
    inherit them. Tests of the trust boundary build stores with keys of their own.
    """
    import os

    from gatekeeper._signing import SIGNING_ENV, TRUSTED_ENV, SigningKey

    key = SigningKey.generate()
    path = tmp_path_factory.mktemp("keys") / "decider.pem"
    path.write_bytes(key.private_pem())
    saved = {name: os.environ.get(name) for name in (SIGNING_ENV, TRUSTED_ENV)}
    os.environ[SIGNING_ENV] = str(path)
    os.environ[TRUSTED_ENV] = f"{key.key_id}={key.public_text}"
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def no_local_redis_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gatekeeper init` looks for a Redis at localhost:6379; tests never touch that port.

    It looks at a port nothing listens on instead; a test that wants init to
    find a Redis points ``LOCAL_REDIS`` at the session's own server.
    """
    from gatekeeper.cli import _commands

    monkeypatch.setattr(_commands, "LOCAL_REDIS", ("127.0.0.1", _free_port()))


# -- both faces of the guarded call --------------------------------------------------------------
@pytest.fixture(params=["sync", "async"])
def both_faces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test twice: every guarded call on the blocking driver, then on the async one.

    On ``async``, a sync guarded function's call is driven by ``adrive`` on
    the store's async face (``store.aio``), in an event loop on a thread of
    its own for this test; the test's thread waits for it as it waits for a
    blocking call. At the end the loop is shut down as ``asyncio.run`` shuts
    one down (every task cancelled, so each store closes that loop's
    connections). A test that reaches into the blocking face on purpose opts
    out with ``@pytest.mark.sync_face_only(reason)``.
    """
    from gatekeeper import Gatekeeper
    from gatekeeper._flow import adrive, guarded_call

    face = str(request.param)
    marker = request.node.get_closest_marker("sync_face_only")
    if face == "async" and marker is not None:
        pytest.skip(f"the blocking face only: {marker.args[0]}")
    if face == "sync":
        yield face
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="async-face", daemon=True)
    thread.start()

    def on_the_async_face(
        self: Gatekeeper, spec: Any, args: Any, kwargs: Any, reason: str | None = None
    ) -> Any:
        flow = guarded_call(self, spec, args, kwargs, reason)
        future = asyncio.run_coroutine_threadsafe(adrive(self, flow), loop)
        return future.result(timeout=60)  # a test that hangs here fails, not the suite

    monkeypatch.setattr(Gatekeeper, "_call", on_the_async_face)
    yield face

    async def shut_down() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture(params=["metrics", "traces+metrics"])
def counting(request: pytest.FixtureRequest) -> Any:
    """Makes a counting :class:`~gatekeeper.Telemetry` for a registry, both ways a gate counts.

    With metrics only, a guarded call's flow is wrapped by ``counted``; with
    traces too, by ``watched`` (spans go to an SDK provider whose spans are
    dropped): the counts must be the same.
    """
    from prometheus_client import CollectorRegistry

    from gatekeeper import Telemetry

    def make(registry: CollectorRegistry) -> Telemetry:
        if request.param == "metrics":
            return Telemetry(metrics=True, registry=registry)
        from opentelemetry.sdk.trace import TracerProvider

        return Telemetry(
            traces=True, tracer_provider=TracerProvider(), metrics=True, registry=registry
        )

    return make
