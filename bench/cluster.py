"""The store on one Redis node and on a 3-master Redis Cluster, measured in the same run.

    .venv/bin/python bench/cluster.py            # the full run (a few minutes)
    .venv/bin/python bench/cluster.py --quick    # a smoke test

Both set-ups are real ``redis-server`` processes this script starts (no
persistence, temp dirs) and stops: one node, and a cluster of 3 masters with
a replica each (``tests/clusterkit.py``, as the tests use). For each:

- holds and decisions per second (blocking face, 4 threads), and per Redis
  CPU-second (``used_cpu_user + used_cpu_sys`` of the masters, from ``INFO``);
- ``redis-benchmark`` SET on the same servers, same run, as the baseline:
  the ratios say how much of Redis's plain write rate a hold or decision is;
- how the work splits over the masters (keys and commands per master);
- memory per request, held and decided (``used_memory`` of the masters);
- a page of the console's queue (``store.queue(limit=50)``) with 10,000 pending;
- Redis CPU per decision with 1 and with 100 agent processes waiting on the
  same held calls of 100 agents (each process holds one subscription).

This machine has 2 cores for everything (Redis servers, the benchmark's
threads): a cluster can't show more throughput than one node here; what it
shows is that each master does a share of the work.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _keys import use_run_keys  # noqa: E402  (bench/ is on sys.path when run as a script)

from gatekeeper import Gatekeeper, Policy, RedisStore  # noqa: E402
from tests.clusterkit import Cluster, Node  # noqa: E402
from tests.conftest import _free_port  # noqa: E402
from tests.storekit import held_event, make_request  # noqa: E402

perf = time.perf_counter
THREADS = 4


class Target:
    """One set-up: its URL and its masters (to read INFO from)."""

    def __init__(self, name: str, url: str, masters: list[Node]) -> None:
        self.name = name
        self.url = url
        self.masters = masters

    def cpu(self) -> float:
        total = 0.0
        for node in self.masters:
            with node.client() as c:
                info = c.info("cpu")
                total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total

    def memory(self) -> int:
        """The masters' memory for data: ``used_memory`` without client and replication buffers."""
        total = 0
        for node in self.masters:
            with node.client() as c:
                info = c.info("memory")
                total += int(info["used_memory"]) - sum(
                    int(info.get(k, 0))
                    for k in ("mem_clients_slaves", "mem_clients_normal", "mem_replication_backlog")
                )
        return total

    def per_master(self, what: str) -> list[int]:
        out = []
        for node in self.masters:
            with node.client() as c:
                if what == "keys":
                    out.append(int(c.dbsize()))
                else:
                    stats = c.info("commandstats")
                    out.append(sum(int(v["calls"]) for v in stats.values()))
        return out

    def reset_stats(self) -> None:
        for node in self.masters:
            with node.client() as c:
                c.config_resetstat()


def redis_benchmark_set(target: Target, n: int) -> tuple[float, float]:
    """SET requests per second by ``redis-benchmark`` on the same server(s), 4 clients, and
    per Redis CPU-second; its keys are flushed after (these servers are this script's own)."""
    cpu0 = target.cpu()
    rate = _redis_benchmark(target, n)
    per_cpu = n / max(target.cpu() - cpu0, 1e-9)
    for node in target.masters:
        with node.client() as c:
            c.flushall()
    return rate, per_cpu


def _redis_benchmark(target: Target, n: int) -> float:
    node = target.masters[0]
    argv = ["redis-benchmark", "-p", str(node.port), "-t", "set", "-n", str(n), "-c", "4"]
    argv += ["-r", "100000", "--csv"]
    if len(target.masters) > 1:
        argv.append("--cluster")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    for line in out.splitlines():
        if line.startswith('"SET"'):
            return float(line.split(",")[1].strip('"'))
    raise RuntimeError(f"redis-benchmark said: {out}")


def in_threads(work: list[Any], fn: Any) -> float:
    """Run ``fn(item)`` for every item on THREADS threads; seconds taken."""
    chunks = [work[i::THREADS] for i in range(THREADS)]

    def run(chunk: list[Any]) -> None:
        for item in chunk:
            fn(item)

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = perf()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return perf() - start


