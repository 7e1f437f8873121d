"""The web console's benchmark: listing a big queue, and live-update fan-out over SSE.

    .venv/bin/python bench/web.py              # the full run (10,000 pending, 100 SSE clients)
    .venv/bin/python bench/web.py --quick      # a smoke test, under 30 s
    .venv/bin/python bench/web.py --write-docs # also update docs/performance.md
    .venv/bin/python bench/web.py --cluster    # W1 on one node, then on a 3-master cluster

Like ``bench/run.py`` (whose helpers it uses), it starts a redis-server of its
own on a free port (no persistence, temp dir), never talks to any other Redis,
and compares every number with a baseline measured in the same run:

1. listing the pending queue: ``GET /api/v1/requests?limit=50&offset=...`` on
   random pages of 10,000 pending requests, the first and the last page, and
   the HTML queue page ``/`` (signed in with a session cookie), against
   ``GET /api/v1/me`` (the cheapest authenticated endpoint) and a Redis PING;
2. live-update fan-out: 100 SSE clients on ``/api/v1/events``; requests are
   decided one at a time from another ``Gatekeeper`` on the same Redis (as
   another process would), and the time from the decide call's return to each
   client receiving that request's event is measured, against 1 client.

The console is the real app (``create_app``) served by uvicorn in a thread of
this process on a free port; the clients are httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keys import use_run_keys  # bench/ is on sys.path when run as a script
from run import (
    Report,
    free_port,
    median,
    pct,
    prefix,
    redis_server,
    redis_version,
    verdict,
)

import gatekeeper
from gatekeeper import Gatekeeper, Policy
from gatekeeper import _pipeline as pipe
from gatekeeper._canonical import digest
from gatekeeper.models import Approver, ToolCall
from gatekeeper.store import RedisStore
from gatekeeper.web import ApiToken, WebSettings, create_app
from gatekeeper.web._auth import hash_secret

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-web:start -->", "<!-- bench-web:end -->"
SECTION = "## Web console"

perf = time.perf_counter

TOKEN = "bench-web-token-" + uuid.uuid4().hex
SECRET = "bench web secret " + uuid.uuid4().hex[:8]
APPROVER = "alice"

# Every tool needs approval; the risks spread the queue over the four per-risk indexes.
POLICY = Policy.from_mapping(
    {
        "version": 1,
        "rules": [
            {
                "id": f"{tool}-needs-approval",
                "match": {"tool": tool},
                "verdict": "require_approval",
                "risk": risk,
                "approval": {"timeout": "24h"},
            }
            for tool, risk in (
                ("wire", "critical"),
                ("refund", "high"),
                ("deploy", "medium"),
                ("note", "low"),
                ("email", "low"),
            )
        ],
    }
)
TOOLS = ["wire", "refund", "refund", "deploy", "deploy", "note", "note", "email"]
AGENTS = [f"agent-{i}" for i in range(12)]


# -- the data: pending requests held directly in the store ----------------------------------


def hold_requests(store: RedisStore, n: int, seed: int = 7) -> list[str]:
    """``n`` pending requests (mixed tools, agents, risks) held through ``store.hold``."""
    rng = random.Random(seed)
    ids = []
    now = store.clock.now()
    for i in range(n):
        tool = rng.choice(TOOLS)
        args: dict[str, Any] = {
            "order_id": f"ord-{i:06d}",
            "amount": rng.randint(1, 5000),
            "note": "customer asked " + "x" * rng.randint(0, 120),
        }
        call = ToolCall(
            id=uuid.uuid4().hex,
            tool=tool,
            args=args,
            args_digest=digest(args),
            agent=rng.choice(AGENTS),
            session_id=f"s-{rng.randint(0, 200)}",
            reason="benchmark data",
            created_at=now - dt.timedelta(milliseconds=n - i),
        )
        cls = POLICY.classify(call)
        req = pipe.new_request(uuid.uuid4().hex, call, cls, call.created_at, 86_400)
        store.hold(req, pipe.call_event(call, cls, request=req))
        ids.append(req.id)
    store.flush()
    return ids


# -- the console, served by uvicorn in a thread ---------------------------------------------


class Server:
    """The real console app on a free port, uvicorn in a thread (as tests/webkit.LiveServer)."""

    def __init__(self, url: str, pfx: str) -> None:
        import uvicorn

        self.store = RedisStore(url, prefix=pfx)
        self.gate = Gatekeeper(
            policy=POLICY,
            store=self.store,
            approvers=(Approver(name=APPROVER, web_secret_hash=hash_secret(SECRET)),),
        )
        settings = WebSettings(
            secret_key="b" * 40,
            api_tokens=(
                ApiToken(
                    name="bench",
                    token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
                    scopes=("read", "decide", "admin"),
                    approver=APPROVER,
                ),
            ),
        )
        self.app = create_app(self.gate, settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="none",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        gc.freeze()  # as `gatekeeper serve` does once the console is built

    @property
    def hub(self) -> Any:
        return self.app.state.events

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.gate.close()


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def sign_in(http: httpx.Client) -> None:
    """A session cookie, the way a browser gets one: POST /login with the form's CSRF token."""
    http.cookies.set("gk_csrf", "c" * 32)
    reply = http.post(
        "/login",
        data={"name": APPROVER, "secret": SECRET, "csrf": "c" * 32, "next": "/"},
        follow_redirects=False,
    )
    if reply.status_code != 303 or "gk_session" not in http.cookies:
        raise RuntimeError(f"sign-in failed: {reply.status_code} {reply.text[:200]}")


