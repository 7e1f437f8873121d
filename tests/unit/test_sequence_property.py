"""The sequence matcher agrees with a brute-force reading of the documented semantics.

Random sequence rules (2–4 steps over tools a–d, a step repeated with
``times``, at most one ``not`` step between two others, ``within`` 1–50 s) are
compiled by the real policy (``Policy.from_mapping`` + ``plan(call).wire()``)
and applied to ``BehaviourState`` (MemoryStore's state machine) for random
traces, the way the gate drives it:

- an *allowed* call: ``admit`` with verdict ``allow`` — one atomic step that
  is the ``attempt`` and, when no stricter hit escalates it, the ``release``
  (the rule's verdict is ``require_approval``, so a call that completes the
  sequence is escalated and does not run);
- a *held* call: ``attempt`` when it is held; if a person approves it,
  ``release`` when it is claimed, possibly after later calls were attempted;
  denied (or never decided), nothing more.

The reference decides, for each call c, whether it completes the sequence:
there are earlier calls e1 < ... < e(n-1) < c (in attempt order) with ei
matching position i (``times`` expanded) and c matching position n,
``time(c) - time(e1) <= within``, and for the ``not`` step between positions
k and k+1 no *release* of a call matching it lies strictly between the
attempts of e_k and e_(k+1) in processing order (an allowed call's own
release comes right after its own attempt, so ``a, not a, b`` is never
completed by an ``a`` that ran). It is computed as the set of first calls of
every such partial match, position by position. The matcher must fire
exactly when the reference says so, and the earlier calls it reports must be
such a match with the latest possible first call.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper import Policy
from gatekeeper._canonical import digest
from gatekeeper.models import ToolCall
from gatekeeper.store._behaviour import BehaviourState

TOOLS = "abcd"
AGENT = "bot"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T0_MS = int(T0.timestamp() * 1000)


@dataclass(frozen=True)
class Rule:
    """A random sequence rule, and what it means position by position."""

    steps: list[dict[str, Any]]  # as written in the policy
    within_s: int
    positions: tuple[frozenset[str], ...]  # positive positions 1..n, ``times`` expanded
    kill: tuple[int, frozenset[str]] | None  # (k, tools): the ``not`` between k and k+1

    def policy(self) -> Policy:
        return Policy.from_mapping(
            {
                "version": 1,
                "default": "allow",
                "sequences": [
                    {
                        "id": "seq",
                        "steps": self.steps,
                        "within": self.within_s,
                        "per": "session",
                        "verdict": "require_approval",
                    }
                ],
            }
        )


@dataclass(frozen=True)
class Call:
    tool: str
    gap_ms: int  # after the previous call
    how: str  # "allow", "approved" (held, then released) or "refused" (held, never runs)
    delay: int  # approved: released after this many later calls were attempted


@dataclass
class Trace:
    """Processing order, as the reference sees it."""

    at: list[int] = field(default_factory=list)  # call i's time (ms)
    attempt: list[int] = field(default_factory=list)  # call i's attempt: its event index
    releases: list[tuple[int, str]] = field(default_factory=list)  # (event index, tool)
    events: int = 0

    def next_event(self) -> int:
        self.events += 1
        return self.events


tool_sets = st.lists(st.sampled_from(TOOLS), min_size=1, max_size=2, unique=True)


def _tools(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    count = draw(st.integers(2, 4))
    step_tools = [draw(tool_sets) for _ in range(count)]
    times = [1] * count
    if draw(st.booleans()):
        times[draw(st.integers(0, count - 1))] = draw(st.integers(2, 3))
    steps: list[dict[str, Any]] = []
    positions: list[frozenset[str]] = []
    for tools, n in zip(step_tools, times, strict=True):
        step: dict[str, Any] = {"tool": _tools(tools)}
        if n > 1:
            step["times"] = n
        steps.append(step)
        positions.extend([frozenset(tools)] * n)
    kill = None
    if draw(st.booleans()):
        where = draw(st.integers(1, count - 1))  # between step where-1 and step where
        tools = draw(tool_sets)
        steps.insert(where, {"not": {"tool": _tools(tools)}})
        kill = (sum(times[:where]), frozenset(tools))
    return Rule(steps, draw(st.integers(1, 50)), tuple(positions), kill)


def calls(size: tuple[int, int] = (1, 40)) -> st.SearchStrategy[list[Call]]:
    # Traces long enough for the longest rule to complete now and then.
    return st.integers(*size).flatmap(
        lambda n: st.lists(
            st.builds(
                Call,
                tool=st.sampled_from(TOOLS),
                # mostly well inside ``within``; whole seconds too, so that a call lands
                # exactly on ``within`` of an earlier one; now and then a long pause
                gap_ms=st.integers(0, 3000)
                | st.sampled_from([0, 1000, 2000, 5000, 10_000])
                | st.integers(0, 60_000),
                how=st.sampled_from(["allow", "approved", "refused"]),
                delay=st.integers(0, 4),
            ),
            min_size=n,
            max_size=n,
        )
    )


def cleared(rule: Rule, trace: Trace, k: int, i: int, j: int) -> bool:
    """Whether a call matching the ``not`` between positions k and k+1 was released
    strictly between the attempts of calls i and j."""
    if rule.kill is None or rule.kill[0] != k:
        return False
    lo, hi = trace.attempt[i], trace.attempt[j]
    return any(lo < at < hi and tool in rule.kill[1] for at, tool in trace.releases)


def reference_starts(rule: Rule, trace: Trace, tools: list[str], c: int) -> set[int]:
    """The first calls of every match that call c completes, ignoring ``within``.

    ``starts[k][j]``: the calls e1 of every partial match e1 < ... < ek = j of
    positions 1..k with no ``not`` cleared between consecutive calls.
    """
    n = len(rule.positions)
    starts: list[dict[int, set[int]]] = [{} for _ in range(n + 1)]
    for j in range(c + 1):
        if tools[j] in rule.positions[0]:
            starts[1][j] = {j}
        for k in range(2, n + 1):
            if tools[j] not in rule.positions[k - 1]:
                continue
            found: set[int] = set()
            for i in range(j):
                if i in starts[k - 1] and not cleared(rule, trace, k - 1, i, j):
                    found |= starts[k - 1][i]
            if found:
                starts[k][j] = found
    return starts[n].get(c, set())


def wire(policy: Policy, i: int, tool: str) -> dict[str, Any] | None:
    call = ToolCall(
        id=f"c{i}",
        tool=tool,
        args={},
        args_digest=digest({}),
        agent=AGENT,
        session_id="s1",
        created_at=T0,
    )
    plan = policy.plan(call)
    return None if plan is None else plan.wire()


def run(rule: Rule, trace_calls: list[Call]) -> list[bool]:
    """Drive the matcher through ``trace_calls`` as the gate would, checking each call's
    answer against the reference; returns which calls completed the sequence."""
    policy = rule.policy()
    state = BehaviourState()
    trace = Trace()
    tools = [c.tool for c in trace_calls]
    plans = [wire(policy, i, c.tool) for i, c in enumerate(trace_calls)]
    named = frozenset().union(*rule.positions, rule.kill[1] if rule.kill else ())
    within_ms = rule.within_s * 1000
    due: dict[int, list[int]] = {}  # call index -> approved calls released just before it
    now = T0_MS
    fired: list[bool] = []

    def release(i: int) -> None:
        trace.releases.append((trace.next_event(), tools[i]))
        plan = plans[i]
        if plan is not None:
            assert state.apply(AGENT, plan, "release", now) == ([], False)

    for c, call in enumerate(trace_calls):
        now += call.gap_ms
        for i in due.pop(c, []):
            release(i)
        trace.at.append(now)
        trace.attempt.append(trace.next_event())

        # The reference, from what happened before this call.
        starts = reference_starts(rule, trace, tools, c)
        valid = [s for s in starts if now - trace.at[s] <= within_ms]
        expected = bool(valid)
        fired.append(expected)

        plan = plans[c]
        assert (plan is None) == (call.tool not in named)
        if plan is None:  # neither a step nor a ``not``: the store never sees it
            assert not expected
            continue
        request_id = None if call.how == "allow" else f"r{c}"
        mode = "admit" if call.how == "allow" else "attempt"
        hits, escalated = state.apply(AGENT, plan, mode, now, request_id=request_id)
        assert all(h["kind"] == "sequence" and h["i"] == "seq" for h in hits)
        assert len(hits) == int(expected), (rule, trace_calls[: c + 1])
        if mode == "admit":
            assert escalated == expected  # require_approval is stricter than allow
        if expected:
            best = max(trace.at[s] for s in valid)
            check_chain(rule, trace, trace_calls, c, hits[0]["c"], best)

        if call.how == "allow" and not escalated:
            release(c)  # in the same atomic step as its attempt
        elif call.how == "approved":
            due.setdefault(c + 1 + call.delay, []).append(c)
    return fired


def check_chain(
    rule: Rule, trace: Trace, trace_calls: list[Call], c: int, chain: list[list[Any]], best: int
) -> None:
    """The earlier calls the hit reports are a match for c with the latest first call."""
    n = len(rule.positions)
    ids = [int(cid[1:]) for cid, *_ in chain]
    assert len(ids) == n - 1
    members = [*ids, c]
    assert members == sorted(set(members))
    for pos, i in enumerate(members):
        assert trace_calls[i].tool in rule.positions[pos]
    for (_, tool, at, rid), i in zip(chain, ids, strict=True):
        assert (tool, at) == (trace_calls[i].tool, trace.at[i])
        assert rid == ("" if trace_calls[i].how == "allow" else f"r{i}")
    for k in range(1, n):
        assert not cleared(rule, trace, k, members[k - 1], members[k])
    assert trace.at[ids[0]] == best
    assert trace.at[c] - best <= rule.within_s * 1000


@settings(max_examples=300, deadline=None)
@given(rule=rules(), trace_calls=calls())
def test_the_sequence_fires_exactly_when_the_reference_says(
    rule: Rule, trace_calls: list[Call]
) -> None:
    run(rule, trace_calls)


A_NOT_C_B = Rule(
    [{"tool": "a"}, {"not": {"tool": "c"}}, {"tool": "b"}],
    10,
    (frozenset("a"), frozenset("b")),
    (1, frozenset("c")),
)


def trace_of(*calls: tuple[Any, ...]) -> list[Call]:
    """Calls from ``(tool, gap ms, how[, delay])``."""
    return [Call(t[0], t[1], t[2], t[3] if len(t) > 3 else 0) for t in calls]


def test_hand_worked_traces_read_the_semantics_as_documented() -> None:
    """The cases docs/policy.md spells out, on the reference and the matcher alike."""
    rule = A_NOT_C_B
    # within is inclusive
    assert run(rule, trace_of(("a", 0, "allow"), ("b", 10_000, "allow"))) == [False, True]
    assert run(rule, trace_of(("a", 0, "allow"), ("b", 10_001, "allow"))) == [False, False]
    # a ``c`` that ran between them clears the match
    assert run(rule, trace_of(("a", 0, "allow"), ("c", 1, "allow"), ("b", 1, "allow"))) == [
        False,
        False,
        False,
    ]
    # a refused ``c`` can't clear; an approved one clears once released, not before
    assert run(rule, trace_of(("a", 0, "allow"), ("c", 1, "refused"), ("b", 1, "allow"))) == [
        False,
        False,
        True,
    ]
    assert run(rule, trace_of(("a", 0, "allow"), ("c", 1, "approved", 0), ("b", 1, "allow"))) == [
        False,
        False,
        False,
    ]
    assert run(rule, trace_of(("a", 0, "allow"), ("c", 1, "approved", 1), ("b", 1, "allow"))) == [
        False,
        False,
        True,
    ]
    # a ``c`` released after an ``a`` attempted before it clears that ``a`` too
    assert run(
        rule,
        trace_of(("c", 0, "approved", 1), ("a", 1, "refused"), ("b", 1, "allow")),
    ) == [False, False, False]
    # a refused ``b`` completes it too (trying counts); a match is not consumed
    assert run(rule, trace_of(("a", 0, "allow"), ("b", 1, "refused"), ("b", 1, "refused"))) == [
        False,
        True,
        True,
    ]
    # an allowed ``b`` that completes it is escalated: it does not run
    assert run(rule, trace_of(("a", 0, "allow"), ("b", 1, "allow"), ("b", 1, "allow"))) == [
        False,
        True,
        True,
    ]


def test_a_call_that_ran_clears_its_own_step_when_it_is_also_the_not() -> None:
    """``a, not a, b``: an ``a`` that ran clears the match it just started (its ``not``
    applies after its own step); one that was refused does not."""
    rule = Rule(
        [{"tool": "a"}, {"not": {"tool": "a"}}, {"tool": "b"}],
        10,
        (frozenset("a"), frozenset("b")),
        (1, frozenset("a")),
    )
    assert run(rule, trace_of(("a", 0, "allow"), ("b", 1, "allow"))) == [False, False]
    assert run(rule, trace_of(("a", 0, "refused"), ("b", 1, "allow"))) == [False, True]
    assert run(rule, trace_of(("a", 0, "approved", 1), ("b", 1, "allow"))) == [False, True]


def test_times_needs_that_many_distinct_calls() -> None:
    """``a`` three times then ``b``: one call fills one step, so three ``a`` are needed."""
    rule = Rule(
        [{"tool": "a", "times": 3}, {"tool": "b"}],
        10,
        (frozenset("a"),) * 3 + (frozenset("b"),),
        None,
    )
    two = trace_of(("a", 0, "allow"), ("a", 1, "allow"), ("b", 1, "allow"))
    assert run(rule, two) == [False, False, False]
    three = trace_of(("a", 0, "allow"), ("a", 1, "allow"), ("a", 1, "allow"), ("b", 1, "allow"))
    assert run(rule, three) == [False, False, False, True]
