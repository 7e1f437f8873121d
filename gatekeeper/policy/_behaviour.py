"""Sequences and limits, compiled: what one call means for the behaviour state in the store.

``classify`` judges a call alone. Sequences and limits need what the agent
did before, which lives in the store, shared by every process of the agent.
So the policy does the pure part here — which steps of which sequences the
call matches, which limits count it and under which key — and hands the store
a :class:`Plan`. The store applies it atomically (on ``RedisStore`` inside the
script that admits or holds the call) and answers with the sequences the call
completes and the limits it would pass, as :class:`~gatekeeper.models.BehaviourHit`.

The rules the store applies (docs/policy.md, "Sequences and limits"):

- every call is a step *attempt* when it is classified, whatever its verdict
  (a refused attempt still moves a sequence on: trying counts);
- a ``not`` step is only satisfied by a call that *ran* (allowed at once, or
  approved and released): a refused or pending call can't reset a match;
- a sequence keeps, per step, the latest start of a partial match, and fires
  on the call that completes it within ``within`` of its first step;
- a limit is checked on every call, and consumed only by a call that runs:
  allowed at once, or approved and released (then even past the limit).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._canonical import canonical_json
from ..models import BehaviourHit, StepCall, ToolCall, Verdict, utc
from ._compiled import glob_regex
from ._matchers import (
    _UNREADABLE,
    ABSENT,
    ArgCondition,
    compile_args,
    lookup,
    shown_value,
    url_host,
)
from ._schema import LimitRule, Match, Matcher, NoveltyRule, SequenceRule, StepMatch

__all__ = [
    "CompiledLimit",
    "CompiledNovelty",
    "CompiledSequence",
    "LimitUse",
    "NewUse",
    "Plan",
    "SeqUse",
    "hits_from_wire",
]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class StepMatcher:
    """One step's matcher: tool and agent globs, argument conditions (three-valued)."""

    __slots__ = ("_agent", "_conditions", "_server", "_tool", "tools")

    def __init__(
        self,
        tool: tuple[str, ...] | None,
        agent: tuple[str, ...] | None,
        args: Mapping[str, Matcher],
        server: tuple[str, ...] | None = None,
    ) -> None:
        assert tool is not None
        self.tools: tuple[str, ...] = tool
        self._tool = glob_regex(tool)
        self._agent = None if agent in (None, ("*",)) else glob_regex(agent or ())
        self._server = None if server is None else glob_regex(server)
        self._conditions: tuple[ArgCondition, ...] = compile_args(args)

    @classmethod
    def of(cls, match: StepMatch | Match) -> StepMatcher:
        return cls(match.tool, match.agent, match.args, match.server)

    def names(self, tool: str) -> bool:
        """Whether the step's tool globs name ``tool``."""
        return bool(self._tool(tool))

    def matches(self, call: ToolCall, *, definite: bool) -> bool:
        """Whether ``call`` matches; an argument that can't be evaluated counts as a
        match unless ``definite`` (a ``not`` step needs a definite match to clear a
        sequence; a positive step errs towards matching)."""
        if not self._tool(call.tool):
            return False
        if self._agent is not None and not self._agent(call.agent):
            return False
        if self._server is not None and (call.server is None or not self._server(call.server)):
            return False
        for condition in self._conditions:
            result = condition.evaluate(call.args)
            if result is False or (result is not True and definite):
                return False
        return True


class CompiledSequence:
    """A sequence rule with its ``times`` expanded into positions 1..n and its ``not``
    steps placed between positions (a ``not`` after position k clears level k)."""

    __slots__ = ("index", "n", "negated", "positives", "rule", "tools")

    def __init__(self, rule: SequenceRule, index: int) -> None:
        self.rule = rule
        self.index = index
        positives: list[StepMatcher] = []
        negated: list[tuple[int, StepMatcher]] = []
        for step in rule.steps:
            if step.absent is not None:
                negated.append((len(positives), StepMatcher.of(step.absent)))
            else:
                matcher = StepMatcher(step.tool, step.agent, step.args, step.server)
                positives.extend([matcher] * step.times)
        self.positives = tuple(positives)
        self.negated = tuple(negated)
        self.n = len(positives)
        self.tools = tuple({t for m in (*positives, *(m for _, m in negated)) for t in m.tools})

    @property
    def id(self) -> str:
        return self.rule.id

    def use(self, call: ToolCall) -> SeqUse | None:
        matched = tuple(
            i + 1 for i, m in enumerate(self.positives) if m.matches(call, definite=False)
        )
        kills = tuple(sorted({lvl for lvl, m in self.negated if m.matches(call, definite=True)}))
        if not matched and not kills:
            return None
        scope = "a" if self.rule.per == "agent" else "s:" + _digest(call.session_id)
        return SeqUse(self, f"seq:{self.rule.id}:{scope}", matched, kills)


