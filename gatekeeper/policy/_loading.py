"""Reading a policy from YAML, TOML or a mapping, and saying precisely what is wrong.

Every failure becomes a :class:`~gatekeeper._errors.PolicyError` whose message
reads ``"{source}:{line}: rule '{id}': {field}: {problem}"`` (parts that are
not known are left out; the line is only known for YAML).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from .._errors import PolicyError
from ._schema import PolicyDocument

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["parse_toml", "parse_yaml", "validate_document"]

_RULE_SECTIONS = ("rules", "sequences", "limits")
_TOML_LINE = re.compile(r"line (\d+)")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would silently keep the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> PolicyDocument:
    """Validate YAML policy text; errors carry the line of the offending node."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"{source}:{line}" if line else source
        kind = (
            "YAML error"
            if isinstance(exc, yaml.constructor.ConstructorError)
            else "YAML syntax error"
        )
        raise PolicyError(f"{where}: {kind}: {problem}", source=source, line=line) from exc
    return validate_document(data, source, yaml_text=text)


def parse_toml(text: str, source: str) -> PolicyDocument:
    """Validate TOML policy text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        where = f"{source}:{line}" if line else source
        raise PolicyError(f"{where}: TOML syntax error: {exc}", source=source, line=line) from exc
    return validate_document(data, source)


def validate_document(data: object, source: str, *, yaml_text: str | None = None) -> PolicyDocument:
    """``data`` as a :class:`PolicyDocument`, or a :class:`PolicyError` naming the problem."""
    if data is None:
        raise PolicyError(
            f"{source}: the policy is empty; start it with 'version: 1'", source=source
        )
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"{source}: the policy must be a mapping of keys to values, "
            f"not a {type(data).__name__}",
            source=source,
        )
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise _policy_error(exc, data, source, yaml_text) from exc


def _policy_error(
    exc: ValidationError, data: Mapping[str, Any], source: str, yaml_text: str | None
) -> PolicyError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    ctx = first.get("ctx") or {}
    loc: list[str | int] = list(ctx["at"]) if "at" in ctx else list(first["loc"])
    if first["type"] == "unknown_key":
        loc.append(ctx["key"])
    loc = _real_path(data, loc)
    problem = _problem(first)

    rule: str | None = None
    inner = loc
    if len(loc) >= 2 and loc[0] in _RULE_SECTIONS and isinstance(loc[1], int):
        rule = _rule_label(data, str(loc[0]), loc[1])
        inner = loc[2:]
    field = _dotted(inner) or None
    line = _yaml_line(yaml_text, loc) if yaml_text is not None else None

    parts = [f"{source}:{line}" if line else source]
    if rule is not None:
        parts.append(f"rule '{rule}'")
    if field:
        parts.append(field)
    parts.append(problem)
    message = ": ".join(parts)
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return PolicyError(message, source=source, rule=rule, field=field, line=line)


def _problem(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return "required, but missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_type" and isinstance(error.get("input"), bool):
        message += " (YAML reads unquoted yes/no/on/off/true/false as booleans; quote it)"
    return message


def _rule_label(data: Mapping[str, Any], section: str, index: int) -> str:
    items = data.get(section)
    if isinstance(items, Sequence) and 0 <= index < len(items):
        item = items[index]
        if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]:
            return str(item["id"])
    return f"{section}[{index}]"


def _real_path(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """``loc`` without pydantic's own segments (union tags, ``[key]``) that name no data."""
    path: list[str | int] = []
    node: Any = data
    for position, segment in enumerate(loc):
        last = position == len(loc) - 1
        in_mapping = isinstance(node, Mapping) and segment in node
        in_list = (
            isinstance(node, Sequence)
            and not isinstance(node, str)
            and isinstance(segment, int)
            and 0 <= segment < len(node)
        )
        if in_mapping or in_list:
            node = node[segment]
        elif not (last and isinstance(node, Mapping)):
            continue  # a pydantic tag, not a key of the document
        path.append(segment)
    return path


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else str(segment)
    return text


def _yaml_line(text: str, loc: Sequence[str | int]) -> int | None:
    """1-based line of the node at ``loc`` (or of the nearest enclosing node)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line
    for segment in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(segment):
                    line = key_node.start_mark.line
                    node = value_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int):
            if not 0 <= segment < len(node.value):
                break
            node = node.value[segment]
            line = node.start_mark.line
        else:
            break
    return line + 1
