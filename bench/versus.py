"""Holds and decisions of this tree against an earlier commit's, on one Redis node, in one run.

    .venv/bin/python bench/versus.py 7d933c8          # this tree vs commit 7d933c8
    .venv/bin/python bench/versus.py 7d933c8 --quick  # a smoke test

``bench/cluster.py`` (C1) gives a hold's and a decision's Redis CPU as a
ratio to ``redis-benchmark`` SET's; this says whether a change raised those
ratios, measured the same way in the same run, so this machine's drift
between runs (a third, on this shared 2-core box) can't pass for a gain.

The earlier commit is checked out into a temporary ``git worktree`` (this
repository's own history; nothing is fetched) and imported from there. Each
round starts a fresh ``redis-server`` (no persistence) for each tree, in
turn (old, new, old, new, ...), and measures, on it and in this order:

- ``redis-benchmark -t set -c 4`` SETs per Redis CPU-second (the baseline);
- N holds of 20 agents (4 threads of one process, the blocking face), their
  audit events sealed, per Redis CPU-second;
- N approvals of them (the same threads), their events sealed, per Redis
  CPU-second.

Redis CPU is ``used_cpu_user + used_cpu_sys`` from ``INFO``. The medians of
the rounds are printed as a Markdown table (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AGENTS = 20
THREADS = 4


def child(tree: str, n: int, sets: int) -> None:
    """Measure the gatekeeper in ``tree`` (run as a child process: one tree per interpreter)."""
    sys.path.insert(0, tree)
    sys.path.insert(0, f"{tree}/bench")
    import redis
    from _keys import use_run_keys

    use_run_keys()
    import gatekeeper
    from gatekeeper import Gatekeeper, Policy, RedisStore
    from tests.conftest import _free_port
    from tests.storekit import held_event, make_request

    if not gatekeeper.__file__ or not gatekeeper.__file__.startswith(tree):
        raise SystemExit(f"imported {gatekeeper.__file__}, not the tree in {tree}")
    port = _free_port()
    work = tempfile.mkdtemp(prefix="gk-bench-versus-")
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*argv, "--dir", work], stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

        def cpu() -> float:
            info = r.info("cpu")
            return float(info["used_cpu_user"] + info["used_cpu_sys"])

        start = cpu()
        bench = ["redis-benchmark", "-p", str(port), "-t", "set", "-c", str(THREADS)]
        bench += ["-n", str(sets), "-r", "100000", "-q"]
        subprocess.run(bench, capture_output=True, check=True)
        set_cpu = sets / (cpu() - start)
        r.flushall()

        store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="versus")
        store.load_scripts()
        gate = Gatekeeper(policy=Policy.empty(), store=store)
        reqs = [
            make_request(store.clock, agent=f"agent-{i % AGENTS:02d}", args={"n": i}, timeout=86400)
            for i in range(n)
        ]

        def in_threads(items: list[Any], fn: Any) -> None:
            chunks = [items[i::THREADS] for i in range(THREADS)]
            threads = [threading.Thread(target=lambda c=c: [fn(x) for x in c]) for c in chunks]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        start = cpu()
        in_threads(reqs, lambda q: store.hold(q, held_event(q)))
        store.flush()
        hold_cpu = n / (cpu() - start)
        start = cpu()
        in_threads([q.id for q in reqs], lambda rid: gate.approve(rid, approver="alice"))
        store.flush()
        decide_cpu = n / (cpu() - start)
        gate.close()
    finally:
        server.kill()
        server.wait()
    print(json.dumps({"set": set_cpu, "hold": hold_cpu, "decide": decide_cpu}))


def measure(tree: Path, n: int, sets: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", str(tree), "-n", str(n), "--sets", str(sets)]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{out.stderr}")
    found: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commit", nargs="?", help="the earlier commit to measure against")
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=5_000, help="holds (and decisions) per round")
    parser.add_argument("--sets", type=int, default=100_000, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child, opts.n, opts.sets)
        return
    if not opts.commit:
        parser.error("name the earlier commit to measure against")
    n, sets, rounds = (500, 20_000, 1) if opts.quick else (opts.n, opts.sets, opts.rounds)
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", opts.commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    old = Path(tempfile.mkdtemp(prefix="gk-bench-versus-tree-")) / rev
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), rev], check=True
    )
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    try:
        for i in range(rounds):
            runs["old"].append(measure(old, n, sets))
            runs["new"].append(measure(ROOT, n, sets))
            print(f"round {i + 1}/{rounds}: {runs['old'][-1]} / {runs['new'][-1]}", file=sys.stderr)
    finally:
        remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)]
        subprocess.run(remove, check=False)

    def med(which: str, what: str) -> float:
        return statistics.median(r[what] for r in runs[which])

    def ratio(which: str, what: str) -> float:
        return statistics.median(r[what] / r["set"] for r in runs[which])

    print(
        f"`bench/versus.py {opts.commit}` — {rounds} round{'s' * (rounds != 1)} of {n:,} holds "
        f"and decisions"
        f" each, one node, {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| tree | SETs per Redis CPU-s | holds per Redis CPU-s | decisions per Redis CPU-s "
        "| holds ÷ SET | decisions ÷ SET |"
    )
    print("|---|---|---|---|---|---|")
    for which, name in (("old", f"{rev} (earlier)"), ("new", f"{head} (this tree)")):
        print(
            f"| {name} | {med(which, 'set'):,.0f} | {med(which, 'hold'):,.0f} "
            f"| {med(which, 'decide'):,.0f} | {ratio(which, 'hold'):.3f} "
            f"| {ratio(which, 'decide'):.3f} |"
        )
    print(
        f"\nthis tree ÷ {rev}: holds {ratio('new', 'hold') / ratio('old', 'hold'):.2f}×, "
        f"decisions {ratio('new', 'decide') / ratio('old', 'decide'):.2f}× (ratios to SET)"
    )


if __name__ == "__main__":
    main()
