"""A guarded tool: the function, what it declares, and how its arguments are bound."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError, create_model

from ._canonical import canonical_json, to_json_safe
from ._errors import InvalidToolCall
from .models import Risk

__all__ = ["BoundCall", "MappingToolSpec", "ToolSpec"]

_SELF_NAMES = ("self", "cls")


@dataclass(frozen=True)
class BoundCall:
    """A call's arguments: as JSON (shown, hashed) and as Python (to run)."""

    json_args: dict[str, Any]
    canonical: bytes
    bound: inspect.BoundArguments

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON: what an approval binds to."""
        return hashlib.sha256(self.canonical).hexdigest()


@dataclass
class ToolSpec:
    """What a guarded function declares about itself."""

    func: Callable[..., Any]
    name: str
    scopes: tuple[str, ...] = ()
    irreversible: bool = False
    risk: Risk | None = None
    exclude: frozenset[str] = frozenset()
    is_async: bool = False
    question: bool = False  # the ask-a-person tool: its calls are questions for a person
    server: str | None = None  # the MCP upstream it belongs to (``gatekeeper mcp``)
    # Why a person must look at every call of it whatever the policy allows (the
    # MCP gateway: the tool's description changed since it was first seen).
    must_ask: tuple[str, str] | None = None  # (rule id, reason)
    signature: inspect.Signature = field(init=False)
    _skip: frozenset[str] = field(init=False)
    _plain: tuple[str, ...] | None = field(init=False)
    _adapters: dict[str, TypeAdapter[Any] | None] = field(init=False, default_factory=dict)
    _schema: dict[str, Any] | bool | None = field(init=False, default=False)

    def __post_init__(self) -> None:
        try:  # resolve string annotations (`from __future__ import annotations`)
            self.signature = inspect.signature(self.func, eval_str=True)
        except Exception:
            self.signature = inspect.signature(self.func)
        params = list(self.signature.parameters.values())
        skip = set(self.exclude)
        if params and params[0].name in _SELF_NAMES:
            skip.add(params[0].name)  # the instance or class of a method is not an argument
        unknown = set(self.exclude) - {p.name for p in params}
        if unknown:
            raise ValueError(f"guard(exclude=...) names no parameter of {self.name}: {unknown}")
        self._skip = frozenset(skip)
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        self._plain = tuple(p.name for p in params) if plain else None

    @property
    def args_schema(self) -> dict[str, Any] | None:
        """A JSON Schema of the arguments an approver may edit, from the annotations.

        Made once. None when it can't be made (``*args``, ``**kwargs``, types
        pydantic can't describe): then only the agent checks an edit, at release.
        """
        if self._schema is False:
            self._schema = _schema_of(self.name, self.signature, self._skip)
        return self._schema  # type: ignore[return-value]

    @classmethod
    def create(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None,
        scopes: Iterable[str],
        irreversible: bool,
        risk: Risk | str | None,
        exclude: Iterable[str],
    ) -> ToolSpec:
        return cls(
            func=func,
            name=name or str(getattr(func, "__name__", "tool")),
            scopes=tuple(sorted(set(scopes))),
            irreversible=irreversible,
            risk=Risk(risk) if risk is not None else None,
            exclude=frozenset(exclude),
            is_async=inspect.iscoroutinefunction(func),
        )

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], max_bytes: int) -> BoundCall:
        """Bind a call's arguments by the signature and convert them to JSON."""
        names = self._plain
        if names is not None and not kwargs and len(args) == len(names):
            # The common case (every parameter given by position, none with a
            # default or a *): what Signature.bind would do, without its cost.
            bound = inspect.BoundArguments(self.signature, dict(zip(names, args, strict=True)))
        else:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidToolCall(f"{self.name}: {exc}", tool=self.name) from None
            bound.apply_defaults()
        skip = self._skip
        raw = {k: v for k, v in bound.arguments.items() if k not in skip}
        json_args = to_json_safe(raw, where=f"{self.name} args")
        canonical = canonical_json(json_args)
        size = len(canonical)
        if size > max_bytes:
            raise InvalidToolCall(
                f"{self.name}: arguments are {size} bytes as JSON, over the limit of {max_bytes}",
                tool=self.name,
            )
        return BoundCall(json_args, canonical, bound)

    def json_of(self, bound: inspect.BoundArguments) -> dict[str, Any]:
        """The JSON form of arguments as they are *now* (to catch later mutation)."""
        raw = {k: v for k, v in bound.arguments.items() if k not in self._skip}
        result: dict[str, Any] = to_json_safe(raw, where=f"{self.name} args")
        return result

    def rebind(
        self, edited: Mapping[str, Any], original: inspect.BoundArguments
    ) -> inspect.BoundArguments:
        """Arguments an approver edited, checked against the signature and its annotations.

        An edit changes values; it names exactly the parameters the call had
        (nothing silently falls back to a default). Excluded parameters (and
        ``self``) keep the caller's values.
        """
        given = dict(edited)
        recorded = {n for n in original.arguments if n not in self._skip}
        if set(given) != recorded:
            missing, extra = sorted(recorded - set(given)), sorted(set(given) - recorded)
            raise InvalidToolCall(
                f"{self.name}: edited arguments must name the same parameters as the call"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else ""),
                tool=self.name,
            )
        for name in self._skip:
            if name in given:
                raise InvalidToolCall(f"{self.name}: {name!r} can't be edited", tool=self.name)
        values: dict[str, Any] = {
            n: original.arguments[n] for n in self._skip if n in original.arguments
        }
        for pname, param in self.signature.parameters.items():
            if pname in self._skip or pname not in given:
                continue
            values[pname] = self._validate(param, given.pop(pname))
        if given:
            raise InvalidToolCall(
                f"{self.name}: edited arguments name unknown parameters {sorted(given)}",
                tool=self.name,
            )
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for pname, param in self.signature.parameters.items():
            if pname not in values:
                continue
            value = values[pname]
            if param.kind is param.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is param.VAR_KEYWORD:
                clash = set(value) & set(self.signature.parameters)
                if clash:  # would silently override a named parameter's value
                    raise InvalidToolCall(
                        f"{self.name}: edited {pname} repeats parameters {sorted(clash)}",
                        tool=self.name,
                    )
                kwargs.update(value)
            elif param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[pname] = value
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidToolCall(f"{self.name}: edited arguments: {exc}", tool=self.name) from None
        bound.apply_defaults()
        return bound

    def _validate(self, param: inspect.Parameter, value: Any) -> Any:
        value = _from_json(value)
        annotation = param.annotation
        if annotation is inspect.Parameter.empty:
            return value
        if param.kind is param.VAR_POSITIONAL:
            annotation = tuple[annotation, ...]  # type: ignore[valid-type]
        elif param.kind is param.VAR_KEYWORD:
            annotation = dict[str, annotation]  # type: ignore[valid-type]
        if param.name not in self._adapters:
            try:
                self._adapters[param.name] = TypeAdapter(annotation)
            except Exception:
                self._adapters[param.name] = None
        adapter = self._adapters[param.name]
        if adapter is None:
            raise InvalidToolCall(
                f"{self.name}: can't check an edited value for {param.name!r} "
                f"(annotation {annotation!r}); edits to it are refused",
                tool=self.name,
            )
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            raise InvalidToolCall(
                f"{self.name}: edited value of {param.name!r} is invalid: {first}", tool=self.name
            ) from None


