"""Sample held calls for the pictures of the Slack message in the docs.

``scripts/render_slack.py`` turns each into ``docs/images/slack-<name>.json``
(what :func:`~gatekeeper.channels.slack._blocks.request_message` returns) and
``docs/images/slack-<name>.png`` (that JSON drawn as Slack would show it);
``tests/unit/test_slack_pictures.py`` checks the committed JSON still matches
the code. Everything is fixed (ids, times), so the output is deterministic.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import types
from pathlib import Path
from typing import Any

from gatekeeper._canonical import digest
from gatekeeper.channels.slack._blocks import request_message
from gatekeeper.models import (
    ApprovalRequest,
    Classification,
    Decision,
    RequestStatus,
    Risk,
    ToolCall,
    Verdict,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 28, 12, 3, tzinfo=UTC)
"""When the pictures are taken."""

SLACK_IDS = {"alice": "U0ALICE", "bob": "U0BOB"}
"""Approver names to Slack user ids (mentions)."""

CONSOLE = "https://gatekeeper.example.com"
"""The web console's base URL (the Open in console button)."""

REFUND_ARGS: dict[str, Any] = {"order_id": "A-1042", "amount": 249.0, "currency": "EUR"}
WIRE_ARGS: dict[str, Any] = {
    "amount": 18500.0,
    "currency": "EUR",
    "iban": "DE89 3704 0044 0532 0130 00",
    "reference": "INV-2291 Nordwind Logistik GmbH",
}


def held(
    *,
    request_id: str,
    call_id: str,
    tool: str,
    agent: str,
    session_id: str,
    args: dict[str, Any],
    reason: str,
    rule: str,
    rule_reason: str,
    risk: Risk,
    created_at: dt.datetime,
    expires_at: dt.datetime,
    group: str | None = None,
    quorum: int = 1,
    irreversible: bool = False,
) -> ApprovalRequest:
    """A pending request for one held call, as the gate would make it."""
    call = ToolCall(
        id=call_id,
        tool=tool,
        args=args,
        args_digest=digest(args),
        agent=agent,
        session_id=session_id,
        irreversible=irreversible,
        reason=reason,
        created_at=created_at,
    )
    cls = Classification(
        verdict=Verdict.REQUIRE_APPROVAL, risk=risk, rules=(rule,), reasons=(rule_reason,)
    )
    return ApprovalRequest(
        id=request_id,
        call=call,
        classification=cls,
        created_at=created_at,
        expires_at=expires_at,
        quorum=quorum,
        group=group,
        args=args,
        args_digest=call.args_digest,
    )


def refund(now: dt.datetime, args: dict[str, Any] | None = None) -> ApprovalRequest:
    """The held refund: billing-bot, high risk, group finance, expires in 14 min."""
    return held(
        request_id="01jdx4m7k2q9v3n8p5r6t0wzyb",
        call_id="01jdx4m7jzc5f8h2k4m6n8q0rs",
        tool="refund",
        agent="billing-bot",
        session_id="support-chat-7f3a91",
        args=REFUND_ARGS if args is None else args,
        reason="Customer says the order never arrived",
        rule="refunds",
        rule_reason="refunds move money back to a customer",
        risk=Risk.HIGH,
        group="finance",
        created_at=now - dt.timedelta(minutes=1),
        expires_at=now + dt.timedelta(minutes=14),
    )


def sample_requests(now: dt.datetime = NOW) -> dict[str, ApprovalRequest]:
    """The pictured requests by name: ``pending``, ``partial`` and ``denied``."""
    pending = refund(now)

    wire = held(
        request_id="01jdx4k3w8e6r2t9y5u1i7o4pa",
        call_id="01jdx4k3vq7s1d5f9g3h6j8k2l",
        tool="wire_transfer",
        agent="treasury-bot",
        session_id="month-end-2026-11",
        args=WIRE_ARGS,
        reason="Pay supplier invoice INV-2291 before it falls due on Monday",
        rule="wires",
        rule_reason="outgoing wire transfers are irreversible",
        risk=Risk.CRITICAL,
        irreversible=True,
        group="finance",
        quorum=2,
        created_at=now - dt.timedelta(minutes=4),
        expires_at=now + dt.timedelta(minutes=26),
    )
    by_alice = Decision(
        approver="alice",
        approve=True,
        at=now - dt.timedelta(minutes=2),
        args_digest=wire.args_digest,
        via="slack",
    )
    partial = wire.model_copy(update={"decisions": (by_alice,)})

    comment = "Use the sandbox account for tests"
    by_bob = Decision(
        approver="bob",
        approve=False,
        comment=comment,
        at=now,
        args_digest=pending.args_digest,
        via="slack",
    )
    denied = pending.model_copy(
        update={
            "status": RequestStatus.DENIED,
            "decisions": (by_bob,),
            "decided_by": "bob",
            "decided_at": now,
            "comment": comment,
        }
    )
    return {"pending": pending, "partial": partial, "denied": denied}


def message(request: ApprovalRequest, now: dt.datetime = NOW) -> dict[str, Any]:
    """The Block Kit message for ``request``, with the samples' console and Slack ids."""
    return request_message(request, now=now, console_url=CONSOLE, slack_ids=SLACK_IDS)


def sample_messages(now: dt.datetime = NOW) -> dict[str, dict[str, Any]]:
    """``{name: request_message(...)}`` for every sample: what the pictures show."""
    return {name: message(req, now) for name, req in sample_requests(now).items()}


@functools.cache
def render_script() -> types.ModuleType:
    """``scripts/render_slack.py`` as a module (``scripts/`` is not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "render_slack.py"
    spec = importlib.util.spec_from_file_location("render_slack", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
