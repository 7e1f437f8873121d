"""Plain OpenAI function calling through a gate: run the tool calls a model asked for.

A :class:`ToolRunner` takes what the model returned (a Chat Completions
assistant message, or a Responses API output) and runs each tool call in it
through the gate, against a mapping of tool name to Python function. It gives
back the items to send to the model next: a ``tool`` message per call, or a
``function_call_output`` item per call. Denials, timeouts and halts become
those items' text, so the model reads why and the loop goes on.

It only reads the shapes of the API's objects (SDK models or their dict
forms) and never calls the API, so it works with any client that speaks them.
This module holds the runner and each tool's gated faces; reading the API's
objects is in ``_calling_items``, checking a call's arguments in ``_calling_args``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core
from typing_extensions import TypedDict

from gatekeeper import (
    Gatekeeper,
    GatekeeperError,
    GuardedTool,
    InvalidToolCall,
    Risk,
    ToolCallBlocked,
)

from ._calling_args import (
    CHECKED,
    BadArguments,
    ToolArguments,
    canonical,
    invalid_arguments,
    schemas_by_tool,
    unknown_arguments,
)
from ._calling_items import ToolCall, chat_calls, response_calls

__all__ = ["ToolOptions", "ToolRunner"]

OnBlocked = Literal["return", "raise"]
OnError = Literal["return", "raise"]


class ToolOptions(TypedDict, total=False):
    """What a tool declares to the gate: see :meth:`gatekeeper.Gatekeeper.tool`."""

    scopes: Iterable[str]
    irreversible: bool
    risk: Risk | str | None


class ToolRunner:
    """Runs a model's tool calls through a gate and answers each one.

    ``tools`` maps the name the model calls to the function to run (sync or
    coroutine); it runs as ``func(**arguments)`` with exactly the approved
    arguments. ``parameters`` gives each tool's JSON schema: a mapping of name
    to schema, or the list of tool definitions you send the model as
    ``tools=``. Arguments must also fit the function's signature; they are
    converted to its annotations (pydantic) before it runs.

    Example::

        runner = ToolRunner(gate, {"refund": refund}, parameters=TOOLS)
        message = client.chat.completions.create(...).choices[0].message
        messages += [message, *runner.run_chat(message)]

    ``on_blocked="raise"`` raises the :class:`~gatekeeper.ToolCallBlocked`
    instead of answering with its ``model_message``; ``on_error="raise"``
    lets a tool's own exception through instead of answering
    ``Tool call <name> failed: ...``. Either way the answers for earlier
    calls of the same message are lost with the exception.
    """

    def __init__(
        self,
        gate: Gatekeeper,
        tools: Mapping[str, Callable[..., Any]],
        *,
        parameters: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]] | None = None,
        tool_options: Mapping[str, ToolOptions] | None = None,
        on_blocked: OnBlocked = "return",
        on_error: OnError = "return",
    ) -> None:
        self.gate = gate
        self.on_blocked: OnBlocked = _one_of("on_blocked", on_blocked)
        self.on_error: OnError = _one_of("on_error", on_error)
        schemas = schemas_by_tool(parameters)
        options = dict(tool_options or {})
        for what, names in (("parameters", schemas), ("tool_options", options)):
            strays = sorted(set(names) - set(tools))
            if strays:
                raise ValueError(f"{what} names tools that are not in tools: {strays}")
        self._tools = {
            name: _Tool.create(gate, name, func, schemas.get(name), options.get(name, {}))
            for name, func in tools.items()
        }

    @property
    def names(self) -> list[str]:
        """The names of the tools this runner runs."""
        return list(self._tools)

    def run_chat(self, message: Any) -> list[dict[str, Any]]:
        """Run the ``tool_calls`` of a Chat Completions assistant message.

        ``message`` is the SDK's ``ChatCompletionMessage`` (or a
        ``ChatCompletion`` with one choice) or its dict form. Returns one
        ``{"role": "tool", "tool_call_id": ..., "content": ...}`` message per
        call, in order. The message's text is each call's reason.
        """
        return self._run(chat_calls(message))

    async def arun_chat(self, message: Any) -> list[dict[str, Any]]:
        """:meth:`run_chat` for async code: coroutine tools are awaited, others run in a thread."""
        return await self._arun(chat_calls(message))

    def run_responses(self, output: Any) -> list[dict[str, Any]]:
        """Run the ``function_call`` (and ``custom_tool_call``) items of a Responses API output.

        ``output`` is the SDK's ``Response``, its ``output`` list, or their
        dict forms. Returns one ``{"type": "function_call_output", "call_id":
        ..., "output": ...}`` item per call, in order. The text of the
        message and reasoning-summary items before a call is its reason.
        """
        return self._run(response_calls(output))

    async def arun_responses(self, output: Any) -> list[dict[str, Any]]:
        """:meth:`run_responses` for async code."""
        return await self._arun(response_calls(output))

    # -- running ---------------------------------------------------------------------------------
    def _run(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        for call in calls:  # before anything runs: a half-answered message helps nobody
            tool = self._tools.get(call.name)
            if tool is not None and tool.sync is None:
                raise TypeError(
                    f"tool {call.name} is a coroutine function: use arun_chat / arun_responses"
                )
        if len(calls) < 2:
            return [call.answer(self._run_one(call)) for call in calls]
        # The calls of one turn are held at once (people see them together), each
        # in a thread of its own that carries the caller's session; the answers
        # come back in the order of the calls, once every call has ended.
        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="gatekeeper") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, self._run_one, call) for call in calls
            ]
            wait(futures)
        return [call.answer(future.result()) for call, future in zip(calls, futures, strict=True)]

    def _run_one(self, call: ToolCall) -> str:
        tool = self._tools.get(call.name)
        if tool is None:
            refused = self.gate.refuse_unknown_tool(
                call.name, unknown_arguments(call.arguments), reason=call.reason
            )
            return self._blocked(refused)
        try:
            args = tool.arguments.check(call.arguments)
        except BadArguments as exc:
            return exc.model_message
        assert tool.sync is not None
        checked = CHECKED.set((tool.arguments, canonical(args)))
        try:
            ran = tool.sync.run(args, reason=call.reason)
        except Exception as exc:
            if not self._answers(exc):
                raise
            return self._failure(call.name, exc)
        finally:
            CHECKED.reset(checked)
        return _with_note(_content(ran.result), ran.note)

    async def _arun(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        # Held at once; if one raises (on_blocked / on_error "raise"), the calls
        # still waiting are withdrawn (their tasks are cancelled).
        tasks = [asyncio.ensure_future(self._arun_one(call)) for call in calls]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [call.answer(answer) for call, answer in zip(calls, answers, strict=True)]

    async def _arun_one(self, call: ToolCall) -> str:
        tool = self._tools.get(call.name)
        if tool is None:
            refused = await self.gate.arefuse_unknown_tool(
                call.name, unknown_arguments(call.arguments), reason=call.reason
            )
            return self._blocked(refused)
        try:
            args = tool.arguments.check(call.arguments)
        except BadArguments as exc:
            return exc.model_message
        checked = CHECKED.set((tool.arguments, canonical(args)))
        try:
            ran = await tool.async_.arun(args, reason=call.reason)
        except Exception as exc:
            if not self._answers(exc):
                raise
            return self._failure(call.name, exc)
        finally:
            CHECKED.reset(checked)
        return _with_note(_content(ran.result), ran.note)

    def _blocked(self, refused: ToolCallBlocked) -> str:
        if self.on_blocked == "raise":
            raise refused
        return refused.model_message

    def _answers(self, exc: Exception) -> bool:
        """Whether the model gets an answer for ``exc`` (else it propagates)."""
        if isinstance(exc, InvalidToolCall):  # a ToolCallBlocked too, answered whatever on_blocked
            return True
        if isinstance(exc, ToolCallBlocked):
            return self.on_blocked == "return"
        # Other gate errors (the store is down, a misconfiguration) are no answer for the model.
        if isinstance(exc, GatekeeperError):
            return False
        return self.on_error == "return"

    @staticmethod
    def _failure(name: str, exc: Exception) -> str:
        if isinstance(exc, InvalidToolCall):
            return invalid_arguments(name, exc.message.removeprefix(f"{name}: "))
        if isinstance(exc, ToolCallBlocked):
            return exc.model_message
        return f"Tool call {name} failed: {type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"ToolRunner({self.names!r})"


# -- one tool: its gated faces -------------------------------------------------------------------
@dataclass(frozen=True)
class _Tool:
    sync: GuardedTool | None  # None for a coroutine function
    async_: GuardedTool
    arguments: ToolArguments

    @classmethod
    def create(
        cls,
        gate: Gatekeeper,
        name: str,
        func: Callable[..., Any],
        schema: Mapping[str, Any] | None,
        options: ToolOptions,
    ) -> _Tool:
        if not callable(func):
            raise TypeError(f"tool {name}: {func!r} is not callable")
        guarded = getattr(func, "__gatekeeper_tool__", None)
        if guarded is not None and not guarded.question:
            raise TypeError(
                f"tool {name} is already guarded (@gate.guard): give the plain function"
            )
        if guarded is not None:  # gate.ask_tool(): its calls are questions, held once, here
            gate.ask_tool(name)
        unknown = set(options) - set(ToolOptions.__annotations__)
        if unknown:
            raise TypeError(f"tool_options for {name}: unknown options {sorted(unknown)}")
        arguments = ToolArguments(name, func, schema)
        convert = arguments.convert
        if _is_coroutine_function(func):

            async def run_async(**args: Any) -> Any:
                return await func(**convert(args))

            return cls(None, gate.tool(name, run_async, **options), arguments)

        def run(**args: Any) -> Any:
            return func(**convert(args))

        async def run_in_thread(**args: Any) -> Any:
            # Holding and waiting stay on the event loop (cancellable, like any coroutine
            # tool); only the function itself goes to a thread.
            return await asyncio.to_thread(run, **args)

        return cls(
            gate.tool(name, run, **options), gate.tool(name, run_in_thread, **options), arguments
        )


def _is_coroutine_function(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def _one_of(option: str, value: str) -> Any:
    if value not in ("return", "raise"):
        raise ValueError(f"{option} must be 'return' or 'raise', not {value!r}")
    return value


def _with_note(content: str, note: str | None) -> str:
    """The tool's output, then what the people who approved the call did (if anything)."""
    return content if note is None else f"{content}\n\n{note}"


def _content(result: Any) -> str:
    """A tool's result as the text the model reads: a str as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    return pydantic_core.to_json(result, serialize_unknown=True).decode()
