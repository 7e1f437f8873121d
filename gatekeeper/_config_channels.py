"""The ``channels:`` entries of ``gatekeeper.yaml``: console, Slack and webhook.

Each entry is validated here; building the channel itself is
:meth:`Config.build_channels <gatekeeper._config.Config.build_channels>`.
Secrets never appear in the file: Slack's tokens are read from environment
variables named here, and a webhook's ``secret`` is usually ``${VAR}``.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .policy import parse_duration

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
        min_length=16, repr=False, description="signs deliveries and verifies decisions"
    )
    accept_decisions: bool = Field(
        default=False,
        description="the console takes signed decisions from this channel (needs approvers)",
    )
    approvers: tuple[str, ...] = Field(
        default=(),
        validate_default=True,
        description="the configured approvers this channel's system may decide for; "
        "required with accept_decisions (the secret authenticates the system, not a person)",
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
