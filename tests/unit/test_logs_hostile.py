"""Review of #15's logs: the request a record names, and how much an agent can put in one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from gatekeeper import Gatekeeper, MemoryStore, Policy, ToolCallDenied
from gatekeeper.logs import JSONFormatter, TextFormatter
from gatekeeper.testing import AutoDecider

pytestmark = pytest.mark.usefixtures("both_faces")

POLICY = """\
version: 1
default: allow
rules:
  - {id: hold-outer, match: {tool: outer}, verdict: require_approval}
  - {id: no-wipe, match: {tool: wipe}, verdict: deny}
"""


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    ours = logging.getLogger("gatekeeper")
    was = ours.level
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    yield handler
    ours.removeHandler(handler)
    ours.setLevel(was)


def make_gate() -> Gatekeeper:
    return Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=MemoryStore(),
        channels=[AutoDecider(approver="alice")],
    )


@pytest.mark.sync_face_only("a guarded call inside a guarded tool: the harness's loop waits on itself")
def test_a_call_made_inside_an_approved_tool_is_not_logged_as_its_request(
    captured: Capture,
) -> None:
    """An approved tool (request R of billing-bot) runs a sub-agent whose call the policy
    refuses: that refusal is not about R, and R is not sub-agent's request."""
    gate = make_gate()

    @gate.guard
    def wipe(target: str) -> str:
        return "wiped"

    @gate.guard
    def outer(x: str) -> str:
        with gate.session(agent="sub-agent"):
            with pytest.raises(ToolCallDenied):
                wipe("everything")
        return "done"

    with gate.session(agent="billing-bot"):
        outer("a")
    refused = [r for r in captured.records if "refused by the policy" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].agent == "sub-agent"  # type: ignore[attr-defined]
    assert refused[0].request_id is None  # type: ignore[attr-defined]  # it held no request


def test_an_agent_cannot_make_log_lines_of_any_size(captured: Capture) -> None:
    """An agent's name (or session id) is repeated on every record of its calls and
    decisions: the formatters bound what one value may add to a line."""
    gate = make_gate()

    @gate.guard
    def outer(x: str) -> str:
        return x

    with gate.session(agent="A" * 1_000_000, session_id="S" * 1_000_000):
        outer("a")
    assert len(captured.records) >= 4
    for formatter in (TextFormatter(), JSONFormatter()):
        for record in captured.records:
            assert len(formatter.format(record)) < 10_000


@pytest.mark.sync_face_only("async tools, run by asyncio.run here")
def test_the_same_inside_an_approved_async_tool(captured: Capture) -> None:
    gate = make_gate()

    @gate.guard
    async def wipe(target: str) -> str:
        return "wiped"

    @gate.guard
    async def outer(x: str) -> str:
        async with gate.session(agent="sub-agent"):
            with pytest.raises(ToolCallDenied):
                await wipe("everything")
        return "done"

    async def agent() -> None:
        async with gate.session(agent="billing-bot"):
            await outer("a")

    asyncio.run(agent())
    refused = [r for r in captured.records if "refused by the policy" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].agent == "sub-agent"  # type: ignore[attr-defined]
    assert refused[0].request_id is None  # type: ignore[attr-defined]
