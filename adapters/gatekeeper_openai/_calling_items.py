"""Reading the OpenAI API's objects: the tool calls a model made, and why it made them.

Chat Completions assistant messages (tool calls, custom tool calls, the
deprecated ``function_call``) and Responses API outputs (``function_call`` and
``custom_tool_call`` items, skipping calls already answered) become
:class:`ToolCall` values: the tool's name, its arguments, the model's words as
the reason, and the shape of the answer the API expects back. SDK models and
their dict forms are read alike; the API is never called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "chat_calls", "response_calls"]


@dataclass(slots=True)
class ToolCall:
    """One tool call the model made, and the shape of the answer it expects."""

    name: str
    arguments: str | dict[str, Any]  # JSON text, or a custom tool's {"input": text}
    reason: str | None
    reply: dict[str, Any]
    field: str

    def answer(self, content: str) -> dict[str, Any]:
        return {**self.reply, self.field: content}


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` of a dict form, ``obj.key`` of an SDK model; None when it has none."""
    if isinstance(obj, dict):
        return obj.get(key)
    fields = getattr(obj, "__dict__", None)  # an SDK (pydantic) model keeps its fields here
    if fields is not None and key in fields:
        return fields[key]
    extra: Any = getattr(obj, "__pydantic_extra__", _NO_EXTRA)
    if extra is not _NO_EXTRA:  # and the fields it was sent but does not declare, here
        return extra.get(key) if extra else None
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


_NO_EXTRA = object()


def _plain(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    return dump(mode="json", exclude_none=True) if callable(dump) else obj


def _texts(parts: Any, *kinds: str) -> list[str]:
    if isinstance(parts, str):
        return [parts]
    return [
        text
        for part in parts or ()
        if _get(part, "type") in kinds and isinstance(text := _get(part, "text"), str)
    ]


def _joined(texts: Iterable[str]) -> str | None:
    return "\n".join(t for t in texts if t.strip()) or None


def chat_calls(message: Any) -> list[ToolCall]:
    choices = None if _get(message, "role") else _get(message, "choices")
    if choices is not None:  # a whole ChatCompletion
        if len(choices) != 1:
            raise ValueError(f"the completion has {len(choices)} choices: pass one message")
        message = _get(choices[0], "message")
    reasoning = _get(message, "reasoning_content")  # OpenAI-compatible servers send it
    reason = _joined(
        [
            *([reasoning] if isinstance(reasoning, str) else []),
            *_texts(_get(message, "content"), "text"),
        ]
    )
    calls = []
    for tool_call in _get(message, "tool_calls") or ():
        kind = _get(tool_call, "type") or "function"
        reply = {"role": "tool", "tool_call_id": _get(tool_call, "id")}
        if kind == "function":
            function = _get(tool_call, "function")
            arguments = _get(function, "arguments") or ""
            calls.append(
                ToolCall(_get(function, "name") or "", arguments, reason, reply, "content")
            )
        elif kind == "custom":
            custom = _get(tool_call, "custom")
            arguments = {"input": _get(custom, "input") or ""}
            calls.append(ToolCall(_get(custom, "name") or "", arguments, reason, reply, "content"))
        else:
            raise ValueError(f"tool call {_get(tool_call, 'id')}: unsupported type {kind!r}")
    legacy = _get(message, "function_call")  # the deprecated `functions` API
    if not calls and legacy is not None:
        name = _get(legacy, "name") or ""
        reply = {"role": "function", "name": name}
        calls.append(ToolCall(name, _get(legacy, "arguments") or "", reason, reply, "content"))
    return calls


def _response_items(output: Any) -> Sequence[Any]:
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        return output
    items = _get(output, "output")
    if (isinstance(output, Mapping) and "type" in output) or not isinstance(items, Sequence):
        raise TypeError(
            "run_responses takes a Response, its output list or their dict forms, "
            f"not {type(output).__name__}"
        )
    return items


_CALL_KINDS = ("function_call", "custom_tool_call")
_OUTPUT_KINDS = tuple(f"{kind}_output" for kind in _CALL_KINDS)


def response_calls(output: Any) -> list[ToolCall]:
    items = _response_items(output)
    # Given a whole conversation, run only the calls not answered yet: never run one twice.
    answered = {_get(item, "call_id") for item in items if _get(item, "type") in _OUTPUT_KINDS}
    texts: list[str] = []
    calls = []
    for item in items:
        kind = _get(item, "type")
        role = _get(item, "role")
        if kind in _OUTPUT_KINDS or (role is not None and role != "assistant"):
            texts = []  # a new turn: only the words of the response that made a call count
        elif kind == "message":
            texts += _texts(_get(item, "content"), "output_text")
        elif kind == "reasoning":
            texts += _texts(_get(item, "summary"), "summary_text") or _texts(
                _get(item, "content"), "reasoning_text"
            )
        elif kind in _CALL_KINDS and _get(item, "call_id") not in answered:
            name, namespace = _get(item, "name") or "", _get(item, "namespace")
            if namespace and namespace != name:  # a tool inside a `namespace` tool
                name = f"{namespace}.{name}"
            reply = {"type": f"{kind}_output", "call_id": _get(item, "call_id")}
            caller = _get(item, "caller")
            if caller is not None:  # a program's call: its output goes back to the program
                reply["caller"] = _plain(caller)
            if kind == "function_call":
                arguments: str | dict[str, Any] = _get(item, "arguments") or ""
            else:
                arguments = {"input": _get(item, "input") or ""}
            calls.append(ToolCall(name, arguments, _joined(texts), reply, "output"))
    return calls
