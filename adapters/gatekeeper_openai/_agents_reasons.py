"""The model's own words before a tool call: what an approver reads as the call's reason.

A model response is a list of output items: messages, reasoning summaries,
tool calls. The words of every message and reasoning item that comes before a
call in the same response are that call's reason.

The Agents SDK does not hand a tool the response its call came from
(``ToolContext`` carries the call, not the model's text), so
:class:`CallReasons` picks the words up in the ``on_llm_end`` hook, which runs
before the response's tools do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from agents import Agent, AgentHooks, ModelResponse, RunContextWrapper

__all__ = ["CallReasons", "words_before", "words_by_call"]


class CallReasons(AgentHooks[Any]):
    """Agent hooks that keep the model's words before each tool call, for gated tools.

    Give the same object to the agent (``hooks=``) and to
    :func:`gate_tools` (``reasons=``); the approver then reads, for each held
    call, what the model said before making it. An agent that has hooks of
    its own can subclass ``CallReasons`` instead (call
    ``super().on_llm_end(...)`` if you override it). One object may serve
    several agents and concurrent runs: call ids are unique.

    Example::

        reasons = CallReasons()
        agent = Agent(
            name="billing",
            tools=gate_tools(gate, [refund], reasons=reasons),
            hooks=reasons,
        )
    """

    def __init__(self, *, keep: int = 1024) -> None:
        # Words of calls that no gated tool asked for (ungated tools, stopped runs) must
        # not pile up: only the latest ``keep`` calls are remembered.
        self.keep = keep
        self._words: OrderedDict[str, str | None] = OrderedDict()

    async def on_llm_end(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        response: ModelResponse,
    ) -> None:
        for call_id, words in words_by_call(response.output).items():
            self._words[call_id] = words
        while len(self._words) > self.keep:
            self._words.popitem(last=False)

    def pop(self, call_id: str) -> str | None:
        """The words before call ``call_id`` (forgotten once read), or None."""
        return self._words.pop(call_id, None)


def words_by_call(output: Iterable[Any]) -> dict[str, str | None]:
    """For each call in one response's output, the words that came before it."""
    words: list[str] = []
    found: dict[str, str | None] = {}
    for item in output:
        words.extend(_words_of(item))
        call_id = _field(item, "call_id")
        if isinstance(call_id, str) and call_id:
            found[call_id] = "\n".join(words) or None
    return found


def words_before(responses: Sequence[ModelResponse], call_id: str | None) -> str | None:
    """The words before call ``call_id`` in whichever of ``responses`` made it."""
    if not call_id:
        return None
    for response in reversed(responses):  # the latest response is the likeliest
        found = words_by_call(response.output)
        if call_id in found:
            return found[call_id]
    return None


def _words_of(item: Any) -> list[str]:
    kind = _field(item, "type")
    if kind == "message":
        parts = [_field(p, "text") or _field(p, "refusal") for p in _field(item, "content") or ()]
    elif kind == "reasoning":
        parts = [_field(p, "text") for p in _field(item, "summary") or ()]
    else:
        return []
    return [p.strip() for p in parts if isinstance(p, str) and p.strip()]


def _field(item: Any, name: str) -> Any:
    """A field of an output item, which is a pydantic model or (from some providers) a dict."""
    if isinstance(item, dict):
        return item.get(name)
    return getattr(item, name, None)
