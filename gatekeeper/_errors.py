"""Every error gatekeeper raises.

::

    GatekeeperError
    ├── ToolCallBlocked            the tool did not run; an agent may read why
    │   ├── ToolCallDenied         the policy refused the call
    │   ├── ApprovalDenied         a person denied it
    │   ├── ApprovalTimeout        nobody decided before the request expired
    │   ├── ApprovalCancelled      the request was cancelled
    │   ├── AgentHalted            the kill switch is on for this agent/session/all
    │   ├── ArgumentsChanged       the caller's arguments changed after approval
    │   ├── TamperingDetected      a decision or resume failed its signature check
    │   └── InvalidToolCall        arguments not JSON-safe, too large, or invalid edits
    ├── PolicyError                a malformed policy (file, rule, field)
    ├── ConfigError                a malformed config file (file, field)
    ├── NotAuthorized              an unknown approver, or one outside the rule's group
    ├── ChannelError               a channel could not deliver (a webhook kept failing)
    └── StoreError
        ├── StoreUnavailable       the store could not be reached within the retry bound
        ├── RequestNotFound        no request with that id
        └── TransitionRefused      the state machine does not allow that step now

Errors of redis-py are translated where they enter (the Redis store), so code
using gatekeeper only ever catches these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AgentHalted",
    "AlreadyRan",
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalPending",
    "ApprovalTimeout",
    "ArgumentsChanged",
    "ChannelError",
    "ConfigError",
    "GatekeeperError",
    "InvalidToolCall",
    "NotAuthorized",
    "OutcomeUnknown",
    "PolicyError",
    "RequestAbandoned",
    "RequestNotFound",
    "StoreError",
    "StoreUnavailable",
    "TamperingDetected",
    "ToolCallBlocked",
    "ToolCallDenied",
    "TransitionRefused",
]


class GatekeeperError(Exception):
    """Base class of every error gatekeeper raises."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.context.items())
        return f"{type(self).__name__}({self.message!r}{extra})"

    def __str__(self) -> str:
        return self.message


class ToolCallBlocked(GatekeeperError):
    """The tool call did not run. ``model_message`` is text an agent can read."""

    def __init__(
        self,
        message: str,
        *,
        tool: str | None = None,
        request_id: str | None = None,
        call_id: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, tool=tool, request_id=request_id, call_id=call_id, **context)
        self.tool = tool
        self.request_id = request_id
        self.call_id = call_id

    @property
    def model_message(self) -> str:
        """A sentence for the model that made the call: what happened and that nothing ran."""
        return f"{self.message}. The tool was not run."


class ToolCallDenied(ToolCallBlocked):
    """The policy refused the call (a ``deny`` verdict)."""

    def __init__(
        self,
        message: str,
        *,
        rules: Sequence[str] = (),
        reasons: Sequence[str] = (),
        **kw: Any,
    ) -> None:
        super().__init__(message, rules=list(rules) or None, **kw)
        self.rules = list(rules)
        self.reasons = list(reasons)


class ApprovalDenied(ToolCallBlocked):
    """A person denied the request; ``approver`` and ``comment`` say who and why."""

    def __init__(self, message: str, *, approver: str, comment: str | None, **kw: Any) -> None:
        super().__init__(message, approver=approver, comment=comment, **kw)
        self.approver = approver
        self.comment = comment

    @property
    def model_message(self) -> str:
        said = f': "{self.comment}"' if self.comment else ""
        return f"Tool call denied by {self.approver}{said}. The tool was not run."


class ApprovalTimeout(ToolCallBlocked):
    """Nobody decided before the request expired; expiry counts as a denial."""


class ApprovalCancelled(ToolCallBlocked):
    """The request was cancelled before it was decided."""


