"""What the Redis store sends and how it reads the answers, shared by both faces.

Each operation is an :class:`Op`: which Lua script, its keys and arguments, and
a function that turns the reply into a result or an error. The blocking and
async faces only differ in how they send it.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar

from .._canonical import canonical_json
from .._errors import AgentHalted, NotAuthorized, RequestNotFound, StoreError, TransitionRefused
from ..audit import check_event_ids, encode_draft
from ..models import ApprovalRequest, Decision, Halt, Risk, utc
from ._base import check_note
from ._halts import halted_message, ms, read_halt

__all__ = ["SCRIPTS", "AgentKeys", "Keys", "Op", "key_part", "request_from_hash"]

T = TypeVar("T")

_SCRIPT_NAMES = (
    "admit",
    "observe",
    "hold",
    "decide",
    "expire",
    "cancel",
    "claim",
    "finish",
    "halt",
    "resume",
    "seal",
    "once",
    "hit",
    "register",
    "copyhalts",
    "flag",
    "haltglobal",
    "resumeglobal",
    "trimread",
    "refuse",
    "jpush",
    "renew",
    "sweep",
    "resolve",
    "audittrim",
    "prune",
    "confirm",
)


def _load_scripts() -> dict[str, str]:
    base = resources.files("gatekeeper.store") / "lua"
    prelude = (base / "_prelude.lua").read_text(encoding="utf-8")
    return {
        name: prelude + "\n" + (base / f"{name}.lua").read_text(encoding="utf-8")
        for name in _SCRIPT_NAMES
    }


SCRIPTS = _load_scripts()


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-@")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+")


def key_part(name: str) -> str:
    """An agent name as it appears inside a key: safe characters kept, the rest %XX-escaped.

    Keeps hash tags intact (no braces) and ACL key patterns exact (no ``*``,
    ``?``, ``[`` or ``\\``), and two names never map to one part.
    """
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in name)


class AgentKeys:
    """The keys of one agent: all share the hash tag ``{prefix:agent}`` (one slot).

    ``req:*`` (requests and their wake lists) and ``idx:*`` (the console's
    indexes of this agent) are the agent's to write; ``dec:*`` (votes) and
    ``resumes`` only the deciding side's; ``halts`` the agent may add to but
    not remove from; ``journal`` it may only append to.
    """

    def __init__(self, prefix: str, agent: str) -> None:
        tag = f"{{{prefix}:{key_part(agent)}}}"
        self.agent = agent
        self.tag = tag
        self.halts = f"{tag}:halts"
        self.resumes = f"{tag}:resumes"
        self.journal = f"{tag}:journal"
        self.trimmed = f"{tag}:trimmed"
        # What the deciding side journals about this agent's requests and halts:
        # a list only deciders write, so an agent's journal never holds decisions.
        self.dec_journal = f"{tag}:dec:journal"
        self.dec_trimmed = f"{tag}:dec:trimmed"
        # Tampering an agent's gate reported, kept where the agent can't erase it.
        self.flags = f"{tag}:dec:flags"
        self.pending = f"{tag}:idx:pending"
        self.requests = f"{tag}:idx:requests"
        self.owners = f"{tag}:idx:owners"
        # Live requests with a lease, scored by when it runs out (the sweep's list).
        self.live = f"{tag}:idx:live"
        self._req = f"{tag}:req:"
        self._dec = f"{tag}:dec:"
        # Where a change of one of this agent's requests is published (its id):
        # an agent process subscribes to the agents it waits for, and hears
        # nothing of the others' (see gatekeeper/store/_wakes.py).
        self.channel = f"{tag}:decided"

    def req(self, rid: str) -> str:
        return self._req + rid

    def call_key(self, key: str) -> str:
        """Where a call's idempotency key names its request (hashed: keys are agent text)."""
        return f"{self._req}key:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def req_prefix(self) -> str:
        return self._req

    def wake(self, rid: str) -> str:
        return f"{self._req}{rid}:wake"

    def voters(self, rid: str) -> str:
        return f"{self._dec}{rid}:voters"

    def votes(self, rid: str) -> str:
        return f"{self._dec}{rid}:votes"

    def seen(self, rid: str) -> str:
        return f"{self._dec}{rid}:seen"

    def pending_by_risk(self, risk: Risk | str) -> str:
        """Pending requests of one risk, scored by expiry (``settle`` in Lua derives it too)."""
        return f"{self.pending}:{Risk(risk).value}"


@dataclass(frozen=True)
class ChainKeys:
    """The keys of one audit chain: its stream, its head and the ids it sealed lately."""

    audit: str
    head: str
    event_ids: str


def chain_of(agent: str, chains: int) -> int:
    """The audit chain an agent's events are sealed into (chain 0 with one chain)."""
    return zlib.crc32(agent.encode("utf-8", "surrogatepass")) % chains if chains > 1 else 0


class Keys:
    """The key layout of one deployment.

    Deployment-wide keys share the hash tag ``{prefix}``: the registry of
    agents, where each request lives, halts of everything and of sessions,
    the decider's journal, the sealed audit stream, its head and the ids of
    the events sealed lately, and the console's notes. Everything of one
    agent lives under ``{prefix:agent}`` (:class:`AgentKeys`), so no script
    touches two slots.
    """

    def __init__(self, prefix: str) -> None:
        if not _PREFIX.fullmatch(prefix or ""):
            raise ValueError("prefix must be non-empty letters, digits, '_', '.' or '-'")
        tag = f"{{{prefix}}}"
        self.prefix = prefix
        self._tag = tag
        self.agents = f"{tag}:agents"
        self.where = f"{tag}:where"
        self.halts = f"{tag}:halts"
        self.journal = f"{tag}:journal"
        self.trimmed = f"{tag}:trimmed"
        self.audit = f"{tag}:audit"
        self.head = f"{tag}:head"
        self.event_ids = f"{tag}:eids"  # ids of the events sealed lately (zset, by time)
        self.anchors = f"{tag}:anchors"  # signed statements of the head, one a minute at most
        self.chains = f"{tag}:chains"  # how many audit chains the deployment has
        #: On a Redis Cluster (set by the store): no step may touch two tags.
        self.cluster = False
        # Every agent's channel, as one pattern: the consoles' change feed
        # (``store.aio.changes()``) subscribes to it; agent processes don't.
        self.changes = f"{{{prefix}:*}}:decided"
        self._agents: dict[str, AgentKeys] = {}

    def chain(self, c: int) -> ChainKeys:
        """Audit chain ``c``'s keys: chain 0 under ``{prefix}``, chain c under its own tag
        ``{prefix:%chC}`` (no agent's tag can be that: ``%`` in a name is escaped as
        ``%XX`` in hex capitals), so chains spread over a cluster's masters."""
        if c == 0:
            return ChainKeys(self.audit, self.head, self.event_ids)
        tag = f"{{{self.prefix}:%ch{c}}}"
        return ChainKeys(f"{tag}:audit", f"{tag}:head", f"{tag}:eids")

    def of(self, agent: str) -> AgentKeys:
        found = self._agents.get(agent)
        if found is None:
            if len(self._agents) > 10_000:
                self._agents.clear()
            found = self._agents[agent] = AgentKeys(self.prefix, agent)
        return found

    @property
    def tag(self) -> str:
        return self._tag

    def once(self, key: str) -> str:
        return f"{self._tag}:once:{key}"

    def hits(self, key: str) -> str:
        return f"{self._tag}:hits:{key}"

    def note(self, key: str) -> str:
        return f"{self._tag}:note:{key}"


@dataclass(frozen=True)
class Op(Generic[T]):
    script: str
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]


