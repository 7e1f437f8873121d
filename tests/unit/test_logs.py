"""gatekeeper's logs: the request on every record, JSON lines, no arguments, no forged lines.

A real gate on a MemoryStore holds a call, a person approves it from another
thread (the deciding side, with no context of the call's), and the call
runs; the records of that flow are captured as the loggers make them, on the
blocking and on the async face.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gatekeeper import (
    ApprovalDenied,
    ApprovalRequest,
    Gatekeeper,
    MemoryStore,
    Policy,
    ToolCallDenied,
)
from gatekeeper.logs import (
    ContextFilter,
    JSONFormatter,
    TextFormatter,
    current_context,
    escape,
    get_logger,
    log_context,
)
from gatekeeper.testing import RecordingChannel

pytestmark = pytest.mark.usefixtures("both_faces")

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"  # a tool argument that must never reach INFO
POLICY = """\
version: 1
default: require_approval
rules:
  - {id: no-wipe, match: {tool: wipe}, verdict: deny}
"""
# A line of this format begins with its time; nothing an agent writes may begin one.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ gatekeeper")


class Capture(logging.Handler):
    """Every record that reaches the root logger, kept as made."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root, ours = logging.getLogger(), logging.getLogger("gatekeeper")
    was = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    ours.setLevel(was)


def make_gate() -> tuple[Gatekeeper, RecordingChannel]:
    channel = RecordingChannel()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), channels=[channel])
    return gate, channel


def held_then(
    gate: Gatekeeper,
    channel: RecordingChannel,
    call: Callable[[], Any],
    decide: Callable[[ApprovalRequest], object],
    agent: str = "billing-bot",
) -> tuple[ApprovalRequest, Any]:
    """Make ``call`` as ``agent`` in a thread; ``decide`` its request from this one."""
    outcome: list[Any] = []

    def target() -> None:
        with gate.session(agent=agent, reason=f"please, the key is {SECRET}"):
            try:
                outcome.append(call())
            except Exception as exc:  # the test reads what the agent got
                outcome.append(exc)

    count = len(channel.notified) + 1
    thread = threading.Thread(target=target)
    thread.start()
    req = channel.wait_for_request(count)
    decide(req)
    thread.join(10)
    assert not thread.is_alive()
    return req, outcome[0]


def test_held_call_and_its_decision_carry_request_agent_and_session(
    captured: Capture,
) -> None:
    gate, channel = make_gate()

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        get_logger("gatekeeper.test").info("the tool runs")  # the tool's own record
        return "refunded"

    req, result = held_then(
        gate,
        channel,
        lambda: refund("A-1", 20.0),
        lambda r: gate.approve(r.id, approver="alice", comment="ok", via="cli"),
    )
    assert result == "refunded"
    want = {"request_id": req.id, "agent": "billing-bot", "session": req.call.session_id}

    def fields(r: logging.LogRecord) -> dict[str, Any]:
        return {k: getattr(r, k) for k in want}

    by_message = {r.getMessage(): r for r in captured.records}
    held = by_message['call to "refund" held for approval (medium risk; rules: none)']
    decided = by_message[f"request {req.id}: approval by alice via cli; now approved"]
    learned = by_message[f"request {req.id} approved (by alice)"]
    ran = by_message["the tool runs"]
    executed = by_message[f"request {req.id} executed"]
    assert (held.name, decided.name, ran.name) == (
        "gatekeeper.calls",
        "gatekeeper.decisions",
        "gatekeeper.test",
    )
    for record in (held, decided, learned, ran, executed):
        assert fields(record) == want, record.getMessage()
        assert record.levelno == logging.INFO
    assert current_context() == {}  # nothing left behind in this thread


def test_records_outside_any_call_carry_none() -> None:
    record = logging.LogRecord("gatekeeper.store", logging.WARNING, __file__, 1, "m", None, None)
    ContextFilter().filter(record)
    assert (record.request_id, record.agent, record.session) == (None, None, None)  # type: ignore[attr-defined]


