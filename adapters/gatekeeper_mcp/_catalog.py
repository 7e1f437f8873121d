"""The tools the gateway offers: upstream tools under their prefixed names, their hints, their pins.

Each upstream tool is offered to agents as ``prefix + name``. Prefixes of
different upstreams never start one another (the config refuses that), so an
offered name belongs to exactly one upstream, whatever names an upstream
advertises: a git server that advertises ``time__now`` offers
``git__time__now``, still a git tool to the policy (``server: git``).

A tool's *definition* (title, description, input and output schema,
annotations) is pinned the first time the gateway sees it, in a JSON file.
When an upstream later advertises a different definition (how tool poisoning
is done: a description that tells the model what to do), the gateway keeps
offering the pinned one and holds every call of the tool for a person until
an operator accepts the new one (``gatekeeper mcp accept NAME``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import types

from gatekeeper._canonical import digest
from gatekeeper._config_mcp import McpUpstream
from gatekeeper.models import Risk

__all__ = ["CHANGED_RULE", "Offered", "Pins", "definition", "offer"]

#: The rule id a held call of a changed tool carries.
CHANGED_RULE = "mcp-tool-changed"
#: What MCP allows as a tool name (SEP-986).
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # fullmatch: no "\n" at the end


def definition(tool: types.Tool) -> dict[str, Any]:
    """The parts of a tool a model reads or a call depends on, as JSON."""
    return {
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": (
            tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations is not None
            else None
        ),
    }


@dataclass(frozen=True)
class Offered:
    """One upstream tool as the gateway offers it."""

    name: str  # as the agent sees and calls it
    upstream: str  # the upstream's configured name (the policy's `server:`)
    original: str  # the upstream's own name for it
    defn: dict[str, Any]  # the definition offered (the pinned one while a change waits)
    irreversible: bool
    risk: Risk | None
    changed: str | None = None  # why a person must look at each call, when it changed

    @functools.cached_property
    def validator(self) -> Any:
        """A checked validator of the input schema; None when there is none to check against.

        An input schema that is not valid JSON Schema can't be checked here: the
        upstream checks its own input then.
        """
        import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

        schema = self.defn.get("input_schema")
        if not isinstance(schema, dict):
            return None
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except Exception:  # a SchemaError, or a schema that breaks the checker itself
            return None
        return jsonschema.Draft202012Validator(schema)

    @property
    def pin_key(self) -> str:
        return f"{self.upstream}/{self.original}"

    def as_tool(self) -> types.Tool:
        """The ``Tool`` advertised to agents."""
        d = self.defn
        annotations = d.get("annotations")
        return types.Tool(
            name=self.name,
            title=d.get("title"),
            description=d.get("description"),
            input_schema=d.get("input_schema") or {"type": "object"},
            output_schema=d.get("output_schema"),
            annotations=types.ToolAnnotations.model_validate(annotations) if annotations else None,
        )


def hints(defn: dict[str, Any], trusted: bool) -> tuple[bool, Risk | None]:
    """(irreversible, declared risk) from a definition's MCP annotations.

    MCP's defaults apply to hints left out: a tool is not read-only, is
    destructive and reaches an open world unless it says otherwise. So a
    tool that says nothing counts as irreversible (a person approves it
    unless a policy rule says ``allow_irreversible: true``); one that says
    ``readOnlyHint: true`` or ``destructiveHint: false`` does not. Hints only
    ever add to what the policy decides: ``hints: false`` on the upstream
    ignores them.
    """
    if not trusted:
        return False, None
    notes = defn.get("annotations") or {}
    read_only = notes.get("readOnlyHint") is True
    destructive = notes.get("destructiveHint") is not False
    open_world = notes.get("openWorldHint") is not False
    irreversible = not read_only and destructive
    risk = Risk.MEDIUM if open_world and not read_only else None
    return irreversible, risk


def offer(upstream: McpUpstream, tool: types.Tool) -> Offered | str:
    """The tool as offered, or why it can't be (a name MCP would not accept)."""
    name = upstream.tool_prefix + tool.name
    if not _TOOL_NAME.fullmatch(name):
        shown = json.dumps(tool.name[:80])
        return (
            f"upstream {upstream.name} advertises a tool named {shown}, which as {upstream.name}'s "
            "tool would not be a valid MCP tool name (1-128 letters, digits, '_', '-', '.'); "
            "it is not offered"
        )
    defn = definition(tool)
    irreversible, risk = hints(defn, upstream.hints)
    return Offered(name, upstream.name, tool.name, defn, irreversible, risk)


