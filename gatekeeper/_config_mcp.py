"""The ``mcp:`` section of ``gatekeeper.yaml``: what ``gatekeeper mcp`` proxies, and for whom.

Pure configuration (pydantic, no MCP import): the gateway itself lives in the
``gatekeeper_mcp`` package (the ``mcp`` extra). See docs/mcp.md.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .policy._duration import parse_duration

__all__ = ["McpAgentToken", "McpConfig", "McpHttp", "McpUpstream"]

_NAME = r"^[A-Za-z0-9_-]{1,40}$"
# What MCP allows in a tool name (SEP-986): the prefix must keep names valid.
_TOOL_CHARS = re.compile(r"^[A-Za-z0-9_.-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


class McpUpstream(_Model):
    """One MCP server behind the gateway: a command it starts (stdio) or a URL it reaches."""

    name: str = Field(
        pattern=_NAME, description="what the policy's `server:` matches, and the default prefix"
    )
    command: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="start it over stdio: the program and its arguments",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment of the command (its secrets: the agent never sees them); "
        "added to the MCP SDK's minimal environment (HOME, LOGNAME, PATH, SHELL, TERM, USER), "
        "not the gateway's own",
    )
    cwd: str | None = Field(default=None, description="working directory of the command")
    url: str | None = Field(
        default=None, description="reach it over streamable HTTP at this URL instead"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for `url` (e.g. its Authorization)"
    )
    prefix: str | None = Field(
        default=None,
        description="put before each of its tools' names (default: NAME__); may be empty "
        "only when it is the only upstream",
    )
    hints: bool = Field(
        default=True,
        description="let its tools' MCP annotations mark them irreversible (destructiveHint) "
        "or riskier (openWorldHint); never lowers what the policy says",
    )
    call_timeout: float = Field(
        default=300.0, gt=0, description="how long one released call may run upstream"
    )
    connect_timeout: float = Field(default=30.0, gt=0, description="to start and initialise it")

    _durations = field_validator("call_timeout", "connect_timeout", mode="before")(_seconds)

    @model_validator(mode="after")
    def _one_transport(self) -> McpUpstream:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"upstream {self.name}: give exactly one of command or url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"upstream {self.name}: url must be http:// or https://")
        if self.url is None and self.headers:
            raise ValueError(f"upstream {self.name}: headers go with url, not command")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError(f"upstream {self.name}: env and cwd go with command, not url")
        if self.prefix is not None and not _TOOL_CHARS.match(self.prefix):
            raise ValueError(
                f"upstream {self.name}: prefix {self.prefix!r} may hold only letters, "
                "digits, '_', '-' and '.' (what MCP allows in a tool name)"
            )
        return self

    @property
    def tool_prefix(self) -> str:
        return f"{self.name}__" if self.prefix is None else self.prefix


class McpAgentToken(_Model):
    """An agent's bearer token for the HTTP side. Only its sha256 is configured."""

    agent: str = Field(min_length=1, max_length=200, description="the agent it authenticates")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the token")
    scopes: tuple[str, ...] = Field(
        default=(), description="scopes granted to its calls (with the policy's agents: entry)"
    )

    @field_validator("token_sha256", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class McpHttp(_Model):
    """Serving agents over streamable HTTP."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    path: str = Field(default="/mcp", pattern=r"^/[A-Za-z0-9/_-]*$")
    tokens: tuple[McpAgentToken, ...] = Field(
        default=(), description="one per agent; a request without a known token is refused"
    )


class McpConfig(_Model):
    """What ``gatekeeper mcp`` serves: upstreams, the stdio agent, the HTTP side, limits."""

    upstreams: tuple[McpUpstream, ...] = Field(min_length=1)
    agent: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="over stdio: the agent's name (default: defaults.agent)",
    )
    scopes: tuple[str, ...] = Field(default=(), description="over stdio: the agent's scopes")
    http: McpHttp = McpHttp()
    hide_denied: bool = Field(
        default=True,
        description="leave out of tools/list the tools the policy denies this agent outright",
    )
    max_result_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="a result larger than this (as JSON) is not passed back; the model is told so",
    )
    audit_excerpt: int = Field(
        default=500, ge=0, le=10_000, description="characters of each result kept in the audit"
    )
    progress_every: float = Field(
        default=10.0, gt=0, le=300, description="seconds between progress notices while held"
    )
    pins: str = Field(
        default="mcp-pins.json",
        description="where each tool's first-seen description and schema are kept "
        "(relative to the config file)",
    )
    elicit: str | None = Field(
        default=None,
        description="an approver who may also be asked through the agent's own MCP client "
        "(elicitation), where it supports it; None: never",
    )

    _durations = field_validator("progress_every", mode="before")(_seconds)

    @model_validator(mode="after")
    def _distinct(self) -> McpConfig:
        names = [u.name for u in self.upstreams]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"upstream names must differ: {', '.join(dup)}")
        prefixes = [(u.tool_prefix, u.name) for u in self.upstreams]
        for i, (p, a) in enumerate(prefixes):
            for q, b in prefixes[i + 1 :]:
                # A prefix that starts another's would let one upstream's tool take a
                # name that looks like the other's: 'a_' + 'b_x' == 'a_b_' + 'x'.
                if p.startswith(q) or q.startswith(p):
                    raise ValueError(
                        f"the tool prefixes of upstreams {a} ({p!r}) and {b} ({q!r}) overlap: "
                        "one starts with the other, so their tools' names could collide"
                    )
        tokens = [t.token_sha256 for t in self.http.tokens]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two mcp.http.tokens have the same token_sha256")
        return self