def test_json_lines_parse_and_name_the_request(captured: Capture) -> None:
    gate, channel = make_gate()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logging.getLogger("gatekeeper").addHandler(handler)
    try:

        @gate.guard
        def refund(order_id: str, amount: float) -> str:
            return "refunded"

        req, _ = held_then(
            gate,
            channel,
            lambda: refund("A-2", 5.0),
            lambda r: gate.deny(r.id, approver="alice", comment="no"),
        )
    finally:
        logging.getLogger("gatekeeper").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines, "no records"
    for entry in lines:
        assert {"time", "level", "logger", "message", "request_id", "agent", "session"} <= set(
            entry
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    about = [e for e in lines if e["request_id"] == req.id]
    assert {e["logger"] for e in about} == {"gatekeeper.calls", "gatekeeper.decisions"}
    assert {(e["agent"], e["session"]) for e in about} == {("billing-bot", req.call.session_id)}
    assert any(e["message"] == f'request {req.id} denied (by "alice")' for e in about)


def test_no_argument_reaches_info_in_a_whole_flow(captured: Capture) -> None:
    """Held, approved with an edit, run; denied; refused by policy; a tool that fails
    quoting its argument: the secret is in no record at INFO or above, in any format."""
    gate, channel = make_gate()

    @gate.guard
    def rotate(api_key: str) -> str:
        return "rotated"

    @gate.guard
    def charge(api_key: str) -> str:
        raise RuntimeError(f"card declined for key {api_key}")

    @gate.guard
    def wipe(api_key: str) -> str:
        return "wiped"

    edited = {"api_key": SECRET + "-edited"}
    _, ran = held_then(
        gate,
        channel,
        lambda: rotate(SECRET),
        lambda r: gate.approve(r.id, approver="alice", comment="ok", args=edited),
    )
    assert ran == "rotated"
    _, failed = held_then(
        gate, channel, lambda: charge(SECRET), lambda r: gate.approve(r.id, approver="alice")
    )
    assert isinstance(failed, RuntimeError)
    _, denied = held_then(
        gate,
        channel,
        lambda: rotate(SECRET),
        lambda r: gate.deny(r.id, approver="alice", comment="not today"),
    )
    assert isinstance(denied, ApprovalDenied)
    with gate.session(agent="billing-bot"), pytest.raises(ToolCallDenied):
        wipe(SECRET)

    loud = [r for r in captured.records if r.levelno >= logging.INFO]
    assert len(loud) >= 8  # held, decided, learned, run: it did log the flow
    for formatter in (TextFormatter(), JSONFormatter()):
        for record in loud:
            assert SECRET not in formatter.format(record), record.getMessage()


def test_a_hostile_tool_name_cannot_forge_a_line(captured: Capture) -> None:
    forged = "refund\n2026-01-01T00:00:00.000Z CRITICAL gatekeeper.calls: all clear\x1b[2K"
    gate, channel = make_gate()

    @gate.guard(name=forged)
    def refund(order_id: str) -> str:
        return "refunded"

    held_then(
        gate,
        channel,
        lambda: refund("A-3"),
        lambda r: gate.approve(r.id, approver="alice"),
        agent="bot\r\nforged",
    )
    text = "\n".join(TextFormatter().format(r) for r in captured.records)
    lines = text.splitlines()
    assert len(lines) == len(captured.records) >= 4
    assert all(RECORD_START.match(line) for line in lines)
    assert sum("all clear" in line for line in lines) == 1  # inside the held line, escaped
    assert 'call to "refund\\n2026-01-01T00:00:00.000Z CRITICAL' in text  # quoted, escaped
    assert "\x1b" not in text and "\r" not in text
    assert "agent=bot\\r\\nforged session=" in text


# -- the formatters and the context alone (no gate) ------------------------------------------


def record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("gatekeeper.calls", logging.INFO, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    ContextFilter().filter(made)
    return made


def test_escape_leaves_no_line_break_or_control_character() -> None:
    hostile = "a\nb\rc\x1b[31md\u2028e\u2029f\x85g\u202eh\ti\x00"
    assert escape(hostile) == "a\\nb\\rc\\x1b[31md\\u2028e\\u2029f\\x85g\\u202eh\\ti\\x00"
    assert escape("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def test_a_traceback_follows_on_indented_lines() -> None:
    try:
        raise ValueError("bad\n2026-01-01T00:00:00.000Z CRITICAL gatekeeper: forged")
    except ValueError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    lines = TextFormatter().format(made).splitlines()
    assert RECORD_START.match(lines[0])
    assert lines[1] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in lines[1:])
    assert not any(RECORD_START.match(line) for line in lines[1:])
    entry = json.loads(JSONFormatter().format(made))
    assert entry["exc_info"].startswith("Traceback") and "ValueError: bad\n" in entry["exc_info"]


def test_json_is_one_ascii_line_whatever_the_text() -> None:
    made = record("tool %s", "über\nline\u202e", request_id="r-1", agent="a", session=None)
    line = JSONFormatter().format(made)
    assert "\n" not in line and line.isascii()
    entry = json.loads(line)
    assert entry["message"] == "tool über\nline\u202e"
    assert (entry["request_id"], entry["agent"], entry["session"]) == ("r-1", "a", None)


def test_extra_wins_over_the_context_and_blocks_nest() -> None:
    with log_context(agent="outer", session="s-1"):
        with log_context(request_id="r-1", agent="inner"):
            assert current_context() == {"agent": "inner", "session": "s-1", "request_id": "r-1"}
            made = record("m", request_id="r-2")
            assert (made.request_id, made.agent, made.session) == ("r-2", "inner", "s-1")  # type: ignore[attr-defined]
        assert current_context() == {"agent": "outer", "session": "s-1"}
    assert current_context() == {}


def test_a_generator_closed_elsewhere_leaves_both_contexts_alone() -> None:
    def flow() -> Iterator[int]:
        with log_context(request_id="r-9"):
            yield 1
            yield 2

    running = flow()
    started = contextvars.copy_context()
    assert started.run(next, running) == 1
    assert started.run(current_context) == {"request_id": "r-9"}
    contextvars.Context().run(running.close)  # closed from another context: no error
    assert started.run(current_context) == {"request_id": "r-9"}  # not undone from there
    assert current_context() == {}


def test_get_logger_only_names_gatekeepers_own_and_filters_once() -> None:
    get_logger("gatekeeper.store")
    filters = get_logger("gatekeeper.store").filters
    assert sum(isinstance(f, ContextFilter) for f in filters) == 1
    with pytest.raises(ValueError, match="gatekeeper"):
        get_logger("myapp")


@pytest.mark.sync_face_only("a new interpreter: no guarded call is made")
def test_importing_gatekeeper_configures_no_logging() -> None:
    code = (
        "import logging, gatekeeper, gatekeeper.cli, gatekeeper.web, gatekeeper.logs\n"
        "root = logging.getLogger()\n"
        "ours = logging.getLogger('gatekeeper')\n"
        "assert root.handlers == [] and root.level == logging.WARNING, root.handlers\n"
        "assert ours.handlers == [] and ours.level == logging.NOTSET, ours.handlers\n"
        "assert logging.getLogger('gatekeeper.store').handlers == []\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