def text(value: Any) -> str:
    """A reply as str (redis-py answers bytes)."""
    return _text(value)


def agent_names(members: Any) -> list[str]:
    """Registry members as agent names, sorted; any an agent could have garbled are skipped.

    An agent's Redis user may add itself to the registry: a member that is not
    UTF-8 text, or is absurdly long, names no real agent and must not stop the
    sealer, the console or the kill switch.
    """
    names = []
    for member in members:
        try:
            name = member.decode("utf-8") if isinstance(member, bytes) else str(member)
        except UnicodeDecodeError:
            continue
        if 0 < len(name) <= 1000:
            names.append(name)
    return sorted(names)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _check(reply: Any, rid: str | None = None, tool: str | None = None) -> list[Any]:
    tag = _text(reply[0])
    if tag == "ok":
        return list(reply)
    parts = [_text(p) for p in reply]
    if tag == "halted":
        halt = read_halt(parts[2] if len(parts) > 2 else "all", parts[1])
        exc = AgentHalted(halted_message(halt), scope=halt.key, tool=tool, request_id=rid)
        exc.halt = halt  # type: ignore[attr-defined]  # the store remembers it (sticky halts)
        raise exc
    if tag == "forbidden":
        raise NotAuthorized(
            "these store credentials may not decide (an agent's ACL user can't vote)",
            approver="",
            request_id=rid,
        )
    if tag == "missing" and rid is not None:
        raise RequestNotFound(rid)
    if tag == "unconfirmed" and rid is not None:
        held_back = TransitionRefused(
            f"can't release request {rid}: its approval is not yet known to be on "
            f"{parts[1]} Redis replica(s) (store.durability); a failover could lose it",
            request_id=rid,
            status="approved",
            action="release",
        )
        held_back.awaiting_replicas = replicas_awaited(parts[1])  # type: ignore[attr-defined]
        raise held_back
    if tag == "refused" and rid is not None:
        status, action, why = parts[1], parts[2], parts[3]
        raise TransitionRefused(
            f"can't {action} request {rid}: {why}", request_id=rid, status=status, action=action
        )
    raise StoreError(f"unexpected reply from the store: {parts!r}")


