"""Plain OpenAI function calling through a gate: run the tool calls a model asked for.

A :class:`ToolRunner` takes what the model returned (a Chat Completions
assistant message, or a Responses API output) and runs each tool call in it
through the gate, against a mapping of tool name to Python function. It gives
back the items to send to the model next: a ``tool`` message per call, or a
``function_call_output`` item per call. Denials, timeouts and halts become
those items' text, so the model reads why and the loop goes on.

It only reads the shapes of the API's objects (SDK models or their dict
forms) and never calls the API, so it works with any client that speaks them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
import pydantic_core
from typing_extensions import NotRequired, Required, TypedDict

from gatekeeper import (
    Gatekeeper,
    GatekeeperError,
    GuardedTool,
    InvalidToolCall,
    Risk,
    ToolCallBlocked,
)

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
        schemas = _schemas(parameters)
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
        return self._run(_chat_calls(message))

    async def arun_chat(self, message: Any) -> list[dict[str, Any]]:
        """:meth:`run_chat` for async code: coroutine tools are awaited, others run in a thread."""
        return await self._arun(_chat_calls(message))

    def run_responses(self, output: Any) -> list[dict[str, Any]]:
        """Run the ``function_call`` (and ``custom_tool_call``) items of a Responses API output.

        ``output`` is the SDK's ``Response``, its ``output`` list, or their
        dict forms. Returns one ``{"type": "function_call_output", "call_id":
        ..., "output": ...}`` item per call, in order. The text of the
        message and reasoning-summary items before a call is its reason.
        """
        return self._run(_response_calls(output))

    async def arun_responses(self, output: Any) -> list[dict[str, Any]]:
        """:meth:`run_responses` for async code."""
        return await self._arun(_response_calls(output))

    # -- running ---------------------------------------------------------------------------------
    def _run(self, calls: list[_Call]) -> list[dict[str, Any]]:
        for call in calls:  # before anything runs: a half-answered message helps nobody
            tool = self._tools.get(call.name)
            if tool is not None and tool.sync is None:
                raise TypeError(
                    f"tool {call.name} is a coroutine function: use arun_chat / arun_responses"
                )
        return [call.answer(self._run_one(call)) for call in calls]

    def _run_one(self, call: _Call) -> str:
        tool = self._tools.get(call.name)
        if tool is None:
            refused = self.gate.refuse_unknown_tool(
                call.name, _unknown_args(call.arguments), reason=call.reason
            )
            return self._blocked(refused)
        try:
            args = tool.arguments.check(call.arguments)
        except _BadArguments as exc:
            return exc.model_message
        assert tool.sync is not None
        checked = _CHECKED.set((tool.arguments, _canonical(args)))
        try:
            result = tool.sync(args, reason=call.reason)
        except Exception as exc:
            if not self._answers(exc):
                raise
            return self._failure(call.name, exc)
        finally:
            _CHECKED.reset(checked)
        return _content(result)

    async def _arun(self, calls: list[_Call]) -> list[dict[str, Any]]:
        return [call.answer(await self._arun_one(call)) for call in calls]

    async def _arun_one(self, call: _Call) -> str:
        tool = self._tools.get(call.name)
        if tool is None:
            refused = await self.gate.arefuse_unknown_tool(
                call.name, _unknown_args(call.arguments), reason=call.reason
            )
            return self._blocked(refused)
        try:
            args = tool.arguments.check(call.arguments)
        except _BadArguments as exc:
            return exc.model_message
        checked = _CHECKED.set((tool.arguments, _canonical(args)))
        try:
            result = await tool.async_.acall(args, reason=call.reason)
        except Exception as exc:
            if not self._answers(exc):
                raise
            return self._failure(call.name, exc)
        finally:
            _CHECKED.reset(checked)
        return _content(result)

    def _blocked(self, refused: ToolCallBlocked) -> str:
        if self.on_blocked == "raise":
            raise refused
        return refused.model_message

    def _answers(self, exc: Exception) -> bool:
        """Whether the model gets an answer for ``exc`` (else it propagates)."""
        if isinstance(exc, ToolCallBlocked):
            return self.on_blocked == "return"
        if isinstance(exc, InvalidToolCall):
            return True
        # Other gate errors (the store is down, a misconfiguration) are no answer for the model.
        if isinstance(exc, GatekeeperError):
            return False
        return self.on_error == "return"

    @staticmethod
    def _failure(name: str, exc: Exception) -> str:
        if isinstance(exc, ToolCallBlocked):
            return exc.model_message
        if isinstance(exc, InvalidToolCall):
            return _invalid(name, exc.message.removeprefix(f"{name}: "))
        return f"Tool call {name} failed: {type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"ToolRunner({self.names!r})"


# -- one tool: its gated faces and its argument checks --------------------------------------------
@dataclass(frozen=True)
class _Tool:
    sync: GuardedTool | None  # None for a coroutine function
    async_: GuardedTool
    arguments: _Arguments

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
        if getattr(func, "__gatekeeper_tool__", None) is not None:
            raise TypeError(
                f"tool {name} is already guarded (@gate.guard): give the plain function"
            )
        unknown = set(options) - set(ToolOptions.__annotations__)
        if unknown:
            raise TypeError(f"tool_options for {name}: unknown options {sorted(unknown)}")
        arguments = _Arguments(name, func, schema)
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


class _BadArguments(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.model_message = _invalid(name, detail)


class _Arguments:
    """A tool's arguments: parsed, checked against its schema and signature, converted."""

    def __init__(
        self, name: str, func: Callable[..., Any], schema: Mapping[str, Any] | None
    ) -> None:
        self.name = name
        self._schema = None if schema is None else _schema_validator(name, schema)
        self._signature = _signature_adapter(name, func)
        # The function's defaults JSON can carry: name -> (the default, its canonical JSON).
        self._defaults = _json_defaults(func) if self._signature is not None else {}

    def check(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """The arguments to put through the gate, as JSON; raises ``_BadArguments``.

        They are complete: the schema's ``default`` values and then the function's own
        defaults fill in what the model left out, so the gate, the policy and the approver
        see every value the function will run with.
        """
        args = _parse(self.name, arguments) if isinstance(arguments, str) else arguments
        errors = self._schema_errors(args)
        if errors:
            raise _BadArguments(self.name, errors)
        if self._schema is not None:
            from ._agents_args import with_defaults

            args = with_defaults(self._schema, args)
        if self._signature is None:
            return args
        try:
            values = self._signature.validate_python(args)
        except pydantic.ValidationError as exc:
            raise _BadArguments(self.name, _pydantic_errors(exc)) from None
        # What the gate shows, matches the policy against and hashes is what the function will
        # get: "500" for a float parameter is checked as 500.0, not slipped past as a string.
        normal: dict[str, Any] = self._signature.dump_python(values, mode="json")
        # And the function's own defaults, as JSON: the function gets them as they are.
        for key, (_, text) in self._defaults.items():
            normal.setdefault(key, json.loads(text))
        return normal

    def convert(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The approved arguments as the function takes them (checked again: edits included)."""
        given = dict(args)
        # A function default, as filled in before the gate, goes to the function as it is (the
        # very object Python would use), unchecked: the model never sent it.
        defaulted = {
            key: self._defaults[key][0]
            for key, value in given.items()
            if key in self._defaults and _canonical(value) == self._defaults[key][1]
        }
        # Arguments released as they were checked before the gate need no second schema check
        # (the costly one); an approver's edit gets one. Compared as JSON: 1 == True in Python.
        checked = _CHECKED.get()
        same = checked is not None and checked[0] is self and checked[1] == _canonical(given)
        if not same:
            required = self._required()
            errors = self._schema_errors(
                {k: v for k, v in given.items() if k not in defaulted or k in required}
            )
            if errors:
                raise InvalidToolCall(
                    f"the approved arguments do not fit: {errors}", tool=self.name
                )
        if self._signature is None:
            return given
        try:
            values: dict[str, Any] = self._signature.validate_python(
                {k: v for k, v in given.items() if k not in defaulted}
            )
        except pydantic.ValidationError as exc:
            raise InvalidToolCall(
                f"the approved arguments do not fit: {_pydantic_errors(exc)}", tool=self.name
            ) from None
        return {**values, **defaulted}

    def _required(self) -> set[str]:
        schema = None if self._schema is None else self._schema.schema
        required = schema.get("required") if isinstance(schema, Mapping) else None
        return set(required) if isinstance(required, list) else set()

    def _schema_errors(self, args: dict[str, Any]) -> str:
        if self._schema is None:
            return ""
        errors = sorted(
            self._schema.iter_errors(args), key=lambda e: [str(p) for p in e.absolute_path]
        )
        return "; ".join(f"{_path(e.absolute_path)}: {e.message}" for e in errors[:_MAX_ERRORS])


_MAX_ERRORS = 5
# The call being run: its tool's checks and its arguments (canonical JSON) as checked before
# the gate.
_CHECKED: ContextVar[tuple[_Arguments, str | None] | None] = ContextVar(
    "gatekeeper_openai_checked", default=None
)


def _canonical(value: Any) -> str | None:
    """``value`` as canonical JSON, or None when it isn't JSON (then unlike any checked value)."""
    try:
        return json.dumps(
            value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError):
        return None


def _json_defaults(func: Callable[..., Any]) -> dict[str, tuple[Any, str]]:
    """The defaults of ``func``'s keyword parameters that JSON can carry, with their JSON.

    Filled in before the gate, as ``@gate.guard`` does. A default JSON can't carry (an
    object) stays out of the arguments and applies when the function runs.
    """
    try:
        signature = inspect.signature(func)
    except (ValueError, TypeError):
        return {}
    found = {}
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            text = None if param.default is param.empty else _canonical(param.default)
            if text is not None:
                found[param.name] = (param.default, text)
    return found


def _parse(name: str, text: str) -> dict[str, Any]:
    if not text.strip():  # models send "" for a function without parameters
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise _BadArguments(name, f"not valid JSON ({detail})") from None
    except ValueError as exc:  # NaN or Infinity: Python reads them, JSON has no such numbers
        raise _BadArguments(name, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _BadArguments(name, f"a JSON object is needed, not {_json_type(value)}")
    return value


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def _unknown_args(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Arguments of a call to an unknown tool, for the audit record: parsed when they parse."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def _invalid(name: str, detail: str) -> str:
    return f"Tool call {name} has invalid arguments: {detail.rstrip('.')}. The tool was not run."


def _json_type(value: Any) -> str:
    for kind, word in ((list, "an array"), (str, "a string"), (bool, "a boolean")):
        if isinstance(value, kind):
            return word
    return "null" if value is None else "a number"


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "arguments"


def _pydantic_errors(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:_MAX_ERRORS]
    )


def _schema_validator(name: str, schema: Mapping[str, Any]) -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints
    except ImportError as exc:  # pragma: no cover - installed with the openai extra
        raise ImportError(
            "checking tool arguments against a JSON schema needs jsonschema: "
            "pip install 'hitl-gatekeeper[openai]'"
        ) from exc
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(
            f"parameters of tool {name} is not a valid JSON schema: {exc.message}"
        ) from None
    return validator(schema)


_make_typed_dict: Any = TypedDict  # the functional form, with fields known only at run time


def _signature_adapter(
    name: str, func: Callable[..., Any]
) -> pydantic.TypeAdapter[dict[str, Any]] | None:
    """A validator of ``func``'s keyword arguments, or None if its signature says nothing."""
    try:  # resolve string annotations (`from __future__ import annotations`)
        signature = inspect.signature(func, eval_str=True)
    except (ValueError, TypeError):  # a builtin without a signature
        return None
    except Exception:  # an annotation that does not resolve: check the names, not the types
        signature = inspect.signature(func)
    params: list[tuple[str, Any, bool]] = []  # name, annotation, required
    extra: Literal["allow", "forbid"] = "forbid"
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
        elif param.kind is param.POSITIONAL_ONLY and param.default is param.empty:
            raise TypeError(
                f"tool {name}: parameter {param.name!r} is positional-only, "
                "but a tool call passes arguments by name"
            )
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            annotation = param.annotation
            if annotation is param.empty or isinstance(annotation, str):
                annotation = Any
            params.append((param.name, annotation, param.default is param.empty))
    if not params and extra == "allow":
        return None
    # If pydantic can't validate an annotation, still check the names and the required ones.
    for typed in (True, False):
        fields = {
            key: (Required if required else NotRequired)[annotation if typed else Any]
            for key, annotation, required in params
        }
        shape = _make_typed_dict(f"{name} arguments", fields)
        shape.__pydantic_config__ = pydantic.ConfigDict(extra=extra)
        try:
            return pydantic.TypeAdapter(shape)
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUndefinedAnnotation):
            continue
    return None  # pragma: no cover - an all-Any shape always builds


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


def _content(result: Any) -> str:
    """A tool's result as the text the model reads: a str as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    return pydantic_core.to_json(result, serialize_unknown=True).decode()


# -- reading the API's objects ---------------------------------------------------------------------
@dataclass(slots=True)
class _Call:
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


def _chat_calls(message: Any) -> list[_Call]:
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
            calls.append(_Call(_get(function, "name") or "", arguments, reason, reply, "content"))
        elif kind == "custom":
            custom = _get(tool_call, "custom")
            arguments = {"input": _get(custom, "input") or ""}
            calls.append(_Call(_get(custom, "name") or "", arguments, reason, reply, "content"))
        else:
            raise ValueError(f"tool call {_get(tool_call, 'id')}: unsupported type {kind!r}")
    legacy = _get(message, "function_call")  # the deprecated `functions` API
    if not calls and legacy is not None:
        name = _get(legacy, "name") or ""
        reply = {"role": "function", "name": name}
        calls.append(_Call(name, _get(legacy, "arguments") or "", reason, reply, "content"))
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


def _response_calls(output: Any) -> list[_Call]:
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
            calls.append(_Call(name, arguments, _joined(texts), reply, "output"))
    return calls


def _schemas(
    parameters: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]] | None,
) -> dict[str, Mapping[str, Any]]:
    """Tool name -> JSON schema, from a mapping or from the tool definitions sent to the model."""
    if parameters is None:
        return {}
    if isinstance(parameters, Mapping):
        return dict(parameters)
    found: dict[str, Mapping[str, Any]] = {}
    for definition in parameters:
        _collect(definition, found, namespace=None)
    return found


def _collect(
    definition: Mapping[str, Any], found: dict[str, Mapping[str, Any]], namespace: str | None
) -> None:
    kind = definition.get("type")
    if kind == "namespace":
        for inner in definition.get("tools", ()):
            _collect(inner, found, namespace=definition["name"])
    elif kind == "function":
        # Chat Completions nests the function ({"type": "function", "function": {...}});
        # the Responses API does not.
        function = definition.get("function", definition)
        name = function["name"]
        if namespace and namespace != name:
            name = f"{namespace}.{name}"
        if function.get("parameters") is not None:
            found[name] = function["parameters"]
