"""A plain-function-calling tool's arguments: parsed, checked, completed and converted.

The JSON text a model sends is parsed (strictly: no NaN), checked against the
tool's JSON schema and the function's signature, and completed with the
schema's and the function's defaults before the gate, so the gate, the policy
and the approver see every value the function will run with. After approval
the arguments are converted to the function's annotations (pydantic), checked
again if an approver edited them. Also here: finding each tool's schema in the
tool definitions sent to the model.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Literal

import pydantic
from typing_extensions import NotRequired, Required, TypedDict

from gatekeeper import InvalidToolCall

__all__ = [
    "CHECKED",
    "BadArguments",
    "ToolArguments",
    "canonical",
    "invalid_arguments",
    "schemas_by_tool",
    "unknown_arguments",
]


class BadArguments(Exception):
    """A call's arguments do not fit; ``model_message`` tells the model, and the tool is not run."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.model_message = invalid_arguments(name, detail)


class ToolArguments:
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
        """The arguments to put through the gate, as JSON; raises ``BadArguments``.

        They are complete: the schema's ``default`` values and then the function's own
        defaults fill in what the model left out, so the gate, the policy and the approver
        see every value the function will run with.
        """
        args = _parse(self.name, arguments) if isinstance(arguments, str) else arguments
        errors = self._schema_errors(args)
        if errors:
            raise BadArguments(self.name, errors)
        if self._schema is not None:
            from ._agents_args import with_defaults

            args = with_defaults(self._schema, args)
        if self._signature is None:
            return args
        try:
            values = self._signature.validate_python(args)
        except pydantic.ValidationError as exc:
            raise BadArguments(self.name, _pydantic_errors(exc)) from None
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
            if key in self._defaults and canonical(value) == self._defaults[key][1]
        }
        # Arguments released as they were checked before the gate need no second schema check
        # (the costly one); an approver's edit gets one. Compared as JSON: 1 == True in Python.
        checked = CHECKED.get()
        same = checked is not None and checked[0] is self and checked[1] == canonical(given)
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
CHECKED: ContextVar[tuple[ToolArguments, str | None] | None] = ContextVar(
    "gatekeeper_openai_checked", default=None
)


def canonical(value: Any) -> str | None:
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
            text = None if param.default is param.empty else canonical(param.default)
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
        raise BadArguments(name, f"not valid JSON ({detail})") from None
    except ValueError as exc:  # NaN or Infinity: Python reads them, JSON has no such numbers
        raise BadArguments(name, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadArguments(name, f"a JSON object is needed, not {_json_type(value)}")
    return value


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def unknown_arguments(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Arguments of a call to an unknown tool, for the audit record: parsed when they parse."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def invalid_arguments(name: str, detail: str) -> str:
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


def schemas_by_tool(
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
