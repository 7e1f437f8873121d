"""How many alerts go out: one per key per window, the rest counted and summed up. Pure.

Time is cut into windows of ``window`` seconds from the epoch, the same
windows in every process, so two consoles reading one log give the first
alert of a window the same id (:attr:`Alert.id`) and the store lets only one
of them send it. Per key (kind, agent, rule):

- the first alert in a window goes out at once;
- the others in that window are counted, not sent;
- when the window has ended (plus ``grace`` seconds for late events), one
  summary says how many were held back, unless the key's next alert came
  first and said it itself (:attr:`Alert.note`).

And whatever the keys, at most ``most`` alerts go out per window: beyond
that they are counted per kind and summed up once the window ends. A
looping agent therefore gets at most two messages per key and window, and
no agent gets more than ``2 * most + 6`` per window in all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from ._alert import Alert, AlertKind

__all__ = ["Throttle", "digest"]

#: Keys followed at once at most; beyond it, new keys count as over the window's cap.
MAX_KEYS = 10_000


def digest(*parts: str) -> str:
    """A short, stable hex name for ``parts`` (agent names and rule ids may be anything)."""
    raw = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:20]


@dataclass
class _Key:
    window: int  # the window (number) of the last alert sent for this key
    held: int = 0  # alerts held back in it
    latest: Alert | None = None  # the newest one held back: what a summary is about
    summed: bool = False  # its summary went out (or the next alert carried it)


@dataclass
class _Over:
    held: dict[AlertKind, int] = field(default_factory=dict)
    latest: dict[AlertKind, Alert] = field(default_factory=dict)


class Throttle:
    """Decides which alerts go out now; keeps what it needs to sum up the others."""

    def __init__(self, window: float, most: int, grace: float = 5.0) -> None:
        if window <= 0 or most < 1:
            raise ValueError("window must be above zero and most at least 1")
        self.window = window
        self.most = most
        self.grace = grace
        self._keys: dict[tuple[str, ...], _Key] = {}
        self._sent: dict[int, int] = {}  # window -> alerts sent in it
        self._over: dict[int, _Over] = {}  # window -> alerts held back by the cap

    def _number(self, at: float) -> int:
        return int(at // self.window)

    def offer(self, alert: Alert, at: float) -> Alert | None:
        """``alert`` as it goes out now (with its id and what was held back), or None."""
        n = self._number(at)
        state = self._keys.get(alert.key)
        if state is not None and state.window == n:
            state.held += 1
            state.latest = alert
            return None
        if self._sent.get(n, 0) >= self.most or (state is None and len(self._keys) >= MAX_KEYS):
            over = self._over.setdefault(n, _Over())
            over.held[alert.kind] = over.held.get(alert.kind, 0) + 1
            over.latest[alert.kind] = alert
            return None
        carried = state.held if state is not None and not state.summed else 0
        self._keys[alert.key] = _Key(window=n)
        self._sent[n] = self._sent.get(n, 0) + 1
        return replace(
            alert,
            id=alert.id or f"{alert.kind}-{digest(*alert.key)}-{n}",
            suppressed=carried,
            window=self.window,
        )

    def due(self, now: float) -> list[Alert]:
        """Summaries of windows that have ended; forgets what no summary needs any more."""
        out: list[Alert] = []
        for key, state in list(self._keys.items()):
            ended = (state.window + 1) * self.window + self.grace
            if state.held and not state.summed and now >= ended and state.latest is not None:
                out.append(
                    replace(
                        state.latest,
                        id=f"{state.latest.kind}-{digest(*key)}-{state.window}-more",
                        summary=True,
                        suppressed=state.held,
                        window=self.window,
                    )
                )
                state.summed = True
            if now >= ended + self.window and (state.summed or not state.held):
                del self._keys[key]
        for n, over in list(self._over.items()):
            if now < (n + 1) * self.window + self.grace:
                continue
            for kind, held in over.held.items():
                out.append(
                    replace(
                        over.latest[kind],
                        id=f"{kind}-over-{n}",
                        summary=True,
                        capped=True,
                        suppressed=held,
                        window=self.window,
                    )
                )
            del self._over[n]
        current = self._number(now)
        for n in [n for n in self._sent if n < current - 1]:
            del self._sent[n]
        return out
