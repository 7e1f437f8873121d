"""The behaviour state of :class:`MemoryStore`: sequences and limits, applied in Python.

The same steps, in the same order, as ``bhv_apply`` in ``lua/_prelude.lua``
(``RedisStore`` runs that inside its admit, observe, hold and claim scripts);
the contract tests check that the two agree on every decision. See
:mod:`gatekeeper.policy._behaviour` for what a plan is and the rules applied.

Modes:

- ``attempt``: the call was classified (any verdict). Sequence steps move on;
  the answer is every sequence the call completes and every limit it would
  pass. Nothing is consumed.
- ``admit``: as ``attempt``, for a call whose verdict is ``verdict``. When a
  hit is stricter than that verdict the call is escalated and nothing more
  happens. Otherwise, when the verdict is ``allow``, the call runs now: its
  ``not`` steps clear their sequences and it is counted by its limits.
- ``release``: an approved call is released to run: its ``not`` steps clear
  their sequences, it is counted by its limits (past them if need be: a
  person approved it), and its new values become known. No check.
- ``done``: a call that took a concurrency slot ended; the slot is freed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import Verdict

__all__ = ["SLOT_TTL_MS", "UNPARSABLE", "BehaviourState", "stricter"]

#: The digest of a value that can never be known (a URL whose host can't be told).
UNPARSABLE = "unparsable"

#: How long a concurrency slot is held at most (a process that died while
#: running a call frees its slot after this).
SLOT_TTL_MS = 600_000


def stricter(a: str, b: str) -> bool:
    """Whether verdict ``a`` is stricter than verdict ``b``."""
    return Verdict(a).strictness > Verdict(b).strictness


class BehaviourState:
    """Sequence levels and limit entries by key; the caller holds the store's lock."""

    def __init__(self) -> None:
        # (scope, key) -> {"last": call id, "res": chain or None, "lv": {level: (start, chain)}}
        self.seqs: dict[tuple[str, str], dict[str, Any]] = {}
        # (scope, key) -> its entries: {call id: (at ms, amount)}, oldest first
        self.limits: dict[tuple[str, str], _Entries] = {}
        # (agent, key) -> {value digest: {"s": shown, "at": ms, "c": call id}}
        self.known: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        # agent -> when a sequence or limit last fired for it (ms): autonomy ends there
        self.demoted: dict[str, int] = {}

    def apply(
        self,
        agent: str,
        plan: Mapping[str, Any],
        mode: str,
        now: int,
        *,
        verdict: str = "allow",
        request_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Apply ``plan``; returns ``(hits, escalated)``."""
        cid = plan["c"]
        hits: list[dict[str, Any]] = []
        if mode in ("attempt", "admit"):
            for s in plan["s"]:
                if s["m"]:
                    fired = self._step(agent, s, cid, plan["t"], now, request_id)
                    if fired is not None:
                        hits.append(
                            {
                                "kind": "sequence",
                                "i": s["i"],
                                "v": s["v"],
                                "c": fired,
                                "sh": s["sh"],
                            }
                        )
            for lim in plan["l"]:
                hit = self._check(agent, lim, cid, now)
                if hit is not None:
                    hits.append({**hit, "sh": lim["sh"]})
            for new in plan.get("n", ()):
                known = self.known.get((agent, new["k"]), {})
                if new["d"] == UNPARSABLE or new["d"] not in known:
                    hits.append(
                        {
                            "kind": "novelty",
                            "i": new["i"],
                            "v": new["v"],
                            "s": new["s"],
                            "sh": new["sh"],
                        }
                    )
        if any(h.get("sh") != 1 and h["kind"] in ("sequence", "limit") for h in hits):
            self.demoted[agent] = now  # earned autonomy ends here (docs/policy.md)
        if mode == "attempt":
            return hits, False
        # Hits of shadow-mode entries: recorded by the caller, they change nothing.
        shadows = [h for h in hits if h.get("sh") == 1]
        if mode == "admit":
            if any(h.get("sh") != 1 and stricter(h["v"], verdict) for h in hits):
                return hits, True
            if verdict != "allow":
                return shadows, False
        if mode == "done":
            for lim in plan["l"]:
                if lim["kind"] == "concurrent":
                    self._entries(agent, lim).remove(cid)
            return [], False
        for s in plan["s"]:  # admit (allowed) or release: the call runs now
            if s["x"]:
                st = self.seqs.get((agent, s["k"]))
                if st is not None:
                    for level in s["x"]:
                        st["lv"].pop(level, None)
        for lim in plan["l"]:
            at = now + SLOT_TTL_MS if lim["kind"] == "concurrent" else now
            self._entries(agent, lim).add(cid, at, lim["a"])
        for new in plan.get("n", ()):  # it ran: from now on this agent has done it
            if new["d"] != UNPARSABLE:
                known = self.known.setdefault((agent, new["k"]), {})
                known.setdefault(new["d"], {"s": new["s"], "at": now, "c": cid})
        return shadows, False

    def known_values(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """``(agent, key, digest, {"s": shown, "at": ms, "c": call id})`` for every known value."""
        return [
            (agent, key, digest, dict(entry))
            for (agent, key), values in sorted(self.known.items())
            for digest, entry in sorted(values.items())
        ]

    def forget(self, agent: str, key: str, digest: str) -> bool:
        return self.known.get((agent, key), {}).pop(digest, None) is not None

    @staticmethod
    def _lkey(agent: str, lim: Mapping[str, Any]) -> tuple[str, str]:
        return ("*" if lim["g"] else agent, lim["k"])

    def _step(
        self,
        agent: str,
        s: Mapping[str, Any],
        cid: str,
        tool: str,
        now: int,
        request_id: str | None,
    ) -> list[list[Any]] | None:
        st = self.seqs.setdefault((agent, s["k"]), {"last": None, "res": None, "lv": {}})
        if st["last"] == cid:  # the same call again (a retry): the same answer
            res: list[list[Any]] | None = st["res"]
            return res
        lv: dict[int, tuple[int, list[list[Any]]]] = st["lv"]
        for level in [lvl for lvl, (start, _) in lv.items() if now - start > s["w"]]:
            del lv[level]
        me = [cid, tool, now, request_id or ""]
        fired = None
        for p in sorted(s["m"], reverse=True):  # highest first: one call fills one step
            if p == 1:
                lv[1] = (now, [me])
                continue
            prev = lv.get(p - 1)
            if prev is None:
                continue
            if p == s["n"]:
                fired = prev[1]
            elif p not in lv or lv[p][0] <= prev[0]:
                lv[p] = (prev[0], [*prev[1], me])
        st["last"], st["res"] = cid, fired
        return fired

    def _check(
        self, agent: str, lim: Mapping[str, Any], cid: str, now: int
    ) -> dict[str, Any] | None:
        entries = self._entries(agent, lim)
        entries.trim(now if lim["kind"] == "concurrent" else now - lim["w"])
        if cid in entries.items:  # counted already (a retry, or a re-attached call)
            return None
        if lim["kind"] == "budget":
            used = entries.total
            over = bool(lim["bad"]) or used + lim["a"] > lim["max"]
        else:
            used = float(len(entries.items))
            over = used + 1 > float(lim["max"])
        if not over:
            return None
        return {
            "kind": "limit",
            "i": lim["i"],
            "v": lim["v"],
            "u": used,
            "max": lim["max"],
            "a": lim["a"],
            "bad": lim["bad"],
        }

    def _entries(self, agent: str, lim: Mapping[str, Any]) -> _Entries:
        key = self._lkey(agent, lim)
        found = self.limits.get(key)
        if found is None:
            found = self.limits[key] = _Entries()
        return found

    def usage(self) -> list[tuple[str, str, list[tuple[int, float]]]]:
        """Every limit key with entries: ``(agent or "*", key, [(at ms, amount), ...])``."""
        return [
            (scope, key, sorted(entries.items.values()))
            for (scope, key), entries in sorted(self.limits.items())
            if entries.items
        ]


class _Entries:
    """One limit key's entries, oldest first, with their running total.

    Calls are counted in the order they happen, so the oldest entries are at
    the front and a window is trimmed from there (as ``ZREMRANGEBYSCORE``
    does in Redis), in time proportional to what leaves it.
    """

    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: dict[str, tuple[int, float]] = {}
        self.total: float = 0  # budgets: whole micro-units (exact); rates: counts

    def trim(self, cutoff: float) -> None:
        items = self.items
        while items:
            first = next(iter(items))
            at, amount = items[first]
            if at > cutoff:
                break
            del items[first]
            self.total -= amount
        if not items:
            self.total = 0

    def add(self, cid: str, at: int, amount: float) -> None:  # an int for budgets
        if cid not in self.items:
            self.items[cid] = (at, amount)
            self.total += amount

    def remove(self, cid: str) -> None:
        found = self.items.pop(cid, None)
        if found is not None:
            self.total -= found[1]