# -- 1. listing ------------------------------------------------------------------------------


def timed_get(http: httpx.Client, path: str, **kw: Any) -> tuple[float, httpx.Response]:
    t = perf()
    reply = http.get(path, **kw)
    elapsed = (perf() - t) * 1e3
    if reply.status_code != 200:
        raise RuntimeError(f"GET {path}: {reply.status_code} {reply.text[:300]}")
    return elapsed, reply


def bench_listing(
    report: Report,
    server: Server,
    ping: redis.Redis,
    n: int,
    quick: bool,
    title: str = "W1. Listing",
    where: str = "",
) -> None:
    samples = 200 if quick else 1_000
    edge = 50 if quick else 200
    pages = (n + 49) // 50
    rng = random.Random(11)
    api = httpx.Client(base_url=server.url, headers=bearer(), timeout=30)
    browser = httpx.Client(base_url=server.url, timeout=30)
    sign_in(browser)

    first = api.get("/api/v1/requests", params={"limit": 50, "offset": 0}).json()
    total = first["total"]
    assert total == n, (total, n)
    assert len(first["items"]) == 50
    last_offset = (total - 1) // 50 * 50
    risks = [r["classification"]["risk"] for r in first["items"]]
    assert risks[0] == "critical", risks[:3]
    last = api.get("/api/v1/requests", params={"limit": 50, "offset": last_offset}).json()
    assert len(last["items"]) == total - last_offset
    assert last["items"][-1]["classification"]["risk"] == "low"
    html = browser.get("/")
    assert html.status_code == 200, html.status_code
    assert "text/html" in html.headers["content-type"]
    page_bytes = len(api.get("/api/v1/requests", params={"limit": 50, "offset": 5000 % n}).content)

    for _ in range(30):  # warm up: connections, scripts, templates, threadpool
        api.get("/api/v1/me")
        api.get("/api/v1/requests", params={"limit": 50, "offset": rng.randrange(pages) * 50})
        browser.get("/")
        ping.ping()

    me, rand, pings, direct = [], [], [], []
    gc.collect()
    for _ in range(samples):  # interleaved, so drift hits all alike
        me.append(timed_get(api, "/api/v1/me")[0])
        offset = rng.randrange(pages) * 50
        ms, _ = timed_get(api, "/api/v1/requests", params={"limit": 50, "offset": offset})
        rand.append(ms)
        t = perf()
        ping.ping()
        pings.append((perf() - t) * 1e3)
        t = perf()
        server.store.queue(limit=50, offset=rng.randrange(pages) * 50)
        direct.append((perf() - t) * 1e3)
    firsts, lasts, html_first, html_last = [], [], [], []
    for _ in range(edge):
        firsts.append(timed_get(api, "/api/v1/requests", params={"limit": 50, "offset": 0})[0])
        lasts.append(
            timed_get(api, "/api/v1/requests", params={"limit": 50, "offset": last_offset})[0]
        )
        html_first.append(timed_get(browser, "/")[0])
        html_last.append(timed_get(browser, "/", params={"offset": str(last_offset)})[0])

    me50, ping50 = median(me), median(pings)

    def row(label: str, xs: list[float], target: float | None) -> list[str]:
        p50, p99 = pct(xs, 50), pct(xs, 99)
        return [
            label,
            f"{p50:.2f} ms",
            f"{p99:.2f} ms",
            f"{p50 / me50:.1f}× /me, {p50 / ping50:.0f}× PING",
            f"p99 < {target:.0f} ms" if target else "—",
            verdict(p99 < target) if target else "",
        ]

    rows = [
        row(f"JSON page of 50, random offset ({samples:,} requests)", rand, 100),
        row(f"JSON first page (offset 0, {edge} requests)", firsts, 100),
        row(f"JSON last page (offset {last_offset:,}, {edge} requests)", lasts, 100),
        row(f"HTML queue page `/`, first page, cookie session ({edge})", html_first, 100),
        row(f"HTML queue page `/?offset={last_offset:,}` ({edge})", html_last, 100),
        row("`store.queue(limit=50)` in-process, no HTTP (random offset)", direct, None),
        [
            "baseline: `GET /api/v1/me` (bearer token)",
            f"{me50:.2f} ms",
            f"{pct(me, 99):.2f} ms",
            f"{me50 / ping50:.0f}× PING",
            "—",
            "",
        ],
        [
            "baseline: Redis PING (redis-py)",
            f"{ping50:.3f} ms",
            f"{pct(pings, 99):.3f} ms",
            "1",
            "—",
            "",
        ],
    ]
    report.table(
        f"{title} {n:,} pending requests, 50 per page",
        ["request", "p50", "p99", "p50 vs baseline", "target", ""],
        rows,
        [
            *([where] if where else []),
            f"{n:,} pending requests held with `RedisStore.hold` (5 tools over 4 risks, "
            f"{len(AGENTS)} agents, 24 h timeouts); the console (`create_app`) is served by "
            "uvicorn in a thread of this process; one keep-alive httpx client sends requests "
            "one at a time (latency, not throughput), wall time around each `GET` as the client "
            "sees it.",
            f"the random-page, `/me`, PING and in-process `store.queue` samples are interleaved "
            f"in one loop of {samples:,}; a JSON page of 50 is ~{page_bytes / 1024:.0f} KiB.",
            "the HTML page is signed in the way a browser is (POST /login with the form's CSRF "
            "token, then the `gk_session` cookie); it renders the same 50-row page of the queue.",
            "ratios: p50 over the p50 of `/me` (HTTP + auth + FastAPI, no store) and of a PING "
            "(one Redis round trip).",
        ],
    )
    api.close()
    browser.close()
    ping.close()