def measure(target: Target, n: int, pages: int) -> dict[str, Any]:
    prefix = f"bench{int(time.time())}"
    store = RedisStore(target.url, prefix=prefix)
    store.load_scripts()
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    clock = store.clock
    agents = [f"agent-{i:02d}" for i in range(20)]
    out: dict[str, Any] = {"name": target.name}
    try:
        reqs = [
            make_request(clock, agent=agents[i % 20], args={"n": i}, timeout=86400)
            for i in range(n)
        ]
        target.reset_stats()
        mem0, cpu0 = target.memory(), target.cpu()
        took = in_threads(reqs, lambda r: store.hold(r, held_event(r)))
        cpu1, mem1 = target.cpu(), target.memory()
        out["holds_per_s"] = n / took
        out["holds_per_cpu_s"] = n / max(cpu1 - cpu0, 1e-9)
        out["mem_held"] = (mem1 - mem0) / n
        out["keys"] = target.per_master("keys")
        out["commands_hold"] = target.per_master("commands")

        store.flush()  # the audit events of the holds sealed first: not measured with the pages
        # The console's page of the queue with n pending. `gatekeeper serve` freezes its
        # start-up heap; here the benchmark's own n requests (in `reqs`) would otherwise be
        # walked by every full collection inside a page: out of sight for the pages.
        gc.collect()
        gc.freeze()
        xs = []
        for i in range(pages):
            offset = (i * 7919) % max(n - 50, 1)
            start = perf()
            page, total = store.queue(limit=50, offset=offset)
            xs.append((perf() - start) * 1000)
            assert total == n
            assert len(page) == 50
        out["page_p50"], out["page_p99"] = statistics.median(xs), sorted(xs)[int(0.99 * len(xs))]
        firsts = []
        for _ in range(pages):
            start = perf()
            store.queue(limit=50, offset=0)
            firsts.append((perf() - start) * 1000)
        out["first_p50"] = statistics.median(firsts)
        gc.unfreeze()

        target.reset_stats()
        cpu0 = target.cpu()
        took = in_threads([r.id for r in reqs], lambda rid: gate.approve(rid, approver="alice"))
        store.flush()  # and the decisions' (their sealing is part of a decision's cost)
        took = max(took, 1e-9)
        cpu1 = target.cpu()
        out["decisions_per_s"] = n / took
        out["decisions_per_cpu_s"] = n / max(cpu1 - cpu0, 1e-9)
        out["commands_decide"] = target.per_master("commands")
        store.flush()
        out["mem_decided"] = (target.memory() - mem0) / n
    finally:
        gate.close()
    return out


