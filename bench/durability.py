"""What ``store.durability: {replicas: 1}`` costs a decision, next to ``replicas: 0``, same run.

    .venv/bin/python bench/durability.py            # 2,000 decisions each way
    .venv/bin/python bench/durability.py --quick    # a smoke test

One primary and one replica, real ``redis-server`` processes this script
starts (no persistence, temp dirs) and stops. The same number of requests
is held, then approved, once with a store that waits for no replica and
once with one that waits for one (``WAIT 1``, after a write of its own on
the agent's master); the order alternates over rounds so neither side gets
a warmer server. Printed: decisions per second (4 threads), the median and
99th-percentile latency of one decision (1 thread), and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _keys import use_run_keys  # noqa: E402  (bench/ is on sys.path when run as a script)

from gatekeeper import Gatekeeper, Policy, RedisStore  # noqa: E402
from gatekeeper.store import Durability  # noqa: E402
from tests.clusterkit import Node, _until  # noqa: E402
from tests.conftest import _free_port  # noqa: E402
from tests.storekit import held_event, make_request  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from cluster import in_threads  # noqa: E402

perf = time.perf_counter


def one_way(url: str, replicas: int, n: int, threads: bool) -> dict[str, float]:
    """Hold ``n`` requests, approve them all; decisions/s (4 threads) or latencies (1)."""
    prefix = f"dur{replicas}{int(time.time() * 1000)}"
    store = RedisStore(url, prefix=prefix, durability=Durability(replicas=replicas, timeout=1.0))
    store.load_scripts()
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    try:
        reqs = [
            make_request(store.clock, agent=f"agent-{i % 20:02d}", args={"n": i}, timeout=86400)
            for i in range(n)
        ]
        for r in reqs:
            store.hold(r, held_event(r))
        store.flush()
        if threads:
            took = in_threads([r.id for r in reqs], lambda rid: _approve(gate, rid, replicas))
            return {"per_s": n / took}
        xs = []
        for r in reqs:
            start = perf()
            _approve(gate, r.id, replicas)
            xs.append((perf() - start) * 1000)
        xs.sort()
        return {"p50": statistics.median(xs), "p99": xs[int(0.99 * len(xs))]}
    finally:
        gate.close()


def _approve(gate: Gatekeeper, rid: str, replicas: int) -> None:
    after = gate.approve(rid, approver="alice")
    if replicas and after.durable is not True:
        raise RuntimeError(f"request {rid}: the replica did not acknowledge it in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    n, rounds = (200, 1) if opts.quick else (2000, 3)
    use_run_keys()
    with tempfile.TemporaryDirectory() as tmp:
        plain = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        primary = Node(plain, Path(tmp, "primary"), _free_port())
        replica = Node(
            [*plain, "--replicaof", "127.0.0.1", str(primary.port)],
            Path(tmp, "replica"),
            _free_port(),
        )
        try:

            def in_sync() -> bool:
                with replica.client() as c:
                    return c.info("replication").get("master_link_status") == "up"

            _until("the replica to be in sync", in_sync)
            url = f"redis://127.0.0.1:{primary.port}/0"
            with primary.client() as c:
                version = c.info("server")["redis_version"]
            rates: dict[int, list[float]] = {0: [], 1: []}
            lat: dict[int, list[dict[str, float]]] = {0: [], 1: []}
            for k in range(rounds):
                for replicas in (0, 1) if k % 2 == 0 else (1, 0):
                    rates[replicas].append(one_way(url, replicas, n, threads=True)["per_s"])
                    lat[replicas].append(one_way(url, replicas, n // 4, threads=False))
        finally:
            replica.stop()
            primary.stop()
    rate = {r: statistics.median(v) for r, v in rates.items()}
    p50 = {r: statistics.median(x["p50"] for x in v) for r, v in lat.items()}
    p99 = {r: statistics.median(x["p99"] for x in v) for r, v in lat.items()}
    print(
        f"`bench/durability.py{' --quick' if opts.quick else ''}` — redis-server {version}, "
        f"one primary and one replica on this machine, {n:,} decisions per way and round, "
        f"{rounds} round(s)\n"
    )
    print("| | replicas: 0 | replicas: 1 | ratio (1 / 0) |")
    print("|---|---:|---:|---:|")
    print(
        f"| decisions per second (4 threads) | {rate[0]:,.0f} | {rate[1]:,.0f} | "
        f"{rate[1] / rate[0]:.2f} |"
    )
    print(f"| one decision, p50 (ms) | {p50[0]:.2f} | {p50[1]:.2f} | {p50[1] / p50[0]:.2f} |")
    print(f"| one decision, p99 (ms) | {p99[0]:.2f} | {p99[1]:.2f} | {p99[1] / p99[0]:.2f} |")


if __name__ == "__main__":
    main()
