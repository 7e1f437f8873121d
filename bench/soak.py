"""A soak of durable approvals: 2,000 calls, 4 agent processes, 2 approvers, one Redis restart.

    .venv/bin/python bench/soak.py                 # 2,000 calls (about 2 minutes)
    .venv/bin/python bench/soak.py --calls 400     # a shorter run

Starts a redis-server of its own (AOF, ``appendfsync everysec``, temp dir, free
port). Four agent processes (only the deciders' public key, as in a
deployment) each make their share of the calls from 8 threads: half are
allowed lookups, half refunds held for a person, each under a call key of
its own. Two approver threads approve nine in ten of the held calls and deny
the rest. Halfway through, Redis is killed (SIGKILL) and restarted from its
AOF. A call that fails with ``StoreUnavailable`` or ``ApprovalTimeout`` is
made again once under the same key (it re-attaches to its request, or asks
again if that ended). After the agents exit, the lease runs out and the
sweep runs; then the accounting is printed: what every call got, what ran
(from each agent's ledger file), how the requests ended, and the checks
that must read zero.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from _keys import use_run_keys  # bench/ is on sys.path when run as a script
from run import free_port

from gatekeeper import Gatekeeper
from gatekeeper._signing import SIGNING_ENV
from gatekeeper.audit import parse_event, verify_chain

ROOT = Path(__file__).resolve().parent.parent
LEASE = 3
RELEASED = {"executed", "failed", "outcome_unknown"}  # a request that was claimed to run

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: soak, lease: {lease}}}
approvers: [{{name: alice}}, {{name: bob}}]
defaults: {{timeout: 30s}}
policy:
  version: 1
  default: allow
  rules:
    - id: refunds
      match: {{tool: refund}}
      verdict: require_approval
      risk: high
"""

AGENT = r"""
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
from gatekeeper import (ApprovalDenied, ApprovalTimeout, Gatekeeper, StoreUnavailable,
    ToolCallBlocked)

config, name, calls, ledger_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
gate = Gatekeeper.from_config(config)
lock = threading.Lock()
ledger = open(ledger_path, "a", buffering=1)

def ran(key):
    with lock:
        ledger.write(key + "\n")

refund = gate.tool("refund", lambda order_id, key: ran(key) or "refunded")
lookup = gate.tool("lookup", lambda order_id, key: ran(key) or "found")

def one(i):
    key = f"{name}-{i}"
    tool = refund if i % 2 else lookup
    got = []
    for attempt in range(2):  # made again once, under the same key
        try:
            with gate.session(agent=name):
                tool({"order_id": f"A-{i}", "key": key}, key=key)
            got.append("ran")
            break
        except (StoreUnavailable, ApprovalTimeout) as exc:
            got.append(type(exc).__name__)
        except ToolCallBlocked as exc:
            got.append(type(exc).__name__)
            break
        except Exception as exc:
            got.append(type(exc).__name__)
            break
    return key, "refund" if i % 2 else "lookup", got

with ThreadPoolExecutor(8) as pool:
    for key, tool, got in pool.map(one, range(calls)):
        print(json.dumps({"key": key, "tool": tool, "got": got}), flush=True)
gate.close()
"""


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port, self.dir = free_port(), workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def ping_rtt_ms(self, n: int = 500) -> float:
        client = redis.Redis.from_url(self.url)
        start = time.perf_counter()
        for _ in range(n):
            client.ping()
        client.close()
        return (time.perf_counter() - start) / n * 1000


