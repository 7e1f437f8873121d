"""The allowed path of this tree against another revision, on the same machine, interleaved.

    .venv/bin/python bench/compare.py bdb3bf5        # this tree vs that commit

Checks out REV in a temporary git worktree, starts a redis-server of its own
on a free port, and runs the same measurement in both trees by turns (so load
on the machine hits both alike): the overhead of an allowed call through the
guard on MemoryStore over a bare call, and the whole allowed call on
RedisStore in PINGs measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import redis_server  # noqa: E402  (bench/ on the path first)

MEASURE = r"""
import statistics, sys, time, uuid
import redis
from gatekeeper import Gatekeeper, Policy
from gatekeeper.store import MemoryStore, RedisStore

POLICY = Policy.from_yaml(
    "version: 1\ndefault: require_approval\nrules:\n"
    "  - {id: r, match: {tool: lookup}, verdict: allow}\n"
)

def lookup(key: str) -> str:
    return key

mem = MemoryStore()
mem_gate = Gatekeeper(policy=POLICY, store=mem)
mem_lookup = mem_gate.guard(lookup)
store = RedisStore(sys.argv[1], prefix="cmp" + uuid.uuid4().hex[:8])
redis_gate = Gatekeeper(policy=POLICY, store=store)
redis_lookup = redis_gate.guard(lookup)
ping = redis.Redis.from_url(sys.argv[1])

def per(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6

res = {"bare": [], "mem": [], "ping": [], "redis": []}
with mem_gate.session(agent="bench"), redis_gate.session(agent="bench"):
    for _ in range(300):
        mem_lookup("k"); redis_lookup("k"); ping.ping()
    for _ in range(7):
        res["bare"].append(per(lambda: lookup("k"), 5000))
        res["mem"].append(per(lambda: mem_lookup("k"), 5000))
        mem.flush()
        res["ping"].append(per(ping.ping, 1000))
        res["redis"].append(per(lambda: redis_lookup("k"), 1000))
m = {k: statistics.median(v) for k, v in res.items()}
print(m["mem"] - m["bare"], m["redis"], m["ping"])
store.close()
"""


def measure(tree: Path, url: str) -> tuple[float, float, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'adapters'}")
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, url], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    mem, whole, ping = (float(x) for x in out[-3:])
    return mem, whole, ping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gk-compare-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), opts.rev],
        check=True,
    )
    try:
        with redis_server() as url:
            print(
                f"{'tree':<12} {'memory overhead':>16} {'redis call':>11} {'PING':>8} {'PINGs':>6}"
            )
            for _ in range(opts.rounds):
                for name, tree in ((opts.rev, base), ("this tree", ROOT)):
                    mem, whole, ping = measure(tree, url)
                    print(
                        f"{name:<12} {mem:>13.1f} µs {whole:>8.1f} µs "
                        f"{ping:>5.1f} µs {whole / ping:>6.2f}"
                    )
    finally:
        remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)]
        subprocess.run(remove, check=False)  # best effort: a temp dir either way


if __name__ == "__main__":
    main()
