"""One alert per halt, from the events that tell it, in whatever order they are sealed. Pure.

A halt by policy is told by events that different processes journal, so the
chain holds them in no fixed order (on Redis the ``halt.set`` often comes
first): the halting call (``call.denied`` of verdict ``halt``: the tool, the
rule, a sequence's earlier calls), the ``halt.set`` (scope, target, who), and
one ``request.cancelled`` (``halted: ...``) per pending request it cancelled,
unless the ``halt.set`` lists them itself (``data.pending``). A person's halt
has no call. :class:`Halts` gathers them for ``grace`` seconds from the first
one read, then gives one alert with all it learnt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._alert import Alert

__all__ = ["Halts"]

_MOST = 1000  # halts gathered at once; beyond, the oldest is given out early


@dataclass
class _Halt:
    alert: Alert
    seen: float  # when its first event was read
    call: bool = False  # the halting call was read
    set: bool = False  # the halt.set was read
    counted: bool = False  # the halt.set listed the requests it cancelled


def _covers(alert: Alert, agent: str | None, session_id: str | None) -> bool:
    """Whether the halt ``alert`` tells of covers a call of ``agent`` in ``session_id``."""
    scope, target = alert.halt_scope, alert.halt_target
    if scope == "all":
        return True
    if scope == "session":
        return session_id is not None and session_id == target
    return agent is not None and agent == target


class Halts:
    """Gathers the events of each halt; :meth:`due` gives the halts ``grace`` seconds old."""

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self._open: list[_Halt] = []

    def _add(self, halt: _Halt) -> list[Alert]:
        self._open.append(halt)
        if len(self._open) > _MOST:  # a flood of forged halts: give the oldest out now
            return [self._open.pop(0).alert]
        return []

    def call(self, alert: Alert, now: float) -> list[Alert]:
        """A halting call (``alert`` carries its tool, rule, reasons and steps)."""
        for halt in reversed(self._open):
            if halt.set and not halt.call and self._caused(halt.alert, alert):
                halt.alert = replace(
                    alert,
                    key=halt.alert.key,
                    halt_scope=halt.alert.halt_scope,
                    halt_target=halt.alert.halt_target,
                    by=halt.alert.by,
                    cancelled=halt.alert.cancelled,
                    at=min(halt.alert.at, alert.at),
                )
                halt.call = True
                return []
        return self._add(_Halt(alert, now, call=True))

    def halt_set(self, alert: Alert, *, counted: bool, now: float) -> list[Alert]:
        """A ``halt.set`` (``alert`` carries scope, target, who, and the count if ``counted``)."""
        for halt in reversed(self._open):
            if halt.call and not halt.set and self._caused(alert, halt.alert):
                halt.alert = replace(
                    halt.alert,
                    key=alert.key,
                    halt_scope=alert.halt_scope,
                    halt_target=alert.halt_target,
                    by=alert.by,
                    cancelled=alert.cancelled,
                    at=min(halt.alert.at, alert.at),
                )
                halt.set, halt.counted = True, counted
                return []
        return self._add(_Halt(alert, now, set=True, counted=counted))

    def cancelled(self, by: str | None, agent: str | None, session_id: str | None) -> None:
        """A pending request of ``agent`` in ``session_id`` cancelled by the halt of ``by``."""
        for halt in reversed(self._open):
            fits = halt.set and not halt.counted and halt.alert.by == by
            if fits and _covers(halt.alert, agent, session_id):
                halt.alert = replace(halt.alert, cancelled=halt.alert.cancelled + 1)
                return

    def due(self, now: float) -> list[Alert]:
        """The halts gathered for ``grace`` seconds, each as one alert."""
        ready = [h for h in self._open if now - h.seen >= self.grace]
        self._open = [h for h in self._open if now - h.seen < self.grace]
        return [h.alert for h in ready]

    @staticmethod
    def _caused(halt: Alert, call: Alert) -> bool:
        """Whether the ``halt.set`` told by ``halt`` is the one the halting ``call`` made."""
        by = halt.by or ""
        if not by.startswith("policy"):
            return False  # a person's halt, not a call's
        if call.rule is not None and by not in ("policy", f"policy:{call.rule}"):
            return False
        return _covers(halt, call.agent, call.session_id)