class CompiledLimit:
    """A limit rule: its matcher and how it partitions and counts calls."""

    __slots__ = ("_match", "index", "max", "rule", "tools", "window")

    def __init__(self, rule: LimitRule, index: int) -> None:
        self.rule = rule
        self.index = index
        self.tools = rule.match.tool
        self._match = StepMatcher.of(rule.match)
        if rule.kind == "rate":
            count, period = rule.parsed_rate
            self.max: float = float(count)
            self.window: float = period
        elif rule.kind == "budget":
            assert rule.max is not None
            assert rule.window is not None
            self.max, self.window = float(rule.max), float(rule.window)
        else:
            assert rule.concurrent is not None
            self.max, self.window = float(rule.concurrent), 0.0

    @property
    def id(self) -> str:
        return self.rule.id

    def use(self, call: ToolCall) -> LimitUse | None:
        if not self._match.matches(call, definite=False):
            return None
        per = self.rule.per
        if per == "agent":
            part = "a"
        elif per == "session":
            part = "s:" + _digest(call.session_id)
        elif per == "tool":
            part = "t:" + _digest(call.tool)
        elif per == "global":
            part = "g"
        else:
            value = lookup(call.args, tuple(per[5:].split(".")))
            shown = "absent" if value is ABSENT else canonical_json(value).decode()
            part = "v:" + _digest(shown)
        amount, bad = 1.0, None
        if self.rule.sum is not None:
            value = lookup(call.args, tuple(self.rule.sum.split(".")))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                bad = f"args.{self.rule.sum} is not a number, so it can't be counted"
                amount = 0.0
            elif not math.isfinite(value) or value < 0:
                bad = f"args.{self.rule.sum} is {value}, which a budget can't count"
                amount = 0.0
            else:
                amount = float(value)
        return LimitUse(self, f"lim:{self.rule.id}:{part}", amount, bad, per == "global")


class CompiledNovelty:
    """A novelty rule: which calls it watches, and the value that is new or known."""

    __slots__ = ("_match", "index", "rule", "tools")

    def __init__(self, rule: NoveltyRule, index: int) -> None:
        self.rule = rule
        self.index = index
        self.tools = rule.match.tool
        self._match = StepMatcher.of(rule.match)

    @property
    def id(self) -> str:
        return self.rule.id

    def use(self, call: ToolCall) -> NewUse | None:
        if not self._match.matches(call, definite=False):
            return None
        path = self.rule.arg_path
        if path is None:
            value: Any = call.tool
            shown = f"tool {shown_value(call.tool, 200)}"
        else:
            value = lookup(call.args, path)
            if value is ABSENT:
                return None  # the call does not use such a value: nothing new about it
            name = ".".join(path)
            if value is _UNREADABLE:  # the path runs through a string or a list: never known
                shown = f"args.{name}, which can't be read (the path runs through a non-object)"
                return NewUse(self, f"new:{self.rule.id}", "unparsable", shown)
            if self.rule.by_host:
                host = url_host(value)
                # A URL whose host can't be told for sure is never known: always new.
                value = host if host is not None else {"unparsable": value}
                shown = (
                    f"host {shown_value(host, 200)}"
                    if host is not None
                    else f"args.{name} {shown_value(value['unparsable'], 200)} (no host that "
                    "can be told for sure)"
                )
            else:
                shown = f"args.{name} {shown_value(value, 200)}"
        digest = _digest(canonical_json(value).decode())
        if self.rule.by_host and isinstance(value, dict):
            digest = "unparsable"  # never stored as known (see the store)
        return NewUse(self, f"new:{self.rule.id}", digest, shown)


@dataclass(frozen=True, slots=True)
class NewUse:
    """How one call touches one novelty rule: the value's digest, and how it is shown."""

    novelty: CompiledNovelty
    key: str
    digest: str
    shown: str


@dataclass(frozen=True, slots=True)
class SeqUse:
    """How one call touches one sequence: the positions it matches, the levels it clears."""

    seq: CompiledSequence
    key: str
    matched: tuple[int, ...]
    kills: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LimitUse:
    """How one call counts against one limit: under which key, by how much."""

    limit: CompiledLimit
    key: str
    amount: float
    bad: str | None
    shared: bool  # per: global — counted for the whole deployment, not in the agent's keys


