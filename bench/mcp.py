"""The MCP gateway's overhead: a tool call through ``gatekeeper mcp serve`` against the same call
made without it, in the same run.

    .venv/bin/python bench/mcp.py             # the full run, about a minute and a half
    .venv/bin/python bench/mcp.py --quick     # a smoke test, under 30 s
    .venv/bin/python bench/mcp.py --profile   # also: where the gateway process spends its time

The upstream is the real ``mcp-server-time`` (``get_current_time``, ``{"timezone": "UTC"}``);
the client is the official ``mcp`` SDK (``ClientSession``); the gateway is a real
``gatekeeper mcp serve`` process on a ``RedisStore`` (a redis-server this benchmark starts on a
free port, no persistence; it never talks to any other Redis), under a policy whose default is
``require_approval`` and whose one rule allows ``server: time``. Every call is allowed, so it is
forwarded at once. Paths, measured in the same run, in interleaved batches:

1. direct over stdio: client -> mcp-server-time (the baseline);
2. pass-through over stdio: client -> a bare MCP proxy (the SDK's ``Server`` and the gateway's
   own ``Upstream`` client, no gate) -> mcp-server-time: what the extra hop costs by itself;
   and the same proxy with its stdin/stdout driven by the event loop instead of the SDK's
   worker threads (what that part of the hop costs);
3. gateway over stdio: client -> gatekeeper mcp serve -> mcp-server-time, as an agent's side
   of a deployment (trusted keys only, so it does not seal the audit chain); and a gateway that
   holds the signing key and so also seals, in a thread of its own;
4. pass-through over streamable HTTP: the same bare proxy served as the gateway serves HTTP
   (``StreamableHTTPSessionManager`` under uvicorn), upstream over stdio;
5. gateway over streamable HTTP (bearer token), upstream over stdio.

mcp-server-time has no HTTP mode, so an HTTP row has no direct baseline: its honest baseline is
the pass-through proxy served over HTTP the same way (4), and "the gate" is gateway minus
pass-through on the same transport. Measured alongside: an MCP ``ping`` on each session (the
transport and the SDK with no tool and no upstream), a redis-py ``PING`` (sync and asyncio) on
the gateways' Redis, to express the gate's cost in Redis round trips, redis-server's own time in
the gateway's scripts (INFO commandstats), and the CPU each process spent per call (/proc).

With ``--profile`` it then starts a gateway (stdio) whose functions on the allowed call's path
are wrapped with timers (in that process only; the gateway's code is not changed): µs per call
for each, nested as they call each other; then one under cProfile (CPU time, main thread), for
the rest of the picture. Both count only between SIGUSR1 and SIGUSR2, around the measured calls.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keys import use_run_keys  # bench/ is on sys.path when run as a script
from run import Report, free_port, pct, prefix, redis_server, redis_version

from gatekeeper._signing import SIGNING_ENV

HERE = Path(__file__).resolve().parent
# This file is named mcp.py: with bench/ on sys.path, `import mcp` would find it, not the SDK.
# bench/'s own modules are imported above; take bench/ off the path, here and in the children.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
assert "mcp" not in sys.modules, "the mcp SDK was imported before bench/ left sys.path"

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TIME_SERVER = str(BIN / "mcp-server-time")
TIME_ARGS = ["--local-timezone", "UTC"]
TOOL, ARGS = "get_current_time", {"timezone": "UTC"}
TOKEN = "gk_mcp_bench-agent-token"  # a throw-away token for this run's gateway
PYTHONPATH = os.pathsep.join(sys.path)

perf = time.perf_counter


# -- the deployment ------------------------------------------------------------------------------


def write_config(path: Path, url: str, store_prefix: str) -> Path:
    """``path``/gatekeeper.yaml (a directory of its own: the gateway keeps its pins file there)."""
    path.mkdir()
    path = path / "gatekeeper.yaml"
    sha = hashlib.sha256(TOKEN.encode()).hexdigest()
    path.write_text(
        "version: 1\n"
        f'store: {{url: "{url}", prefix: {store_prefix}}}\n'
        "approvers:\n  - {name: alice}\n"
        "policy:\n"
        "  version: 1\n"
        "  default: require_approval\n"
        "  rules:\n"
        "    - {id: time-is-harmless, match: {server: time}, verdict: allow}\n"
        "mcp:\n"
        "  agent: bench-bot\n"
        f"  http:\n    tokens:\n      - {{agent: remote-bot, token_sha256: {sha}}}\n"
        "  upstreams:\n"
        f"    - {{name: time, command: [{TIME_SERVER}, {', '.join(TIME_ARGS)}]}}\n",
        encoding="utf-8",
    )
    return path


def gateway_argv(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gatekeeper.cli", "mcp", "serve", "--config", str(config), *extra]


def child_env(*, signing: bool = False) -> dict[str, str]:
    """Our environment and a PYTHONPATH that finds the adapters; the run's decision keys.

    A gateway is an agent's side of a deployment: it gets the trusted public keys only (so it
    does not seal the audit chain; a deciding process does that elsewhere), unless ``signing``.
    """
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    if not signing:
        env.pop(SIGNING_ENV, None)
    return env


@contextlib.contextmanager
def http_process(argv: list[str], port: int, log: Path) -> Iterator[tuple[str, int]]:
    """A server process on ``port``; yields its /mcp URL and pid once it answers."""
    import httpx2

    with log.open("a") as errlog:
        proc = subprocess.Popen(argv, stdout=errlog, stderr=errlog, env=child_env())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx2.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"bench: {argv[:4]} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def stdio_session(
    command: str, args: list[str], log: Path, *, signing: bool = False
) -> AsyncIterator[Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=command, args=args, env=child_env(signing=signing))
    with log.open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[Any]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


# -- the bare pass-through proxy (a child process of this script) --------------------------------


def run_proxy(transport: str, port: int) -> None:
    """An MCP server that forwards every call to mcp-server-time, and does nothing else.

    Built as the gateway is built (the SDK's low-level ``Server``, the gateway's own
    ``Upstream`` client, the same HTTP session manager), minus the gate: no policy, no store,
    no audit, no schema check, no catalog, no auth.
    """
    import anyio
    from mcp import types
    from mcp.server import Server
    from mcp.server.stdio import stdio_server

    from gatekeeper._config_mcp import McpUpstream
    from gatekeeper_mcp._upstream import Upstream

    async def nothing() -> None:
        return None

    upstream = Upstream(
        McpUpstream(name="time", command=(TIME_SERVER, *TIME_ARGS)), on_tools_changed=nothing
    )

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.supervise)
            try:
                yield {}
            finally:
                upstream.stop()
                tg.cancel_scope.cancel()

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        tools = await upstream.list_tools()
        return types.ListToolsResult(
            tools=[t.model_copy(update={"name": f"time__{t.name}"}) for t in tools]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name = params.name.removeprefix("time__")
        return await upstream.call(name, dict(params.arguments or {}))

    server: Server[Any] = Server(
        "bench-pass-through", lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool
    )
    if transport == "stdio":

        async def serve() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(serve)
        return
    if transport == "stdio-loop":

        async def serve_on_loop() -> None:
            from gatekeeper_mcp._serve import _loop_pipes  # the gateway's own stdio transport

            pipes = await _loop_pipes()
            assert pipes is not None, "the benchmark runs its pass-through on pipes"
            async with stdio_server(*pipes) as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(serve_on_loop)
        return
    import uvicorn
    from mcp.server.streamable_http_manager import (
        StreamableHTTPASGIApp,
        StreamableHTTPSessionManager,
    )
    from starlette.applications import Starlette
    from starlette.routing import Route

    manager = StreamableHTTPSessionManager(app=server, json_response=False, stateless=False)

    @contextlib.asynccontextmanager
    async def app_lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(
        routes=[
            Route(
                "/mcp", endpoint=StreamableHTTPASGIApp(manager), methods=["GET", "POST", "DELETE"]
            )
        ],
        lifespan=app_lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- a profiled gateway (a child process of this script) ------------------------------------------


def run_profiled_gateway(out: str, config: str) -> None:
    """``gatekeeper mcp serve`` with cProfile on the main thread between SIGUSR1 and SIGUSR2."""
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU time: idle waits count for nothing

    def start(*_: Any) -> None:
        profiler.enable()

    def stop(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from gatekeeper.cli import main

    sys.argv = ["gatekeeper", "mcp", "serve", "--config", config]
    main()


INSTRUMENTED = (
    # (module, owner or None, attribute, label, coroutine?)
    ("gatekeeper_mcp._gateway", "Gateway", "_call_tool", "Gateway._call_tool", True),
    ("gatekeeper_mcp._gateway", "Gateway", "catalog", "Gateway.catalog", True),
    ("gatekeeper_mcp._gateway", None, "_invalid", "_gateway._invalid", False),
    ("gatekeeper_mcp._gateway", "Gateway", "_run", "Gateway._run", True),
    ("gatekeeper._gate", "Gatekeeper", "tool", "Gatekeeper.tool", False),
    ("gatekeeper._framework", "GuardedTool", "arun", "GuardedTool.arun", True),
    ("gatekeeper._gate", "Gatekeeper", "_prepare", "Gatekeeper._prepare", False),
    ("gatekeeper._tool", "MappingToolSpec", "bind", "MappingToolSpec.bind", False),
    ("gatekeeper._pipeline", None, "build_call", "_pipeline.build_call", False),
    ("gatekeeper.policy._engine", "Policy", "classify", "Policy.classify", False),
    ("gatekeeper._pipeline", None, "call_event", "_pipeline.call_event", False),
    ("gatekeeper.store._redis_async", "AsyncRedisStore", "admit", "AsyncRedisStore.admit", True),
    ("gatekeeper.store._redis_ops", None, "admit", "_redis_ops.admit", False),
    ("gatekeeper.store._redis_async", "AsyncRedisStore", "_run", "AsyncRedisStore._run", True),
    (
        "redis.asyncio.client",
        "Redis",
        "execute_command",
        "redis.asyncio Redis.execute_command",
        True,
    ),
    ("gatekeeper_mcp._upstream", "Upstream", "call", "Upstream.call", True),
    ("mcp.client.session", "ClientSession", "call_tool", "ClientSession.call_tool", True),
    ("mcp_types", "CallToolResult", "model_dump_json", "CallToolResult.model_dump_json", False),
    ("gatekeeper._gate", "Gatekeeper", "_outcome", "Gatekeeper._outcome", False),
    ("gatekeeper.store._redis", "RedisStore", "record_soon", "RedisStore.record_soon", False),
)


def run_timed_gateway(out: str, config: str) -> None:
    """``gatekeeper mcp serve`` with timers around the functions of an allowed call.

    Each wrapped function adds up its calls, its wall time (a coroutine's includes what it
    awaits) and the CPU time of the thread it ran on meanwhile (for a coroutine: also what
    other tasks of the loop did while it waited). Counting starts at SIGUSR1; the totals are
    written to ``out`` (JSON) at SIGUSR2. The gateway's code is not changed: its functions are
    wrapped, in this process only.
    """
    import functools
    import importlib
    import json

    totals: dict[str, list[float]] = {}
    on = [False]
    cpu = time.thread_time

    def wrap(module: str, owner: str | None, attr: str, label: str, is_async: bool) -> None:
        holder = importlib.import_module(module)
        if owner is not None:
            holder = getattr(holder, owner)
        real = getattr(holder, attr)
        slot = totals.setdefault(label, [0, 0.0, 0.0])

        def add(t0: float, c0: float) -> None:
            if on[0]:
                slot[0] += 1
                slot[1] += perf() - t0
                slot[2] += cpu() - c0

        if is_async:

            @functools.wraps(real)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0, c0 = perf(), cpu()
                try:
                    return await real(*args, **kwargs)
                finally:
                    add(t0, c0)

            setattr(holder, attr, timed_async)
        else:

            @functools.wraps(real)
            def timed(*args: Any, **kwargs: Any) -> Any:
                t0, c0 = perf(), cpu()
                try:
                    return real(*args, **kwargs)
                finally:
                    add(t0, c0)

            setattr(holder, attr, timed)

    for spec in INSTRUMENTED:
        wrap(*spec)

    def start(*_: Any) -> None:
        for slot in totals.values():
            slot[:] = [0, 0.0, 0.0]
        on[0] = True

    def stop(*_: Any) -> None:
        on[0] = False
        Path(out).write_text(json.dumps(totals), encoding="utf-8")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from gatekeeper.cli import main

    sys.argv = ["gatekeeper", "mcp", "serve", "--config", config]
    main()


# -- measuring ------------------------------------------------------------------------------------


class Way:
    """One way of making the call (or an MCP ping), its latencies and the CPU it cost."""

    def __init__(self, label: str, session: Any, tool: str | None) -> None:
        self.label = label
        self.session = session
        self.tool = tool  # None: an MCP ping on the session
        self.times: list[float] = []
        self.errors = 0
        self.pids: dict[str, list[int]] = {}  # role -> processes whose CPU this way costs
        self.cpu: dict[str, float] = {}  # role -> CPU seconds over the measured batches
        self.redis: Any = None  # a redis-py client: count the EVALSHAs made during the batches
        self.evalsha = [0, 0]  # calls, µs of redis-server's own time

    async def once(self) -> float:
        if self.tool is None:
            t0 = perf()
            await self.session.send_ping()
            return perf() - t0
        t0 = perf()
        result = await self.session.call_tool(self.tool, ARGS)
        took = perf() - t0
        if result.is_error:
            self.errors += 1
        return took

    async def check(self) -> None:
        if self.tool is None:
            return
        result = await self.session.call_tool(self.tool, ARGS)
        data = result.structured_content or {}
        if result.is_error or data.get("timezone") != "UTC":
            sys.exit(f"bench: {self.label}: unexpected result {result!r}")

    def cpu_now(self) -> dict[str, float]:
        now = {"client": time.process_time()}
        for role, pids in self.pids.items():
            now[role] = sum(process_cpu(p) for p in pids)
        return now

    def evalsha_now(self) -> tuple[int, int]:
        if self.redis is None:
            return 0, 0
        found = self.redis.info("commandstats").get("cmdstat_evalsha", {})
        return int(found.get("calls", 0)), int(found.get("usec", 0))

    async def batch(self, n: int) -> None:
        scripts = self.evalsha_now()
        before = self.cpu_now()
        for _ in range(n):
            self.times.append(await self.once())
        after = self.cpu_now()
        scripts_after = self.evalsha_now()
        self.evalsha[0] += scripts_after[0] - scripts[0]
        self.evalsha[1] += scripts_after[1] - scripts[1]
        for role, t in after.items():
            self.cpu[role] = self.cpu.get(role, 0.0) + t - before[role]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def p50(xs: list[float]) -> float:
    return pct(xs, 50)


def p99(xs: list[float]) -> float:
    return pct(xs, 99)


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) ``pid`` has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by "tid:name"."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{tid}:{name}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def children(pid: int) -> list[int]:
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def my_child(*needles: str) -> int:
    """The one child process of this one whose command line holds every needle."""
    found = [p for p in children(os.getpid()) if all(n in cmdline(p) for n in needles)]
    if len(found) != 1:
        raise RuntimeError(f"expected one child process with {needles}, found {found}")
    return found[0]


def serving(pid: int, role: str) -> dict[str, list[int]]:
    """A server process and the upstream it started, by role."""
    return {role: [pid], "upstream": children(pid)}


async def measure(
    report: Report, configs: dict[str, Path], url: str, tmp: Path, quick: bool
) -> None:
    import redis
    import redis.asyncio

    n = 300 if quick else 2_000
    batch = 50 if quick else 100
    warm = 50 if quick else 200
    log = tmp / "servers.log"
    me = str(HERE / "mcp.py")
    gated = f"time__{TOOL}"
    async with contextlib.AsyncExitStack() as stack:
        gw_port, px_port = free_port(), free_port()
        gw_url, gw_http_pid = stack.enter_context(
            http_process(
                gateway_argv(configs["http"], "--http", "--port", str(gw_port)), gw_port, log
            )
        )
        px_url, px_http_pid = stack.enter_context(
            http_process([sys.executable, me, "--_proxy", "http", str(px_port)], px_port, log)
        )
        direct = await stack.enter_async_context(stdio_session(TIME_SERVER, TIME_ARGS, log))
        proxy = await stack.enter_async_context(
            stdio_session(sys.executable, [me, "--_proxy", "stdio", "0"], log)
        )
        proxy_loop = await stack.enter_async_context(
            stdio_session(sys.executable, [me, "--_proxy", "stdio-loop", "0"], log)
        )
        gw = await stack.enter_async_context(
            stdio_session(sys.executable, gateway_argv(configs["agent"])[1:], log)
        )
        gw_seal = await stack.enter_async_context(
            stdio_session(sys.executable, gateway_argv(configs["sealing"])[1:], log, signing=True)
        )
        proxy_http = await stack.enter_async_context(http_session(px_url, None))
        gw_http = await stack.enter_async_context(http_session(gw_url, TOKEN))
        calls = {
            "direct": Way("direct, stdio", direct, TOOL),
            "proxy": Way("pass-through, stdio", proxy, gated),
            "proxy_loop": Way("pass-through, stdio on the loop", proxy_loop, gated),
            "gateway": Way("gateway, stdio", gw, gated),
            "sealing": Way("gateway, stdio, sealing", gw_seal, gated),
            "proxy_http": Way("pass-through, HTTP", proxy_http, gated),
            "gateway_http": Way("gateway, HTTP", gw_http, gated),
        }
        pings = {
            "direct": Way("ping, direct stdio", direct, None),
            "gateway": Way("ping, gateway stdio", gw, None),
            "proxy_http": Way("ping, pass-through HTTP", proxy_http, None),
            "gateway_http": Way("ping, gateway HTTP", gw_http, None),
        }
        redis_pid = my_child("redis-server")
        calls["direct"].pids = {"upstream": [my_child("mcp-server-time")]}
        calls["proxy"].pids = serving(my_child("--_proxy stdio 0"), "server")
        calls["proxy_loop"].pids = serving(my_child("--_proxy stdio-loop"), "server")
        calls["gateway"].pids = serving(my_child(str(configs["agent"])), "server")
        calls["sealing"].pids = serving(my_child(str(configs["sealing"])), "server")
        calls["proxy_http"].pids = serving(px_http_pid, "server")
        calls["gateway_http"].pids = serving(gw_http_pid, "server")
        for key in ("gateway", "sealing", "gateway_http"):
            calls[key].pids["redis"] = [redis_pid]
        rds = redis.Redis.from_url(url)
        ards = redis.asyncio.Redis.from_url(url)
        calls["gateway"].redis = rds
        redis_pings: list[float] = []
        aredis_pings: list[float] = []
        everything = [*calls.values(), *pings.values()]
        for w in everything:
            await w.check()
            for _ in range(warm):
                await w.once()
            rds.ping()
            await ards.ping()
        rds.config_resetstat()  # from here on, INFO commandstats counts the measured calls
        started = perf()
        rounds = n // batch
        for r in range(rounds):
            gc.collect()
            order = everything[r % len(everything) :] + everything[: r % len(everything)]
            for w in order:
                await w.batch(batch)
            for _ in range(batch):
                t0 = perf()
                rds.ping()
                redis_pings.append(perf() - t0)
            for _ in range(batch):
                t0 = perf()
                await ards.ping()
                aredis_pings.append(perf() - t0)
        took = perf() - started
        rds.close()
        await ards.aclose()

    errors = {w.label: w.errors for w in calls.values() if w.errors}
    if errors:
        sys.exit(f"bench: calls came back with isError: {errors}")
    t = {k: w.times for k, w in calls.items()}
    d = t["direct"]
    ping_r = p50(redis_pings)

    def row(label: str, xs: list[float], base: list[float] | None, note: str = "") -> list[str]:
        if base is None:
            return [label, ms(p50(xs)), ms(p99(xs)), "—", "—", "—", note]
        return [
            label,
            ms(p50(xs)),
            ms(p99(xs)),
            f"{(p50(xs) - p50(base)) * 1e3:+.3f} ms",
            f"{(p99(xs) - p99(base)) * 1e3:+.3f} ms",
            f"{p50(xs) / p50(base):.2f}×",
            note,
        ]

    added = p50(t["gateway"]) - p50(d)
    report.table(
        "M1. One allowed tool call (`get_current_time`), client → … → mcp-server-time",
        ["path", "p50", "p99", "added p50", "added p99", "ratio p50", "against"],
        [
            row("direct, stdio: client → mcp-server-time", d, None),
            row(
                "pass-through, stdio, the SDK's stdio transport (no gate)", t["proxy"], d, "direct"
            ),
            row(
                "pass-through, stdio on the event loop, as the gateway serves (no gate)",
                t["proxy_loop"],
                d,
                "direct",
            ),
            row("**gateway, stdio**", t["gateway"], d, "direct"),
            row(
                "gateway, stdio: the gate alone",
                t["gateway"],
                t["proxy_loop"],
                "pass-through on the loop",
            ),
            row("gateway, stdio, holding the signing key (seals)", t["sealing"], d, "direct"),
            row("pass-through, streamable HTTP (no gate)", t["proxy_http"], d, "direct"),
            row("**gateway, streamable HTTP**", t["gateway_http"], d, "direct"),
            row(
                "gateway, streamable HTTP: the gate alone",
                t["gateway_http"],
                t["proxy_http"],
                "pass-through, HTTP",
            ),
        ],
        [
            f"{n:,} calls per path after {warm} warm-up calls, in interleaved batches of "
            f"{batch} ({took:.0f} s in all); latency is the client's `await call_tool(...)`; "
            "added = the row's percentile minus that of the path it is against (p99: the "
            "difference of the two p99s).",
            "direct: mcp-server-time has no HTTP mode, so the HTTP rows' fair baseline is the "
            "pass-through served over HTTP the same way (the SDK's session manager under uvicorn); "
            "against direct stdio they also pay for HTTP itself.",
            "pass-through: the SDK's `Server` forwarding to mcp-server-time through the gateway's "
            "own `Upstream` client: the extra process hop, with no gate (no policy, store, audit, "
            "schema check, catalog or token check). 'On the event loop': the same, its stdin and "
            "stdout read and written by asyncio (as `gatekeeper mcp serve` does on pipes) instead "
            "of the SDK's `anyio.wrap_file` (a worker thread for each line read, each write and "
            "each flush); the gate alone is measured against it.",
            "the gateways are an agent's side of a deployment (trusted keys only: they journal, "
            "a deciding process seals); the sealing row's gateway holds the signing key and so "
            "also seals the audit chain in a thread of its own.",
            f"target: gateway over stdio within 1 ms (p50) of direct: {added * 1e3:+.3f} ms, "
            f"{'PASS' if added < 1e-3 else 'MISS'}.",
        ],
    )
    gate_stdio = p50(t["gateway"]) - p50(t["proxy_loop"])
    gate_http = p50(t["gateway_http"]) - p50(t["proxy_http"])
    hop = p50(t["proxy_loop"]) - p50(d)
    http_ping = p50(pings["gateway_http"].times)
    bare = p50(t["gateway_http"]) - http_ping - p50(d)

    counted = calls["gateway"].evalsha
    scripts = counted[0] / len(calls["gateway"].times)
    script_us = counted[1] / len(calls["gateway"].times)

    def cost(label: str, seconds: float) -> list[str]:
        return [label, f"{seconds * 1e3:+.3f} ms", "", f"{seconds / ping_r:.1f}"]

    report.table(
        "M2. Round trips in the same run, and the added cost in Redis PINGs",
        ["measure", "p50", "p99", "in PINGs (p50)"],
        [
            [
                "redis-py `PING` to the gateway's redis-server",
                ms(ping_r),
                ms(p99(redis_pings)),
                "1",
            ],
            [
                "redis-py asyncio `PING` (`redis.asyncio`, as the gateway's store)",
                ms(p50(aredis_pings)),
                ms(p99(aredis_pings)),
                f"{p50(aredis_pings) / ping_r:.1f}",
            ],
            [
                f"redis-server's own time in `EVALSHA`, per gateway call over stdio ({scripts:.2f} "
                "EVALSHA per call; INFO commandstats)",
                f"{script_us / 1e3:.3f} ms",
                "",
                f"{script_us / 1e6 / ping_r:.1f}",
            ],
            *[
                [
                    f"MCP `ping`, {w.label.removeprefix('ping, ')}",
                    ms(p50(w.times)),
                    ms(p99(w.times)),
                    f"{p50(w.times) / ping_r:.1f}",
                ]
                for w in pings.values()
            ],
            cost("gateway, stdio − direct: all that the gateway adds", added),
            cost("  of which the hop (pass-through on the loop − direct)", hop),
            cost("  of which the gate (gateway − pass-through on the loop)", gate_stdio),
            cost("the gate over HTTP (gateway − pass-through, HTTP)", gate_http),
            cost("gateway HTTP call − its MCP ping − direct stdio call", bare),
        ],
        [
            "MCP `ping`: `session.send_ping()` on the session the calls use: the transport and "
            "both ends of the SDK, no tool, no upstream.",
            "an allowed call makes one Redis round trip on its path (the admit EVALSHA); its "
            "outcome event is written off the path by the store's background thread.",
        ],
    )

    def per_call(w: Way, role: str) -> str:
        return f"{w.cpu[role] / len(w.times) * 1e6:.0f}" if role in w.cpu else "—"

    roles = ("client", "server", "upstream", "redis")
    rows = []
    for w in calls.values():
        total = sum(w.cpu.get(r, 0.0) for r in roles) / len(w.times) * 1e6
        rows.append([w.label, *(per_call(w, r) for r in roles), f"{total:.0f}"])
    report.table(
        "M3. CPU per call, by process (µs)",
        ["path", "client", "gateway / pass-through", "mcp-server-time", "redis-server", "all"],
        rows,
        [
            "from /proc (user + system, every thread) around each measured batch, over "
            f"{n:,} calls per path; clock ticks are 10 ms, so each figure is ± {1e4 / n:.0f} µs.",
            "client: this process (the SDK client); the gateways' redis-server column is the "
            "one redis-server all of them share, during that path's batches.",
        ],
    )


async def drive_gateway(
    argv: list[str], log: Path, n: int, warm: int
) -> tuple[int, list[float], dict[str, float], float]:
    """Start a gateway whose counting SIGUSR1 starts and SIGUSR2 ends; make ``n`` calls.

    Returns its pid, the calls' latencies, each thread's CPU seconds over them (/proc) and
    its upstream's.
    """
    tool = f"time__{TOOL}"
    async with stdio_session(sys.executable, argv, log) as session:
        for _ in range(warm):
            await session.call_tool(tool, ARGS)
        pid = my_child(argv[1])
        (upstream,) = children(pid)
        os.kill(pid, signal.SIGUSR1)
        await session.send_ping()  # the signal is handled before the ping is answered
        cpu0, up0 = thread_cpu(pid), process_cpu(upstream)
        lat: list[float] = []
        for _ in range(n):
            t0 = perf()
            await session.call_tool(tool, ARGS)
            lat.append(perf() - t0)
        cpu1, up1 = thread_cpu(pid), process_cpu(upstream)
        os.kill(pid, signal.SIGUSR2)
        await session.send_ping()
    threads = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    return pid, lat, threads, up1 - up0


async def profile(report: Report, config: Path, tmp: Path, quick: bool) -> None:
    """Where an allowed call's time goes in the gateway process (stdio)."""
    import json

    import anyio

    n = 500 if quick else 2_000
    me = str(HERE / "mcp.py")

    # 1. timers around the functions of the call (cheap: the figures are close to the real ones)
    timed = tmp / "timed.json"
    pid, lat, threads, upstream = await drive_gateway(
        [me, "--_timed-gateway", str(timed), str(config)], tmp / "timed.log", n, 300
    )
    for _ in range(50):
        if timed.exists():
            break
        await anyio.sleep(0.1)
    totals: dict[str, list[float]] = json.loads(timed.read_text())

    def part(label: str) -> tuple[float, float]:
        """Wall and CPU µs per call of one wrapped function."""
        _, wall, cpu = totals[label]
        return wall / n * 1e6, cpu / n * 1e6

    def minus(first: str, *others: str) -> tuple[float, float]:
        wall, cpu = part(first)
        for other in others:
            wall, cpu = wall - part(other)[0], cpu - part(other)[1]
        return wall, cpu

    nesting = [
        ("Gateway._call_tool", 0, "the whole `tools/call` handler"),
        ("Gateway.catalog", 1, "the offered tools: lock, staleness check, dict of all offers"),
        ("_gateway._invalid", 1, "jsonschema check of the arguments"),
        ("Gateway._run", 1, ""),
        ("Gatekeeper.tool", 2, "a new GuardedTool for each call"),
        ("GuardedTool.arun", 2, "the guarded call, forwarding included"),
        ("Gatekeeper._prepare", 3, "bind + build_call + classify"),
        ("MappingToolSpec.bind", 4, "JSON-safe copy, canonical JSON of the arguments"),
        ("_pipeline.build_call", 4, "the ToolCall: id, digest, session"),
        ("Policy.classify", 4, ""),
        ("_pipeline.call_event", 3, "the call's audit draft"),
        ("AsyncRedisStore.admit", 3, "the one store step before forwarding"),
        ("_redis_ops.admit", 4, "building the op (keys, args, encoded draft)"),
        ("AsyncRedisStore._run", 4, "the admit script"),
        ("redis.asyncio Redis.execute_command", 5, "EVALSHA on redis-py's asyncio client"),
        ("Upstream.call", 3, "forwarding to mcp-server-time"),
        ("ClientSession.call_tool", 4, "the SDK client's call"),
        ("CallToolResult.model_dump_json", 3, "the result as JSON, for its size and sha256"),
        ("Gatekeeper._outcome", 3, "the outcome event"),
        ("RedisStore.record_soon", 4, "queued for the store's background thread"),
    ]

    def line(name: str, wall_cpu: tuple[float, float], count: str, what: str) -> list[str]:
        return [name, f"{wall_cpu[0]:.0f}", f"{wall_cpu[1]:.0f}", count, what]

    rows = [
        line(
            "&nbsp;" * 4 * depth + f"`{label}`",
            part(label),
            f"{totals[label][0] / n:g}",
            what,
        )
        for label, depth, what in nesting
    ]
    rows += [
        line(
            "rest of `Gateway._run`",
            minus("Gateway._run", "Gatekeeper.tool", "GuardedTool.arun"),
            "",
            "task group, keep-alive task, `on_held`, result",
        ),
        line(
            "rest of `GuardedTool.arun`",
            minus(
                "GuardedTool.arun",
                "Gatekeeper._prepare",
                "_pipeline.call_event",
                "AsyncRedisStore.admit",
                "Upstream.call",
                "CallToolResult.model_dump_json",
                "Gatekeeper._outcome",
            ),
            "",
            "the flow and its driver (`adrive`, `_cancellable`'s task), sha256, excerpt",
        ),
        line(
            "rest of `AsyncRedisStore.admit`",
            minus("AsyncRedisStore.admit", "_redis_ops.admit", "AsyncRedisStore._run"),
            "",
            "`check_event_ids`, `_ensure`, `_check_lifted`, sealer kick",
        ),
        line(
            "rest of `AsyncRedisStore._run`",
            minus("AsyncRedisStore._run", "redis.asyncio Redis.execute_command"),
            "",
            "`_state`, `_call` and its retry wrapper, `Script.__call__`, parsing the reply",
        ),
        line(
            "rest of `Gateway._call_tool`",
            minus("Gateway._call_tool", "Gateway.catalog", "_gateway._invalid", "Gateway._run"),
            "",
            "identity, `gate.session`",
        ),
        line(
            "**the handler beyond forwarding**",
            minus("Gateway._call_tool", "Upstream.call"),
            "",
            "`_call_tool` − `Upstream.call`: what the pass-through does not do",
        ),
    ]
    main_tid = f"{pid}:"
    main_cpu = sum(v for k, v in threads.items() if k.startswith(main_tid)) / n * 1e6
    other_cpu = sum(v for k, v in threads.items() if not k.startswith(main_tid)) / n * 1e6
    report.table(
        "P1. Inside the gateway (stdio): where an allowed call's time goes, µs per call",
        ["function (nesting by indent)", "wall", "main-thread CPU", "calls per call", "what"],
        rows,
        [
            f"{n:,} calls through a gateway whose functions are wrapped with timers; the client "
            f"saw p50 {ms(p50(lat))}. wall: perf_counter, a coroutine's awaits included; "
            "main-thread CPU: thread_time over the same span, so for a coroutine it also holds "
            "what other tasks of the loop ran while it waited (wall − CPU: time the thread was "
            "idle or waiting for a core). 'rest of' rows are differences.",
            f"the gateway's CPU per call from /proc: main thread {main_cpu:.0f} µs, its other "
            f"threads {other_cpu:.0f} µs (the SDK's stdio worker threads, the store's background "
            f"writer); mcp-server-time {upstream / n * 1e6:.0f} µs (± {1e4 / n:.0f} µs: 10 ms "
            "ticks).",
        ],
    )

    # 2. cProfile (CPU time), for the rest of the picture: slower, so read it relatively
    out = tmp / "gateway.prof"
    m = n // 2
    await drive_gateway(
        [me, "--_profiled-gateway", str(out), str(config)], tmp / "profiled.log", m, 300
    )
    for _ in range(50):
        if out.exists():
            break
        await anyio.sleep(0.1)
    entries = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    prefixes = sorted(
        {str(ROOT) + "/", *(p + "/" for p in sys.path if p.endswith("site-packages"))},
        key=len,
        reverse=True,
    )

    def name(key: tuple[str, int, str]) -> str:
        file, line, fn = key
        for root in prefixes:
            if file.startswith(root):
                file = file[len(root) :]
                break
        return f"{file}:{line}({fn})" if line else fn

    def per(seconds: float) -> str:
        return f"{seconds / m * 1e6:.1f}"

    by_own = sorted(entries.items(), key=lambda kv: -kv[1][2])[:15]
    report.table(
        "P2. The gateway's main thread under cProfile (CPU time): top functions by own time",
        ["function", "own µs per call", "calls per call", "cumulative µs per call"],
        [[f"`{name(k)}`", per(v[2]), f"{v[1] / m:.1f}", per(v[3])] for k, v in by_own],
        [
            f"{m:,} calls; the profiler's own cost is in every figure (the main thread took "
            f"{total / m * 1e6:.0f} µs per call under it): compare the rows with each other, and "
            "take absolute figures from P1. A coroutine counts one call per resumption."
        ],
    )
    ours = [
        (k, v)
        for k, v in entries.items()
        if k[0].startswith((str(ROOT / "gatekeeper"), str(ROOT / "adapters")))
    ]
    by_cum = sorted(ours, key=lambda kv: -kv[1][3])[:20]
    report.table(
        "P3. The same profile: gatekeeper's own functions by cumulative time",
        ["function", "cumulative µs per call", "own µs per call", "calls per call"],
        [[f"`{name(k)}`", per(v[3]), per(v[2]), f"{v[1] / m:.1f}"] for k, v in by_cum],
        [
            "cumulative: the CPU time of everything it called, on the main thread; a coroutine's "
            "while it runs, not while it awaits. Inflated by the profiler, as P2."
        ],
    )
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("cumulative").print_stats(80)
    stats.sort_stats("tottime").print_stats(60)
    kept = Path(tempfile.gettempdir()) / "gk-bench-mcp-profile.txt"
    kept.write_text(text.getvalue(), encoding="utf-8")
    shutil.copy(out, kept.with_suffix(".prof"))
    print(f"(the whole profile: {kept}; for pstats: {kept.with_suffix('.prof')})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under 30 s")
    parser.add_argument("--profile", action="store_true", help="also profile the gateway")
    parser.add_argument("--_proxy", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_profiled-gateway", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_timed-gateway", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._proxy:
        run_proxy(opts._proxy[0], int(opts._proxy[1]))
        return
    if opts._profiled_gateway:
        run_profiled_gateway(*opts._profiled_gateway)
        return
    if opts._timed_gateway:
        run_timed_gateway(*opts._timed_gateway)
        return
    use_run_keys()
    import anyio

    import gatekeeper

    flags = " --quick" * opts.quick + " --profile" * opts.profile
    header = (
        f"`bench/mcp.py{flags}` — gatekeeper {gatekeeper.__version__}, "
        f"Python {platform.python_version()}, mcp {mcp_version()}, {redis_version()}, "
        f"{platform.machine()} × {os.cpu_count()} CPUs (client, gateway, upstream and Redis "
        f"share them), {time.strftime('%Y-%m-%d')}"
    )
    print(header + "\n", flush=True)
    report = Report()
    started = perf()
    with redis_server() as url, tempfile.TemporaryDirectory(prefix="gk-bench-mcp-") as tmp:
        work = Path(tmp)
        agents = prefix()  # the agent-side gateways share one deployment
        configs = {
            "agent": write_config(work / "agent", url, agents),
            "http": write_config(work / "http", url, agents),
            "sealing": write_config(work / "sealing", url, prefix()),
            "profiled": write_config(work / "profiled", url, prefix()),
        }
        try:
            anyio.run(measure, report, configs, url, work, opts.quick)
            if opts.profile:
                anyio.run(profile, report, configs["profiled"], work, opts.quick)
        except BaseException:
            for log in work.glob("*.log"):
                print(f"--- {log.name}:\n{log.read_text()[-4000:]}", file=sys.stderr)
            raise
    print(f"(total {perf() - started:.0f} s)")


def mcp_version() -> str:
    from importlib.metadata import version

    return version("mcp")


if __name__ == "__main__":
    main()
