"""MemoryStore (Python) and RedisStore (Lua) make the same sequence and limit decisions.

Random traces of calls by two agents in two sessions, against a policy with a
rate limit counted per ``args.to``, a budget over ``amount``, a concurrency
cap and two sequences (one with a ``not`` step, one with ``times``), go to
both stores on one ``ManualClock``, step by step as the gate drives them:
admitted with their verdict, or attempted and held, then released or not,
concurrency slots freed, the same call retried, the clock moved on. Every
answer (the hits: kind, id, verdict, used / max and amount for a limit, the
earlier calls for a sequence) must be the same, and so must the limit usage
left at the end. Then a short scripted run through real guarded tools (held
calls approved or denied by a person) ends the same way on each store: the
same calls ran, were denied, or were halted.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper import AgentHalted, ApprovalDenied, Gatekeeper, Policy, ToolCallDenied
from gatekeeper._canonical import digest
from gatekeeper._pipeline import call_event
from gatekeeper.models import ToolCall, Verdict
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock, RecordingChannel
from tests.conftest import RedisServer
from tests.storekit import MANUAL_LEASE
from tests.webkit import APPROVERS

pytestmark = pytest.mark.redis

POLICY = """
version: 1
default: allow
rules:
  - {id: big-refunds, match: {tool: refund, args: {amount: {gt: 60}}}, verdict: require_approval}
  - {id: no-wipes, match: {tool: wipe}, verdict: deny}
  - {id: closed-accounts, match: {tool: refund, args: {account: closed}}, verdict: deny}
  - {id: prod-keys-stay, match: {tool: rotate_key, args: {name: prod}}, verdict: deny}
  - {id: prod-exports, match: {tool: export, args: {name: prod}}, verdict: require_approval}
limits:
  - {id: mail-rate, match: {tool: send_email}, rate: 2/minute, per: args.to, on_exceed: deny}
  - id: refund-budget
    match: {tool: refund}
    sum: amount
    max: 100
    window: 1h
    on_exceed: require_approval
  - {id: exports-at-once, match: {tool: export}, concurrent: 2, on_exceed: deny}
sequences:
  - id: secret-then-out
    steps:
      - {tool: read_secret}
      - {not: {tool: rotate_key}}
      - {tool: [send_email, export]}
    within: 10m
    per: session
    verdict: halt
  - id: wipe-twice-then-export
    steps: [{tool: wipe, times: 2}, {tool: export}]
    within: 1h
    per: agent
    verdict: require_approval
"""

ARGS: dict[str, list[dict[str, Any]]] = {
    "send_email": [{"to": "a@example.com"}, {"to": "b@example.com"}],
    # a budget counts numbers of 0 and up; anything else is a hit of its own. The
    # amounts are exact in binary: sums of ones like 0.1 can differ with the order
    # they are added in, and the two stores add them in different orders.
    "refund": [
        *({"amount": a} for a in (5, 20, 40, 40, 2.5, 70, 0, -3, "ten", None)),
        {"amount": 40, "account": "closed"},
    ],
    "export": [{"name": "x"}, {"name": "prod"}],
    "read_secret": [{"name": "db"}],
    "rotate_key": [{"name": "db"}, {"name": "prod"}],
    "wipe": [{"disk": "d1"}],
}
AGENTS = ("bot", "other")
SESSIONS = ("s1", "s2")
WAITS = (0.001, 0.001, 1, 1, 20, 59.999, 60, 61, 600, 3600)  # mostly short: counts pile up


def norm(value: Any) -> Any:
    """JSON as both stores answer it, numbers compared as numbers (Lua has one kind)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [norm(v) for v in value]
    assert isinstance(value, dict)
    return {k: norm(v) for k, v in value.items()}


def usage(store: Store) -> list[Any]:
    """The limit entries a store keeps: ``[agent, key, [[ms, amount], ...]]``, sorted."""
    kept = store.behaviour_usage()
    return sorted(norm([agent, key, [list(e) for e in entries]]) for agent, key, entries in kept)


@dataclass
class Made:
    """A call one of the traces made, and where it stands."""

    agent: str
    plan: dict[str, Any]
    request_id: str | None


