"""``WebSettings``: the ``web:`` section of ``gatekeeper.yaml``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..policy import parse_duration

__all__ = ["ApiToken", "Scope", "WebSettings"]

Scope = Literal["read", "decide", "admin"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiToken(_Model):
    """A bearer token for automation. Only its sha256 is configured, never the token."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@+-]+$")
    token_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the token (sha256sum <<< TOKEN)"
    )
    scopes: tuple[Scope, ...] = ("read",)
    approver: str | None = Field(
        default=None,
        description="decisions made with this token are recorded as this approver",
    )
    agent: str | None = Field(
        default=None,
        description="the agent this token belongs to, if it is an agent's own "
        "automation: it may never decide that agent's requests",
    )

    @field_validator("token_sha256", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _decide_needs_approver(self) -> ApiToken:
        if "decide" in self.scopes and not self.approver:
            raise ValueError(f"token {self.name!r} has scope 'decide' but names no approver")
        return self


class WebSettings(_Model):
    """How the web console signs cookies, where it lives, and who may call its API.

    Durations accept seconds or strings such as ``"12h"`` / ``"5m"``.
    """

    secret_key: str = Field(
        min_length=32, repr=False, description="signs cookies, sign-in links and CSRF tokens"
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="the console's public URL (sign-in links point here)",
    )
    session_ttl: float = Field(default=12 * 3600.0, gt=0, description="seconds a sign-in lasts")
    secure_cookies: bool | None = Field(
        default=None, description="mark cookies Secure; default: when base_url is https"
    )
    login_attempts: int = Field(
        default=5, ge=1, description="sign-in attempts per name and client address per window"
    )
    login_attempts_per_address: int = Field(
        default=20, ge=1, description="sign-in attempts per client address per window, any names"
    )
    login_window: float = Field(default=300.0, gt=0, description="seconds")
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="addresses or networks (10.0.0.0/8) of reverse proxies whose "
        "X-Forwarded-For names the client; empty: the header is ignored",
    )
    api_tokens: tuple[ApiToken, ...] = ()

    @field_validator("session_ttl", "login_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {exc}") from None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique_tokens(self) -> WebSettings:
        seen: set[str] = set()
        for token in self.api_tokens:
            if token.name in seen:
                raise ValueError(f"api token {token.name!r} is listed twice")
            seen.add(token.name)
        return self

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` as networks."""
        return tuple(ipaddress.ip_network(v) for v in self.trusted_proxies)

    @property
    def cookies_secure(self) -> bool:
        """Whether cookies carry ``Secure``."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.base_url.startswith("https://")