def journal_entry(event: Mapping[str, Any]) -> bytes:
    """A draft as the journal holds it: ``=`` then its canonical JSON.

    Lua scripts journal drafts of their own as plain (cjson) JSON; the ``=``
    tells the sealer which drafts are canonical already and need no parsing.
    """
    check_event_ids([event])  # the last gate: every draft a script journals passes here
    return b"=" + encode_draft(event)


def _json(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def plan_json(k: Keys, plan: Mapping[str, Any] | None) -> str:
    """A behaviour plan for the scripts, with the deployment's tag for shared limits."""
    if plan is not None and k.cluster and any(lim.get("g") == 1 for lim in plan.get("l", ())):
        raise StoreError(CLUSTER_GLOBAL_LIMIT)
    # Plain json.dumps: the scripts decode it, nothing hashes it.
    return "" if plan is None else json.dumps({**plan, "d": k.tag}, separators=(",", ":"))


#: Why a ``per: global`` limit can't be counted on a Redis Cluster.
CLUSTER_GLOBAL_LIMIT = (
    "a `per: global` limit counts every agent together under the deployment's hash tag, "
    "and on a Redis Cluster one step can't touch that and an agent's keys (another slot): "
    "count it `per: agent` (or session, tool, args.X), or run on one Redis node"
)


def _hits(raw: Any) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = json.loads(_text(raw))
    return hits


def admit(
    k: Keys,
    a: AgentKeys,
    event: Mapping[str, Any],
    session_id: str,
    plan: Mapping[str, Any] | None = None,
    verdict: str = "allow",
    now_ms: int | str = "",
) -> Op[list[dict[str, Any]]]:
    """Record ``event`` for an admitted call; answers the hits that escalate it (then
    nothing is recorded), or those of shadow-mode entries only (``sh``), or ``[]``."""

    def parse(reply: Any) -> list[dict[str, Any]]:
        if isinstance(reply, list) and reply and _text(reply[0]) == "escalate":
            return _hits(reply[1])
        _check(reply, tool=event.get("tool"))
        if isinstance(reply, list) and len(reply) > 1:  # admitted, with shadow-mode hits
            return _hits(reply[1])
        return []

    argv = [a.agent, session_id, journal_entry(event), plan_json(k, plan), verdict, now_ms]
    return Op("admit", [a.halts, a.journal], argv, parse)


def observe(
    k: Keys,
    a: AgentKeys,
    plan: Mapping[str, Any],
    mode: str,
    now_ms: int | str = "",
    request_id: str = "",
) -> Op[list[dict[str, Any]]]:
    """Apply a behaviour plan apart from admitting (``attempt``, ``release``, ``done``)."""
    argv = [plan_json(k, plan), mode, now_ms, request_id]
    return Op("observe", [a.halts], argv, _hits)


def register(k: Keys, agent: str) -> Op[list[tuple[str, str]]]:
    """Add ``agent`` to the registry; answers the deployment-wide halts it must copy."""

    def parse(reply: Any) -> list[tuple[str, str]]:
        flat = [_text(v) for v in reply]
        return list(zip(flat[::2], flat[1::2], strict=True))

    return Op("register", [k.agents, k.halts], [agent], parse)


def copy_halts(a: AgentKeys, halts: list[tuple[str, str]]) -> Op[None]:
    flat = [v for pair in halts for v in pair]
    return Op("copyhalts", [a.halts], flat, lambda reply: None)


def hold(
    k: Keys,
    a: AgentKeys,
    request: ApprovalRequest,
    event: Mapping[str, Any],
    now_ms: int | str,
    retain_ms: int | None,
    plan: Mapping[str, Any] | None = None,
) -> Op[str]:
    """Hold ``request``; answers the id of the request held (another one when it re-attached).

    ``plan``: the call's behaviour plan, applied (``release``) when it is claimed.
    """
    call = request.call
    rid = request.id

    def parse(reply: Any) -> str:
        parts = [_text(p) for p in reply]
        if parts[0] == "exists":
            raise TransitionRefused(
                f"request {rid} already exists", request_id=rid, status=parts[1], action="hold"
            )
        if parts[0] == "attached":
            return parts[1]
        if parts[0] == "conflict":
            raise TransitionRefused(
                f"call key {request.key!r} already belongs to request {parts[1]} "
                f"({call.tool} with other arguments); a key names one call",
                request_id=parts[1],
                status=parts[2],
                action="hold",
            )
        _check(reply, rid, call.tool)
        return rid

    lease = request.lease_until
    key_ttl = max(ms(request.expires_at) - ms(request.created_at), 0) + (retain_ms or 0)
    if lease is not None:
        key_ttl = max(key_ttl, ms(lease) - ms(request.created_at))
    args = [
        rid,
        call.agent,
        call.session_id,
        call.tool,
        call.id,
        # Without a trace context, the record is what it was before there was one
        # (a decider of an earlier release reads it).
        request.model_dump_json(exclude=None if request.trace else {"trace"}),
        ms(request.expires_at),
        request.quorum,
        _json(request.args),
        request.args_digest,
        ms(request.created_at),
        journal_entry(event),
        request.classification.risk.value,
        a.channel,
        now_ms,
        "" if lease is None else max(ms(lease) - ms(request.created_at), 0),
        retain_ms or "",
        call.args_digest,
        "1" if request.key else "0",
        max(key_ttl, 1000),
        plan_json(k, plan),
    ]
    keys = [
        a.req(rid),
        a.halts,
        a.pending,
        a.owners,
        a.journal,
        a.requests,
        a.pending_by_risk(request.classification.risk),
        a.live,
        a.call_key(request.key) if request.key else a.req(rid) + ":key",
    ]
    if not k.cluster:  # one node: the id is claimed in the same script, one round trip
        keys.append(k.where)
    return Op("hold", keys, args, parse)


def renew(
    k: Keys, a: AgentKeys, ids: list[str], now_ms: int | str, lease_ms: int
) -> Op[dict[str, str]]:
    """Extend the leases of these requests of one agent to ``lease_ms`` from now; their statuses."""

    def parse(reply: Any) -> dict[str, str]:
        flat = [_text(v) for v in reply]
        return dict(zip(flat[::2], flat[1::2], strict=True))

    keys = [a.pending, a.owners, a.journal, a.live]
    return Op("renew", keys, [a.req_prefix(), a.channel, now_ms, lease_ms, *ids], parse)


def sweep(k: Keys, a: AgentKeys, now_ms: int | str, limit: int) -> Op[dict[str, str]]:
    """Apply what time did to one agent's live requests; answers those changed, to what."""

    def parse(reply: Any) -> dict[str, str]:
        flat = [_text(v) for v in reply]
        return dict(zip(flat[::2], flat[1::2], strict=True))

    keys = [a.pending, a.owners, a.dec_journal, a.live]
    return Op("sweep", keys, [a.req_prefix(), a.channel, now_ms, limit], parse)


def prune(a: AgentKeys, before_ms: int, offset: int, count: int) -> Op[tuple[int, list[str]]]:
    """Drop the leftovers of one agent's requests whose record expired; (looked at, ids gone)."""

    def parse(reply: Any) -> tuple[int, list[str]]:
        return int(reply[0]), [_text(v) for v in reply[1]]

    return Op("prune", [a.requests], [before_ms, offset, count], parse)


def resolve(
    k: Keys, a: AgentKeys, rid: str, now_ms: int | str, by: str, ran: bool, comment: str | None
) -> Op[ApprovalRequest]:
    keys = [a.req(rid), a.wake(rid), a.dec_journal, a.votes(rid), a.seen(rid)]
    argv = [a.channel, now_ms, by, "1" if ran else "0", comment or ""]
    return Op("resolve", keys, argv, _transition(rid, a.agent))


def _transition(rid: str, agent: str) -> Callable[[Any], ApprovalRequest]:
    def parse(reply: Any) -> ApprovalRequest:
        _, flat, votes = _check(reply, rid)
        return request_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)), votes, agent)

    return parse