class Pair:
    """The two stores, one clock, the same steps; every answer compared."""

    def __init__(self, url: str, prefix: str) -> None:
        self.clock = ManualClock()
        self.policy = Policy.from_yaml(POLICY)
        self.stores: list[Store] = [
            MemoryStore(clock=self.clock),
            RedisStore(url, prefix=prefix, clock=self.clock, lease=MANUAL_LEASE),
        ]
        self.ids = itertools.count(1)
        self.made: list[Made] = []  # every call with a plan, for retries
        self.pending: list[Made] = []  # held, not yet decided
        self.running: list[Made] = []  # ran, holding a concurrency slot
        self.answers = 0

    def close(self) -> None:
        for s in self.stores:
            s.close()

    def both(self, step: Callable[[Store], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        memory, redis = (step(s) for s in self.stores)
        assert norm(memory) == norm(redis)
        self.answers += 1
        return memory

    def call(self, agent: str, session: str, tool: str, args: dict[str, Any]) -> list[Any]:
        """One call, classified by the policy and driven as the gate does; its hits."""
        n = next(self.ids)
        call = ToolCall(
            id=f"c{n}",
            tool=tool,
            args=args,
            args_digest=digest(args),
            agent=agent,
            session_id=session,
            created_at=self.clock.now(),
        )
        cls = self.policy.classify(call)
        plan = self.policy.plan(call)
        if plan is None:
            return []
        wire = plan.wire()
        if cls.verdict is Verdict.REQUIRE_APPROVAL:  # held: attempted now, maybe released later
            made = Made(agent, wire, f"r{n}")
            hits = self.both(lambda s: s.observe(wire, agent=agent, request_id=made.request_id))
            self.pending.append(made)
        else:
            made = Made(agent, wire, None)
            hits = self.both(
                lambda s: s.admit(
                    call_event(call, cls),
                    agent=agent,
                    session_id=session,
                    plan=wire,
                    verdict=cls.verdict.value,
                )
            )
            top = max((Verdict(h["v"]) for h in hits), key=lambda v: v.strictness, default=None)
            if top is Verdict.REQUIRE_APPROVAL:  # escalated to a person: held with its plan
                self.pending.append(made)
            elif not hits and cls.verdict is Verdict.ALLOW and self.takes_slot(wire):
                self.running.append(made)
        self.made.append(made)
        return hits

    @staticmethod
    def takes_slot(wire: dict[str, Any]) -> bool:
        return any(lim["kind"] == "concurrent" for lim in wire["l"])

    def release(self, pick: int) -> None:
        if self.pending:
            made = self.pending.pop(pick % len(self.pending))
            assert self.both(lambda s: s.observe(made.plan, agent=made.agent, mode="release")) == []
            if self.takes_slot(made.plan):
                self.running.append(made)

    def drop(self, pick: int) -> None:  # denied, expired: it never runs, nothing to tell
        if self.pending:
            self.pending.pop(pick % len(self.pending))

    def done(self, pick: int) -> None:
        if self.running:
            made = self.running.pop(pick % len(self.running))
            assert self.both(lambda s: s.observe(made.plan, agent=made.agent, mode="done")) == []

    def retry(self, pick: int) -> None:
        """The same call's attempt again (a lost reply): counted once, the same answer."""
        if self.made:
            made = self.made[pick % len(self.made)]
            self.both(lambda s: s.observe(made.plan, agent=made.agent, request_id=made.request_id))


@st.composite
def ops(draw: st.DrawFn) -> tuple[Any, ...]:
    """One step: mostly a call, by mostly one agent in one session, so that counts pile up."""
    kind = draw(st.sampled_from(["call"] * 6 + ["release", "drop", "done", "retry", "wait"]))
    if kind == "wait":
        return ("wait", draw(st.sampled_from(WAITS)))
    if kind != "call":
        return (kind, draw(st.integers(0, 99)))
    agent = draw(st.sampled_from([AGENTS[0]] * 3 + [AGENTS[1]]))
    session = draw(st.sampled_from([SESSIONS[0]] * 3 + [SESSIONS[1]]))
    tool = draw(st.sampled_from(sorted(ARGS)))
    return ("call", agent, session, (tool, draw(st.sampled_from(ARGS[tool]))))


traces = st.integers(20, 60).flatmap(lambda n: st.lists(ops(), min_size=n, max_size=n))


def brief(hits: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (h["kind"], h["i"], h["u"], h["max"])
        if h["kind"] == "limit"
        else (h["kind"], h["i"], [c[1] for c in h["c"]])
        for h in hits
    ]


def test_a_hand_made_trace_hits_every_rule_at_its_edge_the_same_on_both(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Each rule's edge (the last call that passes, the first that doesn't), on both stores
    (``Pair`` compares every answer), so the random traces above have hits to compare."""
    pair = Pair(redis_server.url, redis_prefix)

    def call(tool: str, args: dict[str, Any], session: str = "s1") -> list[tuple[Any, ...]]:
        return brief(pair.call("bot", session, tool, args))

    a, b, c = ({"to": f"{who}@example.com"} for who in "abc")
    try:
        assert call("send_email", a) == []
        assert call("send_email", a) == []
        assert call("send_email", a) == [("limit", "mail-rate", 2, 2)]  # denied: not counted
        assert call("send_email", b) == []  # counted per address
        pair.clock.advance(59.999)  # a rate's window: the calls of the last minute
        assert call("send_email", a) == [("limit", "mail-rate", 2, 2)]
        pair.clock.advance(0.001)
        assert call("send_email", a) == []

        assert call("refund", {"amount": 40}) == []
        assert call("refund", {"amount": 40}) == []
        assert call("refund", {"amount": 20}) == []  # 100 of 100: not past it
        assert call("refund", {"amount": 0}) == []
        assert call("refund", {"amount": 40, "account": "closed"}) == []  # denied: not counted
        # A budget is counted in micro-units (whole numbers, exact in every store).
        full = ("limit", "refund-budget", 100_000_000, 100_000_000)
        assert call("refund", {"amount": 2.5}) == [full]
        assert call("refund", {"amount": "ten"}) == [full]
        assert len(pair.pending) == 2  # both held, not released: not counted

        assert call("export", {"name": "x"}) == []
        assert call("export", {"name": "x"}) == []
        assert call("export", {"name": "x"}) == [("limit", "exports-at-once", 2, 2)]
        pair.done(0)
        assert call("export", {"name": "x"}) == []  # a slot was freed

        assert call("read_secret", {"name": "db"}) == []
        assert call("send_email", c) == [("sequence", "secret-then-out", ["read_secret"])]
        assert call("wipe", {"disk": "d1"}) == []  # denied by its rule: a step all the same
        assert call("wipe", {"disk": "d1"}, session="s2") == []
        assert call("export", {"name": "x"}, session="s2") == [  # per agent: both sessions
            ("sequence", "wipe-twice-then-export", ["wipe", "wipe"]),
            ("limit", "exports-at-once", 2, 2),
        ]

        pair.clock.advance(600)  # ``within`` 10m of the read_secret, to the millisecond
        assert call("send_email", c) == [("sequence", "secret-then-out", ["read_secret"])]
        pair.clock.advance(0.001)
        assert call("send_email", c) == []
        assert call("read_secret", {"name": "db"}) == []
        assert call("rotate_key", {"name": "prod"}) == []  # denied: it clears nothing
        assert call("send_email", c) == [("sequence", "secret-then-out", ["read_secret"])]
        assert call("rotate_key", {"name": "db"}) == []  # it ran: the read_secret is cleared
        assert call("send_email", c) == []
        assert call("read_secret", {"name": "db"}) == []
        assert call("send_email", c) == [  # two to c this minute already
            ("sequence", "secret-then-out", ["read_secret"]),
            ("limit", "mail-rate", 2, 2),
        ]

        pair.release(0)  # the 2.5 refund, approved: it runs now, counted past the budget
        assert call("refund", {"amount": 0}) == [
            ("limit", "refund-budget", 102_500_000, 100_000_000)
        ]
    finally:
        pair.close()


prefixes = itertools.count()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(trace=traces)
def test_both_stores_answer_every_step_the_same(
    trace: list[tuple[Any, ...]], redis_server: RedisServer, redis_prefix: str
) -> None:
    pair = Pair(redis_server.url, f"{redis_prefix}-{next(prefixes)}")
    try:
        for op in trace:
            if op[0] == "call":
                _, agent, session, (tool, args) = op
                pair.call(agent, session, tool, args)
            elif op[0] == "wait":
                pair.clock.advance(op[1])
            else:
                getattr(pair, op[0])(op[1])
        memory, redis = (usage(s) for s in pair.stores)
        assert memory == redis
    finally:
        pair.close()


# -- the same, through real guarded tools --------------------------------------------------------
class Script:
    """A gate on ``store``; each guarded call's outcome recorded as ran / denied / halted."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.clock = clock
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            clock=clock,
            approvers=APPROVERS,
            channels=[self.channel],
            default_timeout=60,
            default_agent="bot",
        )
        self.outcomes: list[tuple[str, str]] = []
        self.ran: list[str] = []
        gate, ran, me = self.gate, self.ran, self

        @gate.guard
        def send_email(to: str) -> None:
            ran.append(f"send_email {to}")

        @gate.guard
        def refund(amount: Any, account: str = "open") -> None:
            ran.append(f"refund {amount}")

        @gate.guard
        def export(name: str, depth: int = 0) -> None:
            ran.append(f"export {name}")
            if depth:  # while this export runs, another starts
                me.do(export, name, depth - 1)

        @gate.guard
        def read_secret(name: str) -> None:
            ran.append(f"read_secret {name}")

        @gate.guard
        def rotate_key(name: str) -> None:
            ran.append(f"rotate_key {name}")

        self.send_email, self.refund, self.export = send_email, refund, export
        self.read_secret, self.rotate_key = read_secret, rotate_key

    def do(self, fn: Callable[..., Any], *args: Any) -> None:
        name = f"{fn.__name__}{args}"
        try:
            fn(*args)
        except ToolCallDenied:
            self.outcomes.append((name, "denied"))
        except ApprovalDenied:
            self.outcomes.append((name, "approval denied"))
        except AgentHalted:
            self.outcomes.append((name, "halted"))
        else:
            self.outcomes.append((name, "ran"))

    def held(self, fn: Callable[..., Any], *args: Any, approve: bool) -> None:
        """A call that waits for a person, who approves or denies it."""
        seen = len(self.channel.notified)
        thread = threading.Thread(target=self.do, args=(fn, *args), daemon=True)
        thread.start()
        request = self.channel.wait_for_request(seen + 1)
        if approve:
            self.gate.approve(request.id, approver="alice")
        else:
            self.gate.deny(request.id, approver="alice", comment="no")
        thread.join(10)
        assert not thread.is_alive()

    def run(self) -> None:
        with self.gate.session(session_id="run-1"):
            for _ in range(3):
                self.do(self.send_email, "a@example.com")
            self.do(self.send_email, "b@example.com")
            self.clock.advance(61)
            self.do(self.send_email, "a@example.com")

            self.do(self.refund, 40)
            self.do(self.refund, 40, "closed")  # denied by a rule: never counted
            self.do(self.refund, 40)
            self.held(self.refund, 30, approve=True)  # past the budget: a person lets it run
            self.held(self.refund, 5, approve=False)  # past it still (110 used): denied
            self.held(self.refund, 70, approve=True)  # a big refund is held by its rule
            self.held(self.refund, "ten", approve=False)  # a budget can't count it

            self.do(self.export, "x", 2)  # the third at once is denied
            self.do(self.export, "x", 1)  # both slots were freed
            self.held(self.export, "prod", approve=True)  # its slot, taken at its claim...
            self.do(self.export, "x", 1)  # ... is freed when it ends

            self.do(self.read_secret, "db")
            self.do(self.rotate_key, "db")  # clears the sequence
            self.do(self.send_email, "c@example.com")
            self.do(self.read_secret, "db")
            self.do(self.export, "y")  # completes it: the session is halted
            self.do(self.send_email, "d@example.com")
        with self.gate.session(session_id="run-2"):
            self.do(self.send_email, "d@example.com")  # another session goes on

    def close(self) -> None:
        self.gate.close()


EXPECTED = [
    ("send_email('a@example.com',)", "ran"),
    ("send_email('a@example.com',)", "ran"),
    ("send_email('a@example.com',)", "denied"),
    ("send_email('b@example.com',)", "ran"),
    ("send_email('a@example.com',)", "ran"),
    ("refund(40,)", "ran"),
    ("refund(40, 'closed')", "denied"),
    ("refund(40,)", "ran"),
    ("refund(30,)", "ran"),
    ("refund(5,)", "approval denied"),
    ("refund(70,)", "ran"),
    ("refund('ten',)", "approval denied"),
    ("export('x', 0)", "denied"),
    ("export('x', 1)", "ran"),
    ("export('x', 2)", "ran"),
    ("export('x', 0)", "ran"),
    ("export('x', 1)", "ran"),
    ("export('prod',)", "ran"),
    ("export('x', 0)", "ran"),
    ("export('x', 1)", "ran"),
    ("read_secret('db',)", "ran"),
    ("rotate_key('db',)", "ran"),
    ("send_email('c@example.com',)", "ran"),
    ("read_secret('db',)", "ran"),
    ("export('y',)", "halted"),
    ("send_email('d@example.com',)", "halted"),
    ("send_email('d@example.com',)", "ran"),
]


@pytest.fixture
def scripts(redis_server: RedisServer, redis_prefix: str) -> Iterator[list[Script]]:
    made = []
    for build in (
        lambda c: MemoryStore(clock=c),
        lambda c: RedisStore(redis_server.url, prefix=redis_prefix, clock=c, lease=MANUAL_LEASE),
    ):
        clock = ManualClock()
        made.append(Script(build(clock), clock))
    yield made
    for s in made:
        s.close()


def test_guarded_tools_end_the_same_on_both_stores(scripts: list[Script]) -> None:
    for script in scripts:
        script.run()
    memory, redis = scripts
    assert memory.outcomes == redis.outcomes == EXPECTED
    assert memory.ran == redis.ran
    assert usage(memory.gate.store) == usage(redis.gate.store)
    # what ran of the budget: 40 + 40 + 30 (approved past it) + 70; the rest never counted
    budget = [e for _, key, e in memory.gate.store.behaviour_usage() if "refund-budget" in key]
    in_units = [sorted(a / 1_000_000 for _, a in entries) for entries in budget]  # micro-units
    assert in_units == [[30.0, 40.0, 40.0, 70.0]]
