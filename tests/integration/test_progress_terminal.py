"""A progress bar and what else reaches the same terminal: log records, exported events.

And a forged approval is not logged as an approval.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import _progress
from gatekeeper.cli import main
from gatekeeper.logs import get_logger
from tests.conftest import RedisServer
from tests.integration.test_progress import GATEKEEPER, _env, make_log
from tests.trustkit import Deployment, HeldCall, dep, wake  # noqa: F401


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> tuple[Path, int]:
    return make_log(tmp_path_factory, redis_server, "progress-terminal")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: ``\\r`` returns to column 0, text overwrites."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    for ch in raw:
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_warning_logged_mid_run_is_a_clean_line_of_its_own(
    logged: tuple[Path, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store warning (a retry, a lost subscription) made while the bar is drawn."""
    config, _ = logged
    monkeypatch.delenv("NO_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    over = _progress.Tally.over

    def warning_halfway(self: _progress.Tally, items: Iterable[Any]) -> Iterator[Any]:
        for n, item in enumerate(over(self, items)):
            if n == 1500:
                get_logger("gatekeeper.store").warning("audit sealer could not seal, will retry")
            yield item

    monkeypatch.setattr(_progress.Tally, "over", warning_halfway)
    out, err = io.StringIO(), Terminal()
    assert main(["--config", str(config), "audit", "verify"], stdout=out, stderr=err) == 0
    shown = [line for line in screen(err.getvalue()) if "WARNING" in line]
    assert len(shown) == 1
    assert shown[0].startswith("20"), shown[0]  # the record's own time, not the bar's text


def test_export_to_the_terminal_shows_every_event_line_whole(
    logged: tuple[Path, int],
) -> None:
    """`gatekeeper audit export` with stdout and stderr both on the terminal."""
    config, events = logged
    leader, follower = pty.openpty()
    got = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        subprocess.run(
            [GATEKEEPER, "--config", str(config), "audit", "export"],
            stdout=follower,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            env=_env(),
            cwd=config.parent,
            timeout=60,
            check=True,
        )
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    lines = [line for line in screen(got.decode().replace("\r\n", "\n")) if line]
    assert len(lines) == events
    for line in lines:
        json.loads(line)  # no bar text at the start of an event's line


# -- a forged approval is not logged as an approval ------------------------------------------


@pytest.mark.usefixtures("both_faces")
def test_a_forged_approval_is_not_logged_as_approved(
    dep: Deployment,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper")
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(call.id), "status", "approved")  # the agent's own key
    wake(dep, call.id)
    call.join()
    assert call.ran == []
    said = [r.getMessage() for r in caplog.records if r.name == "gatekeeper.calls"]
    assert any("refused to release" in m for m in said)
    assert not any(m.startswith(f"request {call.id} approved") for m in said), said
