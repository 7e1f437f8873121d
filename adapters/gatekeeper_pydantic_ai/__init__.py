"""Pydantic AI tool calls decided through gatekeeper.

Two ways in, for the two ways Pydantic AI apps handle approvals:

- :class:`GatekeeperToolset` wraps a toolset: every call is classified by the
  policy during the run; held calls wait for a person; a denial comes back to
  the model as a denied tool result it can read.
- With ``resumable=True`` the toolset ends the run while a held call waits
  (its gatekeeper request in ``DeferredToolRequests.metadata``);
  :func:`deferred_results` (``_sync``) builds the ``DeferredToolResults`` to
  resume it, in any process, from what the store holds.
- :func:`decide_deferred` (and :func:`decide_deferred_sync`,
  :func:`deferred_handler` for ``HandleDeferredToolCalls``) decides the
  approval requests of Pydantic AI's own deferred tools
  (``requires_approval=True``, ``ApprovalRequiredToolset``): approvals become
  ``ToolApproved`` (with the approver's edited arguments), denials
  ``ToolDenied`` carrying the approver's comment.

Example::

    from gatekeeper_pydantic_ai import GatekeeperToolset

    agent = Agent(model, toolsets=[GatekeeperToolset(gate, FunctionToolset([refund]))])
"""

from gatekeeper._extras import needs_extra

with needs_extra("gatekeeper_pydantic_ai", "pydantic-ai", "Pydantic AI", ("pydantic_ai",)):
    from ._deferred import decide_deferred, decide_deferred_sync, deferred_handler
    from ._resume import deferred_results, deferred_results_sync
    from ._toolset import GatekeeperToolset

del needs_extra  # not part of the adapter's surface

__all__ = [
    "GatekeeperToolset",
    "decide_deferred",
    "decide_deferred_sync",
    "deferred_handler",
    "deferred_results",
    "deferred_results_sync",
]
