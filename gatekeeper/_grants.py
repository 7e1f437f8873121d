"""Standing approvals and earned autonomy: calls a person (or a record of approvals) lets pass.

A **grant** lets an agent's calls of one tool, with arguments within the
grant's conditions, run without asking, until it expires or is revoked. A
person makes one by approving a call "and matching calls for the next N
minutes" (console, Slack, CLI); the policy's ``autonomy:`` rules make one when
an agent has earned it (K approvals of matching calls, no denial, within a
window), and a denial, a halt or a sequence or limit hit takes it away.

Grants are signed with the deciding side's key, kept under the agent's keys
where its Redis user may read but not write them, and verified by the agent's
gate before each use, like a vote. What a grant may cover, decided here:

- only calls the policy holds for a person on their own (a rule, the default,
  a missing scope, an irreversible tool); never a call a sequence, limit or
  novelty rule escalated, and never a denial or a halt;
- the same agent and tool, held by the same rules (or fewer) for the same
  approver group, and every argument equal to the approved value — unless
  the approver turned a number into a range from 0 up to a bound no higher
  than the approved value (``--max amount=50``); an argument the approved
  call did not have is not covered;
- only requests that need one approval (a quorum of two can't be met by one
  person's standing approval).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._errors import TamperingDetected
from ._signing import DecisionKeys
from .models import ToolCall, utc

__all__ = ["Grant", "conditions_for", "narrowed", "sign_grant", "usable_grant"]

PURPOSE = "grant"


class Grant(BaseModel):
    """One standing approval (or autonomy an agent earned), as signed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Literal["standing", "autonomy"] = "standing"
    agent: str
    tool: str
    args: dict[str, dict[str, Any]] = Field(
        description="per argument: {'eq': value} or {'gte': 0, 'lte': number}"
    )
    group: str | None = Field(default=None, description="the approver group of the approval")
    rules: tuple[str, ...] = Field(
        default=(), description="the rules that held the approved call: it covers no others"
    )
    by: str = Field(description="the approver, or autonomy:RULE")
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    request_id: str | None = Field(default=None, description="the approval it came with")
    rule: str | None = Field(default=None, description="autonomy: the rule that earned it")
    comment: str | None = None

    def describe(self) -> str:
        parts = []
        for name, cond in sorted(self.args.items()):
            if "lte" in cond:
                parts.append(f"{cond.get('gte', 0)} <= {name} <= {cond['lte']}")
            else:
                parts.append(f"{name} = {_short(cond.get('eq'))}")
        until = f" until {self.expires_at:%Y-%m-%d %H:%M} UTC" if self.expires_at else ""
        return f"{self.tool}({', '.join(parts)}){until}"


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def conditions_for(args: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The default conditions of a grant made from a call with ``args``: every value equal.

    A number is an amount to one tool and an id to another (``user_id=500``
    must not cover user 1): only the approver can say it is a range.
    """
    return {name: {"eq": value} for name, value in args.items()}


def narrowed(
    conditions: Mapping[str, Mapping[str, Any]], bounds: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """``conditions`` with some number arguments made ranges ``0 <= x <= bound``.

    A bound must be from 0 up to the approved value: lower than what was
    approved, never higher (ValueError otherwise, and for a name that is not
    a number argument of zero or more).
    """
    out = {name: dict(cond) for name, cond in conditions.items()}
    for name, bound in bounds.items():
        cond = out.get(name)
        value: Any = None if cond is None else cond.get("eq", cond.get("lte"))
        if cond is None or not _number(value) or value < 0:
            raise ValueError(
                f"can't bound {name!r}: the call has no number argument of that name "
                "(of zero or more)"
            )
        if not _number(bound) or bound > value or bound < 0:
            raise ValueError(
                f"{name} may be lowered, not raised: the approved call had {value}, "
                f"you gave {bound!r} (a bound is from 0 up to the approved value)"
            )
        out[name] = {"gte": 0, "lte": bound}
    return out


def new_grant(
    *,
    agent: str,
    tool: str,
    args: Mapping[str, Mapping[str, Any]],
    by: str,
    now: dt.datetime,
    seconds: float | None,
    kind: Literal["standing", "autonomy"] = "standing",
    request_id: str | None = None,
    rule: str | None = None,
    comment: str | None = None,
    group: str | None = None,
    rules: tuple[str, ...] = (),
) -> Grant:
    return Grant(
        group=group,
        rules=rules,
        id="g_" + secrets.token_hex(8),
        kind=kind,
        agent=agent,
        tool=tool,
        args={k: dict(v) for k, v in args.items()},
        by=by,
        created_at=now,
        expires_at=None if seconds is None else now + dt.timedelta(seconds=seconds),
        request_id=request_id,
        rule=rule,
        comment=comment,
    )


def sign_grant(keys: DecisionKeys, grant: Grant) -> str:
    return keys.signer().sign(PURPOSE, grant.model_dump(mode="json"))


def read_grant(keys: DecisionKeys, signed: str) -> Grant:
    """A stored grant, once its signature checks out (TamperingDetected otherwise)."""
    return Grant.model_validate(keys.trusted.verify(PURPOSE, signed))


def covers(grant: Grant, call: ToolCall, now: dt.datetime) -> bool:
    """Whether ``grant`` lets ``call`` run now (see the module docs)."""
    if grant.agent != call.agent or grant.tool != call.tool:
        return False
    if grant.expires_at is not None and now >= grant.expires_at:
        return False
    if set(call.args) - set(grant.args):
        return False  # an argument the approved call did not have
    for name, cond in grant.args.items():
        if name not in call.args:
            return False
        value = call.args[name]
        if "lte" in cond:
            if not _number(value) or value > cond["lte"] or value < cond.get("gte", 0):
                return False
        elif not _same(value, cond.get("eq")):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    from ._canonical import canonical_json

    return canonical_json(a) == canonical_json(b)


def usable_grant(
    keys: DecisionKeys,
    stored: Mapping[str, str],
    call: ToolCall,
    now: dt.datetime,
    demoted_at_ms: int | None,
    earned: Callable[[str, ToolCall], bool] = lambda rule, call: False,
    held_by: tuple[tuple[str, ...], str | None] = ((), None),
) -> tuple[Grant | None, list[str], list[Grant]]:
    """The first stored grant that covers ``call``, the problems found, the autonomy voided.

    A grant whose signature does not check out is a problem (tampering), never
    used. An autonomy grant made before the agent was last demoted on its own
    side (a sequence or limit hit, ``demoted_at_ms``) is not used.
    """
    problems: list[str] = []
    voided: list[Grant] = []
    for gid, signed in sorted(stored.items()):
        try:
            grant = read_grant(keys, signed)
        except (TamperingDetected, ValueError) as exc:
            problems.append(f"grant {gid[:40]}: {exc}")
            continue
        if grant.id != gid:
            problems.append(f"grant {gid[:40]} is stored under another grant's id")
            continue
        if (
            grant.kind == "autonomy"
            and demoted_at_ms is not None
            and demoted_at_ms >= int(grant.created_at.timestamp() * 1000)
        ):
            voided.append(grant)
            continue
        if grant.kind == "autonomy":
            # Earned for calls its rule matches (in this process's policy), none other.
            usable = (
                grant.agent == call.agent and grant.rule is not None and earned(grant.rule, call)
            )
        else:
            # Held by the same rules (or fewer) for the same group: a grant from a
            # credit approver's approval never covers what only finance may decide.
            rules, group = held_by
            usable = (
                covers(grant, call, now)
                and (group is None or group == grant.group)
                and set(rules) <= set(grant.rules)
            )
        if usable:
            return grant, problems, voided
    return None, problems, voided


def when(ms: int) -> dt.datetime:
    return utc(ms)
