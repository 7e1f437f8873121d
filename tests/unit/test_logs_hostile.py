"""What an agent can do to gatekeeper's logs: the request a record names, how long a line
is, what text in it can pass for.
"""

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


@pytest.mark.sync_face_only(
    "a guarded call inside a guarded tool: the harness's loop waits on itself"
)
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
        with gate.session(agent="sub-agent"), pytest.raises(ToolCallDenied):
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


# -- what one value may show, and how ------------------------------------------------------


def _record(message: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("gatekeeper.calls", logging.INFO, __file__, 1, message, (), None)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def test_every_format_character_and_lone_surrogate_is_escaped() -> None:
    import unicodedata

    from gatekeeper.logs import escape

    for code in range(0x110000):
        ch = chr(code)
        if unicodedata.category(ch) in ("Cf", "Cs", "Cc"):
            assert ch not in escape(f"a{ch}b"), hex(code)
    assert escape("\ud800\u200b\U000e0041") == "\\ud800\\u200b\\U000e0041"


def test_json_lines_take_a_strict_parser() -> None:
    import json

    line = JSONFormatter().format(_record("x\ud800y", agent="a\udfff"))
    entry = json.loads(line)
    assert entry["message"] == "x\\ud800y" and entry["agent"] == "a\\udfff"
    line.encode("ascii")  # ASCII, and no escape that decodes to no character
    assert "\\ud800" not in line.replace("\\\\ud800", "")


def test_a_long_field_and_message_are_cut_and_counted() -> None:
    from gatekeeper.logs import FIELD_LIMIT, MESSAGE_LIMIT

    text = TextFormatter().format(_record("m" * 100_000, agent="A" * 5_000))
    assert f"…(+{100_000 - MESSAGE_LIMIT} chars)" in text
    assert f"…(+{5_000 - FIELD_LIMIT} chars)" in text
    assert len(text) < MESSAGE_LIMIT + 4 * FIELD_LIMIT + 200


def test_a_tool_name_cannot_pass_for_the_fields_block(captured: Capture) -> None:
    gate = Gatekeeper(policy=Policy.from_yaml("version: 1\ndefault: deny\n"), store=MemoryStore())

    @gate.guard(name="wipe [request_id=FAKE agent=admin]")
    def wipe(target: str) -> str:
        return "wiped"

    with gate.session(agent="bot"), pytest.raises(ToolCallDenied):
        wipe("x")
    (refused,) = [r for r in captured.records if "refused by the policy" in r.getMessage()]
    assert refused.getMessage().startswith('call to "wipe [request_id=FAKE agent=admin]" refused')


def test_a_webhook_error_shows_no_token_of_its_url() -> None:
    from gatekeeper.channels.webhook import shown_url

    assert shown_url("https://u:pw@hooks.example.com:8443/T0/B0/tok?key=s#f") == (
        "https://hooks.example.com:8443/…"
    )
    assert shown_url("https://hooks.example.com") == "https://hooks.example.com"


def test_a_sweep_error_names_fields_not_the_values_an_agent_wrote() -> None:
    import pydantic

    from gatekeeper.store._redis import _unreadable

    class Model(pydantic.BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Model.model_validate({"n": "SECRET-VALUE\n[request_id=FAKE]"})
    said = _unreadable(caught.value)
    assert "SECRET-VALUE" not in said and said.startswith("1 validation error(s): n: ")


def test_clear_gives_a_field_no_value_in_the_block() -> None:
    from gatekeeper.logs import CLEAR, current_context, log_context

    with log_context(request_id="r-1", agent="outer"):
        with log_context(request_id=CLEAR, agent="inner"):
            assert current_context() == {"agent": "inner"}
        assert current_context() == {"request_id": "r-1", "agent": "outer"}
