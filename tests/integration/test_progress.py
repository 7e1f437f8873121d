"""Progress bars of the long commands, on a real pseudo-terminal and on a pipe.

The real ``gatekeeper`` console script runs as a subprocess over a Redis audit
log of a few thousand events, made by a real gate's calls. With stderr on a
pty, ``audit verify``, ``audit export`` and ``policy replay`` draw a bar with
the count of events; with stderr on a pipe they print none of it; and stdout
is byte for byte the same either way. ``--no-progress``, ``$NO_PROGRESS`` and
``TERM=dumb`` turn the bar off on a terminal too.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gatekeeper import Gatekeeper
from tests.conftest import RedisServer

CALLS = 1525  # audited twice each (the call, its outcome): 3,050 events, not a round 100

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}}}
approvers:
  - {{name: alice}}
defaults: {{agent: batch-bot}}
policy:
  version: 1
  default: allow
"""

CANDIDATE = """\
version: 1
default: allow
rules:
  - {id: lookups-wait, match: {tool: lookup}, verdict: require_approval}
"""

GATEKEEPER = str(Path(sys.executable).with_name("gatekeeper"))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> tuple[Path, int]:
    """A config whose store holds the audit log of CALLS allowed calls; and its event count."""
    return make_log(tmp_path_factory, redis_server, "progress")


def make_log(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, prefix: str
) -> tuple[Path, int]:
    """``logged``'s config and count, under its own key ``prefix`` (one per test module)."""
    root = tmp_path_factory.mktemp(prefix)
    config = root / "gatekeeper.yaml"
    config.write_text(CONFIG.format(url=redis_server.url, prefix=prefix), encoding="utf-8")
    gate = Gatekeeper.from_config(config, channels=[])

    @gate.guard
    def lookup(n: int) -> int:
        return n

    with gate.session(agent="batch-bot"):
        for n in range(CALLS):
            lookup(n)
    gate.store.flush()
    events = gate.store.audit_head()[0]
    gate.close()
    assert events == 2 * CALLS
    (root / "candidate.yaml").write_text(CANDIDATE, encoding="utf-8")
    return config, events


def _env(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NO_PROGRESS", None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def on_a_terminal(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[bytes, bytes]:
    """Run ``gatekeeper argv`` with stderr on a new pty; returns (stdout, what the pty got)."""
    leader, follower = pty.openpty()
    got = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the last writer closed the follower side
                return
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = subprocess.run(
            [GATEKEEPER, *argv],
            stdout=subprocess.PIPE,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    assert done.returncode == 0, bytes(got).decode(errors="replace")
    return done.stdout, bytes(got)


def on_a_pipe(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[bytes, bytes]:
    done = subprocess.run(
        [GATEKEEPER, *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        timeout=60,
        check=True,
    )
    return done.stdout, done.stderr


COMMANDS = {
    "audit verify": (["audit", "verify"], "verifying"),
    "audit export": (["audit", "export"], "exporting"),
    "policy replay": (["policy", "replay", "candidate.yaml"], "replaying"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_terminal_gets_a_bar_a_pipe_none_and_stdout_is_the_same(
    name: str, logged: tuple[Path, int]
) -> None:
    config, events = logged
    argv, label = COMMANDS[name]
    argv = ["--config", str(config), *argv]
    out_tty, bar = on_a_terminal(argv, _env(), config.parent)
    out_pipe, err_pipe = on_a_pipe(argv, _env(), config.parent)

    assert out_tty == out_pipe  # the bar never reaches stdout
    assert out_tty  # and the command said something there
    assert err_pipe == b""  # nothing at all on a pipe
    text = bar.decode()
    assert text.startswith("\r" + label)
    assert f"{events:,}/{events:,} events 100%" in text  # the final count, drawn once at least
    assert "/s" in text  # the rate
    assert text.endswith("\r")  # and the line cleared at the end
    assert "\n" not in text  # one line, redrawn in place


def test_export_writes_every_event_the_same_on_a_terminal(logged: tuple[Path, int]) -> None:
    config, events = logged
    argv = ["--config", str(config), "audit", "export"]
    out_tty, _ = on_a_terminal(argv, _env(), config.parent)
    assert len(out_tty.splitlines()) == events


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        ("--no-progress", {}),
        (None, {"NO_PROGRESS": "1"}),
        (None, {"TERM": "dumb"}),
    ],
    ids=["--no-progress", "NO_PROGRESS", "TERM=dumb"],
)
def test_the_bar_can_be_turned_off_on_a_terminal(
    flag: str | None, env: dict[str, str], logged: tuple[Path, int]
) -> None:
    config, _ = logged
    argv = ["--config", str(config), "audit", "verify", *([flag] if flag else [])]
    out, bar = on_a_terminal(argv, _env(**env), config.parent)
    assert bar == b""
    assert out.startswith(b"ok: ")