def approver(
    gate: Gatekeeper, name: str, stop: threading.Event, tally: collections.Counter
) -> None:
    while not stop.is_set():
        try:
            waiting = gate.pending(limit=50)
        except Exception:  # Redis restarting: try again in a moment
            time.sleep(0.2)
            continue
        for req in waiting:
            try:
                if hash(req.id) % 10:
                    gate.approve(req.id, approver=name, via="soak")
                    tally["approved"] += 1
                else:
                    gate.deny(req.id, approver=name, comment="soak says no", via="soak")
                    tally["denied"] += 1
            except Exception as exc:  # decided by the other approver first, Redis away...
                tally[f"decision refused: {type(exc).__name__}"] += 1
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=4)
    opts = parser.parse_args()
    use_run_keys()
    tmp = Path(tempfile.mkdtemp(prefix="gk-soak-"))
    server = Redis(tmp)
    server.start()
    config = tmp / "gatekeeper.yaml"
    config.write_text(CONFIG.format(url=server.url, lease=LEASE))
    rtt = server.ping_rtt_ms()
    deciders = [Gatekeeper.from_config(config) for _ in range(2)]
    stop, tally = threading.Event(), collections.Counter()
    threads = [
        threading.Thread(target=approver, args=(g, n, stop, tally), daemon=True)
        for g, n in zip(deciders, ("alice", "bob"), strict=True)
    ]
    for t in threads:
        t.start()
    env = {k: v for k, v in os.environ.items() if k != SIGNING_ENV}  # agents can't decide
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    per = opts.calls // opts.agents
    started = time.perf_counter()
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                AGENT,
                str(config),
                f"agent-{n}",
                str(per),
                str(tmp / f"ledger-{n}.txt"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(opts.agents)
    ]
    # Halfway (by the approvals so far), Redis is killed and restarted from its AOF.
    while (
        tally["approved"] + tally["denied"] < opts.calls // 4
        and time.perf_counter() - started < 120
    ):
        time.sleep(0.1)
    restart_at = time.perf_counter() - started
    server.kill()
    time.sleep(1.0)
    server.start()
    results: list[dict[str, Any]] = []
    for proc in agents:
        out, err = proc.communicate(timeout=600)
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if proc.returncode:
            print(err[-2000:], file=sys.stderr)
    took = time.perf_counter() - started
    stop.set()
    for t in threads:
        t.join(5)
    time.sleep(LEASE + 1)  # every agent has exited: leases run out
    swept = deciders[0].store.sweep()

    # -- accounting ---------------------------------------------------------------------
    ledger: collections.Counter[str] = collections.Counter()
    for n in range(opts.agents):
        path = tmp / f"ledger-{n}.txt"
        if path.exists():
            ledger.update(path.read_text().split())
    store = deciders[0].store
    held = store.history(limit=100_000)
    by_status = collections.Counter(r.status.value for r in held)
    requests_of: dict[str, list[str]] = collections.defaultdict(list)
    for r in held:
        requests_of[str(r.key)].append(r.status.value)
    got = collections.Counter(" then ".join(r["got"]) for r in results)
    twice = [k for k, n in ledger.items() if n > 1]
    ran_unapproved = [
        r["key"] for r in results
        if r["tool"] == "refund" and ledger[r["key"]]
        and not RELEASED.intersection(requests_of[r["key"]])
    ]  # fmt: skip
    unknown = [r.id for r in held if r.status.value == "outcome_unknown"]
    approved_never_ran = [r.id for r in held if r.status.value == "approved"]
    live = [r.id for r in held if r.status.value in ("pending", "approved", "executing")]
    store.flush()
    entries = list(store.audit_entries())
    report = verify_chain(entries)
    ids = collections.Counter(
        parse_event(e.body, e.hash).id for e in entries if parse_event(e.body, e.hash).id
    )
    dup_ids = sum(1 for n in ids.values() if n > 1)
    print(f"soak: {len(results):,} calls by {opts.agents} agents in {took:.1f} s "
          f"({len(results) / took:.0f} calls/s; Redis PING {rtt:.3f} ms); "
          f"Redis killed and restarted at {restart_at:.1f} s")  # fmt: skip
    print("what the calls got (first try [then the retry under the same key]):")
    for what, n in got.most_common():
        print(f"  {n:>6,}  {what}")
    print("decisions:", dict(tally))
    print("held requests by final status:", dict(by_status))
    print(f"swept after the agents exited: {len(swept)}")
    checks = {
        "tool runs of one call key > 1 (ran twice)": len(twice),
        "refunds that ran without an approved, released request": len(ran_unapproved),
        "approved requests that never ran (after the sweep)": len(approved_never_ran),
        "requests left pending/approved/executing (after the sweep)": len(live),
        "ran, but the outcome never recorded (outcome_unknown)": len(unknown),
        "duplicate audit event ids": dup_ids,
        "audit chain broken": 0 if report.ok else 1,
    }
    for what, n in checks.items():
        print(f"  {n:>6,}  {what}")
    for proc in agents:
        if proc.poll() is None:
            proc.kill()
    for g in deciders:
        g.close()
    server.kill()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not any(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
