"""What the model may send a LangChain tool, and whether what it sent fits.

A tool has two schemas: the one the model sees (``tool_call_schema``) and
its full input schema, which also names arguments LangGraph injects at run
time (state, store, ``ToolRuntime``). Only the model's arguments are put
before a person; injected ones pass through untouched.
"""

from __future__ import annotations

import copy
import json
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
    "gated_function",
    "hidden_fields",
    "invalid_message",
    "is_single_input",
    "same_args",
    "wants_runtime",
    "with_defaults",
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


def with_defaults(tool: BaseTool, args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` plus every default the tool would fill in itself, in JSON form.

    LangChain's ``BaseTool._parse_input`` adds each field of the schema that
    has a default and was not given; filling them in here, before the gate,
    means the policy and the approver see the arguments that will run, and the
    tool then gets them all explicitly (so it adds none of its own). ``args``
    must already fit the schema (:func:`check_args`). A JSON-schema
    ``args_schema`` contributes the ``default`` of each property it declares.
    """
    completed = dict(args)
    if is_single_input(tool):
        return completed
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in completed and isinstance(prop, Mapping) and "default" in prop:
                completed[name] = copy.deepcopy(prop["default"])
        return completed
    model: BaseModel | BaseModelV1
    if issubclass(schema, BaseModel):
        model = schema.model_validate(dict(args))
        given = model.model_fields_set
    elif issubclass(schema, BaseModelV1):
        model = schema.parse_obj(dict(args))
        given = model.__fields_set__
    else:  # pragma: no cover - LangChain only makes the two kinds
        return completed
    missing: dict[str, str] = {}  # field name -> the key the tool takes it by
    for name, field in get_fields(schema).items():
        if name in ("args", "kwargs") or name in given or name in args:
            continue  # synthetic *args/**kwargs fields, or given (maybe by alias)
        required = (
            field.is_required()
            if hasattr(field, "is_required")
            else getattr(field, "required", True)
        )
        if not required:
            alias = getattr(field, "alias", None)
            missing[name] = alias if isinstance(alias, str) and alias else name
    if not missing:
        return completed
    try:
        if isinstance(model, BaseModel):
            dumped = model.model_dump(mode="json", include=set(missing))
        else:
            dumped = json.loads(model.json(include=set(missing)))
    except Exception:  # a default JSON can't show: hand it over as is; the gate refuses it
        dumped = {name: getattr(model, name) for name in missing}
    for name, key in missing.items():
        completed[key] = dumped[name]
    return completed


def same_args(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Are ``a`` and ``b`` the same JSON (so ``1`` and ``True``, or ``1`` and ``1.0``, differ)?"""
    try:
        return _canonical(a) == _canonical(b)
    except (TypeError, ValueError):  # not JSON: never taken as unchanged
        return False


def gated_function(tool: BaseTool) -> bool:
    """Is the tool's function already behind a gate (``@tool`` over ``@gate.guard``)?"""
    for attr in ("func", "coroutine"):
        func = getattr(tool, attr, None)
        if func is not None and getattr(func, "__gatekeeper_tool__", None) is not None:
            return True
    return False


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


def _canonical(args: Mapping[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), allow_nan=False)


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