# The signature of a tool whose arguments arrive as one mapping: ``func(**arguments)``.
_MAPPING = inspect.Signature([inspect.Parameter("arguments", inspect.Parameter.VAR_KEYWORD)])


@dataclass
class MappingToolSpec(ToolSpec):
    """A tool whose arguments arrive as one JSON object (a framework's tool call).

    The arguments are shown, hashed and policy-checked as given, and the tool
    runs as ``func(**arguments)``. Completing them (every default the tool
    would apply) and checking them against the tool's schema is the caller's
    job, before the gate: the policy and the approver must see every argument
    that will run. Values stay JSON: an approver's edit is passed on as JSON.
    """

    schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.signature = _MAPPING
        self._skip = frozenset()
        self._plain = None
        self._schema = self.schema

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], max_bytes: int) -> BoundCall:
        if args:
            raise InvalidToolCall(f"{self.name}: arguments go by name", tool=self.name)
        given = dict(kwargs)
        json_args = to_json_safe(given, where=f"{self.name} args")
        canonical = canonical_json(json_args)
        if len(canonical) > max_bytes:
            raise InvalidToolCall(
                f"{self.name}: arguments are {len(canonical)} bytes as JSON, "
                f"over the limit of {max_bytes}",
                tool=self.name,
            )
        return BoundCall(
            json_args, canonical, inspect.BoundArguments(_MAPPING, {"arguments": given})
        )

    def json_of(self, bound: inspect.BoundArguments) -> dict[str, Any]:
        result: dict[str, Any] = to_json_safe(
            dict(bound.arguments.get("arguments", {})), where=f"{self.name} args"
        )
        return result

    def rebind(
        self, edited: Mapping[str, Any], original: inspect.BoundArguments
    ) -> inspect.BoundArguments:
        recorded = set(original.arguments.get("arguments", {}))
        if set(edited) != recorded:
            raise InvalidToolCall(
                f"{self.name}: edited arguments must name the same parameters as the call: "
                f"{sorted(recorded)}",
                tool=self.name,
            )
        return inspect.BoundArguments(_MAPPING, {"arguments": dict(edited)})


def _schema_of(
    name: str, signature: inspect.Signature, skip: frozenset[str]
) -> dict[str, Any] | None:
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name in skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    try:
        model = create_model(f"{name}_arguments", **fields)
        schema: dict[str, Any] = model.model_json_schema()
    except Exception:
        return None
    for key, prop in list(schema.get("properties", {}).items()):
        if "binary" in json.dumps(prop):  # bytes travel as {"$bytes": base64}
            schema["properties"][key] = {}
    return schema


def _from_json(value: Any) -> Any:
    """Undo the JSON form of bytes (``{"$bytes": base64}``) made by to_json_safe."""
    if isinstance(value, dict) and set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
        try:
            return base64.b64decode(value["$bytes"], validate=True)
        except ValueError:
            return value
    return value
