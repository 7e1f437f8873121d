"""The terminal channel never holds up the decision path, and never strands a request."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalTimeout, Approver, Gatekeeper, Policy
from gatekeeper.channels.console import ConsoleChannel
from gatekeeper.testing import RecordingChannel

POLICY = Policy.from_yaml("version: 1\ndefault: require_approval\n")


class Silent:
    """A terminal nobody types into: readline blocks until closed (a real pipe)."""

    def __init__(self) -> None:
        r, self._w = os.pipe()
        self.stream = os.fdopen(r, "r")

    def close(self) -> None:
        os.close(self._w)


@pytest.fixture
def silent() -> Iterator[Silent]:
    s = Silent()
    yield s
    s.close()


class Out(io.StringIO):
    """stdout that can be waited on for a line."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            n = super().write(text)
            self.changed.notify_all()
            return n

    def wait_for(self, text: str, timeout: float = 5) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.getvalue(), timeout), self.getvalue()


def _gate(*channels: Any, timeout: float = 10) -> Gatekeeper:
    return Gatekeeper(
        policy=POLICY,
        approvers=[Approver(name="alice"), Approver(name="bob")],
        channels=channels,
        default_timeout=timeout,
    )


def test_a_decision_made_elsewhere_releases_at_once_and_ends_the_prompt(silent: Silent) -> None:
    """The prompt is open and nobody answers it; bob approves from the CLI (another thread)."""
    out = Out()
    terminal = ConsoleChannel("alice", stdin=silent.stream, stdout=out)
    later = RecordingChannel()
    gate = _gate(terminal, later)
    ran: list[str] = []

    @gate.guard
    def refund(order: str) -> str:
        ran.append(order)
        return "ok"

    result: list[Any] = []
    agent = threading.Thread(target=lambda: result.append(refund("A-1")))
    agent.start()
    rid = later.wait_for_request().id  # the channel after the terminal was told at once
    out.wait_for("Approve as alice? [y/n/r]")
    started = time.monotonic()
    gate.approve(rid, approver="bob")
    agent.join(5)
    assert result == ["ok"] and ran == ["A-1"]
    assert time.monotonic() - started < 2
    out.wait_for(f"Request {rid}: executed by bob")
    assert terminal.idle.wait(5)  # the prompt ended; nothing waits for an answer


def test_the_timeout_holds_while_the_prompt_is_open(silent: Silent) -> None:
    out = Out()
    gate = _gate(ConsoleChannel("alice", stdin=silent.stream, stdout=out), timeout=0.5)

    @gate.guard
    def wipe(target: str) -> str:
        raise AssertionError("must not run")

    started = time.monotonic()
    with pytest.raises(ApprovalTimeout):
        wipe("prod")
    assert time.monotonic() - started < 3
    out.wait_for(": expired")


def test_a_bad_answer_is_asked_again_and_skip_is_not_offered() -> None:
    out = Out()
    terminal = ConsoleChannel("alice", stdin=io.StringIO("maybe\nskip\ny\n\n"), stdout=out)
    gate = _gate(terminal)

    @gate.guard
    def refund(order: str) -> str:
        return "refunded " + order

    assert refund("A-1") == "refunded A-1"
    text = out.getvalue()
    assert text.count("Please answer y, n or r.") == 2
    assert "skip" not in text.replace("Please answer", "").split("maybe")[0]
    assert "[y/n/r]" in text and "skip" not in text


def test_a_denial_needs_a_reason() -> None:
    out = Out()
    terminal = ConsoleChannel("alice", stdin=io.StringIO("n\n\n\nnot this order\n"), stdout=out)
    gate = _gate(terminal)

    @gate.guard
    def refund(order: str) -> str:
        raise AssertionError("must not run")

    from gatekeeper import ApprovalDenied

    with pytest.raises(ApprovalDenied) as info:
        refund("A-1")
    assert info.value.comment == "not this order"
    assert out.getvalue().count("Why deny? (required: the agent reads it)") == 3


