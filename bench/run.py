"""gatekeeper's performance benchmarks: one command, baselines measured in the same run.

    .venv/bin/python bench/run.py              # the full run (a few minutes)
    .venv/bin/python bench/run.py --quick      # a smoke test, under 30 s
    .venv/bin/python bench/run.py --write-docs # also update docs/performance.md

Every number is compared with a baseline taken in the same run on the same
machine (a bare function call, one Redis PING on the same server, the same
classification with 10 rules), so the ratios mean something on any machine.
The benchmark starts a redis-server of its own on a free port (no persistence,
temp dir) and stops it at the end; it never talks to a Redis it did not start.

Sections:

1. allowed call through the guard vs the bare call (MemoryStore, RedisStore)
   and how fast the background sealer chains queued audit events;
2. ``policy.classify`` with 10 and 1,000 rules for other tools;
3. release latency: approval committed in Redis -> first line of the tool;
4. 10,000 async calls held at once in one process: memory, Redis
   connections, time to create them, time from approving them to all returned.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from _keys import use_run_keys  # bench/ is on sys.path when run as a script

from gatekeeper import Gatekeeper, Policy
from gatekeeper.models import ApprovalRequest, Decision
from gatekeeper.store import MemoryStore, RedisStore

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

perf = time.perf_counter

# -- helpers -------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of xs."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Mean µs per call of ``fn`` over one loop of ``n`` calls."""
    start = perf()
    for _ in range(n):
        fn()
    return (perf() - start) / n * 1e6


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Report:
    sections: list[tuple[str, list[str], list[list[str]], list[str]]] = field(default_factory=list)

    def table(self, title: str, head: list[str], rows: list[list[str]], notes: list[str]) -> None:
        self.sections.append((title, head, rows, notes))
        print(self._render_one(title, head, rows, notes), flush=True)

    @staticmethod
    def _render_one(title: str, head: list[str], rows: list[list[str]], notes: list[str]) -> str:
        out = [
            f"### {title}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        if notes:
            out.append("")
            out += [f"- {n}" for n in notes]
        out.append("")
        return "\n".join(out)

    def markdown(self, header: str) -> str:
        return header + "\n\n" + "\n".join(self._render_one(*s) for s in self.sections)


# -- our own redis-server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server started here on a free port, with no persistence; stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench: redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="gk-bench-redis-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
            client.close()
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def prefix() -> str:
    return f"bench{uuid.uuid4().hex[:10]}"


def with_name(url: str, name: str) -> str:
    """``url`` with a client name, so CLIENT LIST can tell this client's connections apart."""
    return f"{url}?client_name={name}"


POLICY = Policy.from_mapping(
    {
        "version": 1,
        "rules": [
            {"id": "lookups", "match": {"tool": "lookup"}, "verdict": "allow"},
            {
                "id": "transfers",
                "match": {"tool": ["transfer", "atransfer"]},
                "verdict": "require_approval",
            },
        ],
    }
)


class Tap:
    """A channel that hands each new request to the benchmark."""

    def __init__(self) -> None:
        self.requests: queue.Queue[ApprovalRequest] = queue.Queue()

    def notify(self, request: ApprovalRequest) -> None:
        self.requests.put(request)

    def update(self, request: ApprovalRequest) -> None:
        pass

    async def anotify(self, request: ApprovalRequest) -> None:
        self.requests.put(request)

    async def aupdate(self, request: ApprovalRequest) -> None:
        pass


# -- 1. the allowed call ---------------------------------------------------------------------


def lookup(key: str) -> str:
    return key


def bench_allowed(report: Report, url: str, quick: bool) -> None:
    repeats = 5 if quick else 15
    n_mem = 2_000 if quick else 10_000
    n_redis = 300 if quick else 2_000

    mem = MemoryStore()
    mem_gate = Gatekeeper(policy=POLICY, store=mem)
    mem_lookup = mem_gate.guard(lookup)

    store = RedisStore(url, prefix=prefix())
    redis_gate = Gatekeeper(policy=POLICY, store=store)
    redis_lookup = redis_gate.guard(lookup)
    ping_client = redis.Redis.from_url(url)

    bare, guarded_mem, pings, guarded_redis = [], [], [], []
    produced = 0
    with mem_gate.session(agent="bench"), redis_gate.session(agent="bench"):
        for _ in range(200):  # warm up: pools connected, scripts loaded, sealer started
            mem_lookup("k")
            redis_lookup("k")
            ping_client.ping()
        store.flush()
        mem.flush()
        audit_before = ping_client.xlen(store.keys.audit)
        t_loop = perf()
        largest_backlog = 0
        for _ in range(repeats):
            # The Redis loop's sealer must not still be working while the memory loop
            # is timed: note what it had left, and let it finish, untimed.
            largest_backlog = max(
                largest_backlog,
                len(store._sealer._queue) + ping_client.llen(store.keys.of("bench").journal),
            )
            store.flush()
            gc.collect()
            bare.append(per_call_us(lambda: lookup("k"), n_mem))
            guarded_mem.append(per_call_us(lambda: mem_lookup("k"), n_mem))
            mem.flush()  # outside the timed loops: the memory store seals on flush only
            pings.append(per_call_us(ping_client.ping, n_redis))
            guarded_redis.append(per_call_us(lambda: redis_lookup("k"), n_redis))
            produced += 2 * n_redis  # call.allowed draft (journal) + outcome (queue)
        loop_s = perf() - t_loop  # the untimed flushes included
        sealed_during = ping_client.xlen(store.keys.audit) - audit_before
        backlog = len(store._sealer._queue) + ping_client.llen(store.keys.of("bench").journal)
        t = perf()
        store.flush()
        final_flush_ms = (perf() - t) * 1e3

    # Sealing throughput on its own: a store whose sealer thread is alive but
    # lingers for an hour, so a known backlog builds up; then seal it all at once.
    n_seal = 2_000 if quick else 10_000
    idle = RedisStore(url, prefix=prefix(), seal_linger=3600)
    idle_gate = Gatekeeper(policy=POLICY, store=idle)
    idle_lookup = idle_gate.guard(lookup)
    with idle_gate.session(agent="bench"):
        for _ in range(n_seal // 2):
            idle_lookup("k")
    pending_events = len(idle._sealer._queue) + ping_client.llen(idle.keys.of("bench").journal)
    t = perf()
    idle.flush()
    seal_s = perf() - t
    sealed = ping_client.xlen(idle.keys.audit)
    idle.close()

    b, m, p, r = median(bare), median(guarded_mem), median(pings), median(guarded_redis)
    overhead_mem = m - b
    ratio = (r - b) / p
    report.table(
        "1. Allowed call through the guard",
        ["measure", "median", "baseline (same run)", "ratio", "target", ""],
        [
            ["bare `lookup(key)`", f"{b:.2f} µs", "—", "—", "—", ""],
            [
                "guarded, MemoryStore: overhead over bare",
                f"{overhead_mem:.1f} µs",
                f"bare {b:.2f} µs",
                f"{m / b:.0f}× bare",
                "≤ 30 µs",
                verdict(overhead_mem <= 30),
            ],
            [
                "guarded, RedisStore: whole call",
                f"{r:.1f} µs",
                f"PING {p:.1f} µs",
                f"{ratio:.2f} PINGs",
                "≤ 2 PINGs",
                verdict(ratio <= 2),
            ],
            [
                "audit sealing (flush of a backlog)",
                f"{pending_events / seal_s:,.0f} events/s",
                "—",
                f"{seal_s / pending_events * 1e6:.1f} µs/event",
                "—",
                "",
            ],
        ],
        [
            f"medians of {repeats} repeats; {n_mem:,} memory calls and {n_redis:,} Redis calls "
            "per repeat, bare/guarded and PING/guarded loops interleaved in each repeat.",
            "the RedisStore call is one EVALSHA (kill switch check + audit draft append) plus "
            "Python work; its outcome event is queued (`record_soon`) for the sealer thread, "
            "which stayed alive (default `seal_linger`, 50 ms) during the loop, so its CPU "
            "share is included in the call's time.",
            "each measurement stands alone: before each repeat the RedisStore's sealer "
            "finishes its backlog (untimed), so its work is never timed as the MemoryStore's; "
            f"the largest backlog a Redis loop left was {largest_backlog:,} events.",
            f"the queue did not grow without bound: {produced:,} events produced in "
            f"{loop_s:.1f} s, {sealed_during:,} sealed during the repeats, backlog at the end "
            f"{backlog:,} (sealed by the final flush in {final_flush_ms:.0f} ms).",
            f"sealing throughput: {pending_events:,} queued + journal drafts "
            f"({sealed:,} chained) sealed by one `flush()` in {seal_s * 1e3:.0f} ms.",
        ],
    )
    ping_client.close()
    store.close()
    mem_gate.close()


# -- 2. classification -----------------------------------------------------------------------


def policy_with(n_other: int) -> Policy:
    rules: list[dict[str, Any]] = []
    for i in range(n_other):  # rules for OTHER tools: half exact names, half globs
        tool = f"other_tool_{i}" if i % 2 == 0 else f"other_{i}_*"
        rules.append(
            {
                "id": f"other-{i}",
                "match": {"tool": tool},
                "verdict": ["allow", "deny", "require_approval"][i % 3],
            }
        )
    rules += [
        {
            "id": "big-refund",
            "match": {"tool": "refund", "args": {"amount": {"gt": 100}}},
            "verdict": "require_approval",
            "risk": "high",
            "approval": {"group": "finance", "quorum": 2, "timeout": "30m"},
        },
        {"id": "read-only", "match": {"tool": ["search_*", "get_*"]}, "verdict": "allow"},
    ]
    return Policy.from_mapping({"version": 1, "rules": rules})


def tool_call(tool: str, args: dict[str, Any]) -> Any:
    from gatekeeper.models import ToolCall

    return ToolCall(
        id=uuid.uuid4().hex,
        tool=tool,
        args=args,
        args_digest="0" * 64,
        agent="bench",
        session_id="s",
        created_at=dt.datetime.now(dt.timezone.utc),
    )


def bench_classify(report: Report, quick: bool) -> None:
    repeats = 5 if quick else 15
    n = 2_000 if quick else 20_000
    cases = [
        ("args matcher + approval (`refund`, amount 500)", tool_call("refund", {"amount": 500})),
        ("allow by glob (`search_docs`)", tool_call("search_docs", {"q": "x"})),
        ("no rule matches (`launch_rocket`)", tool_call("launch_rocket", {})),
    ]
    policies = {k: policy_with(k) for k in (10, 1_000)}
    expected = ["require_approval", "allow", "require_approval"]
    for (_, call), want in zip(cases, expected, strict=True):
        for pol in policies.values():
            assert pol.classify(call).verdict.value == want, (call.tool, want)
    times: dict[tuple[int, int], list[float]] = {}
    cold: dict[tuple[int, int], float] = {}
    for k, pol in policies.items():  # noqa: B007 - pol is used through the closure below
        for ci, (_, call) in enumerate(cases):
            # first classification of a tool name: globs are scanned, then cached
            fresh = policy_with(k)
            t = perf()
            fresh.classify(call)
            cold[(k, ci)] = (perf() - t) * 1e6
    for _ in range(repeats):
        gc.collect()
        for k, pol in policies.items():
            for ci, (_, call) in enumerate(cases):
                times.setdefault((k, ci), []).append(per_call_us(lambda: pol.classify(call), n))
    rows = []
    for ci, (label, _) in enumerate(cases):
        small, big = median(times[(10, ci)]), median(times[(1_000, ci)])
        flat = big / small
        rows.append(
            [
                label,
                f"{small:.2f} µs",
                f"{big:.2f} µs",
                f"{flat:.2f}×",
                f"{cold[(10, ci)]:.0f} / {cold[(1_000, ci)]:.0f} µs",
                "< 20 µs, ≤ 1.5×",
                verdict(big < 20 and small < 20 and flat <= 1.5),
            ]
        )
    report.table(
        "2. `policy.classify(call)`",
        [
            "call",
            "10 other rules",
            "1,000 other rules",
            "1,000 / 10",
            "first call (10 / 1,000)",
            "target",
            "",
        ],
        rows,
        [
            f"medians of {repeats} repeats of {n:,} classifications; the other tools' rules are "
            "half exact names, half globs. 'Flat' is read as 1,000-rule time ≤ 1.5× the 10-rule "
            "time. The first classification of a tool name scans the glob rules once; its "
            "candidate list is then cached (bounded, 4,096 names)."
        ],
    )


# -- 3. release latency ----------------------------------------------------------------------


def stamp_commits(store: RedisStore, stamps: list[float]) -> None:
    """Record the moment each decide EVALSHA returns: the approval is committed then."""
    script = store._scripts["decide"]

    class Stamped:
        sha = script.sha  # the sealer keeps the scripts loaded by their sha

        def __call__(self, **kwargs: Any) -> Any:
            reply = script(**kwargs)
            stamps.append(perf())
            return reply

    store._scripts["decide"] = Stamped()  # type: ignore[assignment]


def bench_release(report: Report, url: str, quick: bool) -> None:
    trials = 50 if quick else 300
    rows = []
    configs = [("sync", 0.05), ("async", 0.05)]
    if not quick:
        configs.append(("sync", 0.0))
    for mode, linger in configs:
        p = prefix()
        tap = Tap()
        waiter_store = RedisStore(url, prefix=p, seal_linger=linger)
        gate = Gatekeeper(policy=POLICY, store=waiter_store, channels=[tap])
        approver_store = RedisStore(url, prefix=p, seal_linger=linger)
        approver_gate = Gatekeeper(policy=POLICY, store=approver_store)
        committed: list[float] = []
        started: list[float] = []
        stamp_commits(approver_store, committed)

        @gate.guard
        def transfer(n: int) -> int:
            started.append(perf())
            return n

        @gate.guard
        async def atransfer(n: int) -> int:
            started.append(perf())
            return n

        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                with gate.session(agent="bench"):
                    if mode == "sync":
                        for i in range(trials + 5):
                            transfer(i)
                    else:

                        async def run() -> None:
                            for i in range(trials + 5):
                                await atransfer(i)

                        asyncio.run(run())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        for i in range(trials + 5):
            req = tap.requests.get(timeout=30)
            time.sleep(0.003)  # let the waiter settle into its blocking wait
            approver_gate.approve(req.id, approver="bench")
            while len(started) <= i and not errors:  # the next request comes after this run
                time.sleep(0.0005)
        thread.join(30)
        if errors:
            raise errors[0]
        lat = [(s - c) * 1e3 for s, c in zip(started[5:], committed[5:], strict=True)]
        p50, p99 = pct(lat, 50), pct(lat, 99)
        rows.append(
            [
                f"{mode} tool, {'blocked thread' if mode == 'sync' else 'awaiting task'} woken "
                f"by the shared pub/sub, seal_linger={linger}",
                f"{p50:.2f} ms",
                f"{p99:.2f} ms",
                f"{max(lat):.2f} ms",
                "p99 < 5 ms",
                verdict(p99 < 5),
            ]
        )
        waiter_store.close()
        approver_store.close()
    report.table(
        "3. Release latency: approval committed → first line of the tool",
        ["path", "p50", "p99", "max", "target", ""],
        rows,
        [
            f"{trials} trials each (after 5 warm-ups). The approver is a second `RedisStore` on "
            "the same URL and prefix (`gate.approve`, another thread); t0 is taken right after "
            "its decide EVALSHA returns, t1 on the tool's first line (perf_counter).",
            "the waiter is woken by the decide script itself (a PUBLISH on the decisions channel, "
            "heard by the process's one subscription, which wakes the waiting thread or task) in "
            "the same atomic step that commits the approval; sealing "
            "the audit chain happens later and elsewhere, so `seal_linger` is not on this path "
            "(the seal_linger=0 row shows it).",
            "what the waiter does between t0 and t1: wake, read the request (1 round trip), "
            "check the argument digest, claim it (EVALSHA + read, 2 round trips), call the tool.",
        ],
    )


# -- 4. 10,000 held async calls in one process -----------------------------------------------


def proc_status(key: str) -> int:
    """A kB field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pending_child(url: str, pfx: str, n: int, trace: bool) -> None:
    """Runs in a fresh process: hold ``n`` async calls, report, wait for the approvals."""
    tap = Tap()
    store = RedisStore(with_name(url, "gkbench-waiter"), prefix=pfx)
    gate = Gatekeeper(policy=POLICY, store=store, channels=[tap])

    @gate.guard
    async def atransfer(n: int) -> int:
        return n

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        with gate.session(agent="bench"):
            # warm up: pools, scripts and the shared subscription exist before we measure
            warm = asyncio.ensure_future(atransfer(-1))
            req = await asyncio.to_thread(tap.requests.get, True, 30)
            emit({"warm": [req.id, req.args_digest]})
            await warm
            dispatcher = store.aio._state().dispatcher  # type: ignore[attr-defined]
            gc.collect()
            rss0 = proc_status("VmRSS")
            peak_reset = reset_peak_rss()
            if trace:
                tracemalloc.start()
            t0 = perf()
            tasks = [asyncio.ensure_future(atransfer(i)) for i in range(n)]
            while len(dispatcher._waiters) < n or tap.requests.qsize() < n:
                await asyncio.sleep(0.005)
            created = perf() - t0
            rss_held = proc_status("VmRSS")
            traced_held = tracemalloc.get_traced_memory()[0] if trace else 0
            pairs = []
            while not tap.requests.empty():
                r = tap.requests.get_nowait()
                pairs.append([r.id, r.args_digest])
            emit(
                {
                    "ready": pairs,
                    "created_s": created,
                    "rss0": rss0,
                    "rss_held": rss_held,
                    "traced_held": traced_held,
                }
            )
            results = await asyncio.gather(*tasks, return_exceptions=True)
            done = perf()
            failed = [r for r in results if isinstance(r, BaseException)]
            traced_peak = tracemalloc.get_traced_memory()[1] if trace else 0
            emit(
                {
                    "done": done,
                    "ok": n - len(failed),
                    "failed": len(failed),
                    "error": repr(failed[0])[:200] if failed else None,
                    "rss_peak": proc_status("VmHWM") if peak_reset else 0,
                    "rss_end": proc_status("VmRSS"),
                    "traced_peak": traced_peak,
                }
            )

    asyncio.run(main())
    store.close()


def count_connections(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def approve_all(store: RedisStore, pairs: list[list[str]]) -> None:
    """Commit every approval from a second store, 500 signed decide scripts per pipeline."""
    from gatekeeper._votes import sign_vote
    from gatekeeper.store import _redis_ops as ops

    script = store._scripts["decide"]
    signer = store.decision_keys.signer()
    now = store.clock.now()
    now_ms = int(now.timestamp() * 1000)
    for start in range(0, len(pairs), 500):
        pipe = store.client.pipeline(transaction=False)
        batch = []
        chunk = pairs[start : start + 500]
        requests = store.get_many([rid for rid, _ in chunk])
        for req, (rid, digest) in zip(requests, chunk, strict=True):
            decision = Decision(
                approver="bench", approve=True, at=now, args_digest=digest, via="bench"
            )
            signed = sign_vote(signer, req, decision, None)
            agent = store.keys.of(req.call.agent)
            op = ops.decide(store.keys, agent, rid, signed, now_ms, None)
            script(keys=op.keys, args=op.args, client=pipe)
            batch.append(op)
        for op, reply in zip(batch, pipe.execute(), strict=True):
            op.parse(reply)


def run_pending(url: str, n: int, trace: bool) -> dict[str, Any]:
    pfx = prefix()
    observer = redis.Redis.from_url(url)
    approver = RedisStore(url, prefix=pfx)
    name = "gkbench-waiter"
    before = count_connections(observer, name)
    child = subprocess.Popen(
        [sys.executable, __file__, "--_pending-child", url, pfx, str(n)]
        + (["--_trace"] if trace else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    peak_conns = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak_conns[0] = max(peak_conns[0], count_connections(observer, name))
            time.sleep(0.02)

    def read() -> dict[str, Any]:
        line = child.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"pending benchmark child died (exit {child.wait()})")
        return dict(json.loads(line))

    warm = read()["warm"]
    approve_all(approver, [warm])
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ready = read()
    held_conns = count_connections(observer, name)
    t_approve = perf()
    approve_all(approver, ready["ready"])
    approved_s = perf() - t_approve
    done = read()
    sampling.set()
    sampler.join()
    child.wait(timeout=60)
    approver.close()
    observer.close()
    return {
        "n": n,
        "created_s": ready["created_s"],
        "approve_send_s": approved_s,
        "release_s": done["done"] - t_approve,
        "held_conns": held_conns,
        "peak_conns": peak_conns[0],
        "before_conns": before,
        "rss_growth": (done["rss_peak"] or ready["rss_held"]) - ready["rss0"],
        "rss_held_growth": ready["rss_held"] - ready["rss0"],
        "traced_held": ready["traced_held"],
        "traced_peak": done["traced_peak"],
        "ok": done["ok"],
        "failed": done["failed"],
        "error": done["error"],
    }


def bench_pending(report: Report, url: str, quick: bool) -> None:
    big = 1_000 if quick else 10_000
    runs = [run_pending(url, big, trace=False), run_pending(url, big, trace=True)]
    if not quick:
        runs.append(run_pending(url, 1_000, trace=False))
    main, traced = runs[0], runs[1]
    small = runs[2] if len(runs) > 2 else None
    mib = 1024 * 1024
    n = main["n"]
    conns_ok = main["peak_conns"] <= 40 and (
        small is None or main["peak_conns"] <= small["peak_conns"] + 4
    )
    rows = [
        [
            "time to create all requests (held + waiting)",
            f"{main['created_s']:.2f} s",
            f"{main['created_s'] / n * 1e6:.0f} µs per call",
            "—",
            "",
        ],
        [
            "approve all (pipelined decides, 2nd process)",
            f"{main['approve_send_s']:.2f} s",
            f"{main['approve_send_s'] / n * 1e6:.0f} µs per decide",
            "—",
            "",
        ],
        [
            "first approval sent → all calls returned",
            f"{main['release_s']:.2f} s",
            f"{n / main['release_s']:,.0f} calls/s",
            "—",
            "",
        ],
        [
            "calls that ran after approval (not failed)",
            f"{main['ok']:,} of {n:,}",
            (f"failed {main['failed']:,}: {main['error']}" if main["failed"] else "none failed")
            + (f"; at 1,000: {small['ok']:,} ok" if small else ""),
            "all",
            verdict(main["failed"] == 0 and (small is None or small["failed"] == 0)),
        ],
        [
            "Redis connections of the process while held / peak",
            f"{main['held_conns']} / {main['peak_conns']}",
            f"at 1,000 calls: {small['held_conns']} / {small['peak_conns']}" if small else "—",
            "O(1): ≤ 40, same at 1k and 10k" if small else "O(1): ≤ 40",
            verdict(conns_ok),
        ],
        [
            "RSS growth while held / peak",
            f"{main['rss_held_growth'] / mib:.0f} / {main['rss_growth'] / mib:.0f} MiB",
            f"{main['rss_growth'] / n / 1024:.1f} KiB per call",
            "—",
            "",
        ],
        [
            "tracemalloc: Python heap while held / peak",
            f"{traced['traced_held'] / mib:.0f} / {traced['traced_peak'] / mib:.0f} MiB",
            f"{traced['traced_peak'] / n / 1024:.1f} KiB per call",
            "—",
            "",
        ],
    ]
    report.table(
        f"4. {n:,} async calls held at once in one process (RedisStore)",
        ["measure", "value", "per call / comparison", "target", ""],
        rows,
        [
            f"a fresh process runs `asyncio.gather` of {n:,} guarded async calls that need "
            "approval; 'created' ends when every request is held in Redis and every waiter is "
            "registered on the shared subscription. Another process approves them all (one "
            "decide script per request, 500 per pipeline) and the clock runs until gather "
            "returns (perf_counter is CLOCK_MONOTONIC, shared by both processes).",
            "connections are counted with CLIENT LIST by client name (only the waiting "
            "process's clients carry it), sampled every 20 ms; the async pool is capped at "
            "`max_connections` (32) plus one pub/sub connection and the sync sealer's pool.",
            "tracemalloc numbers come from a second run with tracing on (it slows Python down, "
            "so that run's times are not reported).",
        ],
    )


# -- main -------------------------------------------------------------------------------------


def write_docs(markdown: str) -> None:
    body = f"{START}\n{markdown.rstrip()}\n{END}"
    if DOCS.exists():
        text = DOCS.read_text(encoding="utf-8")
        if START in text and END in text:
            pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
            text = pattern.sub(lambda _: body, text, count=1)
        else:
            text = text.rstrip() + "\n\n" + body + "\n"
    else:
        text = f"# Performance\n\n{body}\n"
    DOCS.write_text(text, encoding="utf-8")


def main() -> None:
    use_run_keys()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under 30 s")
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace the bench section of {DOCS.relative_to(ROOT)}",
    )
    parser.add_argument("--_pending-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_trace", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._pending_child:
        url, pfx, n = opts._pending_child
        pending_child(url, pfx, int(n), opts._trace)
        return

    import platform

    import gatekeeper

    header = (
        f"`bench/run.py{' --quick' if opts.quick else ''}` — gatekeeper {gatekeeper.__version__}, "
        f"Python {platform.python_version()}, redis-py {redis.__version__}, "
        f"{redis_version()}, {platform.machine()} × {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(header + "\n", flush=True)
    report = Report()
    started = perf()
    with redis_server() as url:
        bench_allowed(report, url, opts.quick)
        bench_classify(report, opts.quick)
        bench_release(report, url, opts.quick)
        bench_pending(report, url, opts.quick)
    print(f"(total {perf() - started:.0f} s)")
    if opts.write_docs:
        write_docs(report.markdown(header))
        print(f"wrote {DOCS.relative_to(ROOT)}")


def redis_version() -> str:
    out = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"v=(\S+)", out)
    return f"redis-server {found.group(1) if found else '?'}"


if __name__ == "__main__":
    main()
