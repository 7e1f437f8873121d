"""``gatekeeper alerts``: the alert loop of ``gatekeeper serve``, without the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._config import load_config
from .._text import inline
from ..alerts._alert import span

if TYPE_CHECKING:
    from ..alerts import Alerter
    from ._commands import IO

__all__ = ["alerts", "describe"]


def describe(alerter: Alerter) -> str:
    """One line for the terminal: where alerts go, and how often at most."""
    names = ", ".join(o.name for o in alerter.outboxes)
    return f"alerts to {names} (at most one per kind, agent and rule per {span(alerter.window)})"


def alerts(config_path: str | None, *, once: bool, io: IO) -> int:
    """Follow the audit log and the queue, sending alerts, until interrupted (or once)."""
    config = load_config(config_path)
    if config.alerts is None:
        return io.refuse(
            f"{config.source}: there is no 'alerts:' section, so nothing says where alerts go "
            "(see the docs' Alerts page)"
        )
    if config.store_url.startswith("memory://"):
        return io.refuse(
            f"{config.source}: store.url is memory://, which lives inside one process: no "
            "agent's calls can reach this one. Set store.url or $GATEKEEPER_REDIS_URL to the "
            "agents' Redis (a process with the embedded store runs its own Alerter)"
        )
    gate = config.build_gate(channels=[])
    alerter = None
    try:
        alerter = config.alerter(gate)
        assert alerter is not None  # there is an alerts: section
        if not once:
            io.say(describe(alerter) + "; Ctrl-C stops")
            alerter.follow()
            return 0
        sent = alerter.check()
        alerter.flush()
        for alert in sent:
            about = alert.halt_target if alert.kind == "halt" else alert.agent
            io.say(f"{alert.kind:<9} {alert.headline}: {inline(about or '-', 60)}")
        failed = sum(o.failed + o.dropped for o in alerter.outboxes)
        if failed:
            return io.fail(f"{len(sent)} alert(s); {failed} delivery(ies) failed (see the log)")
        io.say(f"{len(sent)} alert(s) sent")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if alerter is not None:
            alerter.close()
        gate.close()
