"""The model's tool arguments, read and checked against the tool's JSON schema.

A tool call's arguments arrive as a JSON string. Before anyone is asked to
approve a call, its arguments must be a JSON object that matches the schema
the model was shown: a person should never be asked about garbage. The check
is JSON Schema (``jsonschema``, which the Agents SDK installs through ``mcp``),
so it judges exactly what the model was told, whatever built the tool.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, NoReturn

from jsonschema import validators  # type: ignore[import-untyped]  # ships no type information
from jsonschema.exceptions import (  # type: ignore[import-untyped]  # same
    SchemaError,
    best_match,
)

from gatekeeper import InvalidToolCall

__all__ = ["ArgumentCheck", "not_run", "with_defaults"]

_SHOWN = 300  # characters of a validation message quoted back to the model


class ArgumentCheck:
    """Reads a tool call's JSON arguments and checks them against the tool's schema.

    A problem raises :class:`~gatekeeper.InvalidToolCall` whose message names
    the tool, where in the arguments the problem is, and what it is.
    """

    def __init__(self, tool: str, schema: Mapping[str, Any]) -> None:
        self.tool = tool
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(
                f"tool {tool}: its params_json_schema is not valid JSON Schema: {exc.message}"
            ) from None
        self._validator = cls(schema)

    def parse(self, raw: str | None) -> dict[str, Any]:
        """The arguments in ``raw`` (a JSON object; empty means no arguments), checked."""
        if raw is None or not raw.strip():
            args: Any = {}  # the SDK reads an empty argument string as no arguments
        else:
            try:
                args = json.loads(raw, parse_constant=_refuse_constant)
            except ValueError as exc:
                self._refuse(f"the arguments are not valid JSON ({exc})")
        if not isinstance(args, dict):
            self._refuse(f"the arguments must be a JSON object, not {_json_kind(args)}")
        self.check(args)
        return args

    def with_defaults(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` with the schema's ``default`` of every absent property filled in (a copy)."""
        return with_defaults(self._validator, args)

    def check(self, args: Mapping[str, Any], *, edited: bool = False) -> None:
        """Raise InvalidToolCall unless ``args`` (``edited`` by an approver?) match the schema."""
        error = best_match(self._validator.iter_errors(dict(args)))
        if error is None:
            return
        where = _path(error.absolute_path)
        message = str(error.message)
        if len(message) > _SHOWN:
            message = message[: _SHOWN - 1] + "…"
        self._refuse(f"{message} (at {where})" if where else message, edited=edited)

    def _refuse(self, problem: str, *, edited: bool = False) -> NoReturn:
        whose = " as the approver edited them" if edited else ""
        raise InvalidToolCall(
            f"Invalid arguments for tool {self.tool}{whose}: {problem}", tool=self.tool
        )


def with_defaults(validator: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` completed with the JSON schema's ``default`` values, as the tool will apply them.

    ``validator`` is a jsonschema validator of the tool's schema. An absent
    property with a ``default`` gets it; present objects (and array items) are
    completed the same way, through local ``$ref``s, ``allOf``, and the one
    ``anyOf``/``oneOf`` branch the value matches. Returns a copy.
    """
    filled = _fill(validator, validator.schema, copy.deepcopy(args), depth=0)
    assert isinstance(filled, dict)
    return filled


_MAX_DEPTH = 64  # nesting of schemas walked: a self-referencing schema ends here


def _fill(validator: Any, schema: Any, value: Any, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _local(validator.schema, ref)
        if target is not None:
            value = _fill(validator, target, value, depth + 1)
    for sub in schema.get("allOf") or ():
        value = _fill(validator, sub, value, depth + 1)
    for key in ("anyOf", "oneOf"):
        branches = [
            b
            for b in schema.get(key) or ()
            if isinstance(b, Mapping) and validator.evolve(schema=b).is_valid(value)
        ]
        if len(branches) == 1:
            value = _fill(validator, branches[0], value, depth + 1)
    if isinstance(value, dict):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for name, prop in properties.items():
                if name in value:
                    value[name] = _fill(validator, prop, value[name], depth + 1)
                else:
                    default = _default(validator.schema, prop)
                    if default is not _NONE:
                        value[name] = copy.deepcopy(default)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        value = [_fill(validator, schema["items"], item, depth + 1) for item in value]
    return value


_NONE = object()


def _default(root: Any, prop: Any) -> Any:
    """The ``default`` of a property's schema (through ``$ref``s), or ``_NONE``."""
    for _ in range(_MAX_DEPTH):
        if not isinstance(prop, Mapping):
            return _NONE
        if "default" in prop:
            return prop["default"]
        ref = prop.get("$ref")
        prop = _local(root, ref) if isinstance(ref, str) else None
    return _NONE


def _local(root: Any, ref: str) -> Any:
    """The part of ``root`` a local ``$ref`` ("#/$defs/X") points to, or None."""
    if not ref.startswith("#"):
        return None
    node = root
    for escaped in ref[1:].split("/")[1:] if ref != "#" else ():
        part = escaped.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def not_run(exc: InvalidToolCall) -> str:
    """The sentence for the model about arguments that could not be used."""
    return f"{exc.message}. The tool was not run; call it again with arguments that fit its schema."


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