Mode = Literal["attempt", "admit", "release"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a call means for the behaviour state; the store applies it (see module doc)."""

    call_id: str
    tool: str
    seqs: tuple[SeqUse, ...]
    limits: tuple[LimitUse, ...]
    new: tuple[NewUse, ...] = ()
    shadow_all: bool = False  # the whole policy is in shadow mode

    def _sh(self, mode: str) -> int:
        return 1 if self.shadow_all or mode == "shadow" else 0

    def wire(self) -> dict[str, Any]:
        """The plan as JSON-able data, for the store's scripts (keys relative to the agent)."""
        return {
            "c": self.call_id,
            "t": self.tool,
            "s": [
                {
                    "k": u.key,
                    "i": u.seq.id,
                    "n": u.seq.n,
                    "w": int(u.seq.rule.within * 1000),
                    "m": list(u.matched),
                    "x": list(u.kills),
                    "v": u.seq.rule.verdict.value,
                    "sh": self._sh(u.seq.rule.mode),
                }
                for u in self.seqs
            ],
            "l": [
                {
                    "k": u.key,
                    "i": u.limit.id,
                    "kind": u.limit.rule.kind,
                    "max": _units(u.limit.max) if u.limit.rule.kind == "budget" else u.limit.max,
                    "w": int(u.limit.window * 1000),
                    "a": _units(u.amount) if u.limit.rule.kind == "budget" else 1,
                    "bad": u.bad or "",
                    "g": 1 if u.shared else 0,
                    "v": u.limit.rule.on_exceed.value,
                    "sh": self._sh(u.limit.rule.mode),
                }
                for u in self.limits
            ],
            "n": [
                {
                    "k": u.key,
                    "i": u.novelty.id,
                    "d": u.digest,
                    "s": u.shown,
                    "v": u.novelty.rule.verdict.value,
                    "sh": self._sh(u.novelty.rule.mode),
                }
                for u in self.new
            ],
        }


def _when(ms: float) -> str:
    return utc(int(ms)).strftime("%H:%M:%S UTC")


def hits_from_wire(
    raw: Sequence[Mapping[str, Any]],
    sequences: Mapping[str, SequenceRule],
    limits: Mapping[str, LimitRule],
    novelty: Mapping[str, NoveltyRule] | None = None,
) -> tuple[BehaviourHit, ...]:
    """The store's answer (JSON-able hits) as :class:`BehaviourHit`, with sentences for people."""
    out: list[BehaviourHit] = []
    for h in raw:
        hid, verdict, shadow = str(h["i"]), Verdict(h["v"]), h.get("sh") == 1
        if h["kind"] == "sequence":
            calls = tuple(
                StepCall(tool=c[1], at=utc(int(c[2])), call_id=c[0], request_id=c[3] or None)
                for c in h.get("c", ())
            )
            seq = sequences.get(hid)
            first = _when(calls[0].at.timestamp() * 1000) if calls else "?"
            steps = " → ".join(c.tool for c in calls)
            said = seq.reason if seq is not None and seq.reason else None
            reason = f"sequence {hid}: {steps} since {first}" + (f" ({said})" if said else "")
            out.append(
                BehaviourHit(
                    kind="sequence",
                    id=hid,
                    verdict=verdict,
                    reason=reason,
                    calls=calls,
                    shadow=shadow,
                )
            )
        elif h["kind"] == "novelty":
            rule = novelty.get(hid) if novelty is not None else None
            text = f"novelty {hid}: the first call with {h['s']} by this agent"
            if rule is not None and rule.reason:
                text += f" ({rule.reason})"
            out.append(
                BehaviourHit(kind="novelty", id=hid, verdict=verdict, reason=text, shadow=shadow)
            )
        else:
            lim = limits.get(hid)
            used, most, adds = float(h["u"]), float(h["max"]), float(h.get("a", 0))
            if lim is not None and lim.kind == "budget":  # the store counts micro-units
                used, most, adds = used / UNIT, most / UNIT, adds / UNIT
            if h.get("bad"):
                text = f"limit {hid}: {h['bad']}"
            elif lim is not None and lim.kind == "concurrent":
                text = f"limit {hid}: {_num(used)} of at most {_num(most)} calls already running"
            elif lim is not None and lim.kind == "budget":
                text = (
                    f"limit {hid}: {_num(used)} of {_num(most)} already used in the window, "
                    f"this call adds {_num(adds)}"
                )
            else:
                text = f"limit {hid}: {_num(used)} of {_num(most)} calls already made in the window"
            if lim is not None and lim.reason:
                text += f" ({lim.reason})"
            out.append(
                BehaviourHit(
                    kind="limit",
                    id=hid,
                    verdict=verdict,
                    reason=text,
                    used=used,
                    max=most,
                    shadow=shadow,
                )
            )
    return tuple(out)


#: A budget is counted in millionths of its unit, as whole numbers: sums of
#: amounts like 0.1 are then exact, and the same in every store.
UNIT = 1_000_000


def _units(value: float) -> int:
    return round(value * UNIT)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