def decide(
    k: Keys,
    a: AgentKeys,
    rid: str,
    decision: Decision,
    now_ms: int | str,
    args: Mapping[str, Any] | None,
    replicas: int = 0,
) -> Op[ApprovalRequest]:
    """Record a vote; an approval that reaches the quorum waits for ``replicas`` (confirm)."""
    keys = [
        a.req(rid),
        a.voters(rid),
        a.votes(rid),
        a.seen(rid),
        a.wake(rid),
        a.pending,
        a.owners,
        a.dec_journal,
    ]
    argv = [
        a.channel,
        now_ms,
        decision.approver,
        "r" if decision.response is not None else "1" if decision.approve else "0",
        decision.args_digest,
        _decision_json(decision),
        _json(args) if args is not None else "",
        replicas,
    ]
    return Op("decide", keys, argv, _transition(rid, a.agent))


def confirm(k: Keys, a: AgentKeys, rid: str) -> Op[ApprovalRequest]:
    """The approval is on the replicas it waited for: it may run (wakes its waiter)."""
    keys = [a.req(rid), a.wake(rid), a.votes(rid)]
    return Op("confirm", keys, [a.channel], _transition(rid, a.agent))


def _decision_json(decision: Decision) -> str:
    body = decision.model_dump(mode="json")
    body["at"] = ms(decision.at)
    return _json(body)


