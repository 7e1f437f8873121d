"""Limits hold when one agent's processes race: counted once, in the store, atomically.

Eight real OS processes (``python -c``) of one agent, each with its own gate
on one Redis, are let go at once; each makes 10 ``send_email`` calls (limit:
20 an hour per agent) and 10 ``refund`` calls of 7 (budget: 100 a day),
interleaved. Exactly 20 e-mails and exactly 14 refunds (98 of 100) run, in
total; every other call raises ToolCallDenied naming its limit and never
runs. With refunds of 5000 (denied by a rule) interleaved as well, the
refused calls consume nothing: still exactly 14 refunds of 7 run. The usage
the store keeps says the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.store import RedisStore
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

PROCESSES = 8
CALLS = 10  # of each kind, per process

POLICY = """
version: 1
default: allow
rules:
  - {id: no-huge-refunds, match: {tool: refund, args: {amount: {gt: 1000}}}, verdict: deny}
limits:
  - {id: mail-rate, match: {tool: send_email}, rate: 20/hour, per: agent, on_exceed: deny}
  - id: refund-budget
    match: {tool: refund}
    sum: amount
    max: 100
    window: 1d
    on_exceed: deny
"""

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from gatekeeper import Gatekeeper, Policy, ToolCallDenied
    from gatekeeper.store import RedisStore
    url, prefix, policy, ledger, go, me, huge = sys.argv[1:8]
    gate = Gatekeeper(
        policy=Policy.from_yaml(open(policy).read()),
        store=RedisStore(url, prefix=prefix),
        default_agent="racer",
    )

    def ran(line):
        with open(ledger, "a") as f:  # one short line per write: appends don't interleave
            f.write(line + "\\n")

    @gate.guard
    def send_email(to: str) -> None:
        ran(f"send_email {me} {to}")

    @gate.guard
    def refund(order: str, amount: float) -> None:
        ran(f"refund {me} {order} {amount}")

    out = []

    def call(tool, fn, *args):
        try:
            fn(*args)
        except ToolCallDenied as exc:
            out.append([tool, args[-1], "denied", str(exc)])
        except Exception as exc:
            out.append([tool, args[-1], type(exc).__name__, str(exc)])
        else:
            out.append([tool, args[-1], "ran", ""])

    open(go + "." + me, "w").close()  # ready
    while not os.path.exists(go):
        time.sleep(0.002)
    with gate.session(session_id="p" + me):
        for j in range(10):
            call("send_email", send_email, f"{me}-{j}@example.com")
            call("refund", refund, f"{me}-{j}", 7)
            if huge == "1":
                call("refund", refund, f"{me}-{j}-huge", 5000)
    gate.close()
    print(json.dumps(out), flush=True)
    """
)


def race(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str, *, huge: bool
) -> tuple[list[list[Any]], list[str]]:
    """Every process's calls as ``[tool, last arg, outcome, message]``, and the ledger."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    ledger, go = tmp_path / "ledger", tmp_path / "go"
    ledger.touch()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                redis_server.url,
                redis_prefix,
                str(policy),
                str(ledger),
                str(go),
                str(i),
                "1" if huge else "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"go.{i}").exists() for i in range(PROCESSES)):
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.01)
        go.touch()  # all at once
        calls: list[list[Any]] = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            calls.extend(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return calls, ledger.read_text().splitlines()


def usage(redis_server: RedisServer, redis_prefix: str) -> dict[str, list[float]]:
    """The limit entries the store keeps, by limit id: one amount per call counted."""
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    try:
        return {
            key.split(":")[1]: [amount for _, amount in entries]
            for _, key, entries in store.behaviour_usage()
        }
    finally:
        store.close()


@pytest.mark.parametrize("huge", [False, True], ids=["limits-only", "with-refused-calls"])
def test_racing_processes_of_one_agent_never_pass_a_limit(
    huge: bool, tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    calls, ledger = race(tmp_path, redis_server, redis_prefix, huge=huge)
    outcomes = Counter((tool, last == 5000, outcome) for tool, last, outcome, _ in calls)
    assert outcomes == {
        ("send_email", False, "ran"): 20,
        ("send_email", False, "denied"): PROCESSES * CALLS - 20,
        ("refund", False, "ran"): 14,  # 14 * 7 = 98; a 15th would make 105
        ("refund", False, "denied"): PROCESSES * CALLS - 14,
        **({("refund", True, "denied"): PROCESSES * CALLS} if huge else {}),
    }

    # Each refusal says why; what ran is what the tools did, and nothing else.
    for tool, last, outcome, message in calls:
        if outcome != "denied":
            continue
        if last == 5000:
            assert "no-huge-refunds" in message
        else:
            assert ("mail-rate" if tool == "send_email" else "refund-budget") in message
    ran = Counter(line.split()[0] for line in ledger)
    assert ran == {"send_email": 20, "refund": 14}
    assert sum(float(line.split()[-1]) for line in ledger if line.startswith("refund")) == 98
    assert not any(line.endswith(" 5000") for line in ledger)

    # The store counted exactly the calls that ran: refused ones consumed nothing.
    counted = usage(redis_server, redis_prefix)
    assert len(counted["mail-rate"]) == 20
    assert sorted(counted["refund-budget"]) == [7_000_000] * 14  # micro-units
