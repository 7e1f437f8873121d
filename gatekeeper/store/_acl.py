"""Redis ACL users for the three roles: one per agent, the deciders, the auditors.

What each may write follows the key layout (see :class:`~gatekeeper.store._redis_ops.Keys`):

- an **agent** reads its own keys, writes its requests and their indexes,
  may only *add* to its halts and *append* to its journal, registers itself
  and says where its requests live (never overwriting), and runs the
  store's scripts — whose writes Redis checks against these same rules, so
  an agent's user can't vote, resume, trim or seal whatever script it sends;
- the **decider** (console, Slack service, CLI of approvers, sealer) reads
  and writes every key of the deployment, and nothing else of the server;
- the **auditor** reads every key of the deployment and writes none.

Example::

    for argv in acl_rules("gatekeeper", agents=["billing-bot"], passwords=pw):
        redis.execute_command(*argv)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping

from ._redis_ops import AgentKeys, Keys

__all__ = ["acl_rules", "acl_user"]

_CONNECT = ["+ping", "+hello", "+auth", "+echo", "+client|setname"]
# What redis-py's cluster client reads as it starts and when the cluster changes:
# the slots' layout and the commands' key positions. Read-only, about the server.
_CLUSTER_LAYOUT = ["+cluster|slots", "+cluster|shards", "+cluster|nodes", "+command"]
_READS = [
    "+hget",
    "+hgetall",
    "+hmget",
    "+hexists",
    "+lrange",
    "+llen",
    "+zrange",
    "+zrangebyscore",
    "+zrevrangebyscore",
    "+zcount",
    "+zscore",
    "+zcard",
    "+smembers",
    "+sismember",
    "+get",
    "+exists",
    "+time",
]
# EVALSHA alone: an agent runs the store's scripts, which the deciding side
# loads, and can't send one of its own (no EVAL, no SCRIPT LOAD): a script of
# its own could busy-loop the server, where no SCRIPT KILL can stop it.
_SCRIPTS = ["+evalsha", "+script|exists"]
_PUBSUB = ["+subscribe", "+unsubscribe", "+publish"]
# WAIT: a waiting agent checks that the replicas have its approval before it runs it
# (store.durability); it blocks the agent's own connection and writes nothing.
_REPLICAS = ["+wait"]
_REQUEST_WRITES = "+hset +hdel +hsetnx +zadd +zrem +rpush +lpush +ltrim +pexpire +persist +incr"


_BEHAVIOUR_WRITES = "+hset +hsetnx +hdel +pexpire +zadd +zrem +zremrangebyscore"
_PLAIN = re.compile(r"[A-Za-z0-9_.-]+")


def acl_user(prefix: str, role: str, agent: str | None = None) -> str:
    """The ACL user name of a role (``agent`` needs the agent's name).

    Names fit in a ``redis://USER:PASSWORD@host`` URL as they are: an agent
    name with other characters is named by a hash of it (``PREFIX-agent-h…``).
    """
    if role == "agent":
        if agent is None:
            raise ValueError("an agent user needs the agent's name")
        if _PLAIN.fullmatch(agent):
            return f"{prefix}-agent-{agent}"
        return f"{prefix}-agent-h{hashlib.sha256(agent.encode()).hexdigest()[:20]}"
    return f"{prefix}-{role}"


def _agent_rule(k: Keys, a: AgentKeys) -> list[str]:
    t = a.tag
    return [
        "-@all",
        *_CONNECT,
        *_CLUSTER_LAYOUT,
        *_READS,
        *_SCRIPTS,
        *_PUBSUB,
        *_REPLICAS,
        # Reading (and naming in a script) its own keys and the two shared ones
        # it registers with; writes are only what the selectors below allow.
        f"~{t}:*",
        f"~{k.agents}",
        f"~{k.halts}",
        f"~{k.tag}:bhv:*",
        # Its own channel only: it hears no other agent's wake-ups and can't fake them.
        f"&{a.channel}",
        f"({_REQUEST_WRITES} ~{t}:req:* ~{t}:idx:*)",
        f"(+rpush ~{a.journal})",
        # Which of its requests were released or closed: written once, never unwritten.
        f"(+hsetnx ~{t}:claims)",
        # Its behaviour state (sequences, limits): see docs/security.md for why an
        # agent's user may write it.
        f"({_BEHAVIOUR_WRITES} ~{t}:bhv:* ~{k.tag}:bhv:*)",
        f"(+hset ~{a.halts})",
        f"(+sadd ~{k.agents})",
        f"(+hget +hsetnx ~{k.where})",
        # On one node the hold script claims the request's id in `where` itself
        # (one round trip): it may name that key there, among its own.
        f"(+evalsha ~{t}:* ~{k.where})",
    ]


def _decider_rule(k: Keys) -> list[str]:
    return [
        "+@all",
        "-@admin",
        "-@dangerous",
        "+script|load",
        f"~{{{k.prefix}}}:*",
        f"~{{{k.prefix}:*",
        f"&{{{k.prefix}}}:*",
        # The change feed's pattern, as PSUBSCRIBE names it (Redis matches a
        # pattern against these rules literally, not as a glob).
        f"&{k.changes}",
    ]


def _auditor_rule(k: Keys) -> list[str]:
    return [
        "-@all",
        *_CONNECT,
        *_CLUSTER_LAYOUT,
        "+@read",
        "-@dangerous",
        "+subscribe",
        "+unsubscribe",
        "+psubscribe",
        "+punsubscribe",
        f"%R~{{{k.prefix}}}:*",
        f"%R~{{{k.prefix}:*",
        f"&{{{k.prefix}}}:*",
        f"&{k.changes}",
    ]


def acl_rules(
    prefix: str,
    *,
    agents: Iterable[str] = (),
    passwords: Mapping[str, str] | None = None,
    roles: Iterable[str] = ("decider", "auditor"),
) -> list[list[str]]:
    """``ACL SETUSER`` commands (as argument lists) for every agent and the other roles.

    ``passwords`` maps user names to passwords; users without one get a new
    random password (``passwords`` is then filled in, when it is a dict).
    """
    k = Keys(prefix)
    chosen = dict(passwords or {})
    out: list[list[str]] = []
    users: list[tuple[str, list[str]]] = [
        (acl_user(prefix, "agent", agent), _agent_rule(k, k.of(agent))) for agent in agents
    ]
    for role in roles:
        rule = _decider_rule(k) if role == "decider" else _auditor_rule(k)
        users.append((acl_user(prefix, role), rule))
    for user, rule in users:
        password = chosen.get(user) or secrets.token_urlsafe(24)
        chosen[user] = password
        out.append(["ACL", "SETUSER", user, "reset", "on", f">{password}", *rule])
    if isinstance(passwords, dict):
        passwords.update(chosen)
    return out
