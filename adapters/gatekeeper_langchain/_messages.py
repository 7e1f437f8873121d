"""Reading the model's words out of the agent state, and the tool results the model reads back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage

__all__ = ["reason_for", "refusal"]


def reason_for(state: Any, tool_call_id: str | None) -> str | None:
    """What the model said before it made the call ``tool_call_id``, or None.

    ``state`` is a LangGraph agent state (a mapping or an object with
    ``messages``) or a list of messages. The reason is the text and reasoning
    of the :class:`AIMessage` that issued the call, up to that call's own
    block when the content interleaves text and calls (Anthropic does).
    """
    if not tool_call_id:
        return None
    for message in reversed(_messages(state)):
        if isinstance(message, AIMessage) and any(
            call.get("id") == tool_call_id for call in message.tool_calls
        ):
            return _words_before(message, tool_call_id)
    return None


def refusal(text: str, *, tool_call_id: str | None, name: str) -> ToolMessage | str:
    """A tool result saying the call did not run: a ToolMessage when there is a call id."""
    if tool_call_id is None:
        return text
    return ToolMessage(content=text, tool_call_id=tool_call_id, name=name, status="error")


def answer(text: str, *, tool_call_id: str | None, name: str) -> ToolMessage | str:
    """What a person wrote in place of the tool's result: a ToolMessage when there is a call id."""
    if tool_call_id is None:
        return text
    return ToolMessage(content=text, tool_call_id=tool_call_id, name=name)


def with_note(result: Any, note: str | None) -> Any:
    """``result`` with what the approvers did added to what the model reads (if anything).

    A ``ToolMessage`` gets it after its text; a ``str`` result too. Other
    results (a ``Command``, a tool's own objects) are left as they are.
    """
    if note is None:
        return result
    if isinstance(result, ToolMessage):
        content = result.content
        if isinstance(content, str):
            return result.model_copy(update={"content": f"{content}\n\n{note}"})
        return result.model_copy(update={"content": [*content, {"type": "text", "text": note}]})
    if isinstance(result, str):
        return f"{result}\n\n{note}"
    return result


def _messages(state: Any) -> Sequence[Any]:
    if isinstance(state, Sequence) and not isinstance(state, str):
        return state
    found = state.get("messages") if isinstance(state, Mapping) else None
    if found is None:
        found = getattr(state, "messages", None)
    return found if isinstance(found, Sequence) and not isinstance(found, str) else ()


def _words_before(message: AIMessage, tool_call_id: str) -> str | None:
    try:
        blocks: Sequence[Mapping[str, Any]] = message.content_blocks
    except Exception:  # a provider translator that can't read this message: plain text
        return str(message.text).strip() or None
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_call" and block.get("id") == tool_call_id:
            break
        text = block.get("reasoning") if kind == "reasoning" else block.get("text")
        if kind in ("text", "reasoning") and isinstance(text, str) and text.strip():
            parts.append(text.strip())
    return "\n\n".join(parts) or None
