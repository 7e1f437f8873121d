"""Where the store's Redis is: one node, a Redis Cluster, or a Sentinel service.

``store.url`` takes redis-py's own URLs for one node (``redis://``,
``rediss://``, ``unix://``) and two more:

- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``
  over TLS): seed nodes of a Redis Cluster, any of them; redis-py's
  :class:`~redis.cluster.RedisCluster` finds the rest and follows ``MOVED``
  and ``ASK``.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]``
  (``rediss+sentinel://``): the sentinels of a monitored primary named
  ``SERVICE``; redis-py's :class:`~redis.sentinel.Sentinel` asks them where
  the primary is, and again after a failover. The credentials are the
  primary's; ``?sentinel_username=…&sentinel_password=…`` are the sentinels'
  own, when they have any.

TLS options go in the query as redis-py names them (``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``).
Nothing here talks to Redis: it only builds redis-py's clients.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

__all__ = ["Endpoint", "adisconnect", "disconnect", "parse_endpoint"]

Kind = Literal["node", "cluster", "sentinel"]

_TLS_OPTIONS = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": lambda v: v.lower() in ("1", "true", "yes"),
}
_SENTINEL = ("sentinel_username", "sentinel_password")
CONNECT_TIMEOUT = 2.0  # seconds to open a connection (a dead node is given up on quickly)


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``store.url``: what kind of Redis, and how to reach it."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shown(self) -> str:
        """The URL with any password replaced by ``***`` (for messages and logs)."""
        return _redacted(self.url)

    # -- clients ---------------------------------------------------------------------------
    def _tls(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"ssl": True, **{k: v for k, v in self.options.items() if k in _TLS_OPTIONS}}

    def _common(self, socket_timeout: float) -> dict[str, Any]:
        return {
            "username": self.username,
            "password": self.password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            **self._tls(),
        }

    def _primary(self, sentinel_class: Any, socket_timeout: float, **kwargs: Any) -> Any:
        """A client of the primary the sentinels name (blocking or asyncio, by the class)."""
        assert self.service is not None
        own = {k.removeprefix("sentinel_"): v for k, v in self.options.items() if k in _SENTINEL}
        sentinel = sentinel_class(
            list(self.nodes),
            sentinel_kwargs={
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": CONNECT_TIMEOUT,
                **own,
                **self._tls(),
            },
            db=self.db,
            **self._common(socket_timeout),
        )
        return _keeping(sentinel, sentinel.master_for(self.service, **kwargs))

    def client(self, *, max_connections: int, socket_timeout: float) -> Any:
        """The blocking client the store's commands go through."""
        if self.kind == "cluster":
            return RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],  # type: ignore[no-untyped-call]
                max_connections=max_connections,
                retry=Retry(NoBackoff(), 0),  # one try: the store retries, within its bound
                **self._common(socket_timeout),
            )
        if self.kind == "sentinel":
            return self._primary(Sentinel, socket_timeout, max_connections=max_connections)
        # Blocking callers are threads, each holding a connection only while a
        # command runs; past max_connections busy at once, a thread waits its
        # turn for one instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=max_connections,
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        return redis.Redis(connection_pool=pool)

    def aclient(self, *, max_connections: int, socket_timeout: float) -> Any:
        """The asyncio client of one event loop."""
        if self.kind == "cluster":
            return AsyncRedisCluster(
                startup_nodes=[AsyncClusterNode(h, p) for h, p in self.nodes],
                max_connections=max_connections,
                retry=AsyncRetry(NoBackoff(), 0),  # one try: the store retries, within its bound
                **self._common(socket_timeout),
            )
        if self.kind == "sentinel":
            return self._primary(AsyncSentinel, socket_timeout, max_connections=max_connections)
        pool = aredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=max_connections,
            # None: under a burst (10,000 waiters woken at once) a command
            # waits its turn for a connection instead of failing.
            timeout=None,
            socket_timeout=socket_timeout,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        return aredis.Redis(connection_pool=pool)

    def subscriber(self, *, socket_timeout: float) -> Any:
        """A blocking client for one pub/sub subscription, which never reconnects by itself.

        On a cluster, a plain ``PUBLISH`` reaches the subscribers of every
        node, so the subscription is made on one seed node, a different one
        (at random) each time it is made again: no cluster client is needed.
        """
        once: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "socket_keepalive": True}
        if self.kind == "cluster":
            host, port = random.choice(self.nodes)  # noqa: S311  (spreading, not secrecy)
            return redis.Redis(host=host, port=port, **once, **self._common(socket_timeout))
        if self.kind == "sentinel":
            return self._primary(Sentinel, socket_timeout, **once)
        return redis.Redis.from_url(
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=CONNECT_TIMEOUT, **once
        )

    def asubscriber(self, *, socket_timeout: float) -> Any:
        """The asyncio :meth:`subscriber`."""
        once: dict[str, Any] = {"retry": AsyncRetry(NoBackoff(), 0)}
        if self.kind == "cluster":
            host, port = random.choice(self.nodes)  # noqa: S311  (spreading, not secrecy)
            return aredis.Redis(host=host, port=port, **once, **self._common(socket_timeout))
        if self.kind == "sentinel":
            return self._primary(AsyncSentinel, socket_timeout, **once)
        return aredis.Redis.from_url(
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=CONNECT_TIMEOUT, **once
        )


