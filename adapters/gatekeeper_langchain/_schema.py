"""What the model may send a LangChain tool, and whether what it sent fits.

A tool has two schemas: the one the model sees (``tool_call_schema``) and
its full input schema, which also names arguments LangGraph injects at run
time (state, store, ``ToolRuntime``). Only the model's arguments are put
before a person; injected ones pass through untouched.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.tools import BaseTool, InjectedToolArg, Tool
from langchain_core.utils.pydantic import get_fields
from pydantic import BaseModel, ValidationError, create_model
from pydantic.v1 import BaseModel as BaseModelV1
from pydantic.v1 import ValidationError as ValidationErrorV1

__all__ = [
    "RUNTIME",
    "check_args",
    "hidden_fields",
    "invalid_message",
    "is_single_input",
    "wants_runtime",
    "with_runtime",
]

# The parameter name LangGraph's ToolNode fills with the ToolRuntime (state, tool call id...).
RUNTIME = "runtime"
_MAX_ERRORS = 5
# How that argument is declared: injected (ToolNode strips a model-sent value), any type.
_RUNTIME_FIELD: Any = (Annotated[Any, InjectedToolArg()], None)


def is_single_input(tool: BaseTool) -> bool:
    """A legacy ``Tool`` without a schema: the model sends one string (``__arg1``)."""
    return isinstance(tool, Tool) and not tool.args_schema


def hidden_fields(tool: BaseTool) -> frozenset[str]:
    """Arguments of the tool's input schema that the model does not see (injected ones)."""
    shown = tool.tool_call_schema
    if is_single_input(tool) or isinstance(shown, dict):
        return frozenset()
    try:
        full = set(get_fields(tool.get_input_schema()))
    except Exception:  # an input schema LangChain itself can't build: nothing is hidden
        return frozenset()
    return frozenset(full - set(get_fields(shown)))


def wants_runtime(tool: BaseTool) -> bool:
    """Does the tool take LangGraph's ToolRuntime itself (so it must be passed on)?"""
    if RUNTIME in hidden_fields(tool):
        return True
    func = getattr(tool, "func", None) or getattr(tool, "coroutine", None)
    if func is None:
        return False
    try:
        return RUNTIME in typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: LangGraph couldn't inject by them either
        return False


def with_runtime(tool: BaseTool) -> Any:
    """The tool's input schema plus a ``runtime`` argument, so ToolNode injects a ToolRuntime.

    The model never sees it (the argument is marked injected and the model's
    schema is the original tool's), and the original tool gets it only if it
    asked for it. If the schema can't be extended, it is returned unchanged:
    the tool then runs without the model's words as the reason.
    """
    if isinstance(tool.args_schema, dict) or is_single_input(tool):
        return create_model(f"{tool.name}_gated_input", runtime=_RUNTIME_FIELD)
    schema = tool.get_input_schema()
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return schema
    if RUNTIME in get_fields(schema):
        return schema
    try:
        return create_model(schema.__name__, __base__=schema, runtime=_RUNTIME_FIELD)
    except Exception:  # a schema pydantic won't extend (generic, incomplete...): leave it
        return schema


def check_args(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """What is wrong with the model's ``args`` for ``tool``, or None if they fit its schema."""
    if is_single_input(tool):
        if len(args) != 1:
            return f"it takes exactly one argument, got {len(args)}"
        return None
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return _check_json_schema(schema, args)
    try:
        if issubclass(schema, BaseModel):
            schema.model_validate(dict(args))
        elif issubclass(schema, BaseModelV1):
            schema.parse_obj(dict(args))
    except (ValidationError, ValidationErrorV1) as exc:
        return _describe(exc)
    return None


def invalid_message(name: str, problem: str) -> str:
    """The sentence the model reads when its arguments don't fit."""
    return (
        f"Invalid arguments for tool {name}: {problem}. The tool was not run; "
        "call it again with arguments that match its schema."
    )


def _check_json_schema(schema: Mapping[str, Any], args: Mapping[str, Any]) -> str | None:
    # A JSON-schema args_schema isn't validated by LangChain either; catch what is
    # certain without a JSON Schema validator: missing and unknown arguments.
    missing = [k for k in schema.get("required", ()) if k not in args]
    if missing:
        return f"missing required argument(s) {', '.join(missing)}"
    if schema.get("additionalProperties") is False:
        known = set(schema.get("properties", {}))
        extra = sorted(k for k in args if k not in known)
        if extra:
            return f"unknown argument(s) {', '.join(extra)}"
    return None


def _describe(exc: ValidationError | ValidationErrorV1) -> str:
    errors = exc.errors()
    lines = []
    for error in errors[:_MAX_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        line = f"{where}: {error.get('msg', 'invalid')}"
        given = error.get("input")
        if error.get("type") != "missing" and isinstance(given, (str, int, float, bool)):
            line += f" (got {given!r})"
        lines.append(line)
    if len(errors) > _MAX_ERRORS:
        lines.append(f"and {len(errors) - _MAX_ERRORS} more")
    return "; ".join(lines)
