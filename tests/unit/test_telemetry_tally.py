"""The call counter's tally (#15, metrics-only cost): exact across threads, bounded in memory.

``gatekeeper_calls_total`` is not incremented by each call: the call appends
to a tally that is folded into the counter when it reaches ``_FOLD_AT``
calls, when ``_FOLD_AFTER`` seconds have passed, at exit, and whenever the
counter is collected. These tests hold it to what a reader sees.
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
from gatekeeper._telemetry import _FOLD_AT

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
    threads, each = 4, 1_500  # 6,000 calls: several folds, made while others append
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


def test_the_tally_stays_bounded_without_a_scrape() -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(metrics=True, registry=registry)
    gate = Gatekeeper(policy=ALLOW, telemetry=telemetry)
    lookup = gate.guard(lambda key: key, name="lookup")
    with gate.session(agent="a"):
        for i in range(3 * _FOLD_AT + 7):
            lookup(f"k{i}")
            assert telemetry.metrics is not None
            assert len(telemetry.metrics._tally) < _FOLD_AT
    assert allowed(registry, "a") == 3 * _FOLD_AT + 7
    gate.close()


def test_a_quiet_tally_reaches_the_counter_without_a_collect() -> None:
    """What multiprocess mode reads is the counter's value, not a collect in this process."""
    registry = CollectorRegistry()
    telemetry = Telemetry(metrics=True, registry=registry)
    metrics = telemetry.metrics
    assert metrics is not None
    gate = Gatekeeper(policy=ALLOW, telemetry=telemetry)
    lookup = gate.guard(lambda key: key, name="lookup")
    child = metrics.calls.labels("allow", "lookup", "q")
    with gate.session(agent="q"):
        metrics.fold()
        lookup("one")  # within _FOLD_AFTER of the fold: tallied only
        assert child._value.get() == 0
        metrics._fold_by = 0.0  # as if _FOLD_AFTER had passed
        lookup("two")
        assert child._value.get() == 2
    gate.close()


CHILD = """
from gatekeeper import Gatekeeper, Policy, Telemetry
policy = Policy.from_yaml(
    "version: 1\\ndefault: require_approval\\nrules:\\n"
    "  - {id: r, match: {tool: lookup}, verdict: allow}\\n"
)
gate = Gatekeeper(policy=policy, telemetry=Telemetry(metrics=True))
lookup = gate.guard(lambda key: key, name="lookup")
with gate.session(agent="worker"):
    for i in range(5):
        lookup(i)
gate.close()
"""


def test_an_exiting_process_leaves_its_count_for_multiprocess_mode(tmp_path: Path) -> None:
    """prometheus-client's multiprocess mode: the worker's last calls are in its files."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert allowed(registry, "worker") == 5
