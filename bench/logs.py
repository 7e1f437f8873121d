"""The allowed path's cost: a guarded allowed call on MemoryStore, no telemetry, no handler.

Best of 15 rounds of 3,000 calls (after 3,000 to warm up), in µs per call.
Run it by turns against another tree (see docs/performance.md, "Structured
logs"): ``PYTHONPATH=/tmp/old .venv/bin/python bench/logs.py``.
"""

from __future__ import annotations

import statistics
import time

import gatekeeper
from gatekeeper import Gatekeeper, MemoryStore, Policy

ROUNDS, CALLS = 15, 3_000


def main() -> None:
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: allow\n"), store=MemoryStore(max_events=1000)
    )

    @gate.guard
    def lookup(n: int) -> int:
        return n

    times = []
    with gate.session(agent="bench"):
        for _ in range(CALLS):
            lookup(1)
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(CALLS):
                lookup(1)
            times.append((time.perf_counter() - start) / CALLS * 1e6)
    print(
        f"{gatekeeper.__file__}: median {statistics.median(times):.2f} "
        f"min {min(times):.2f} µs per call"
    )


if __name__ == "__main__":
    main()
