"""Small helpers shared by the stores."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError

from ..models import Halt, HaltScope

__all__ = ["halted_message", "ms", "read_halt"]


def ms(at: dt.datetime) -> int:
    """Milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


def halted_message(halt: Halt) -> str:
    """'agent billing-bot is halted by alice: runaway spend' and the like."""
    what = {
        HaltScope.ALL: "every agent is",
        HaltScope.AGENT: f"agent {halt.target} is",
        HaltScope.SESSION: f"session {halt.target} is",
    }[halt.scope]
    why = f": {halt.reason}" if halt.reason else ""
    return f"{what} halted by {halt.by}{why}"


def read_halt(field: str, raw: Any) -> Halt:
    """The halt stored under ``field``; one that can't be read still halts, and says so.

    An agent's Redis user may add to its halts (never remove): whatever it
    writes there reads as a halt in force, never as an error that stops the
    kill switch's own pages and commands.
    """
    try:
        return Halt.model_validate_json(raw)
    except (ValidationError, ValueError, TypeError):
        scope, _, target = field.partition(":")
        if scope not in ("agent", "session"):
            scope, target = "all", "*"
        return Halt(
            scope=HaltScope(scope),
            target=target or "*",
            by="(unreadable record)",
            reason="a halt whose record can't be read: still in force",
            at=dt.datetime.fromtimestamp(0, dt.timezone.utc),
        )
