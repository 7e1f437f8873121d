"""The ``channels:`` entries of ``gatekeeper.yaml``: console, Slack and webhook.

Each entry is validated here; building the channel itself is
:meth:`Config.build_channels <gatekeeper._config.Config.build_channels>`.
Secrets never appear in the file: Slack's tokens are read from environment
variables named here, and a webhook's ``secret`` is usually ``${VAR}``.

A webhook's decision secret is named, not written (``decision_secret_env``),
like Slack's signing secret: agents read this file and build the channels,
so the variable is read only when the deciding side asks for it
(:meth:`WebhookChannelConfig.decision_secret`), and an agent's environment
never needs it.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .policy import parse_duration

MIN_SECRET_LENGTH = 16

__all__ = [
    "ChannelConfig",
    "ConsoleChannelConfig",
    "SlackChannelConfig",
    "WebhookChannelConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleChannelConfig(_Model):
    type: Literal["console"]
    approver: str = Field(description="the approver the terminal's answers are recorded as")


class WebhookChannelConfig(_Model):
    type: Literal["webhook"]
    name: str = Field(
        default="webhook",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="names the channel; decisions it sends back are recorded via webhook:NAME",
    )
    url: str = Field(description="where requests are POSTed: an http:// or https:// URL")
    secret: str = Field(
        min_length=MIN_SECRET_LENGTH,
        repr=False,
        description="signs deliveries (agents hold it); never verifies a decision",
    )
    accept_decisions: bool = Field(
        default=False,
        description="the console takes signed decisions from this channel "
        "(needs approvers and decision_secret_env)",
    )
    approvers: tuple[str, ...] = Field(
        default=(),
        validate_default=True,
        description="the configured approvers this channel's system may decide for; "
        "required with accept_decisions (the secret authenticates the system, not a person)",
    )
    decision_secret_env: str | None = Field(
        default=None,
        validate_default=True,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="env var holding the secret decisions are signed with; read by the "
        "deciding side only (the console), never by agents. Required with accept_decisions",
    )
    console_url: str | None = Field(
        default=None, description="the console's public URL; default: web.base_url"
    )
    timeout: float = Field(default=5.0, gt=0, description="seconds per attempt")
    attempts: int = Field(default=5, ge=1, le=20)
    max_wait: float = Field(default=30.0, ge=0, description="seconds of waiting between attempts")

    @field_validator("url", "console_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timeout", "max_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def decision_secret(self) -> str:
        """The decision secret, read from ``decision_secret_env`` now (deciding side only).

        Agents never call this, so they never need the variable. ``ValueError``
        says what is wrong: not a deciding channel, the variable unset, the
        secret too short, or the delivery secret again.
        """
        name = self.decision_secret_env
        if name is None:
            raise ValueError("this webhook takes no decisions (accept_decisions is off)")
        secret = os.environ.get(name, "")
        if not secret:
            raise ValueError(
                f"environment variable {name} is not set; the console verifies this "
                "webhook's decisions with it"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the secret in {name} needs at least {MIN_SECRET_LENGTH} characters")
        if secret == self.secret:
            raise ValueError(
                f"the secret in {name} is the delivery secret; the agents hold that one, so "
                "it must differ or they could decide"
            )
        return secret

    @field_validator("decision_secret_env")
    @classmethod
    def _decisions_need_their_own_secret(
        cls, value: str | None, info: ValidationInfo
    ) -> str | None:
        deciding = info.data.get("accept_decisions")
        if deciding and value is None:
            raise ValueError(
                "accept_decisions: true needs decision_secret_env: the name of the environment "
                "variable that holds the decision secret (the deciding side's, never the "
                "agents'; the delivery secret can't verify decisions)"
            )
        if value is not None and not deciding and "accept_decisions" in info.data:
            raise ValueError("only a channel with accept_decisions: true takes decisions")
        return value

    @field_validator("approvers")
    @classmethod
    def _speaks_for_someone(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("accept_decisions") and not value:
            raise ValueError(
                "accept_decisions: true needs the approvers this webhook may decide for "
                "(at least one)"
            )
        if len(set(value)) != len(value):
            raise ValueError("an approver is listed twice")
        return value


class SlackChannelConfig(_Model):
    """A Slack app: where it posts, and how clicks come back (Socket Mode and/or HTTP)."""

    type: Literal["slack"]
    channel: str | None = Field(
        default=None, description="post every request in this channel (an id such as C0123ABCD)"
    )
    dm: bool = Field(default=False, description="instead, message each approver directly")
    bot_token_env: str = Field(default="SLACK_BOT_TOKEN", description="env var: xoxb-... token")
    app_token_env: str = Field(
        default="SLACK_APP_TOKEN", description="env var: xapp-... token; set = Socket Mode"
    )
    signing_secret_env: str = Field(
        default="SLACK_SIGNING_SECRET",
        description="env var: signing secret; set = the HTTP request URL is served",
    )
    team_id: str | None = Field(
        default=None, pattern=r"^[TE][A-Z0-9]+$", description="accept clicks from this workspace"
    )
    console_url: str | None = Field(
        default=None, description="the console's public URL; default: web.base_url"
    )
    base_url: str = Field(
        default="https://slack.com/api/", description="the Web API (a stand-in, in tests)"
    )
    usergroup_ttl: float = Field(default=300.0, gt=0, description="seconds user groups are cached")
    attempts: int = Field(default=5, ge=1, le=20, description="tries per Web API call")
    max_wait: float = Field(default=30.0, ge=0, description="seconds of waiting between tries")
    sweep_interval: float = Field(
        default=15.0, gt=0, description="seconds between expiry/reminder sweeps (serve)"
    )

    @field_validator("usergroup_ttl", "max_wait", "sweep_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[CGD][A-Z0-9]+", value):
            raise ValueError(
                "must be a channel id such as C0123ABCD, not a name (Slack shows the id at "
                "the bottom of the channel's details)"
            )
        return value

    @model_validator(mode="after")
    def _one_target(self) -> SlackChannelConfig:
        if (self.channel is None) == (not self.dm):
            raise ValueError("give either channel: C... or dm: true")
        return self

    def secret(self, which: str) -> str | None:
        """The token or secret named by ``<which>_env``, or None when the variable is unset."""
        value = os.environ.get(getattr(self, f"{which}_env"), "").strip()
        return value or None


ChannelConfig = Annotated[
    ConsoleChannelConfig | WebhookChannelConfig | SlackChannelConfig, Field(discriminator="type")
]