def test_requests_are_asked_one_at_a_time_oldest_first() -> None:
    out = Out()
    terminal = ConsoleChannel("alice", stdin=io.StringIO("y\n\ny\n\n"), stdout=out)
    gate = _gate(terminal)

    @gate.guard
    def note(text: str) -> str:
        return text

    results: list[str] = []
    threads = [threading.Thread(target=lambda t=t: results.append(note(t))) for t in ("a", "b")]
    for t in threads:
        t.start()
        out.wait_for("Approve as alice?") if t is threads[0] else None
    for t in threads:
        t.join(5)
    assert sorted(results) == ["a", "b"]


def test_it_refuses_a_process_that_cannot_decide() -> None:
    """Answers are votes signed in this process: an agent with only the public keys is
    refused when the channel is bound, not when someone first types y."""
    from gatekeeper import ConfigError, MemoryStore
    from gatekeeper._signing import DecisionKeys, SigningKey, TrustedKeys

    deciders = SigningKey.generate()
    agents_keys = DecisionKeys(None, TrustedKeys({deciders.key_id: deciders.public_text}))
    terminal = ConsoleChannel("alice", stdin=io.StringIO("y\n\n"), stdout=io.StringIO())
    with pytest.raises(ConfigError, match="holds no decision signing key"):
        Gatekeeper(policy=POLICY, store=MemoryStore(decision_keys=agents_keys), channels=[terminal])
    gate = Gatekeeper(policy=POLICY, store=MemoryStore(), channels=[terminal])  # has a key
    assert gate.channels == [terminal]


def test_r_writes_the_result_instead_and_the_tool_does_not_run() -> None:
    out = Out()
    # A blank answer is asked again: a response needs words.
    typed = io.StringIO("r\n\nrefunded by hand, ticket 4411\n")
    gate = _gate(ConsoleChannel("alice", stdin=typed, stdout=out))
    ran: list[str] = []

    @gate.guard
    def refund(order: str) -> str:
        ran.append(order)
        return "ok"

    result = refund("A-1")
    assert result == "refunded by hand, ticket 4411" and ran == []
    assert result.approver == "alice"  # type: ignore[attr-defined]
    text = out.getvalue()
    assert "r writes the result the agent gets instead" in text
    assert text.count("The result the agent gets instead (the tool won't run): ") == 2


def test_r_is_not_offered_where_the_rule_takes_no_written_answer() -> None:
    out = Out()
    policy = Policy.from_yaml(
        "version: 1\ndefault: require_approval\nrules:\n"
        "  - {id: pay, match: {tool: pay}, verdict: require_approval, approval: {respond: false}}\n"
    )
    gate = Gatekeeper(
        policy=policy,
        approvers=[Approver(name="alice")],
        channels=[ConsoleChannel("alice", stdin=io.StringIO("r\ny\n\n"), stdout=out)],
        default_timeout=10,
    )

    @gate.guard
    def pay(to: str) -> str:
        return "paid"

    assert pay("X") == "paid"
    text = out.getvalue()
    assert "Approve as alice? [y/n] " in text and "Please answer y or n." in text
    assert "r writes" not in text


def test_a_question_is_answered_or_declined_in_the_terminal() -> None:
    from gatekeeper import ApprovalDenied

    out = Out()
    typed = io.StringIO("y\na\nEUR, as on the invoice\nn\nnot your call\n")
    gate = _gate(ConsoleChannel("alice", stdin=typed, stdout=out))
    ask = gate.ask_tool()
    assert ask("Which currency? <b>\x1b[31mred</b>") == "EUR, as on the invoice"
    with pytest.raises(ApprovalDenied, match="not your call"):
        ask("May I close the account?")
    text = out.getvalue()
    assert "Question " in text and "question (the agent's words" in text
    assert "Answer as alice? [a/n] Please answer a or n." in text  # "y" is no answer here
    assert "\x1b" not in text  # the agent's escape codes are shown, not run