def expire(k: Keys, a: AgentKeys, rid: str, now_ms: int | str, journal: str) -> Op[ApprovalRequest]:
    keys = [a.req(rid), a.wake(rid), a.pending, a.owners, journal, a.votes(rid)]
    return Op("expire", keys, [a.channel, now_ms], _transition(rid, a.agent))


def cancel(
    k: Keys, a: AgentKeys, rid: str, now_ms: int | str, by: str, reason: str | None, journal: str
) -> Op[ApprovalRequest]:
    keys = [a.req(rid), a.wake(rid), a.pending, a.owners, journal, a.votes(rid)]
    return Op("cancel", keys, [a.channel, now_ms, by, reason or ""], _transition(rid, a.agent))


def claim(
    k: Keys,
    a: AgentKeys,
    rid: str,
    now_ms: int | str,
    args_digest: str,
    token: str | None,
    created_ms: int | None,
    plan: Mapping[str, Any] | None = None,
) -> Op[ApprovalRequest]:
    """Claim an approved request; ``plan`` replaces the behaviour plan kept at the hold
    (the approver edited the arguments: what runs is what counts)."""
    keys = [a.req(rid), a.halts, a.wake(rid), a.journal, a.votes(rid), a.resumes]
    created = "" if created_ms is None else created_ms
    argv = [a.channel, now_ms, args_digest, token or "", created, plan_json(k, plan)]
    return Op("claim", keys, argv, _transition(rid, a.agent))


