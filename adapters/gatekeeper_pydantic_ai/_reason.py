"""The model's own words behind a tool call, and what a blocked call becomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ThinkingPart, ToolCallPart

__all__ = ["OnBlocked", "check_on_blocked", "reason_for_call"]

OnBlocked = Literal["return", "raise"]


def check_on_blocked(on_blocked: str) -> OnBlocked:
    if on_blocked == "return":
        return "return"
    if on_blocked == "raise":
        return "raise"
    raise ValueError(f'on_blocked must be "return" or "raise", not {on_blocked!r}')


def reason_for_call(
    messages: Sequence[ModelMessage] | None, tool_call_id: str | None
) -> str | None:
    """The thinking and text of the model response that made the call ``tool_call_id``.

    These are the model's words beside the call, in the order it wrote them:
    what an approver reads as the call's reason. ``None`` when the response is
    not in ``messages`` or has no words.
    """
    if not messages or tool_call_id is None:
        return None
    for message in reversed(messages):  # the call is almost always in the last response
        if not isinstance(message, ModelResponse):
            continue
        if not any(
            isinstance(part, ToolCallPart) and part.tool_call_id == tool_call_id
            for part in message.parts
        ):
            continue
        words = [
            part.content.strip()
            for part in message.parts
            if isinstance(part, TextPart | ThinkingPart) and part.content.strip()
        ]
        return "\n\n".join(words) or None
    return None