def subscribers_cost(
    target: Target, decisions: int, rounds: int = 3
) -> dict[int, tuple[float, float]]:
    """Redis CPU µs per decision, and messages heard per decision, with 1 and 100 agent processes.

    The same work both ways: ``decisions`` held calls of 100 agents, approved
    by another process. Each agent process is what a process of
    ``RedisStore`` runs to wait: its own subscription (a
    :class:`~gatekeeper.store._wakes.Wakes`, one connection and thread)
    watching the held requests of its agents — all 100 agents in one process,
    or one agent in each of 100 processes. Measured ``rounds`` times each,
    alternating; the medians are reported (Redis CPU per decision varies from
    run to run on this shared machine).
    """
    from gatekeeper.store._wakes import Wakes

    prefix = f"subs{int(time.time())}"
    store = RedisStore(target.url, prefix=prefix)
    store.load_scripts()
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    agents = [f"agent-{i}" for i in range(100)]
    samples: dict[int, list[tuple[float, float]]] = {1: [], 100: []}
    try:
        for r_ in range(rounds):
            for count in (1, 100):
                reqs = [
                    make_request(
                        store.clock, agent=agents[i % 100], args={"n": i, "r": r_}, timeout=3600
                    )
                    for i in range(decisions)
                ]
                for r in reqs:
                    store.hold(r, held_event(r))
                heard = [0]
                lock = threading.Lock()
                processes: list[Wakes] = []
                for p in range(count):
                    wakes = Wakes(store.endpoint, socket_timeout=5)
                    real = wakes._wake

                    def counted(rid: Any = None, channel: Any = None, real: Any = real) -> None:
                        if rid is not None:
                            with lock:
                                heard[0] += 1
                        real(rid, channel)

                    wakes._wake = counted  # type: ignore[method-assign]
                    for r in reqs:
                        if agents.index(r.call.agent) % count == p:
                            wakes.watch(r.id, store.keys.of(r.call.agent).channel)
                    processes.append(wakes)
                for wakes in processes:
                    assert wakes.subscribed.wait(10), "a subscription was not confirmed"
                time.sleep(0.5)  # every channel's confirmation in
                cpu0 = target.cpu()
                for r in reqs:
                    gate.approve(r.id, approver="alice")
                cpu = target.cpu() - cpu0
                deadline = time.monotonic() + 10
                while heard[0] < decisions and time.monotonic() < deadline:
                    time.sleep(0.01)
                samples[count].append((cpu / decisions * 1e6, heard[0] / decisions))
                for wakes in processes:
                    wakes.close()
    finally:
        gate.close()
    return {
        count: (
            statistics.median(cpu for cpu, _ in xs),
            statistics.median(h for _, h in xs),
        )
        for count, xs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    opts = parser.parse_args()
    use_run_keys()
    n = 1_000 if opts.quick else 10_000
    pages = 50 if opts.quick else 300
    decisions = 100 if opts.quick else 1_000
    work = Path(tempfile.mkdtemp(prefix="gk-bench-cluster-"))
    single = Node(["--save", "", "--appendonly", "no"], work / "single", _free_port())
    cluster = Cluster(work / "cluster")
    targets = [
        Target("one node", f"redis://127.0.0.1:{single.port}/0", [single]),
        Target("cluster, 3 masters", cluster.url, cluster.masters()),
    ]
    version = redis.Redis(port=single.port).info("server")["redis_version"]
    started = perf()
    rows: list[dict[str, Any]] = []
    subs: dict[str, dict[int, tuple[float, float]]] = {}
    sets: dict[str, tuple[float, float]] = {}
    try:
        for target in targets:
            sets[target.name] = redis_benchmark_set(target, 20_000 if opts.quick else 100_000)
            rows.append(measure(target, n, pages))
            subs[target.name] = subscribers_cost(target, decisions)
    finally:
        single.stop()
        cluster.stop()

    print(
        f"`bench/cluster.py{' --quick' if opts.quick else ''}` — redis-server {version}, "
        f"Python {sys.version.split()[0]}, x86_64 × 2 CPUs (Redis servers and the benchmark "
        f"share them), {time.strftime('%Y-%m-%d')}\n"
    )
    print("### C1. Holds and decisions, one node and a 3-master cluster\n")
    print(
        "| set-up | holds/s | decisions/s | SET/s | holds per Redis CPU-s | decisions per "
        "Redis CPU-s | SETs per Redis CPU-s | holds ÷ SET (per CPU-s) | decisions ÷ SET (per "
        "CPU-s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate, per_cpu = sets[r["name"]]
        print(
            f"| {r['name']} | {r['holds_per_s']:,.0f} | {r['decisions_per_s']:,.0f} | "
            f"{rate:,.0f} | {r['holds_per_cpu_s']:,.0f} | {r['decisions_per_cpu_s']:,.0f} | "
            f"{per_cpu:,.0f} | {r['holds_per_cpu_s'] / per_cpu:.3f} | "
            f"{r['decisions_per_cpu_s'] / per_cpu:.3f} |"
        )
    print(
        f"\n- {n:,} holds of 20 agents, then {n:,} approvals, each from {THREADS} threads of one "
        "process on the blocking face; SET: `redis-benchmark -t set -c 4` (`--cluster` on the "
        "cluster) on the same servers in the same run; Redis CPU: the masters' "
        "`used_cpu_user + used_cpu_sys` over the same span.\n"
    )
    print("### C2. Where the work goes, per master\n")
    print("| set-up | keys per master | commands per master (holds) | commands (decisions) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {', '.join(f'{k:,}' for k in r['keys'])} | "
            f"{', '.join(f'{k:,}' for k in r['commands_hold'])} | "
            f"{', '.join(f'{k:,}' for k in r['commands_decide'])} |"
        )
    print("\n### C3. Memory and the console's queue\n")
    print(
        "| set-up | bytes per request, held | bytes per request, decided | first page p50 | "
        "page at a spread offset p50 | p99 |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['mem_held']:,.0f} | {r['mem_decided']:,.0f} | "
            f"{r['first_p50']:.2f} ms | {r['page_p50']:.2f} ms | {r['page_p99']:.2f} ms |"
        )
    print(
        "\n- memory: the masters' `used_memory` less client and replication buffers, before "
        f"and after, over {n:,} requests (with "
        "the audit events sealed for them); queue: `store.queue(limit=50)` at spread offsets, "
        f"{n:,} pending, {pages} pages.\n"
    )
    print("### C4. Redis CPU per decision, by agent processes waiting\n")
    print(
        "| set-up | 1 agent process | 100 agent processes | ratio | messages heard per "
        "decision (1 / 100) |"
    )
    print("|---|---|---|---|---|")
    for name, by in subs.items():
        (one, heard1), (many, heard100) = by[1], by[100]
        print(
            f"| {name} | {one:.0f} µs | {many:.0f} µs | {many / one:.2f}× | "
            f"{heard1:.2f} / {heard100:.2f} |"
        )
    print(
        f"\n- {decisions:,} approvals of held calls of 100 agents each way, from another "
        "process; each agent process holds its own subscription (`Wakes`: one connection, one "
        "thread) and waits on its agents' held requests: all 100 agents in one process, or one "
        "agent in each of 100 processes. Median of 3 rounds each, alternating. A decision is "
        "published on its agent's channel only, so each is heard by the one process waiting "
        "on it."
    )
    print(f"\n(total {perf() - started:.0f} s)")


if __name__ == "__main__":
    main()
