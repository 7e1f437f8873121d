"""An agent process killed with SIGKILL at each point of a held call, against a real Redis.

The agent is a real process (``python -c``) with a gate from a gatekeeper.yaml
whose store lease is 3 s; the person approves with the CLI. The tool appends
a line to a ledger file, so "ran once" and "never ran" are read off the disk.

What must hold, whenever the agent dies: nothing runs unapproved or twice,
no request is left pending, approved or executing without a caller once the
sweep has run (it is abandoned, or of unknown outcome for a person to
resolve), approving a dead caller's request is refused with that reason, and
the same call made again under its key re-attaches instead of asking twice.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.cli import main
from gatekeeper.models import ApprovalRequest, RequestStatus
from tests.conftest import RedisServer
from tests.faults.conftest import assert_settled

S = RequestStatus
LEASE = 3.0

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}, lease: {lease}}}
approvers:
  - {{name: alice}}
defaults: {{timeout: 60s, agent: billing-bot}}
policy:
  version: 1
  default: allow
  rules:
    - id: refunds
      match: {{tool: refund}}
      verdict: require_approval
      risk: high
"""

AGENT = textwrap.dedent(
    """
    import json, sys, time
    from gatekeeper import Gatekeeper, call_key
    config, ledger, key, hang = sys.argv[1:5]
    gate = Gatekeeper.from_config(config)

    @gate.guard(irreversible=True)
    def refund(order_id: str, amount: float) -> str:
        with open(ledger, "a") as f:
            f.write(order_id + "\\n")
        if hang == "1":
            time.sleep(3600)  # killed while the tool runs
        return "refunded"

    try:
        with call_key(key):
            print(json.dumps({"result": refund("A-1", 5.0)}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    """
)


def cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO())
    return code, out.getvalue() + err.getvalue()


class Rig:
    def __init__(self, tmp: Path, server: RedisServer, prefix: str) -> None:
        self.config = tmp / "gatekeeper.yaml"
        self.config.write_text(CONFIG.format(url=server.url, prefix=prefix, lease=LEASE))
        self.ledger = tmp / "ledger.txt"
        self.ledger.touch()
        self.gate = Gatekeeper.from_config(self.config)  # the deciding side (it holds the key)
        self.procs: list[subprocess.Popen[str]] = []

    def agent(self, key: str, *, hang: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(self.config), str(self.ledger), key, "01"[hang]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self.procs.append(proc)
        return proc

    def ran(self) -> list[str]:
        return self.ledger.read_text().split()

    def requests(self) -> list[ApprovalRequest]:
        return self.gate.store.history(limit=100)

    def until(self, what: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = what()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"not within {timeout}s: {what}")

    def one_pending(self) -> ApprovalRequest:
        found = self.until(self.gate.pending)
        assert len(found) == 1
        return found[0]

    def approve(self, rid: str) -> tuple[int, str]:
        return cli("approve", rid, "--as", "alice", "--config", str(self.config))

    def lapse(self) -> list[ApprovalRequest]:
        """Wait out a lease, then sweep as `gatekeeper sweep` does; the requests it moved."""
        time.sleep(LEASE + 0.5)
        code, out = cli("sweep", "--config", str(self.config))
        assert code == 0, out
        return [r for r in self.requests() if r.id in out]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        self.settled()
        self.gate.close()

    def settled(self) -> None:
        """Every agent is gone: once their leases run out, nothing live is left."""
        if any(r.status.live for r in self.requests()):
            time.sleep(LEASE + 0.5)
        assert_settled(self.gate.store)


@pytest.fixture
def rig(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Rig]:
    made = Rig(tmp_path, redis_server, redis_prefix)
    yield made
    made.close()


def finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=30)
    assert out.strip(), err
    return dict(json.loads(out.strip().splitlines()[-1]))


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes


def test_killed_while_pending_the_request_is_abandoned_and_approving_it_is_refused(
    rig: Rig,
) -> None:
    kill_me = rig.agent("call_1")
    req = rig.one_pending()
    kill(kill_me)
    moved = rig.lapse()
    assert [(r.id, r.status) for r in moved] == [(req.id, S.ABANDONED)]
    code, out = rig.approve(req.id)
    assert code != 0
    assert "already abandoned" in out or "caller is gone" in out
    assert rig.ran() == []
    code, listing = cli("pending", "--all", "--config", str(rig.config))
    assert req.id in listing and "abandoned" in listing and "nothing ran" in listing


def test_restarted_within_the_lease_the_same_call_reattaches_and_runs_once(rig: Rig) -> None:
    first = rig.agent("call_2")
    req = rig.one_pending()
    kill(first)
    second = rig.agent("call_2")  # the same call, made again by a restarted agent
    time.sleep(1.0)
    assert [r.id for r in rig.gate.pending()] == [req.id]  # asked once, not twice
    code, out = rig.approve(req.id)
    assert code == 0, out
    assert finished(second) == {"result": "refunded"}
    assert rig.ran() == ["A-1"]
    assert rig.gate.get(req.id).status is S.EXECUTED
    assert len(rig.requests()) == 1


def test_approved_then_killed_before_the_claim_it_never_runs_unless_its_call_comes_back(
    rig: Rig,
) -> None:
    gone = rig.agent("call_3")
    req = rig.one_pending()
    gone.send_signal(signal.SIGSTOP)  # frozen: it can't claim what is approved next
    code, out = rig.approve(req.id)
    assert code == 0, out
    kill(gone)
    assert rig.gate.get(req.id).status is S.APPROVED
    back = rig.agent("call_3")  # restarted in time: runs the approved call, once
    assert finished(back) == {"result": "refunded"}
    assert rig.ran() == ["A-1"]
    assert rig.gate.get(req.id).status is S.EXECUTED

    late = rig.agent("call_4")
    req4 = rig.until(lambda: [r for r in rig.gate.pending() if r.id != req.id])[0]
    late.send_signal(signal.SIGSTOP)
    rig.approve(req4.id)
    kill(late)
    moved = rig.lapse()  # nobody came back: abandoned, never run
    assert [(r.id, r.status) for r in moved] == [(req4.id, S.ABANDONED)]
    assert rig.ran() == ["A-1"]


def test_killed_while_the_tool_runs_a_person_must_look_and_nothing_runs_again(rig: Rig) -> None:
    victim = rig.agent("call_5", hang=True)
    req = rig.one_pending()
    rig.approve(req.id)
    rig.until(rig.ran)  # the tool has started
    kill(victim)
    moved = rig.lapse()
    assert [(r.id, r.status) for r in moved] == [(req.id, S.OUTCOME_UNKNOWN)]
    again = rig.agent("call_5")  # the restarted agent makes the same call
    got = finished(again)
    assert got["error"] == "OutcomeUnknown", got
    assert rig.ran() == ["A-1"]  # not run a second time
    code, listing = cli("pending", "--all", "--config", str(rig.config))
    assert "outcome_unknown" in listing and f"gatekeeper resolve {req.id}" in listing
    code, out = cli(
        "resolve",
        req.id,
        "--ran",
        "--as",
        "alice",
        "-m",
        "refund is in the ledger",
        "--config",
        str(rig.config),
    )
    assert code == 0, out
    after = rig.gate.get(req.id)
    assert after.status is S.EXECUTED
    assert after.outcome == "refund is in the ledger"


def test_after_every_kill_the_audit_chain_verifies(rig: Rig) -> None:
    victim = rig.agent("call_6")
    rig.one_pending()
    kill(victim)
    rig.lapse()
    code, out = cli("audit", "verify", "--config", str(rig.config))
    assert code == 0, out
    assert "intact" in out
