"""The audit sealer of a RedisStore: journal drafts into the hash-chained stream.

Every agent appends to a journal of its own (``{prefix:agent}:journal``), the
deciding side to the deployment's (``{prefix}:journal``). Processes of the
deciding side seal them all, off the callers' path, in one daemon thread per
store; the ``seal`` script's compare-and-set on the chain head and on the
journal's cursor keeps the chain linear and every draft sealed once however
many processes seal at once. Agents never write the chain.

What an agent's journal holds is not taken on trust: a draft must name that
agent, and be of a kind an agent produces (``call.*``, releases, outcomes,
cancellations, expiries, halts, tampering reports) or carry a vote or resume
signed by a trusted decision key. Anything else is sealed as
``audit.refused`` (what it claimed, and why it was refused) and logged as an
error: forged history never enters the chain as history.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import GatekeeperError, TamperingDetected
from .._signing import ANCHOR, RESUME, VOTE, TrustedKeys
from ..audit import (
    EVENT_ID_WINDOW,
    GENESIS,
    anchor_heads,
    draft,
    encode_draft,
    event_id_problem,
    seal_encoded,
)
from ..logs import get_logger, quoted
from ..models import HaltScope
from . import _redis_ops as ops
from ._base import Draft

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["Sealer"]

log = get_logger("gatekeeper.store")


#: Seconds between two signed anchors of the chain's head (when it moved).
ANCHOR_EVERY = 60.0

#: Anchors kept in Redis (about a week at one a minute); archived with the log.
ANCHORS_KEPT = 10_080


def _heads_and_last_anchor(
    client: Any, k: ops.Keys, chains: int
) -> tuple[list[list[Any]], dict[str, Any] | None]:
    pipe = client.pipeline(transaction=False)
    for c in range(chains):
        pipe.hmget(k.chain(c).head, "seq", "hash")
    pipe.xrevrange(k.anchors, "+", "-", count=1)
    *heads, newest = pipe.execute()
    if not newest:
        return heads, None
    try:
        last: dict[str, Any] = json.loads(newest[0][1][b"a"])["body"]
    except (ValueError, KeyError, TypeError):
        return heads, None
    return heads, last


class Sealer:
    """Moves journal drafts into the chained stream, off the callers' path.

    Also writes the events queued with ``record_soon``. Runs in one daemon
    thread per store, started on first use; ``flush`` does the same work now,
    in the calling thread.
    """

    BATCH = 500

    def __init__(self, store: RedisStore, linger: float) -> None:
        self._store = store
        self._linger = linger
        self._queue: deque[Draft] = deque()
        self._kicked = threading.Event()
        self._work = threading.Lock()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._next_anchor = 0.0
        self._placed: set[str] = set()  # agents whose journals were placed in their chain

    def kick(self) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._loop, name="gatekeeper-audit-sealer", daemon=True
                    )
                    self._thread.start()
        self._kicked.set()

    def enqueue(self, events: Sequence[Draft]) -> None:
        self._queue.extend(events)
        self.kick()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._kicked.wait()
            if self._stopping:
                return
            time.sleep(self._linger)  # gather what arrives meanwhile into one batch
            self._kicked.clear()
            try:
                with self._work:
                    # Checked under the lock: once stop() has run, the store's
                    # connections are closed and must not be opened again.
                    if self._stopping:
                        return
                    self._flush_locked()
                backoff = 0.1
            except Exception as exc:
                log.warning("audit sealer could not seal, will retry: %s", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._kicked.set()

    def flush(self) -> None:
        with self._work:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._queue:
            drafts = []
            while self._queue:
                drafts.append(self._queue.popleft())
            try:
                self._store.record(drafts)
            except GatekeeperError:
                self._queue.extendleft(reversed(drafts))
                raise
        if not self._store.seals:
            return
        self._store.keep_scripts_loaded()  # for the agents, who may not load them
        self._store.check_chains()
        failed: Exception | None = None
        for group in self._journals():
            try:
                while self._seal_batch(group):
                    pass
            except Exception as exc:  # one journal must not hold up the others
                log.error("audit: could not seal %s: %s", group[0].key, exc)
                failed = exc
        if failed is not None:
            raise failed
        self._anchor()

    def _anchor(self) -> None:
        """Add a signed statement of the chain's head, if it moved, at most every ANCHOR_EVERY s.

        ``audit verify`` checks the chain still holds every anchored head: a
        log cut short or rewritten after an anchor fails even where the head
        the store keeps was rewritten with it. Needs the signing key.
        """
        store = self._store
        if not store.decision_keys.can_decide or time.monotonic() < self._next_anchor:
            return
        self._next_anchor = time.monotonic() + ANCHOR_EVERY
        k, n = store.keys, store.audit_chains
        found, last = store._call(lambda: _heads_and_last_anchor(store.client, k, n))
        heads = [(int(seq) if seq else 0, ops.text(h) if h else GENESIS) for seq, h in found]
        if not any(seq for seq, _ in heads):
            return
        try:
            if last is not None and anchor_heads(last) == heads:
                return  # nothing moved
        except (KeyError, TypeError, ValueError):
            pass  # a newest anchor that can't be read: a new one is due
        now = store.clock.now().timestamp()
        if last is not None and isinstance(last.get("at"), int):
            # One a minute for the deployment, however many processes seal.
            wait = last["at"] / 1000 + ANCHOR_EVERY - now
            if wait > 0:
                self._next_anchor = time.monotonic() + wait
                return
        at = int(now * 1000)
        body: dict[str, Any]
        if n == 1:
            body = {"seq": heads[0][0], "hash": heads[0][1], "at": at}
        else:
            body = {"chains": [list(h) for h in heads], "at": at}
        signed = store.decision_keys.signer().sign(ANCHOR, body)
        store._call(
            lambda: store.client.xadd(
                k.anchors, {"a": signed}, maxlen=ANCHORS_KEPT, approximate=True
            )
        )

    def _journals(self) -> list[list[Journal]]:
        """The journals that hold drafts, grouped: the deciders', then each agent's two.

        An agent's own journal and the deciders' journal about it are sealed
        together, merged in time order, so the chain reads as things happened.
        """
        store, k = self._store, self._store.keys
        groups = [[Journal(None, "decider", k.journal, k.trimmed, "g")]]
        for name in store._agents():
            a = k.of(name)
            part = ops.key_part(name)
            groups.append(
                [
                    Journal(name, "agent", a.journal, a.trimmed, "c:" + part),
                    Journal(name, "decider", a.dec_journal, a.dec_trimmed, "d:" + part),
                ]
            )
        every = [j for group in groups for j in group]
        busy: set[str] = set()
        for start in range(0, len(every), 1000):  # skip the empty ones, 1,000 per round trip
            chunk = every[start : start + 1000]

            def lengths(chunk: list[Journal] = chunk) -> list[Any]:
                pipe = store.client.pipeline(transaction=False)
                for j in chunk:
                    pipe.llen(j.key)
                replies: list[Any] = pipe.execute()
                return replies

            busy |= {j.key for j, n in zip(chunk, store._call(lengths), strict=True) if n}
        return [g for g in groups if any(j.key in busy for j in g)]

    def _seal_batch(self, group: list[Journal]) -> bool:
        """Seal up to BATCH drafts of one group of journals; True if there may be more.

        An agent's journals go to its own chain (:func:`~._redis_ops.chain_of`),
        the deciders' deployment journal to chain 0.
        """
        store = self._store
        agent = group[0].agent
        c = 0 if agent is None else ops.chain_of(agent, store.audit_chains)
        ck = store.keys.chain(c)
        fields = [j.cursor for j in group]
        if agent is not None and c and agent not in self._placed:
            self._place(ck, fields)
            self._placed.add(agent)
        head = store._call(lambda: store.client.hmget(ck.head, "seq", "hash", *fields))
        seq, hash_, cursors = head[0], head[1], [int(c) if c else 0 for c in head[2:]]
        taken: list[tuple[Journal, list[Entry]]] = []
        for journal, c in zip(group, cursors, strict=True):
            raw = store._run(ops.trim_read(journal.key, journal.trimmed, c, self.BATCH))
            taken.append((journal, [read_entry(r) for r in raw]))
        if not any(entries for _, entries in taken):
            return False
        everything = [e.draft for _, entries in taken for e in entries]
        owners = self._owners(everything) if agent is not None else {}
        trusted = store.decision_keys.trusted
        merged: list[tuple[int, int, dict[str, Any], Journal]] = []
        last = 2**63
        for order, (journal, entries) in enumerate(taken):
            for i, entry in enumerate(entries):
                checked = check_draft(entry, journal, trusted, owners)
                # In the order the scripts ran; entries no script numbered, after them.
                place = entry.number if entry.number is not None else last
                merged.append((place, order * 10**9 + i, checked, journal))
        merged.sort(key=lambda m: (m[0], m[1]))
        merged, ids = self._first_writes(merged, ck.event_ids)
        head_seq = int(seq) if seq else 0
        head_hash = ops.text(hash_) if hash_ else GENESIS
        encoded = [encode_draft(d) for _, _, d, _ in merged]
        sealed = seal_encoded(head_hash, head_seq + 1, encoded)
        argv: list[Any] = [head_hash, len(sealed), head_seq + len(sealed), len(group)]
        for (journal, entries), c in zip(taken, cursors, strict=True):
            argv += [journal.cursor, c, len(entries)]
        for body, h in sealed:
            argv += [body, h]
        argv += [int(time.time() * 1000), EVENT_ID_WINDOW * 1000, *ids]
        script = store._scripts["seal"]
        keys = [ck.audit, ck.head, ck.event_ids]
        sealed_now = store._call(lambda: script(keys=keys, args=argv))
        if sealed_now and agent is not None:
            mine = [d for _, _, d, j in merged if j.source == "agent"]
            self._after_agent_batch(agent, mine)
        # Sealed or not (another process sealed first), read again.
        return True

    def _place(self, ck: ops.ChainKeys, fields: list[str]) -> None:
        """Start an agent's journals in a chain other than 0 where chain 0 left off.

        A deployment that had one chain kept every journal's sealed cursor in
        chain 0's head; going to several chains, an agent's journals carry
        on from there in their new chain (never sealed twice, none skipped).
        """
        store = self._store
        old = store._call(lambda: store.client.hmget(store.keys.head, *fields))

        def place() -> Any:
            pipe = store.client.pipeline(transaction=False)
            for field, value in zip(fields, old, strict=True):
                if value is not None:
                    pipe.hsetnx(ck.head, field, value)
            return pipe.execute()

        store._call(place)

    def _first_writes(
        self, merged: list[tuple[int, int, dict[str, Any], Journal]], event_ids: str
    ) -> tuple[list[tuple[int, int, dict[str, Any], Journal]], list[str]]:
        """``merged`` without drafts whose id was sealed already (or earlier in the batch).

        A write retried after its reply was lost (the first try did land)
        leaves the same draft, with the same id, in a journal twice: it is
        chained once. Returns the drafts to seal and their ids (as
        remembered: ``agent/id``, the deciders' with no agent).
        """
        store = self._store
        # Ids count per journal's owner: what an agent writes can only ever
        # stand in for (and so drop) a repeat of its own event.
        wanted = [
            f"{j.agent or ''}/{d['id']}" if isinstance(d.get("id"), str) else None
            for _, _, d, j in merged
        ]
        named = [i for i in wanted if isinstance(i, str)]
        if not named:
            return merged, []
        scores = store._call(lambda: store.client.zmscore(event_ids, named))
        seen = {i for i, score in zip(named, scores, strict=True) if score is not None}
        kept, ids = [], []
        for item, event_id in zip(merged, wanted, strict=True):
            if isinstance(event_id, str):
                if event_id in seen:
                    continue  # sealed before: a repeat
                seen.add(event_id)
                ids.append(event_id)
            kept.append(item)
        return kept, ids

    def _owners(self, drafts: Sequence[dict[str, Any]]) -> dict[str, str | None]:
        """The agent each request named in ``drafts`` belongs to (``where``)."""
        store = self._store
        rids = sorted({d["request_id"] for d in drafts if isinstance(d.get("request_id"), str)})
        if not rids:
            return {}
        found = store._call(lambda: store.client.hmget(store.keys.where, rids))
        return {
            rid: (None if o is None else ops.text(o)) for rid, o in zip(rids, found, strict=True)
        }

    def _after_agent_batch(self, agent: str, drafts: Sequence[dict[str, Any]]) -> None:
        """What the deciding side does about what an agent reported: halts, tampering."""
        store = self._store
        a = store.keys.of(agent)
        for event in drafts:
            kind, data = event.get("kind"), event.get("data") or {}
            try:
                if kind == "halt.set" and data.get("scope") in ("all", "session"):
                    reason = data.get("reason")
                    store.halt(
                        HaltScope(data["scope"]),
                        str(data.get("target") or "*"),
                        # Who halted is the journal's agent, whatever the event claims.
                        by=f"agent:{agent} ({str(event.get('actor'))[:100]})",
                        reason=reason if isinstance(reason, str) else None,
                    )
                elif kind == "request.tampering" and isinstance(event.get("request_id"), str):
                    # Kept where the agent can't erase it: consoles read it from here.
                    why = str(data.get("problem") or "refused as tampering")[:2000]
                    rid: str = event["request_id"]

                    def flag(rid: str = rid, why: str = why) -> Any:
                        return store.client.hset(a.flags, rid, why)

                    store._call(flag)
            except GatekeeperError as exc:
                log.error("audit: could not act on %s of agent %s: %s", kind, quoted(agent), exc)

    def stop(self) -> None:
        try:
            with self._work:
                try:
                    self._flush_locked()
                finally:
                    self._stopping = True
        finally:
            self._kicked.set()


#: What an agent's own gate writes to its journal, unsigned.
AGENT_KINDS = frozenset(
    {
        "call.allowed",
        "call.denied",
        "call.held",
        "call.refused",
        "call.executed",
        "call.failed",
        "call.observed",
        "call.shadow",
        "grant.used",
        "autonomy.demoted",
        "request.released",
        "request.executed",
        "request.failed",
        "request.cancelled",
        "request.expired",
        "request.abandoned",
        "request.outcome_unknown",
        "request.tampering",
        "halt.set",
        "channel.failed",
    }
)
#: Kinds that an agent's journal may hold only with a trusted signature.
SIGNED_KINDS = {
    "request.vote": VOTE,
    "request.approved": VOTE,
    "request.denied": VOTE,
    "request.responded": VOTE,
    "halt.cleared": RESUME,
}


@dataclass(frozen=True)
class Journal:
    """One journal to seal: whose (None: the deciders'), who writes it, its keys and cursor."""

    agent: str | None
    source: str  # "agent" (the agent's own journal) or "decider"
    key: str
    trimmed: str
    cursor: str


_OPTIONAL_TEXT = ("request_id", "call_id", "tool", "agent", "session_id")


@dataclass(frozen=True)
class Entry:
    """A journal entry read: the draft it holds, or (``made_here``) one saying it was unreadable.

    ``number`` is the place the writing script gave it among the entries of
    both journals of its hash tag (None when it has none: not written by one
    of the store's scripts).
    """

    draft: dict[str, Any]
    made_here: bool = False
    number: int | None = None


def read_entry(raw: bytes) -> Entry:
    """A journal entry as a draft: parsed, or an ``audit.unreadable`` draft saying what it held."""
    number: int | None = None
    if raw[:1] == b"#":
        head, sep, rest = raw[1:].partition(b":")
        if sep and head.isdigit() and len(head) < 20:
            number, raw = int(head), rest
    entry = _read(raw)
    return Entry(entry.draft, entry.made_here, number)


def _read(raw: bytes) -> Entry:
    now = int(time.time() * 1000)
    if raw.startswith(ops.OVERSIZE):
        size, _, sha1 = raw[len(ops.OVERSIZE) :].decode("ascii", "replace").partition(":")
        problem = f"an entry of {size} bytes, over the limit"
        return Entry(
            draft(
                "audit.unreadable",
                at_ms=now,
                actor="sealer",
                data={"problem": problem, "sha1": sha1},
            ),
            made_here=True,
        )
    body = raw[1:] if raw[:1] == b"=" else raw
    try:
        value = json.loads(body)
        if isinstance(value, dict) and isinstance(value.get("kind"), str):
            return Entry(value)
    except ValueError:
        pass
    # Never drop what the journal holds: keep it, flagged, in the chain.
    text = body.decode("utf-8", "replace")
    return Entry(
        draft("audit.unreadable", at_ms=now, actor="sealer", data={"raw": text[:10_000]}),
        made_here=True,
    )


def _shape_problem(value: dict[str, Any]) -> str | None:
    bad_id = event_id_problem(value)
    if bad_id is not None:
        return bad_id
    at = value.get("at")
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < 10**15:
        return "its time is not a number of milliseconds"
    if not isinstance(value.get("actor"), str) or not isinstance(value.get("data", {}), dict):
        return "its actor or data is not of the right type"
    for name in _OPTIONAL_TEXT:
        if value.get(name) is not None and not isinstance(value.get(name), str):
            return f"its {name} is not text"
    return None


def check_draft(
    entry: Entry,
    journal: Journal,
    trusted: TrustedKeys,
    owners: Mapping[str, str | None],
) -> dict[str, Any]:
    """The draft to seal for one journal entry: it, or an ``audit.refused`` draft.

    The deciders' journals are theirs alone to write (the ACL sees to it),
    though what they hold must still be well formed; an agent's journal is
    checked: see the module doc.
    """
    value = entry.draft
    if entry.made_here:  # say whose journal the unreadable entry came from
        return {**value, "agent": journal.agent}
    why = _shape_problem(value)
    if why is None and journal.agent is not None:
        why = _refusal(value, journal, trusted, owners)
    if why is None:
        return value
    who = journal.agent if journal.agent is not None else "the deciders"
    log.error("audit: refused a journal entry of %s: %s", quoted(who), why)
    claimed = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    rid = value.get("request_id")
    return draft(
        "audit.refused",
        at_ms=int(time.time() * 1000),
        actor="sealer",
        agent=journal.agent,
        request_id=rid if isinstance(rid, str) else None,
        data={
            "problem": why,
            "claimed_kind": str(value.get("kind"))[:100],
            "sha256": hashlib.sha256(claimed.encode("utf-8", "replace")).hexdigest(),
            "raw": claimed[:2_000],
        },
    )


def _refusal(
    value: dict[str, Any],
    journal: Journal,
    trusted: TrustedKeys,
    owners: Mapping[str, str | None],
) -> str | None:
    agent = journal.agent
    kind = str(value.get("kind"))[:100]
    if value.get("agent") != agent:
        return f"names agent {str(value.get('agent'))[:100]!r} in agent {agent!r}'s journal"
    rid = value.get("request_id")
    if isinstance(rid, str) and owners.get(rid, agent) != agent:
        return f"names request {rid[:100]!r}, which is not agent {agent!r}'s"
    if journal.source == "decider":
        purpose = SIGNED_KINDS.get(kind)
        if purpose is None:
            return None
        return _signature_problem(value, kind, purpose, agent, trusted)
    if kind not in AGENT_KINDS:
        if kind in SIGNED_KINDS:
            return f"{kind} events come from the deciders, never from an agent's journal"
        return f"an agent does not write {kind!r} events"
    actor = str(value.get("actor"))
    if actor not in (f"agent:{agent}", "system") and not actor.startswith("policy"):
        return f"its actor {actor[:100]!r} is not the agent, the system or its policy"
    return None


def _signature_problem(
    value: dict[str, Any], kind: str, purpose: str, agent: str | None, trusted: TrustedKeys
) -> str | None:
    data = value.get("data")
    signed = data.get("signed") if isinstance(data, dict) else None
    if not isinstance(signed, str):
        return f"a {kind} event must carry a signed record, and this one carries none"
    try:
        body = trusted.verify(purpose, signed)
    except TamperingDetected as exc:
        return f"its signed record fails its check: {exc}"
    if purpose == VOTE:
        wants_approve = kind not in ("request.denied", "request.responded")
        answers = isinstance(body.get("response"), str)
        same = (
            body.get("request_id") == value.get("request_id")
            and body.get("agent") == agent
            and body.get("approve") is wants_approve
            and answers == (kind == "request.responded")
            and value.get("actor") == f"approver:{body.get('approver')}"
        )
        if not same:
            return "its signed vote is for another request, approver or outcome"
    return None