# -- 2. SSE fan-out -------------------------------------------------------------------------


@dataclass
class FanOut:
    clients: int
    decisions: int
    latencies_ms: list[float]
    missed: int
    resyncs: int
    connect_s: float
    per_decision_last_ms: list[float]


async def fan_out(
    server: Server, decider: Gatekeeper, ids: list[str], clients: int, timeout: float = 5.0
) -> FanOut:
    """``clients`` SSE streams; decide each of ``ids`` in turn, time its arrival at each."""
    arrived: list[dict[str, float]] = [{} for _ in range(clients)]
    resyncs = [0]
    waiting: dict[str, asyncio.Event] = {}
    counts: Counter[str] = Counter()
    measuring = [0]  # resyncs counted only once every client is connected

    async def client(i: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", "/api/v1/events") as stream:
            assert stream.status_code == 200, stream.status_code
            event = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "request":
                    now = perf()
                    data = json.loads(line[5:])
                    rid, status = data["id"], data["status"]
                    if status == "resync":
                        resyncs[0] += measuring[0]
                    elif status != "pending" and rid not in arrived[i]:
                        arrived[i][rid] = now
                        counts[rid] += 1
                        if counts[rid] >= clients and rid in waiting:
                            waiting[rid].set()
                elif line == "":
                    event = None

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(
        base_url=server.url, headers=bearer(), timeout=httpx.Timeout(30, read=None), limits=limits
    ) as http:
        t = perf()
        tasks = [asyncio.create_task(client(i, http)) for i in range(clients)]
        # the hub's first store-feed message is a resync, once its subscription is live;
        # a client connecting later gets no such message: wait on the hub's count instead.
        while server.hub.clients < clients:
            await asyncio.sleep(0.005)
        connect_s = perf() - t
        await asyncio.sleep(0.3)  # let the first subscription settle
        measuring[0] = 1
        latencies, per_decision, missed = [], [], 0
        for rid in ids:
            waiting[rid] = asyncio.Event()
            await asyncio.sleep(0.01)  # a quiet moment between decisions
            await asyncio.to_thread(decider.approve, rid, approver="bench", via="bench")
            t0 = perf()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waiting[rid].wait(), timeout)
            got = [a[rid] for a in arrived if rid in a]
            missed += clients - len(got)
            latencies += [(t1 - t0) * 1e3 for t1 in got]
            if got:
                per_decision.append((max(got) - t0) * 1e3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return FanOut(clients, len(ids), latencies, missed, resyncs[0], connect_s, per_decision)


def bench_fanout(
    report: Report, server: Server, url: str, pfx: str, ids: list[str], quick: bool
) -> None:
    n_clients = 100
    n_decisions = 20 if quick else 100
    # the deciding side: another Gatekeeper on its own RedisStore, as another process would be
    decider_store = RedisStore(url, prefix=pfx)
    decider = Gatekeeper(policy=POLICY, store=decider_store)
    server.hub.ping_interval = 15.0
    rng = random.Random(3)
    pool = rng.sample(ids, 2 * n_decisions + 10)
    warm, one_ids, many_ids = pool[:10], pool[10 : 10 + n_decisions], pool[10 + n_decisions :]
    asyncio.run(fan_out(server, decider, warm[:5], 1))  # warm-up
    asyncio.run(fan_out(server, decider, warm[5:], n_clients))
    one = asyncio.run(fan_out(server, decider, one_ids, 1))
    many = asyncio.run(fan_out(server, decider, many_ids, n_clients))
    decider.close()

    def row(label: str, r: FanOut, target: bool) -> list[str]:
        lat = r.latencies_ms or [float("nan")]
        ok = r.missed == 0 and pct(lat, 99) < 250
        return [
            label,
            f"{r.decisions} × {r.clients} = {r.decisions * r.clients:,}",
            f"{pct(lat, 50):.2f} ms",
            f"{pct(lat, 99):.2f} ms",
            f"{max(lat):.2f} ms",
            f"{r.missed}",
            "p99 < 250 ms, 0 missed" if target else "0 missed",
            verdict(ok) if target else verdict(r.missed == 0),
        ]

    ratio = pct(many.latencies_ms, 50) / pct(one.latencies_ms, 50) if one.latencies_ms else 0
    report.table(
        f"W2. Live-update fan-out: decision committed → `request` event at {n_clients} SSE clients",
        ["clients", "(decision, client) pairs", "p50", "p99", "max", "missed", "target", ""],
        [
            row(f"{n_clients} SSE clients", many, True),
            row("baseline: 1 SSE client", one, False),
        ],
        [
            f"{n_clients} concurrent SSE connections to `/api/v1/events` (httpx `AsyncClient` "
            "streams in one asyncio loop of this process, bearer token). These are SSE HTTP "
            "clients — what a browser's `EventSource` is on the wire — not "
            f"{n_clients} Chromium instances: no DOM update or page re-fetch is included.",
            "decisions are made one at a time by a second `Gatekeeper` on its own `RedisStore` "
            "(same URL and prefix, as another process would); t0 is taken right after "
            "`approve()` returns (the decide script has committed in Redis), t1 when a client "
            "has read the `data:` line of that request's `event: request`. Between decisions "
            "the loop waits until every client has it (or 5 s: then it counts as missed).",
            f"p50 with {n_clients} clients is {ratio:.1f}× the 1-client p50; the slowest client "
            f"per decision: median {median(many.per_decision_last_ms):.2f} ms. "
            f"{n_clients} clients connected in {many.connect_s * 1e3:.0f} ms; "
            f"resync events during the measured run: {many.resyncs}.",
            "path: decide script PUBLISHes the id → the console process's one store "
            "subscription → `EventHub` reads the request once (`store.aio.get`, 1 round trip) "
            "→ puts the message on every client's queue → each client's response streams it.",
            "client and server share this process (and its GIL): the clients' parsing is on "
            "the same CPU budget as the server's sending, so this errs on the slow side.",
        ],
    )


# -- main -------------------------------------------------------------------------------------


def write_docs(markdown: str) -> None:
    body = f"{START}\n{markdown.rstrip()}\n{END}"
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Performance\n"
    if START in text and END in text:
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        intro = (
            f"{SECTION}\n\n"
            "`bench/web.py` measures the console: a page of the pending queue with 10,000 "
            "requests pending, and how fast a decision made elsewhere reaches 100 connected "
            "live-update (SSE) clients. Run it with `.venv/bin/python bench/web.py` "
            "(`--quick` for a smoke test, `--write-docs` to replace the block below)."
        )
        text = text.rstrip() + "\n\n" + intro + "\n\n" + body + "\n"
    DOCS.write_text(text, encoding="utf-8")


def listing_on_a_cluster(report: Report, n: int, quick: bool) -> None:
    """W1 again, with the same requests and console, on 3 masters with a replica each."""
    import tempfile

    sys.path.insert(0, str(ROOT))
    from tests.clusterkit import Cluster

    cluster = Cluster(Path(tempfile.mkdtemp(prefix="gk-bench-web-cluster-")))
    try:
        pfx = prefix()
        seed_store = RedisStore(cluster.url, prefix=pfx)
        t = perf()
        hold_requests(seed_store, n)
        print(f"(held {n:,} pending requests on the cluster in {perf() - t:.1f} s)", flush=True)
        seed_store.close()
        server = Server(cluster.url, pfx)
        try:
            with cluster.masters()[0].client() as ping:
                bench_listing(
                    report,
                    server,
                    ping,
                    n,
                    quick,
                    title="W1 on a 3-master Redis Cluster. Listing",
                    where="the same as above on a Redis Cluster of 3 masters with a replica "
                    "each (`tests/clusterkit.py`), started by this run; the PING goes to one "
                    "master.",
                )
        finally:
            server.stop()
    finally:
        cluster.stop()


def main() -> None:
    use_run_keys()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under 30 s")
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace the bench-web section of {DOCS.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="W1 on one node and then on a 3-master Redis Cluster (no W2, no --write-docs)",
    )
    opts = parser.parse_args()
    if opts.cluster and opts.write_docs:
        parser.error("--cluster prints its tables only (docs/performance.md, C3, quotes them)")
    import fastapi
    import uvicorn

    n = 1_000 if opts.quick else 10_000
    header = (
        f"`bench/web.py{' --quick' if opts.quick else ''}` — gatekeeper {gatekeeper.__version__}, "
        f"Python {platform.python_version()}, FastAPI {fastapi.__version__}, uvicorn "
        f"{uvicorn.__version__}, httpx {httpx.__version__}, {redis_version()}, "
        f"{platform.machine()} × {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
    )
    print(header + "\n", flush=True)
    report = Report()
    started = perf()
    with redis_server() as url:
        pfx = prefix()
        seed_store = RedisStore(url, prefix=pfx)
        t = perf()
        ids = hold_requests(seed_store, n)
        print(f"(held {n:,} pending requests in {perf() - t:.1f} s)", flush=True)
        seed_store.close()
        server = Server(url, pfx)
        try:
            bench_listing(report, server, redis.Redis.from_url(url), n, opts.quick)
            if not opts.cluster:
                bench_fanout(report, server, url, pfx, ids, opts.quick)
        finally:
            server.stop()
    if opts.cluster:
        listing_on_a_cluster(report, n, opts.quick)
    print(f"(total {perf() - started:.0f} s)")
    if opts.write_docs:
        write_docs(report.markdown(header))
        print(f"wrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
