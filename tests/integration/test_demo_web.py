"""`gatekeeper demo`: the console it serves, the sign-in link it prints, decisions made there."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import httpx

from gatekeeper._demo import run_demo
from tests.e2e.conftest import free_port


def decide(web: httpx.Client, req: dict[str, Any], verb: str) -> None:
    """Press Approve or Deny on the request's page, as the signed-in person would."""
    html = web.get(f"/requests/{req['id']}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "digest": req["args_digest"], "comment": "not in the demo"}
    answer = web.post(f"/requests/{req['id']}/{verb}", data=form)
    assert answer.status_code in (200, 303), answer.text


class Lines(io.TextIOBase):
    """A thread-safe stdout the test can wait on."""

    def __init__(self) -> None:
        self.text = ""
        self._changed = threading.Condition()

    def write(self, s: str) -> int:
        with self._changed:
            self.text += s
            self._changed.notify_all()
        return len(s)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        with self._changed:
            found: list[re.Match[str]] = []

            def seen() -> bool:
                m = re.search(pattern, self.text)
                if m:
                    found.append(m)
                return m is not None

            assert self._changed.wait_for(seen, timeout), f"no {pattern!r} in:\n{self.text}"
            return found[0]


def test_a_newcomer_signs_in_with_the_link_and_decides_what_arrives() -> None:
    out = Lines()
    port = free_port()
    codes: list[int] = []
    demo = threading.Thread(
        target=lambda: codes.append(run_demo(port=port, out=out, exit_when_done=True)),
        daemon=True,
    )
    demo.start()
    link = out.wait_for(r"Sign in:  (\S+)").group(1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
        assert web.get(link, follow_redirects=True).status_code == 200
        decided: dict[str, str] = {}
        # Three calls are held, one after another: approve the first, deny the
        # others. The console's live feed says when something arrives.
        with web.stream("GET", "/api/v1/events", timeout=30) as feed:
            lines = feed.iter_lines()
            while len(decided) < 3:
                items = [
                    r for r in web.get("/api/v1/requests").json()["items"] if r["id"] not in decided
                ]
                if not items:
                    next(line for line in lines if line.startswith("data:"))
                    continue
                for req in items:
                    verb = "approve" if not decided else "deny"
                    decide(web, req, verb)
                    decided[req["id"]] = verb
    demo.join(30)
    assert codes == [0]
    assert "ran: job 'train.py' queued on 64 GPU(s)" in out.text  # approved in the console
    assert 'Tool call denied by you: "not in the demo"' in out.text
    assert "halted the agent trainer-bot" in out.text
    assert "chain intact" in out.text
