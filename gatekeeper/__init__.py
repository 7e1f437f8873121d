"""gatekeeper: a person between an AI agent and the tool calls that matter.

Example::

    from gatekeeper import Gatekeeper

    gate = Gatekeeper.from_config("gatekeeper.yaml")

    @gate.guard(irreversible=True, scopes={"payments:write"})
    def refund(order_id: str, amount: float) -> str: ...

    with gate.session(agent="billing-bot", reason="customer asked for a refund"):
        refund("A-1", 20.0)   # held until a person approves; then runs exactly as approved
"""

from ._answers import Response, approval_note
from ._errors import (
    AgentHalted,
    AlreadyRan,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalPending,
    ApprovalTimeout,
    ArgumentsChanged,
    ChannelError,
    ConfigError,
    GatekeeperError,
    HaltIncomplete,
    InvalidToolCall,
    NotAuthorized,
    OutcomeUnknown,
    PolicyError,
    RequestAbandoned,
    RequestNotFound,
    StoreError,
    StoreUnavailable,
    TamperingDetected,
    ToolCallBlocked,
    ToolCallDenied,
    TransitionRefused,
)
from ._framework import GuardedTool, Ran
from ._gate import Gatekeeper
from ._session import Session, call_key, current_session, on_held
from ._signing import DecisionKeys, SigningKey, TrustedKeys
from ._telemetry import Telemetry
from ._version import __version__
from .models import (
    ApprovalRequest,
    ApprovalRequirement,
    Approver,
    AuditEvent,
    Classification,
    Decision,
    Halt,
    HaltScope,
    RequestStatus,
    Risk,
    ToolCall,
    Verdict,
)
from .policy import Policy
from .store import MemoryStore, RedisStore

__all__ = [
    "AgentHalted",
    "AlreadyRan",
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalPending",
    "ApprovalRequest",
    "ApprovalRequirement",
    "ApprovalTimeout",
    "Approver",
    "ArgumentsChanged",
    "AuditEvent",
    "ChannelError",
    "Classification",
    "ConfigError",
    "Decision",
    "DecisionKeys",
    "Gatekeeper",
    "GatekeeperError",
    "GuardedTool",
    "Halt",
    "HaltIncomplete",
    "HaltScope",
    "InvalidToolCall",
    "MemoryStore",
    "NotAuthorized",
    "OutcomeUnknown",
    "Policy",
    "PolicyError",
    "Ran",
    "RedisStore",
    "RequestAbandoned",
    "RequestNotFound",
    "RequestStatus",
    "Response",
    "Risk",
    "Session",
    "SigningKey",
    "StoreError",
    "StoreUnavailable",
    "TamperingDetected",
    "Telemetry",
    "ToolCall",
    "ToolCallBlocked",
    "ToolCallDenied",
    "TransitionRefused",
    "TrustedKeys",
    "Verdict",
    "__version__",
    "approval_note",
    "call_key",
    "current_session",
    "on_held",
]
