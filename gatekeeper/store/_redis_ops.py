"""What the Redis store sends and how it reads the answers, shared by both faces.

Each operation is an :class:`Op`: which Lua script, its keys and arguments, and
a function that turns the reply into a result or an error. The blocking and
async faces only differ in how they send it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar

from .._canonical import canonical_json
from .._errors import AgentHalted, RequestNotFound, StoreError, TransitionRefused
from ..audit import encode_draft
from ..models import ApprovalRequest, Decision, Halt, HaltScope, Risk, halt_key, utc
from ._base import check_note
from ._halts import halted_message, ms

__all__ = ["SCRIPTS", "Keys", "Op", "request_from_hash"]

T = TypeVar("T")

_SCRIPT_NAMES = (
    "admit",
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
)


def _load_scripts() -> dict[str, str]:
    base = resources.files("gatekeeper.store") / "lua"
    prelude = (base / "_prelude.lua").read_text(encoding="utf-8")
    return {
        name: prelude + "\n" + (base / f"{name}.lua").read_text(encoding="utf-8")
        for name in _SCRIPT_NAMES
    }


SCRIPTS = _load_scripts()


class Keys:
    """The key layout of one deployment. Every key shares the hash tag ``{prefix}``."""

    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ValueError("prefix must be non-empty and must not contain braces")
        tag = f"{{{prefix}}}"
        self.prefix = prefix
        self._tag = tag
        self.pending = f"{tag}:pending"
        self.requests = f"{tag}:requests"
        self.owners = f"{tag}:owners"
        self.halts = f"{tag}:halts"
        self.journal = f"{tag}:journal"
        self.audit = f"{tag}:audit"
        self.head = f"{tag}:head"
        self.channel = f"{tag}:decided"
        self._req = f"{tag}:req:"

    def req(self, rid: str) -> str:
        return self._req + rid

    def voters(self, rid: str) -> str:
        return f"{self._req}{rid}:voters"

    def votes(self, rid: str) -> str:
        return f"{self._req}{rid}:votes"

    def seen(self, rid: str) -> str:
        return f"{self._req}{rid}:seen"

    def wake(self, rid: str) -> str:
        return f"{self._req}{rid}:wake"

    def pending_by_risk(self, risk: Risk | str) -> str:
        """Pending requests of one risk, scored by expiry (``settle`` in Lua derives it too)."""
        return f"{self.pending}:{risk}"

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


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _check(reply: Any, rid: str | None = None, tool: str | None = None) -> list[Any]:
    tag = _text(reply[0])
    if tag == "ok":
        return list(reply)
    parts = [_text(p) for p in reply]
    if tag == "halted":
        halt = Halt.model_validate_json(parts[1])
        raise AgentHalted(halted_message(halt), scope=halt.key, tool=tool, request_id=rid)
    if tag == "missing" and rid is not None:
        raise RequestNotFound(rid)
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
    return b"=" + encode_draft(event)


def _json(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def admit(k: Keys, event: Mapping[str, Any], agent: str, session_id: str) -> Op[None]:
    def parse(reply: Any) -> None:
        _check(reply, tool=event.get("tool"))

    return Op("admit", [k.halts, k.journal], [agent, session_id, journal_entry(event)], parse)


def hold(k: Keys, request: ApprovalRequest, event: Mapping[str, Any]) -> Op[None]:
    call = request.call
    rid = request.id

    def parse(reply: Any) -> None:
        parts = [_text(p) for p in reply]
        if parts[0] == "exists":
            raise TransitionRefused(
                f"request {rid} already exists", request_id=rid, status=parts[1], action="hold"
            )
        _check(reply, rid, call.tool)

    args = [
        rid,
        call.agent,
        call.session_id,
        call.tool,
        call.id,
        request.model_dump_json(),
        ms(request.expires_at),
        request.quorum,
        _json(request.args),
        request.args_digest,
        ms(request.created_at),
        journal_entry(event),
        request.classification.risk.value,
        k.channel,
    ]
    keys = [
        k.req(rid),
        k.halts,
        k.pending,
        k.owners,
        k.journal,
        k.requests,
        k.pending_by_risk(request.classification.risk),
    ]
    return Op("hold", keys, args, parse)


def _transition(rid: str) -> Callable[[Any], ApprovalRequest]:
    def parse(reply: Any) -> ApprovalRequest:
        _, flat, votes = _check(reply, rid)
        return request_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)), votes)

    return parse


def decide(
    k: Keys, rid: str, decision: Decision, now_ms: int | str, args: Mapping[str, Any] | None
) -> Op[ApprovalRequest]:
    keys = [
        k.req(rid),
        k.voters(rid),
        k.votes(rid),
        k.seen(rid),
        k.wake(rid),
        k.pending,
        k.owners,
        k.journal,
    ]
    argv = [
        k.channel,
        now_ms,
        decision.approver,
        "1" if decision.approve else "0",
        decision.args_digest,
        _decision_json(decision),
        _json(args) if args is not None else "",
    ]
    return Op("decide", keys, argv, _transition(rid))


def _decision_json(decision: Decision) -> str:
    body = decision.model_dump(mode="json")
    body["at"] = ms(decision.at)
    return _json(body)


def expire(k: Keys, rid: str, now_ms: int | str) -> Op[ApprovalRequest]:
    keys = [k.req(rid), k.wake(rid), k.pending, k.owners, k.journal, k.votes(rid)]
    return Op("expire", keys, [k.channel, now_ms], _transition(rid))


def cancel(
    k: Keys, rid: str, now_ms: int | str, by: str, reason: str | None
) -> Op[ApprovalRequest]:
    keys = [k.req(rid), k.wake(rid), k.pending, k.owners, k.journal, k.votes(rid)]
    return Op("cancel", keys, [k.channel, now_ms, by, reason or ""], _transition(rid))


def claim(
    k: Keys, rid: str, now_ms: int | str, args_digest: str, token: str | None
) -> Op[ApprovalRequest]:
    keys = [k.req(rid), k.halts, k.wake(rid), k.journal, k.votes(rid)]
    return Op("claim", keys, [k.channel, now_ms, args_digest, token or ""], _transition(rid))


def finish(
    k: Keys, rid: str, now_ms: int | str, ok: bool, outcome: str | None
) -> Op[ApprovalRequest]:
    keys = [k.req(rid), k.wake(rid), k.journal, k.votes(rid)]
    argv = [k.channel, now_ms, "1" if ok else "0", outcome or ""]
    return Op("finish", keys, argv, _transition(rid))


def halt(k: Keys, record: Halt, event: Mapping[str, Any], now_ms: int | str) -> Op[list[str]]:
    """Set the halt and cancel the scope's pending requests, in one script."""

    def parse(reply: Any) -> list[str]:
        return [_text(r) for r in reply]

    argv = [
        record.key,
        record.model_dump_json(),
        record.scope.value,
        record.target,
        json.dumps(event),
        k.req(""),
        k.channel,
        now_ms,
        record.by,
        f"halted: {record.reason or 'kill switch'}",
    ]
    return Op("halt", [k.halts, k.owners, k.journal, k.pending], argv, parse)


def resume(k: Keys, scope: HaltScope, target: str, event: Mapping[str, Any]) -> Op[bool]:
    return Op("resume", [k.halts, k.journal], [halt_key(scope, target), journal_entry(event)], bool)


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


def request_from_hash(fields: Mapping[bytes, bytes], votes: list[bytes]) -> ApprovalRequest:
    """Rebuild an :class:`ApprovalRequest` from its hash and its votes list."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    doc = json.loads(f["doc"])
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
        outcome=f.get("outcome"),
        finished_at=utc(int(f["finished_at"])) if "finished_at" in f else None,
    )
    return ApprovalRequest.model_validate(doc)
