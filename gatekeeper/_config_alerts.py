"""The ``alerts:`` section of ``gatekeeper.yaml``: where alerts go and how often.

Validated here; :meth:`Config.alerter <gatekeeper._config.Config.alerter>`
builds the :class:`~gatekeeper.alerts.Alerter`. Secrets are named, never
written: the Slack bot token and each webhook's signing secret are read from
the environment variables named here, by the process that sends alerts
(``gatekeeper serve``, ``gatekeeper alerts``) and only then, so an agent
reading the same file never needs them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .alerts import KINDS, AlertKind
from .models import Risk
from .policy import parse_duration

__all__ = ["AlertSlackConfig", "AlertWebhookConfig", "AlertsConfig"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
        raise ValueError("must be an http:// or https:// URL")
    return value


class AlertSlackConfig(_Model):
    """A Slack channel for alerts, posted with a bot token from the environment."""

    channel: str = Field(description="the channel's id, such as C0123ABCD")
    bot_token_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="env var holding the bot token (xoxb-...); default: the slack "
        "channel's bot_token_env, else SLACK_BOT_TOKEN",
    )
    base_url: str | None = Field(
        default=None,
        description="the Web API; default: the slack channel's base_url, else Slack's",
    )

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not re.fullmatch(r"[CG][A-Z0-9]+", value):
            raise ValueError(
                "must be a channel id such as C0123ABCD, not a name (Slack shows the id at "
                "the bottom of the channel's details)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)


class AlertWebhookConfig(_Model):
    """An HTTP endpoint that receives each alert as signed JSON."""

    url: str = Field(description="where alerts are POSTed: an http:// or https:// URL")
    secret_env: str = Field(
        pattern=_ENV_NAME,
        description="env var holding the secret alerts are signed with (16 characters "
        "or more); read by the process sending alerts only",
    )
    name: str = Field(
        default="alerts",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="names the webhook in logs and in X-Gatekeeper-Delivery",
    )
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per attempt")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _http_url(value)
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class AlertsConfig(_Model):
    """Where alerts go (Slack, webhooks or both), which, and how often at most."""

    slack: AlertSlackConfig | None = None
    webhooks: tuple[AlertWebhookConfig, ...] = ()
    console_url: str | None = Field(
        default=None, description="the console's public URL for links; default: web.base_url"
    )
    kinds: tuple[AlertKind, ...] = Field(
        default=KINDS, min_length=1, description="the kinds of alert to send (default: all)"
    )
    deny_risk: Risk = Field(
        default=Risk.HIGH, description="a denied call alerts from this risk up (default: high)"
    )
    queue_age: float | None = Field(
        default=600.0,
        gt=0,
        description="alert when the oldest pending request has waited this long; null: never",
    )
    window: float = Field(
        default=600.0,
        ge=1,
        le=86400,
        description="at most one alert per kind, agent and rule per window; the rest "
        "are counted and summed up",
    )
    most: int = Field(default=30, ge=1, le=1000, description="alerts per window in all, at most")
    every: float = Field(
        default=1.0, gt=0, le=60, description="seconds between two reads of the log"
    )
    attempts: int = Field(default=3, ge=1, le=20, description="tries per alert and target")
    max_wait: float = Field(
        default=10.0, ge=0, le=300, description="seconds of waiting between tries, in all"
    )

    @field_validator("console_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("queue_age", "window", "every", "max_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("kinds")
    @classmethod
    def _once_each(cls, value: tuple[AlertKind, ...]) -> tuple[AlertKind, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a kind of alert is listed twice")
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> AlertsConfig:
        if self.slack is None and not self.webhooks:
            raise ValueError("say where alerts go: slack, webhooks, or both")
        names = [w.name for w in self.webhooks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(
                    f"webhook name {name!r} is used twice; give each alerts webhook its own name"
                )
        return self
