"""The policy file format (version 1) as pydantic models.

Every model forbids unknown keys, so a typo is an error rather than a rule that
silently never matches. Values that need work (durations, regexes, ``python:``
import paths) are checked here, at load, so a policy that loads is one that
can classify.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..models import HaltScope, Risk, ToolCall, Verdict
from ._duration import parse_duration, parse_rate

__all__ = [
    "DEFAULT_RISK",
    "AgentSpec",
    "ApprovalSpec",
    "AutonomyRule",
    "LimitRule",
    "Match",
    "Matcher",
    "NoveltyRule",
    "PolicyDefaults",
    "PolicyDocument",
    "Rule",
    "SequenceRule",
    "SequenceStep",
    "StepMatch",
    "ToolSpec",
    "resolve_predicate",
]

_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
Mode = Literal["enforce", "shadow"]
_MODE_HELP = "enforce (the default), or shadow: record what it would do, change nothing"
_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?(\s*\d+(\.\d+)?\s*(ms|s|m|h|d))*\s*$"


def _duration(value: Any) -> float:
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"invalid duration {value!r}: expected a number or a string like '15m'")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be more than zero")
    return seconds


def _comparable(value: Any) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number or a string to compare with, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _non_empty(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("needs at least one pattern")
    if any(not v for v in values):
        raise ValueError("patterns must not be empty strings")
    return values


_GLOBS_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
}

Duration = Annotated[
    float,
    PlainValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {
                    "type": "string",
                    "pattern": _DURATION_PATTERN,
                },
            ],
            "description": "seconds, or a string like '30s', '15m', '1h30m', '500ms'",
        }
    ),
]
Comparable = Annotated[
    int | float | str,
    PlainValidator(_comparable),
    WithJsonSchema({"type": ["number", "string"]}),
]
Globs = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_list),
    WithJsonSchema(_GLOBS_SCHEMA),
]


class _Strict(BaseModel):
    """Frozen, and an unknown key is an error that lists the valid ones."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)
    _unknown_key_message: ClassVar[str] = "unknown key {shown}; valid keys are: {valid}"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = {f.alias or name for name, f in cls.model_fields.items()}
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key",
                        cls._unknown_key_message,
                        {"key": key, "shown": repr(key), "valid": ", ".join(sorted(known))},
                    )
        return data


class Matcher(_Strict):
    """Conditions on one argument; all the operators given must hold (AND)."""

    _unknown_key_message: ClassVar[str] = (
        "unknown matcher operator {shown}; valid operators are: {valid}"
    )

    eq: JsonValue = None
    ne: JsonValue = None
    in_: list[JsonValue] | None = Field(default=None, alias="in")
    not_in: list[JsonValue] | None = None
    gt: Comparable | None = None
    ge: Comparable | None = None
    lt: Comparable | None = None
    le: Comparable | None = None
    regex: str | None = Field(default=None, description="Python re.search")
    contains: JsonValue = None
    exists: bool | None = None
    min_len: int | None = Field(default=None, ge=0)
    max_len: int | None = Field(default=None, ge=0)
    host_in: list[str] | None = None
    host_not_in: list[str] | None = None
    path_under: list[str] | None = None
    path_not_under: list[str] | None = None

    @model_validator(mode="after")
    def _has_operator(self) -> Matcher:
        if not self.model_fields_set:
            raise ValueError("a matcher needs at least one operator (or write a bare value for eq)")
        return self

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `eq: null` and "no eq" must not look alike (the policy digest depends on it).
        given = {type(self).model_fields[name].alias or name for name in self.model_fields_set}
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if key in given}

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @field_validator("host_in", "host_not_in")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        for host in value or ():
            bare = host.removeprefix("*.").removeprefix(".").rstrip(".")
            if not bare or "/" in bare or "@" in bare or any(c.isspace() for c in bare):
                raise ValueError(
                    f"{host!r} is not a host name (write 'example.com' or '*.example.com')"
                )
        return value

    @field_validator("path_under", "path_not_under")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or ():
            if not path.startswith("/") or "\x00" in path:
                raise ValueError(f"{path!r} is not an absolute directory path")
        return value