def finish(
    k: Keys,
    a: AgentKeys,
    rid: str,
    now_ms: int | str,
    ok: bool,
    outcome: str | None,
    token: str | None = None,
) -> Op[ApprovalRequest]:
    keys = [a.req(rid), a.wake(rid), a.journal, a.votes(rid)]
    argv = [a.channel, now_ms, "1" if ok else "0", outcome or "", token or ""]
    return Op("finish", keys, argv, _transition(rid, a.agent))


def refuse(k: Keys, a: AgentKeys, rid: str, now_ms: int | str, why: str) -> Op[ApprovalRequest]:
    """approved -> failed without running: the release was refused (tampering)."""
    keys = [a.req(rid), a.wake(rid), a.journal, a.votes(rid)]
    return Op("refuse", keys, [a.channel, now_ms, why], _transition(rid, a.agent))


def flag(k: Keys, a: AgentKeys, rid: str, why: str, event: Mapping[str, Any]) -> Op[None]:
    """Mark a request as the target of tampering (the console shows it) and audit it."""
    keys = [a.req(rid), a.wake(rid), a.journal]
    return Op("flag", keys, [a.channel, why, journal_entry(event)], lambda reply: None)


def halt_global(k: Keys, record: Halt) -> Op[list[str]]:
    """Record a halt of everything or of a session deployment-wide; answers the agents."""
    argv = [record.key, record.model_dump_json()]
    return Op("haltglobal", [k.halts, k.agents], argv, agent_names)


def halt(
    k: Keys,
    a: AgentKeys,
    record: Halt,
    event: Mapping[str, Any] | None,
    now_ms: int | str,
    journal: str,
) -> Op[list[str]]:
    """Set the halt on one agent and cancel its pending requests it covers, in one script."""

    def parse(reply: Any) -> list[str]:
        return [_text(r) for r in reply]

    argv = [
        record.key,
        record.model_dump_json(),
        record.scope.value,
        record.target,
        json.dumps(event) if event is not None else "",
        a.req(""),
        a.channel,
        now_ms,
        record.by,
        f"halted: {record.reason or 'kill switch'}",
    ]
    return Op("halt", [a.halts, a.owners, journal, a.pending], argv, parse)


def resume_global(k: Keys, field: str, signed: str) -> Op[bool]:
    return Op("resumeglobal", [k.halts], [field, signed], bool)


def resume(a: AgentKeys, field: str, signed: str, event: Mapping[str, Any] | None) -> Op[bool]:
    entry = journal_entry(event) if event is not None else b""
    return Op("resume", [a.halts, a.resumes, a.dec_journal], [field, signed, entry], bool)


#: A journal entry longer than this is not read whole: the sealer records it refused.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
#: One sealing batch reads at most this many bytes of journal (and at least one entry).
MAX_BATCH_BYTES = 32 * 1024 * 1024
OVERSIZE = b"\x00oversize:"