class ApprovalPending(ToolCallBlocked):
    """A call made without waiting (``wait=False``) is held for a person: resume it later.

    Its request is kept (not cancelled) until it expires; the same call made
    again under the same key re-attaches to it — running it once approved.
    This is how framework runs end while a call waits and resume in another
    process (LangGraph ``interrupt``, the Agents SDK's ``RunState``, Pydantic
    AI's deferred tools).
    """

    def __init__(self, message: str, *, expires_at: object = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.expires_at = expires_at

    @property
    def model_message(self) -> str:
        return f"{self.message}. The tool has not run yet."


class RequestAbandoned(ToolCallBlocked):
    """Nobody renewed the request's lease in time (its caller was gone or frozen): never run."""


class AlreadyRan(ToolCallBlocked):
    """The same call (same key) already ran through an earlier request; not run again."""

    @property
    def model_message(self) -> str:
        return f"{self.message}. It was not run again."


class OutcomeUnknown(ToolCallBlocked):
    """The same call was released earlier and whether it ran is unknown: a person must look.

    Also raised while another process still runs it. Nothing is run again
    until a person records what happened (``gatekeeper resolve``).
    """

    @property
    def model_message(self) -> str:
        return f"{self.message}. It is not run again until a person checks what happened."


class AgentHalted(ToolCallBlocked):
    """The kill switch is on for this call's session, agent, or everything."""

    def __init__(self, message: str, *, scope: str | None = None, **kw: Any) -> None:
        super().__init__(message, scope=scope, **kw)
        self.scope = scope


class ArgumentsChanged(ToolCallBlocked):
    """The arguments the caller holds no longer hash to the approved digest."""


class TamperingDetected(ToolCallBlocked):
    """Something in the store claims a decision the deciders did not sign.

    A forged or replayed approval, arguments swapped after approval, a halt
    lifted without a signed resume: the call does not run, and the attempt is
    audited as ``request.tampering``.
    """


class InvalidToolCall(ToolCallBlocked):
    """The call's arguments can't be recorded or run as approved (not JSON-safe, too large...).

    A :class:`ToolCallBlocked`: the tool did not run, so one ``except
    ToolCallBlocked`` covers every call that did not run. Raised to an
    approver, it refuses an edit the tool can't take.
    """


class PolicyError(GatekeeperError):
    """A policy file (or mapping) is malformed; the message names file, rule and field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        rule: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message, source=source, rule=rule, field=field, line=line)
        self.source = source
        self.rule = rule
        self.field = field
        self.line = line


class ConfigError(GatekeeperError):
    """A config file is malformed; the message names the file and the field."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        super().__init__(message, source=source, field=field)
        self.source = source
        self.field = field


class NotAuthorized(GatekeeperError):
    """The approver is unknown, or may not decide this request."""

    def __init__(self, message: str, *, approver: str, request_id: str | None = None) -> None:
        super().__init__(message, approver=approver, request_id=request_id)
        self.approver = approver
        self.request_id = request_id


class ChannelError(GatekeeperError):
    """A channel could not tell people about a request; ``channel`` names it.

    The gate audits it as ``channel.failed`` and the request stays pending:
    a failing channel never approves anything.
    """

    def __init__(self, message: str, *, channel: str, status: int | None = None) -> None:
        super().__init__(message, channel=channel, status=status)
        self.channel = channel
        self.status = status


class StoreError(GatekeeperError):
    """Base class of errors that come from the store."""


class StoreUnavailable(StoreError):
    """The store could not be reached within the retry bound; nothing ran."""


class HaltIncomplete(StoreError):
    """A halt of everything (or of a session) is recorded, but not on every agent's keys.

    ``unreached`` names the agents whose keys could not be written (their
    Redis shard down, their keys damaged); ``cancelled`` the pending
    requests that were cancelled elsewhere. Those agents stop at their next
    call that reads the deployment's halts, or fail closed while their shard
    is down; their pending requests stay pending until the halt is repeated.
    """

    def __init__(self, message: str, *, cancelled: list[str], unreached: list[str]) -> None:
        super().__init__(message, unreached=unreached)
        self.cancelled = cancelled
        self.unreached = unreached


class RequestNotFound(StoreError):
    """No approval request has this id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no approval request {request_id!r}", request_id=request_id)
        self.request_id = request_id


class TransitionRefused(StoreError):
    """The state machine does not allow this step for the request as it is now."""

    def __init__(self, message: str, *, request_id: str, status: str, action: str) -> None:
        super().__init__(message, request_id=request_id, status=status, action=action)
        self.request_id = request_id
        self.status = status
        self.action = action
