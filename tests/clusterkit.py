"""A real Redis Cluster (3 masters, 3 replicas) and a real Sentinel set-up, started by the tests.

Every node is a ``redis-server`` of this session, on a free port, in a temp
dir: the cluster is made with ``redis-cli --cluster create``; the Sentinel
set-up is one primary, one replica and three sentinels watching it.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.conftest import _free_port

SERVICE = "gkprimary"  # the name the sentinels know the primary by


def _cluster_port() -> int:
    """A free port for a cluster node: at most 55535, and its bus port (+10000) free too."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (it comes with the redis-server package)")
    return found


def _start(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [_binary("redis-server"), *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _until(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting: {what}")
        time.sleep(0.05)


class Node:
    """One redis-server of a cluster or a Sentinel set-up."""

    def __init__(self, args: list[str], workdir: Path, port: int) -> None:
        self.port = port
        self.workdir = workdir
        self.proc = _start(["--port", str(port), "--bind", "127.0.0.1", *args], workdir)
        _until(f"redis-server on {port}", self.ping)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def ping(self) -> bool:
        with self.client() as c:
            return bool(c.ping())

    def kill(self) -> None:
        """kill -9: no goodbye to its clients or peers."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def kill_once_replicated(self) -> None:
        """kill -9, at a moment when its replicas have every write it acknowledged.

        Writes are paused (``CLIENT PAUSE WRITE``: commands under way wait,
        unexecuted), the replicas catch up, then the process is killed. Redis
        replication is asynchronous: a write acknowledged in the last
        milliseconds before a crash can be lost with the master, which no
        client can prevent without ``WAIT`` (``store.durability``; its fault
        test, ``tests/faults/test_failover_durable.py``, cuts the link instead).
        """
        with self.client() as c:
            c.execute_command("CLIENT", "PAUSE", "5000", "WRITE")

            def caught_up() -> bool:
                info = c.info("replication")
                offset = int(info["master_repl_offset"])
                replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
                return bool(replicas) and all(int(r["offset"]) >= offset for r in replicas)

            _until("the replicas to have every acknowledged write", caught_up, timeout=5)
        self.kill()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Cluster:
    """Six nodes: three masters with a replica each."""

    def __init__(self, workdir: Path) -> None:
        self.nodes: list[Node] = []
        try:
            self._make(workdir)
        except BaseException:  # no server of a half-made cluster is left running
            self.stop()
            raise

    def _make(self, workdir: Path) -> None:
        for n in range(6):
            port = _cluster_port()
            args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "1500",
                "--logfile",
                "redis.log",
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            self.nodes.append(Node(args, workdir / f"n{n}", port))
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        _until("the cluster to be ok on every node", self.ok)
        _until("every replica to be in sync", self._replicas_in_sync)
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def ok(self) -> bool:
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            with node.client() as c:
                info = c.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
        return True

    def _replicas_in_sync(self) -> bool:
        synced = 0
        for node in self.nodes:
            with node.client() as c:
                info = c.info("replication")
                synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
        return synced == 3

    def masters(self) -> list[Node]:
        """The nodes that are masters now (a failover changes which)."""
        found = []
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            with node.client() as c:
                if c.info("replication").get("role") == "master":
                    found.append(node)
        return found

    def master_of(self, key: str) -> Node:
        with self.nodes[0].client() as c:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
        for node in self.masters():
            with node.client() as c:
                for start, end, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end and _port_of(_) == node.port:
                        return node
        raise RuntimeError(f"no master owns the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _port_of(rest: list[object]) -> int:
    first = rest[0]  # [host, port, id, ...] of the master serving the range
    assert isinstance(first, list)
    return int(first[1])


class Sentinels:
    """One primary, one replica, and three sentinels that fail it over."""

    def __init__(self, workdir: Path) -> None:
        self.sentinels: list[Node] = []
        self.primary: Any = None
        self.replica: Any = None
        try:
            self._make(workdir)
        except BaseException:  # no server of a half-made set-up is left running
            self.stop()
            raise

    def _make(self, workdir: Path) -> None:
        plain = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        primary_port = _free_port()
        self.primary = Node(plain, workdir / "primary", primary_port)
        replica_port = _free_port()
        self.replica = Node(
            [*plain, "--replicaof", "127.0.0.1", str(primary_port)],
            workdir / "replica",
            replica_port,
        )
        for n in range(3):
            port = _free_port()
            folder = workdir / f"sentinel{n}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinels.append(_SentinelNode(conf, folder, port))
        _until("the sentinels to know the replica", self._replica_known)
        _until("the replica to be in sync", self._in_sync)
        self.url = (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
            + f"/{SERVICE}"
        )

    def _replica_known(self) -> bool:
        for s in self.sentinels:
            with s.client() as c:
                if not c.execute_command("SENTINEL", "REPLICAS", SERVICE):
                    return False
        return True

    def _in_sync(self) -> bool:
        with self.replica.client() as c:
            return c.info("replication").get("master_link_status") == "up"

    def primary_port(self) -> int:
        with self.sentinels[0].client() as c:
            _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            if node is not None:
                node.stop()


class _SentinelNode(Node):
    def __init__(self, conf: Path, workdir: Path, port: int) -> None:
        self.port = port
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [_binary("redis-server"), str(conf), "--sentinel"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _until(f"sentinel on {port}", self.ping)