def jpush(journal: str, entries: list[bytes]) -> Op[int]:
    """Append drafts written from Python to ``journal``, numbered like the scripts' own."""
    return Op("jpush", [journal], list(entries), int)


def trim_read(journal: str, trimmed: str, cursor: int, batch: int) -> Op[list[bytes]]:
    """Drop what is sealed already (up to ``cursor``), then read the next ``batch`` drafts.

    An entry over :data:`MAX_ENTRY_BYTES` comes back as ``OVERSIZE`` + its
    length and sha1, never whole.
    """
    argv = [cursor, batch, MAX_ENTRY_BYTES, MAX_BATCH_BYTES]
    return Op("trimread", [journal, trimmed], argv, list)


def _ttl_ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))  # PX 0 is an error; a TTL under 1 ms is 1 ms


def use_once(k: Keys, key: str, ttl: float) -> Op[bool]:
    return Op("once", [k.once(key)], [_ttl_ms(ttl)], lambda reply: int(reply) == 1)


def hit(k: Keys, key: str, window: float) -> Op[int]:
    return Op("hit", [k.hits(key)], [_ttl_ms(window)], int)


def note_set(k: Keys, key: str, value: str, ttl: float) -> tuple[str, bytes, int]:
    """``SET`` arguments for a note: its key, its value as UTF-8, and ``PX`` milliseconds.

    Checks ``value`` and ``ttl`` first (ValueError), so nothing is sent for a bad note.
    """
    raw = check_note(value, ttl)
    return k.note(key), raw, _ttl_ms(ttl)


def note_value(reply: Any) -> str | None:
    """A note as ``GET`` answers it: None when there is none."""
    return None if reply is None else _text(reply)


def request_from_hash(
    fields: Mapping[bytes, bytes], votes: list[bytes], agent: str, flag: Any = None
) -> ApprovalRequest:
    """Rebuild an :class:`ApprovalRequest` from its hash and its votes list.

    ``agent`` is the agent whose keys hold it: a request that names another
    agent was written by someone with this agent's credentials, so it reads
    as this agent's, marked as tampering. ``flag`` is the tampering the
    deciding side recorded for it (from the agent's sealed report), which the
    agent can't erase as it can its own hash's field.
    """
    f = {_text(k): _text(v) for k, v in fields.items()}
    doc = json.loads(f["doc"])
    claimed = doc.get("call", {}).get("agent")
    if claimed != agent:
        doc["call"]["agent"] = agent
        f.setdefault("tampering", f"stored under agent {agent!r} but names agent {claimed!r}")
    decisions = []
    for raw in votes:
        d = json.loads(raw)
        d["at"] = utc(int(d["at"]))
        decisions.append(Decision.model_validate(d))
    doc.update(
        status=f["status"],
        args=json.loads(f["args"]),
        args_digest=f["digest"],
        decisions=decisions,
        decided_at=utc(int(f["decided_at"])) if "decided_at" in f else None,
        decided_by=f.get("decided_by"),
        comment=f.get("comment"),
        response=f.get("response"),
        outcome=f.get("outcome"),
        finished_at=utc(int(f["finished_at"])) if "finished_at" in f else None,
        tampering=_text(flag) if flag is not None else f.get("tampering"),
        lease_until=utc(int(f["lease"])) if f.get("lease") else None,
        # Held back only while approved: what ended (or ran) waits for nothing.
        awaiting_replicas=replicas_awaited(f.get("awaiting_replicas"))
        if f["status"] == "approved"
        else 0,
    )
    return ApprovalRequest.model_validate(doc)


def replicas_awaited(raw: str | None) -> int:
    """The replicas an approval waits for, as its hash says (the agent's to write: any
    value but a small number reads as one awaited, so it still does not run unchecked)."""
    if raw is None:
        return 0
    if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 2:
        return max(int(raw), 1)
    return 1