def parse_endpoint(url: str) -> Endpoint:
    """``url`` as an :class:`Endpoint`; ValueError saying what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            "the store URL has no scheme:// (redis://, rediss://, unix://, redis+cluster://, "
            "redis+sentinel://, ...); it is not shown, as it may hold a password"
        )
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return Endpoint("node", url, tls=scheme == "rediss")
    base, plus, kind = scheme.partition("+")
    if not plus or base not in ("redis", "rediss") or kind not in ("cluster", "sentinel"):
        raise ValueError(
            f"unknown Redis URL scheme {scheme + '://'!r}: use redis://, rediss://, unix://, "
            "redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
        )
    username = password = None
    at = rest.rfind("@", 0, len(rest.partition("?")[0]))
    if at != -1:  # the user part: up to the last "@" before the query (a password may hold "/")
        creds, rest = rest[:at], rest[at + 1 :]
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    default_port = 26379 if kind == "sentinel" else 6379
    nodes = tuple(_node(part, url, default_port) for part in netloc.split(",") if part)
    if not nodes:
        raise ValueError(f"{_redacted(url)}: name at least one host:port")
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        key, value = unquote(key), unquote(value)  # "+" is a plus, as in the user part
        if key in _TLS_OPTIONS:
            if base != "rediss":
                raise ValueError(
                    f"{_redacted(url)}: {key} is a TLS option; use {base}s+{kind}:// for TLS"
                )
            options[key] = _TLS_OPTIONS[key](value)  # type: ignore[operator]
        elif key in _SENTINEL and kind == "sentinel":
            options[key] = value
        else:
            raise ValueError(f"{_redacted(url)}: unknown option {key!r}")
    parts = [p for p in path.split("/") if p]
    if kind == "cluster":
        if parts:
            raise ValueError(
                f"{_redacted(url)}: a cluster URL has no path (a cluster has one database)"
            )
        return Endpoint(
            "cluster", url, nodes, None, 0, username, password, base == "rediss", options
        )
    if not parts or len(parts) > 2:
        raise ValueError(
            f"{_redacted(url)}: a sentinel URL ends with /SERVICE or /SERVICE/DB "
            "(the name the sentinels monitor the primary by)"
        )
    db = 0
    if len(parts) == 2:
        if not re.fullmatch(r"[0-9]+", parts[1]):
            raise ValueError(f"{_redacted(url)}: the database must be a number, not {parts[1]!r}")
        db = int(parts[1])
    return Endpoint(
        "sentinel", url, nodes, unquote(parts[0]), db, username, password, base == "rediss", options
    )


_HOST_PORT = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::([0-9]{1,5}))?")


def _node(part: str, url: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    found = _HOST_PORT.fullmatch(part)
    port = int(found.group(3) or default_port) if found else 0
    if found is None or not 0 < port < 65536:
        raise ValueError(
            f"{_redacted(url)}: {part!r} is not host:port (an IPv6 address goes in [brackets])"
        )
    return found.group(1) or found.group(2), port


def _redacted(url: str) -> str:
    """``url`` with the password of its user part and every ``*password*`` option as ``***``.

    The user part ends at the last ``@`` before the query (a password may hold
    ``@`` or ``/`` unencoded; ``?`` must be written ``%3F``): everything after
    its first ``:`` is hidden.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a URL without scheme://, not shown: it may hold a password)"
    at = rest.rfind("@", 0, len(rest.partition("?")[0]))
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else user) + rest[at:]
    if "?" in rest:
        head, _, query = rest.partition("?")
        parts = []
        for item in query.split("&"):
            key, eq, _value = item.partition("=")
            parts.append(f"{key}=***" if eq and "password" in key.lower() else item)
        rest = f"{head}?{'&'.join(parts)}"
    return f"{scheme}://{rest}"


def _keeping(sentinel: Any, client: Any) -> Any:
    """``client``, holding the :class:`Sentinel` it came from (its connections are closed too)."""
    client._gatekeeper_sentinel = sentinel
    return client


def disconnect(client: Any) -> None:
    """Close every connection of a blocking client of :meth:`Endpoint.client`."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:  # one node, or a Sentinel's primary
        pool.disconnect()
    else:  # a cluster: a pool per node
        client.close()
    sentinel = getattr(client, "_gatekeeper_sentinel", None)
    if sentinel is not None:
        for each in sentinel.sentinels:
            each.close()


async def adisconnect(client: Any) -> None:
    """Close every connection of an asyncio client of :meth:`Endpoint.aclient`."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()
    else:
        await client.aclose()
    sentinel = getattr(client, "_gatekeeper_sentinel", None)
    if sentinel is not None:
        for each in sentinel.sentinels:
            await each.aclose()