class Pins:
    """Each tool's first-seen definition, kept in a JSON file (like SSH's known_hosts).

    ``{"version": 1, "tools": {"git/git_commit": {"fingerprint", "since",
    "definition", "pending": {...} | absent}}}``. Written atomically (a
    temporary file renamed over it); several gateways sharing one file keep
    whichever wrote last, which only ever pins a definition one of them saw.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes when the file is written (inode, size, mtime); None when absent."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "tools": {}}
        except (OSError, ValueError) as exc:
            raise PinsError(f"can't read the MCP tool pins {self.path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tools"), dict):
            raise PinsError(f"{self.path} is not a gatekeeper MCP pins file")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        try:
            self._replace(data)
        except OSError as exc:
            raise PinsError(f"can't write the MCP tool pins {self.path}: {exc}") from exc

    def _replace(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True, ensure_ascii=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def check(self, offered: Offered, now: dt.datetime) -> Offered:
        """``offered`` as it may be offered: pinned when new; the pinned definition, and
        the reason a person must look, when the upstream's has changed since."""
        print_ = digest(offered.defn)
        with self._lock:
            data = self._read()
            pin = data["tools"].get(offered.pin_key)
            if pin is None:
                data["tools"][offered.pin_key] = {
                    "fingerprint": print_,
                    "since": now.isoformat(),
                    "definition": offered.defn,
                }
                self._write(data)
                return offered
            if pin.get("fingerprint") == print_:
                if "pending" in pin:  # changed back: nothing waits any more
                    del pin["pending"]
                    self._write(data)
                return offered
            pending = pin.get("pending")
            if not isinstance(pending, dict) or pending.get("fingerprint") != print_:
                pin["pending"] = {
                    "fingerprint": print_,
                    "since": now.isoformat(),
                    "definition": offered.defn,
                }
                self._write(data)
        since = str(pin.get("since", "?"))[:10]
        what = [
            part
            for part in ("description", "input_schema", "output_schema", "annotations", "title")
            if (pin.get("definition") or {}).get(part) != offered.defn.get(part)
        ]
        reason = (
            f"upstream {offered.upstream} changed the {', '.join(what) or 'definition'} of tool "
            f"{offered.original} since it was first seen ({since}); a changed description is how "
            "tool poisoning is done, so every call waits for a person until an operator accepts "
            f"the new definition (gatekeeper mcp accept {offered.name})"
        )
        pinned = pin.get("definition") if isinstance(pin.get("definition"), dict) else {}
        return Offered(
            offered.name,
            offered.upstream,
            offered.original,
            pinned,
            offered.irreversible,
            offered.risk,
            changed=reason,
        )

    def pending(self) -> dict[str, dict[str, Any]]:
        """The changed definitions waiting to be accepted, by pin key."""
        with self._lock:
            tools = self._read()["tools"]
        return {k: v["pending"] for k, v in tools.items() if isinstance(v.get("pending"), dict)}

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._read()["tools"])

    def accept(self, key: str, now: dt.datetime) -> dict[str, Any]:
        """Make the pending definition of ``key`` (``upstream/tool``) the pinned one."""
        with self._lock:
            data = self._read()
            pin = data["tools"].get(key)
            if pin is None:
                raise PinsError(f"no tool {key} has been seen")
            pending = pin.get("pending")
            if not isinstance(pending, dict):
                raise PinsError(f"tool {key} has not changed since it was pinned")
            data["tools"][key] = {
                "fingerprint": pending["fingerprint"],
                "since": now.isoformat(),
                "definition": pending["definition"],
            }
            self._write(data)
            return pending


class PinsError(Exception):
    """The pins file can't be read or the change asked for can't be made."""
