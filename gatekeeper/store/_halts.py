"""Small helpers shared by the stores."""

from __future__ import annotations

import datetime as dt

from ..models import Halt, HaltScope

__all__ = ["halted_message", "ms"]


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
