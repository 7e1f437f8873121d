"""gatekeeper for LangChain and LangGraph: gated tools and ``create_agent`` middleware.

Two ways in, use one per agent:

- :func:`gate_tool` / :func:`gate_tools` wrap ``BaseTool`` s; the wrapped tools
  work anywhere a tool does (``create_agent``, LangGraph's ``ToolNode``,
  ``tool.invoke``).
- :class:`GatekeeperMiddleware` gates every tool call of a ``create_agent``
  agent, and refuses (and audits) calls to tools the agent doesn't have.

Either takes ``resumable=True``: a held call ends the run with a LangGraph
``interrupt()`` naming its gatekeeper request, and :func:`resume_command`
resumes it later, in any process. An app that keeps LangChain's own
``HumanInTheLoopMiddleware`` decides its pauses through gatekeeper with
:func:`decide_hitl` (``adecide_hitl``).

Example::

    from gatekeeper import Gatekeeper
    from gatekeeper_langchain import GatekeeperMiddleware
    from langchain.agents import create_agent

    gate = Gatekeeper.from_config("gatekeeper.yaml")
    agent = create_agent(model, tools, middleware=[GatekeeperMiddleware(gate)])
"""

from gatekeeper._extras import needs_extra

with needs_extra(
    "gatekeeper_langchain",
    "langchain",
    "LangChain and LangGraph",
    ("langchain", "langchain_core", "langgraph"),
):
    from ._hitl import adecide_hitl, decide_hitl
    from ._middleware import GatekeeperMiddleware, ToolOptions
    from ._resume import StackedApprovals, resume_command
    from ._tools import GatedTool, OnBlocked, gate_tool, gate_tools

del needs_extra  # not part of the adapter's surface

__all__ = [
    "GatedTool",
    "GatekeeperMiddleware",
    "OnBlocked",
    "StackedApprovals",
    "ToolOptions",
    "adecide_hitl",
    "decide_hitl",
    "gate_tool",
    "gate_tools",
    "resume_command",
]
