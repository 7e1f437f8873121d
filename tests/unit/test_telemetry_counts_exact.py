"""The call counter with metrics only (the lighter ``counted`` wrapper): exact across
threads, and in prometheus-client's multiprocess mode.

An earlier attempt at a cheaper counter (a tally folded in batches) lost and
double-counted calls across fork and in idle multiprocess workers; these hold
whatever counts the calls to what a reader sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from gatekeeper import Gatekeeper, Policy, Telemetry

ALLOW = Policy.from_yaml(
    "version: 1\ndefault: require_approval\nrules:\n"
    "  - {id: r, match: {tool: lookup}, verdict: allow}\n"
)


def allowed(registry: CollectorRegistry, agent: str) -> float:
    labels = {"verdict": "allow", "tool": "lookup", "agent": agent}
    return registry.get_sample_value("gatekeeper_calls_total", labels) or 0.0


def test_calls_from_many_threads_are_counted_exactly() -> None:
    registry = CollectorRegistry()
    gate = Gatekeeper(policy=ALLOW, telemetry=Telemetry(metrics=True, registry=registry))
    lookup = gate.guard(lambda key: key, name="lookup")
    threads, each = 4, 1_500  # 6,000 calls, two agents, made at once
    start = threading.Barrier(threads)

    def run(agent: str) -> None:
        with gate.session(agent=agent):
            start.wait()
            for i in range(each):
                lookup(f"k{i}")

    workers = [threading.Thread(target=run, args=(f"agent-{n % 2}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert allowed(registry, "agent-0") == 2 * each
    assert allowed(registry, "agent-1") == 2 * each
    gate.close()


# A worker process with a gate whose lookups are allowed; each test adds what it does.
WORKER = """
from gatekeeper import Gatekeeper, Policy, Telemetry
policy = Policy.from_yaml(
    "version: 1\\ndefault: require_approval\\nrules:\\n"
    "  - {id: r, match: {tool: lookup}, verdict: allow}\\n"
)
gate = Gatekeeper(policy=policy, telemetry=Telemetry(metrics=True))
lookup = gate.guard(lambda key: key, name="lookup")
"""


def multiprocess_count(script: str, files: Path) -> float:
    """Run ``script`` in multiprocess mode with its files in ``files``; the worker's calls."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(files)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(files))
    return allowed(registry, "worker")


CHILD = (
    WORKER
    + """
with gate.session(agent="worker"):
    for i in range(5):
        lookup(i)
gate.close()
"""
)


def test_a_worker_process_counts_into_the_multiprocess_files(tmp_path: Path) -> None:
    """prometheus-client's multiprocess mode: every call of a worker is in its files."""
    assert multiprocess_count(CHILD, tmp_path) == 5


FORKING = (
    WORKER
    + """
import os
with gate.session(agent="worker"):
    for i in range(9):
        lookup(i)
    child = os.fork()
    if child == 0:
        for i in range(5):
            lookup(i)
        os._exit(0)  # as a multiprocessing child or a killed worker ends: no atexit
    os.waitpid(child, 0)
    lookup("last")
os._exit(0)
"""
)


def test_forked_workers_count_each_call_once_in_multiprocess_mode(tmp_path: Path) -> None:
    """A fork neither loses the child's calls nor counts the parent's twice."""
    assert multiprocess_count(FORKING, tmp_path) == 9 + 5 + 1
