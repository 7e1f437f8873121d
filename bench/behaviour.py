"""Sequences and limits: what they cost an allowed call, and what they cost classification.

    .venv/bin/python bench/behaviour.py            # about a minute
    .venv/bin/python bench/behaviour.py --quick    # a smoke test

Baselines measured in the same run: one redis-py ``PING`` round trip on the
same server, and an allowed call under a policy with no sequences or limits.

1. An allowed call on ``RedisStore`` (a redis-server started here):
   - with no sequences or limits;
   - with 100 sequences and 100 limits that name other tools;
   - with those and one sequence and one rate limit that name the called tool
     (so the admit script reads and writes their state on every call).
   Round trips are counted on the calling thread's sockets (each command sent
   is one round trip; the sealer's thread is not counted).
2. ``policy.classify`` + ``policy.plan`` for one call, with 10 and 1,000
   sequences and 10 and 1,000 limits naming other tools.
3. ``gatekeeper policy replay`` throughput: a 1,000,000-event ``audit export``
   file (calls allowed, held and released, denied, and their outcomes) read,
   parsed and replayed under a candidate with rules, sequences, limits and
   novelty rules — the ``--from FILE`` path of the CLI.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
import redis.connection
from _keys import use_run_keys  # bench/ is on sys.path when run as a script
from run import Report, median, per_call_us, redis_server, tool_call

from gatekeeper import Gatekeeper, Policy
from gatekeeper.store import RedisStore

perf = time.perf_counter


def lookup(key: str) -> str:
    return key


def policy(n_seq: int, n_lim: int, *, naming_lookup: bool = False) -> Policy:
    seqs = [
        {
            "id": f"seq-{i}",
            "steps": [{"tool": f"tool_{i}_a"}, {"tool": f"tool_{i}_b"}],
            "within": "10m",
            "verdict": "halt",
        }
        for i in range(n_seq)
    ]
    lims = [
        {"id": f"lim-{i}", "match": {"tool": f"tool_{i}_c"}, "rate": "20/hour"}
        for i in range(n_lim)
    ]
    if naming_lookup:
        seqs.append(
            {
                "id": "lookup-then-upload",
                "steps": [{"tool": "lookup"}, {"tool": "upload"}],
                "within": "10m",
                "verdict": "halt",
            }
        )
        lims.append({"id": "lookups", "match": {"tool": "lookup"}, "rate": "1000000/hour"})
    return Policy.from_mapping(
        {"version": 1, "default": "allow", "sequences": seqs, "limits": lims}
    )


class RoundTrips:
    """Commands sent from one thread (each is one round trip when not pipelined)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.count = 0
        real = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            if threading.current_thread() is self.thread:
                self.count += 1
            real(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def bench_allowed(report: Report, url: str, quick: bool) -> None:
    repeats = 5 if quick else 15
    n = 300 if quick else 2_000
    ping = redis.Redis.from_url(url)
    trips = RoundTrips()
    trips.thread = threading.current_thread()
    cases = {
        "no sequences or limits": policy(0, 0),
        "100 sequences + 100 limits, none naming the tool": policy(100, 100),
        "the same + 1 sequence and 1 rate limit naming the tool": policy(
            100, 100, naming_lookup=True
        ),
    }
    gates: dict[str, tuple[Gatekeeper, Callable[[str], str]]] = {}
    for name, pol in cases.items():
        store = RedisStore(url, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        gate = Gatekeeper(policy=pol, store=store)
        gates[name] = (gate, gate.guard(lookup))
    times: dict[str, list[float]] = {name: [] for name in cases}
    pings: list[float] = []
    per_call_trips: dict[str, float] = {}
    for name, (gate, guarded) in gates.items():
        with gate.session(agent="bench"):
            for _ in range(200):  # warm up: connected, scripts loaded
                guarded("k")
            gate.store.flush()
            before = trips.count
            for _ in range(100):
                guarded("k")
            per_call_trips[name] = (trips.count - before) / 100
    for _ in range(repeats):
        for gate, _ in gates.values():
            gate.store.flush()
        gc.collect()
        pings.append(per_call_us(ping.ping, n))
        for name, (gate, guarded) in gates.items():
            with gate.session(agent="bench"):
                times[name].append(per_call_us(lambda g=guarded: g("k"), n))  # type: ignore[misc]
    ping_us = median(pings)
    base = median(times["no sequences or limits"])
    rows = [["redis-py PING round trip", f"{ping_us:.1f}", "1.00", "", "1"]]
    for name in cases:
        t = median(times[name])
        rows.append(
            [
                f"allowed call, {name}",
                f"{t:.1f}",
                f"{t / ping_us:.2f}",
                f"{(t - base) / ping_us:+.2f}",
                f"{per_call_trips[name]:.2f}",
            ]
        )
    report.table(
        "Allowed call on RedisStore with sequences and limits",
        ["", "µs per call (median)", "× PING", "Δ vs none, in PINGs", "round trips per call"],
        rows,
        [
            f"median of {repeats} loops of {n} calls each, interleaved; target: within 0.1 "
            "PING of the figure with none",
            "round trips: commands the calling thread sent (the sealer's are not counted)",
        ],
    )
    for gate, _ in gates.values():
        gate.close()


def bench_classify(report: Report, quick: bool) -> None:
    n = 20_000 if quick else 200_000
    repeats = 5 if quick else 9
    call = tool_call("lookup", {"key": "k"})
    rows = []
    for n_seq, n_lim in ((10, 10), (1_000, 1_000)):
        pol = policy(n_seq, n_lim)

        def both(p: Policy = pol) -> None:
            p.classify(call)
            p.plan(call)

        both()
        times = [per_call_us(both, n) for _ in range(repeats)]
        rows.append([f"{n_seq:,} sequences + {n_lim:,} limits", f"{median(times):.2f}"])
    small, large = float(rows[0][1]), float(rows[1][1])
    rows.append(["ratio (1,000 / 10)", f"{large / small:.2f}"])
    report.table(
        "classify + plan with sequences and limits naming other tools",
        ["policy", "µs per call (median)"],
        rows,
        [f"median of {repeats} loops of {n:,} calls; target: the ratio stays near 1"],
    )


REPLAY_POLICY = {
    "version": 1,
    "default": "allow",
    "rules": [
        *(
            {"id": f"r{i}", "match": {"tool": f"tool_{i}"}, "verdict": "require_approval"}
            for i in range(20)
        ),
        {
            "id": "pay",
            "match": {"tool": "pay", "args": {"amount": {"gt": 100}}},
            "verdict": "require_approval",
        },
    ],
    "sequences": [
        {
            "id": f"s{i}",
            "steps": [{"tool": "read_secret"}, {"tool": f"post_{i}"}],
            "within": "10m",
            "verdict": "halt",
        }
        for i in range(5)
    ],
    "limits": [
        {"id": "mail", "match": {"tool": "send_email"}, "rate": "100/hour", "per": "args.to"},
        {"id": "spend", "match": {"tool": "pay"}, "sum": "amount", "max": 100000, "window": "1d"},
    ],
    "novelty": [{"id": "hosts", "match": {"tool": "fetch"}, "new": "host(args.url)"}],
}


def write_log(path: str, n: int) -> int:
    """An export file of ``n`` events: calls of several tools, holds, releases, outcomes."""
    import json
    import random

    rng = random.Random(7)
    start = 1_780_000_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        i = 0
        while written < n:
            at = start + i * 50
            agent = f"agent-{i % 20}"
            pick = rng.random()
            if pick < 0.3:
                tool, args = "fetch", {"url": f"https://h{rng.randrange(300)}.example/x"}
            elif pick < 0.5:
                tool, args = "send_email", {"to": f"u{rng.randrange(50)}@x"}
            elif pick < 0.6:
                tool, args = "pay", {"amount": rng.randrange(1, 300)}
            elif pick < 0.65:
                tool, args = "read_secret", {"name": "db"}
            else:
                tool, args = f"lookup_{rng.randrange(40)}", {"key": "k"}
            held = tool == "pay" and args["amount"] > 100
            kind = "call.held" if held else "call.allowed"
            verdict = "require_approval" if held else "allow"
            event = {
                "kind": kind,
                "at": at,
                "actor": f"agent:{agent}",
                "agent": agent,
                "session_id": f"s{i % 50}",
                "tool": tool,
                "call_id": f"c{i}",
                "request_id": f"r{i}" if held else None,
                "data": {
                    "args": args,
                    "args_digest": "0" * 64,
                    "verdict": verdict,
                    "risk": "low",
                    "rules": [],
                    "reasons": [],
                },
            }
            out.write(json.dumps(event) + "\n")
            written += 1
            follow = (
                {"kind": "request.released", "at": at + 10, "request_id": f"r{i}"}
                if held
                else {
                    "kind": "call.executed",
                    "at": at + 5,
                    "call_id": f"c{i}",
                    "data": {"outcome": "'ok'", "duration_ms": 0.1},
                }
            )
            out.write(json.dumps(follow) + "\n")
            written += 1
            i += 1
    return written


def bench_replay(report: Report, quick: bool) -> None:
    import tempfile

    from gatekeeper._replay import events_from_export, replay

    n = 100_000 if quick else 1_000_000
    candidate = Policy.from_mapping(REPLAY_POLICY)
    with tempfile.TemporaryDirectory(prefix="gk-bench-replay-") as tmp:
        path = f"{tmp}/audit.jsonl"
        written = write_log(path, n)
        start = perf()
        with open(path, encoding="utf-8") as lines:
            result = replay(candidate, events_from_export(lines))
        took = perf() - start
    report.table(
        "Policy replay (`gatekeeper policy replay --from FILE`)",
        ["events", "calls replayed", "changed", "seconds", "events per second"],
        [
            [
                f"{written:,}",
                f"{result.calls:,}",
                f"{result.changed:,}",
                f"{took:.1f}",
                f"{written / took:,.0f}",
            ]
        ],
        [
            "read, JSON-parsed and replayed in one process; candidate: 21 rules, 5 sequences, "
            "2 limits (a rate per recipient, a budget), 1 novelty rule on hosts; target: "
            "1,000,000 events well under a minute",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    use_run_keys()
    report = Report()
    with redis_server() as url:
        bench_allowed(report, url, args.quick)
    bench_classify(report, args.quick)
    bench_replay(report, args.quick)


if __name__ == "__main__":
    main()