def _bare_is_eq(value: Any) -> Any:
    # `currency: EUR` means `currency: {eq: EUR}`; only a mapping is a matcher.
    return value if isinstance(value, Mapping) else {"eq": value}


def _args_key(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError(f"{value!r} is not an argument path (write 'name' or 'payload.user.id')")
    return value


ArgName = Annotated[str, PlainValidator(_args_key), WithJsonSchema({"type": "string"})]
ArgMatcher = Annotated[Matcher, BeforeValidator(_bare_is_eq)]


def _matcher_or_value(schema: dict[str, Any]) -> None:
    """JSON Schema: an ``args`` value is a matcher mapping or a bare value (``eq``)."""
    args = schema.get("properties", {}).get("args")
    if isinstance(args, dict) and "additionalProperties" in args:
        matcher = args["additionalProperties"]
        args["additionalProperties"] = {
            "anyOf": [matcher, {"type": ["string", "number", "boolean", "null", "array"]}]
        }


def resolve_predicate(path: str) -> Callable[[ToolCall], object]:
    """Import ``"module:attr"`` and return the callable, or raise ValueError saying why."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} is not an import path; write 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # any import-time failure is a policy error, not a crash
        raise ValueError(f"can't import {path!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise ValueError(f"{path!r} is a {type(target).__name__}, not a callable")
    if inspect.iscoroutinefunction(target):
        raise ValueError(f"{path!r} is async; a predicate must be a plain function returning bool")
    predicate: Callable[[ToolCall], object] = target
    return predicate


_SERVER_HELP = (
    "glob or list: the MCP upstream's name, for calls made through `gatekeeper mcp` "
    "(a call made in the agent's own process has none, so never matches)"
)


def _without_unset_server(self: Any, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
    # A policy that names no server dumps (and so digests) as it did before
    # `server` existed.
    dumped: dict[str, Any] = handler(self)
    if dumped.get("server") is None:
        dumped.pop("server", None)
    return dumped


class Match(_Strict):
    """Which calls a rule is about. All the conditions given must hold."""

    model_config = ConfigDict(json_schema_extra=_matcher_or_value)

    tool: Globs = Field(default=("*",), description="glob (fnmatch, case-sensitive) or list")
    agent: Globs | None = Field(default=None, description="glob or list of globs")
    server: Globs | None = Field(default=None, description=_SERVER_HELP)
    args: dict[ArgName, ArgMatcher] = Field(
        default_factory=dict, description="arg name (dotted for nesting) -> matcher or value"
    )
    python: str | None = Field(default=None, description="'module:function' taking the ToolCall")

    @field_validator("tool", "agent", "server")
    @classmethod
    def _patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _non_empty(value)

    _no_server = model_serializer(mode="wrap")(_without_unset_server)

    @field_validator("python")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            resolve_predicate(value)
        return value


class ApprovalSpec(_Strict):
    """Who must approve, how many, and by when (fields not given fall back to defaults)."""

    group: str | None = None
    quorum: int = Field(default=1, ge=1)
    timeout: Duration | None = None
    escalate_after: Duration | None = Field(
        default=None, description="still pending after this long: remind the approver group"
    )
    respond: bool = Field(
        default=True,
        description="an approver may write the tool's result instead of running it; "
        "false when the code calling the tool needs the tool's own result type",
    )


class AgentSpec(_Strict):
    """What an agent is granted."""

    scopes: tuple[str, ...] = ()
    description: str | None = None


class ToolSpec(_Strict):
    """What a tool needs, as the policy declares it (merged with what the code declares)."""

    scopes: tuple[str, ...] = ()
    irreversible: bool = False
    risk: Risk | None = None
    description: str | None = None


DEFAULT_RISK = {
    Verdict.ALLOW: Risk.LOW,
    Verdict.REQUIRE_APPROVAL: Risk.MEDIUM,
    Verdict.DENY: Risk.HIGH,
    Verdict.HALT: Risk.CRITICAL,
}


class Rule(_Strict):
    """One classification rule: calls that match get ``verdict``."""

    id: str = Field(pattern=_ID_PATTERN)
    description: str | None = None
    match: Match = Field(default_factory=Match)
    verdict: Verdict
    risk: Risk | None = Field(default=None, description="default by verdict")
    reason: str | None = None
    approval: ApprovalSpec | None = None
    allow_irreversible: bool = False
    halt_scope: HaltScope | None = None
    mode: Mode = Field(default="enforce", description=_MODE_HELP)

    @property
    def effective_risk(self) -> Risk:
        """``risk``, or the verdict's default risk when the rule gives none."""
        return self.risk if self.risk is not None else DEFAULT_RISK[self.verdict]

    @field_validator("approval")
    @classmethod
    def _approval_needs_hold(cls, value: ApprovalSpec | None, info: ValidationInfo) -> Any:
        verdict = info.data.get("verdict")
        if value is not None and verdict is not None and verdict is not Verdict.REQUIRE_APPROVAL:
            raise ValueError(
                f"only a require_approval rule may set approval (this rule's verdict is {verdict})"
            )
        return value

    @field_validator("allow_irreversible")
    @classmethod
    def _only_for_allow(cls, value: bool, info: ValidationInfo) -> bool:
        verdict = info.data.get("verdict")
        if value and verdict is not None and verdict is not Verdict.ALLOW:
            raise ValueError(f"only an allow rule may set allow_irreversible (this is {verdict})")
        return value

    @field_validator("halt_scope")
    @classmethod
    def _only_for_halt(cls, value: HaltScope | None, info: ValidationInfo) -> Any:
        verdict = info.data.get("verdict")
        if value is not None and verdict is not None and verdict is not Verdict.HALT:
            raise ValueError(
                f"only a halt rule may set halt_scope (this rule's verdict is {verdict})"
            )
        return value


def _not_allow(value: Verdict) -> Verdict:
    if value is Verdict.ALLOW:
        raise ValueError("must be require_approval, deny or halt")
    return value


class StepMatch(_Strict):
    """Which calls a step is about: a tool, and optionally an agent and arguments."""

    model_config = ConfigDict(json_schema_extra=_matcher_or_value)

    tool: Globs = Field(description="glob (fnmatch, case-sensitive) or list")
    agent: Globs | None = None
    server: Globs | None = Field(default=None, description=_SERVER_HELP)
    args: dict[ArgName, ArgMatcher] = Field(default_factory=dict)

    @field_validator("tool", "agent", "server")
    @classmethod
    def _patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _non_empty(value)

    _no_server = model_serializer(mode="wrap")(_without_unset_server)


class SequenceStep(_Strict):
    """One step of a sequence: a call to a matching tool (``times`` of them), or,
    with ``not``, the absence of a matching call between the steps around it."""

    model_config = ConfigDict(json_schema_extra=_matcher_or_value)

    tool: Globs | None = Field(default=None, description="glob (fnmatch, case-sensitive) or list")
    agent: Globs | None = None
    server: Globs | None = Field(default=None, description=_SERVER_HELP)
    args: dict[ArgName, ArgMatcher] = Field(default_factory=dict)
    times: int = Field(
        default=1, ge=1, le=100, description="this many matching calls (others may come between)"
    )
    absent: StepMatch | None = Field(
        default=None,
        alias="not",
        description="no call that ran and matches this between the previous and the next step",
    )

    @field_validator("tool", "agent", "server")
    @classmethod
    def _patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _non_empty(value)

    _no_server = model_serializer(mode="wrap")(_without_unset_server)

    @model_validator(mode="after")
    def _one_kind(self) -> SequenceStep:
        if self.absent is not None:
            given = (self.tool, self.agent, self.server)
            if given != (None, None, None) or self.args or self.times != 1:
                raise ValueError(
                    "a 'not' step has only 'not' (its tool, agent, server and args go inside)"
                )
        elif self.tool is None:
            raise ValueError("a step needs 'tool' (or 'not' for a call that must not happen)")
        return self

    @property
    def negated(self) -> bool:
        return self.absent is not None


class SequenceRule(_Strict):
    """A pattern over an agent's or a session's recent calls, checked before each call runs."""

    id: str = Field(pattern=_ID_PATTERN)
    description: str | None = None
    steps: list[SequenceStep] = Field(min_length=1)
    within: Duration
    per: Literal["session", "agent"] = "session"
    verdict: Verdict
    reason: str | None = None
    mode: Mode = Field(default="enforce", description=_MODE_HELP)

    _verdict = field_validator("verdict")(_not_allow)

    @field_validator("steps")
    @classmethod
    def _shape(cls, steps: list[SequenceStep]) -> list[SequenceStep]:
        if steps[0].negated or steps[-1].negated:
            raise ValueError("a 'not' step must stand between two steps (not first or last)")
        if sum(s.times for s in steps if not s.negated) < 2:
            raise ValueError("a sequence needs at least two calls (two steps, or 'times' >= 2)")
        return steps


LIMIT_PER_HELP = "agent, session, tool, global, or args.NAME (each value counted apart)"


def _limit_per(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"per must be {LIMIT_PER_HELP}")
    if value in ("agent", "session", "tool", "global"):
        return value
    if value.startswith("args.") and len(value) > 5:
        _args_key(value[5:])
        return value
    raise ValueError(f"invalid per {value!r}: must be {LIMIT_PER_HELP}")


class LimitRule(_Strict):
    """A limit on matching calls: a rate, a budget over an argument, or a concurrency cap."""

    id: str = Field(pattern=_ID_PATTERN)
    description: str | None = None
    match: Match = Field(default_factory=Match)
    rate: str | None = Field(
        default=None, description="N/second|minute|hour|day", examples=["20/hour"]
    )
    sum: str | None = Field(
        default=None, description="budget: the argument whose values add up (dotted for nesting)"
    )
    max: float | None = Field(default=None, gt=0, description="budget: the most the sum may reach")
    window: Duration | None = Field(default=None, description="budget: over how long, e.g. 1d")
    concurrent: int | None = Field(default=None, ge=1, description="at most this many running")
    per: Annotated[str, PlainValidator(_limit_per)] = Field(
        default="agent", description=LIMIT_PER_HELP
    )
    on_exceed: Verdict = Verdict.REQUIRE_APPROVAL
    reason: str | None = None
    mode: Mode = Field(default="enforce", description=_MODE_HELP)

    _on_exceed = field_validator("on_exceed")(_not_allow)

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("sum")
    @classmethod
    def _sum(cls, value: str | None) -> str | None:
        return None if value is None else _args_key(value)

    @model_validator(mode="after")
    def _one_kind(self) -> LimitRule:
        kinds = [k for k in ("rate", "sum", "concurrent") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a limit has exactly one of: rate, sum (a budget), concurrent")
        budget = (self.max, self.window)
        if kinds == ["sum"] and None in budget:
            raise ValueError("a budget ('sum') needs 'max' and 'window'")
        if kinds != ["sum"] and budget != (None, None):
            raise ValueError("'max' and 'window' belong to a budget ('sum')")
        if self.match.python is not None:
            raise ValueError("a limit's match can't use 'python' (it is counted in the store)")
        return self

    @property
    def kind(self) -> Literal["rate", "budget", "concurrent"]:
        if self.rate is not None:
            return "rate"
        return "budget" if self.sum is not None else "concurrent"

    @property
    def parsed_rate(self) -> tuple[int, float]:
        """``(count, period_seconds)``."""
        assert self.rate is not None
        return parse_rate(self.rate)


NEW_HELP = "tool, args.NAME (a new value), or host(args.NAME) (a new host of a URL)"
_NEW_HOST = re.compile(r"host\(args\.(.+)\)")


def _new_what(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"new must be {NEW_HELP}")
    if value == "tool":
        return value
    host = _NEW_HOST.fullmatch(value)
    if host is not None:
        _args_key(host.group(1))
        return value
    if value.startswith("args.") and len(value) > 5:
        _args_key(value[5:])
        return value
    raise ValueError(f"invalid new {value!r}: must be {NEW_HELP}")


class NoveltyRule(_Strict):
    """Hold the first time an agent does something new: a tool, or a new value of an argument."""

    id: str = Field(pattern=_ID_PATTERN)
    description: str | None = None
    match: Match = Field(default_factory=Match)
    new: Annotated[str, PlainValidator(_new_what)] = Field(description=NEW_HELP)
    verdict: Verdict = Verdict.REQUIRE_APPROVAL
    reason: str | None = None
    mode: Mode = Field(default="enforce", description=_MODE_HELP)

    _verdict = field_validator("verdict")(_not_allow)

    @model_validator(mode="after")
    def _no_python(self) -> NoveltyRule:
        if self.match.python is not None:
            raise ValueError(
                "a novelty rule's match can't use 'python' (it is checked in the store)"
            )
        return self

    @property
    def arg_path(self) -> tuple[str, ...] | None:
        """The argument whose values are new or known (None: the tool itself)."""
        host = _NEW_HOST.fullmatch(self.new)
        if host is not None:
            return tuple(host.group(1).split("."))
        return tuple(self.new[5:].split(".")) if self.new.startswith("args.") else None

    @property
    def by_host(self) -> bool:
        return _NEW_HOST.fullmatch(self.new) is not None


class AutonomyRule(_Strict):
    """Earned autonomy: after ``after`` approvals of matching calls and no denial within
    ``within``, matching calls pass without asking until a denial, a halt, or a
    sequence or limit hit demotes the agent."""

    id: str = Field(pattern=_ID_PATTERN)
    description: str | None = None
    match: Match = Field(default_factory=Match)
    after: int = Field(ge=1, le=10_000, description="approvals of matching calls that earn it")
    within: Duration = Field(description="the window the approvals (and no denial) fall in")

    @model_validator(mode="after")
    def _no_python(self) -> AutonomyRule:
        if self.match.python is not None:
            raise ValueError("an autonomy rule's match can't use 'python'")
        return self


class PolicyDefaults(_Strict):
    """Values rules fall back to."""

    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)


class PolicyDocument(_Strict):
    """A whole policy file, version 1."""

    model_config = ConfigDict(title="gatekeeper policy")

    version: Literal[1]
    default: Verdict = Field(
        default=Verdict.REQUIRE_APPROVAL, description="verdict when no rule matches"
    )
    on_store_error: Literal["fail_closed", "allow"] = "fail_closed"
    mode: Mode = Field(
        default="enforce",
        description="shadow: every call runs; what the policy would do is recorded",
    )
    defaults: PolicyDefaults = Field(default_factory=PolicyDefaults)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    sequences: list[SequenceRule] = Field(default_factory=list)
    limits: list[LimitRule] = Field(default_factory=list)
    novelty: list[NoveltyRule] = Field(default_factory=list)
    autonomy: list[AutonomyRule] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _supported(cls, value: Any) -> Any:
        if isinstance(value, bool) or value != 1:
            raise PydanticCustomError(
                "policy_version",
                "unsupported policy version {shown}; this release reads version 1",
                {"shown": repr(value)},
            )
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyDocument:
        seen: dict[str, str] = {}
        sections: tuple[
            tuple[str, Sequence[Rule | SequenceRule | LimitRule | NoveltyRule | AutonomyRule]],
            ...,
        ] = (
            ("rules", self.rules),
            ("sequences", self.sequences),
            ("limits", self.limits),
            ("novelty", self.novelty),
            ("autonomy", self.autonomy),
        )
        for section, items in sections:
            for index, item in enumerate(items):
                where = f"{section}[{index}]"
                if item.id in seen:
                    raise PydanticCustomError(
                        "duplicate_id",
                        "duplicate id {shown}: {first} already uses it",
                        {
                            "shown": repr(item.id),
                            "first": seen[item.id],
                            "at": (section, index, "id"),
                        },
                    )
                seen[item.id] = where
        return self
