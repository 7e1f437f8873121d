"""gatekeeper for OpenAI: the Agents SDK's tools and approvals, and plain function calling.

OpenAI Agents SDK (``openai-agents``; docs: openai-agents.md):

- :func:`gate_tool` / :func:`gate_tools`: ``FunctionTool`` copies whose calls go
  through a gate; :class:`CallReasons` hands the model's words to approvers.
- :func:`decide_interruptions` (and ``_sync``): the SDK's own ``needs_approval``
  interruptions decided through gatekeeper; :func:`hold_interruptions` holds
  them without waiting, for a run resumed later from ``RunState.to_string()``
  in another process.

Plain function calling (``openai``; docs: openai.md):

- :class:`ToolRunner`: runs a Chat Completions message's ``tool_calls`` or a
  Responses output's ``function_call`` items through the gate and returns the
  tool messages / ``function_call_output`` items to send back.

Example::

    from gatekeeper_openai import gate_tool

    agent = Agent(name="billing", tools=[gate_tool(gate, refund, irreversible=True)])
"""

from gatekeeper._extras import needs_extra

with needs_extra(
    "gatekeeper_openai",
    "openai",
    "the OpenAI Agents SDK and the openai client",
    ("agents", "openai", "jsonschema"),
):
    from ._agents import OnBlocked, gate_tool, gate_tools
    from ._agents_bridge import (
        Held,
        decide_interruptions,
        decide_interruptions_sync,
        hold_interruptions,
        hold_interruptions_sync,
    )
    from ._agents_reasons import CallReasons
    from ._calling import ToolOptions, ToolRunner

del needs_extra  # not part of the adapter's surface

__all__ = [
    "CallReasons",
    "Held",
    "OnBlocked",
    "ToolOptions",
    "ToolRunner",
    "decide_interruptions",
    "decide_interruptions_sync",
    "gate_tool",
    "gate_tools",
    "hold_interruptions",
    "hold_interruptions_sync",
]
