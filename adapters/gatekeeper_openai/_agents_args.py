"""The model's tool arguments, read and checked against the tool's JSON schema.

A tool call's arguments arrive as a JSON string. Before anyone is asked to
approve a call, its arguments must be a JSON object that matches the schema
the model was shown: a person should never be asked about garbage. The check
is JSON Schema (``jsonschema``, which the Agents SDK installs through ``mcp``),
so it judges exactly what the model was told, whatever built the tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from jsonschema import validators  # type: ignore[import-untyped]  # ships no type information
from jsonschema.exceptions import (  # type: ignore[import-untyped]  # same
    SchemaError,
    best_match,
)

from gatekeeper import InvalidToolCall

__all__ = ["ArgumentCheck", "not_run"]

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
