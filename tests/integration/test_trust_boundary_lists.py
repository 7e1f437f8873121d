"""What an agent's user can write into its own keys must not break, or reorder, the lists
every approver reads (the console's queue and history, ``pending``).

A review (#14) found that one ``ZADD`` of bytes that are not UTF-8 into an
agent's own index, or a garbled ``doc`` field in one of its own requests,
made ``queue``, ``pending`` and ``history`` fail for every agent; and that an
agent could list another agent's request in its own index, to show it at
the top of the queue and under its own name. Same set-up as
``test_trust_boundary``: the shipped ACL users on a real redis-server,
``dep.attacker`` logged in as billing-bot's user.
"""

from __future__ import annotations

import logging

import pytest

from gatekeeper import Risk
from gatekeeper._clock import SystemClock
from tests.storekit import held_event, make_request
from tests.trustkit import Deployment


def _held(dep: Deployment, agent: str, risk: Risk = Risk.HIGH) -> str:
    request = make_request(SystemClock(), agent=agent, risk=risk)
    store = dep.agent if agent == "billing-bot" else dep.decider
    store.hold(request, held_event(request))
    return request.id


def _every_list(dep: Deployment) -> dict[str, list[str]]:
    return {
        "queue": [r.id for r in dep.decider.queue()[0]],
        "queue from 1": [r.id for r in dep.decider.queue(offset=1)[0]],
        "queue by tool": [r.id for r in dep.decider.queue(tool="refund")[0]],
        "pending": [r.id for r in dep.decider.pending()],
        "history": [r.id for r in dep.decider.history()],
        "history by approver": [r.id for r in dep.decider.history(approver="alice")],
    }


def test_bytes_that_are_not_text_in_an_agents_indexes_break_no_list(dep: Deployment) -> None:
    other = _held(dep, "other-bot")
    mine = _held(dep, "billing-bot")
    a = dep.agent.keys.of("billing-bot")
    for key in (a.pending_by_risk("high"), a.pending, a.requests, a.live):
        dep.attacker.zadd(key, {b"\xff\xfe": 1, b"\xc3": 2**52})
    dep.attacker.hset(a.owners, b"\xff", b"\xff")
    lists = _every_list(dep)
    assert lists["pending"] == [other, mine] or lists["pending"] == [mine, other]
    assert set(lists["queue"]) == {other, mine}
    assert set(lists["history"]) == {other, mine}
    assert lists["history by approver"] == []


def test_a_garbled_request_is_left_out_of_lists_and_logged(
    dep: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    other = _held(dep, "other-bot")
    mine = _held(dep, "billing-bot")
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(mine), "doc", "not json\n[request_id=forged]")
    with caplog.at_level(logging.WARNING, logger="gatekeeper.store"):
        lists = _every_list(dep)
    assert lists["queue"] == [other]
    assert lists["pending"] == [other]
    assert lists["history"] == [other]
    assert dep.decider.get(other).id == other
    line = next(r.getMessage() for r in caplog.records if "could not be read" in r.getMessage())
    assert f'request "{mine}" of agent "billing-bot"' in line and "tampering" in line


def test_an_agent_cannot_list_another_agents_request_as_its_own(dep: Deployment) -> None:
    low = _held(dep, "other-bot", Risk.LOW)
    mine = _held(dep, "billing-bot", Risk.HIGH)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.zadd(a.pending_by_risk("critical"), {low: 2**52})  # its own index: allowed
    dep.attacker.zadd(a.pending, {low: 1})
    dep.attacker.zadd(a.requests, {low: 2**52})
    page, _ = dep.decider.queue()
    assert [r.id for r in page] == [mine, low]  # low stays where its own agent's index puts it
    assert [r.id for r in dep.decider.queue(agent="billing-bot")[0]] == [mine]
    assert [r.id for r in dep.decider.pending()].count(low) == 1
    assert [r.id for r in dep.decider.history(agent="billing-bot")] == [mine]
    assert [r.id for r in dep.decider.history()].count(low) == 1
