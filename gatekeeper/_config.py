"""``gatekeeper.yaml``: one file for the store, the approvers, the channels and the policy.

Strings may use ``${VAR}`` or ``${VAR:-default}`` to read the environment
(secrets stay out of the file); ``$${`` writes a literal ``${``. Every problem
is reported as a :class:`~gatekeeper.ConfigError` naming the file, the line
and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from ._config_alerts import AlertsConfig, AlertSlackConfig
from ._config_channels import (
    ChannelConfig,
    ConsoleChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from ._config_mcp import McpConfig
from ._errors import ConfigError, PolicyError
from .models import Approver
from .policy import Policy, parse_duration
from .policy._loading import _dotted, _problem, _real_path, _yaml_line
from .web._settings import WebSettings  # pydantic only: no web framework is imported

if TYPE_CHECKING:
    from ._gate import Gatekeeper
    from ._signing import DecisionKeys
    from .alerts import Alerter
    from .channels import Channel, WebhookChannel
    from .channels.slack import SlackAlerts, SlackChannel, SlackService
    from .store import Store

__all__ = ["Config", "find_config", "load_config", "starter_config"]

ENV_CONFIG = "GATEKEEPER_CONFIG"
ENV_REDIS_URL = "GATEKEEPER_REDIS_URL"
DEFAULT_FILE = "gatekeeper.yaml"

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_STORE_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "memory://",
)


class RetryConfig(_Model):
    """How long the store keeps trying a Redis that is down or failing over."""

    attempts: int = Field(default=5, ge=1, le=1000, description="tries of one command at most")
    within: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="seconds after which a command is not tried again (set it above your "
        "failover time: a Sentinel's down-after plus its election, a cluster's node-timeout)",
    )
    max_wait: float = Field(
        default=0.5, gt=0, le=60, description="seconds between two tries at most (backing off)"
    )

    @field_validator("within", "max_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class DurabilityConfig(_Model):
    """How many Redis replicas must hold a decision before it counts (see docs/deployment.md)."""

    replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="replicas of the agent's master that must acknowledge a decision (WAIT) "
        "before the approver is told it is durable and an approved call may run; 0 waits for "
        "none (a single node); 1 is the recommendation for a cluster or a Sentinel set-up",
    )
    timeout: float = Field(
        default=1.0,
        gt=0,
        lt=10,
        description="seconds one wait for the replicas lasts at most (below the store's 10 s "
        "socket timeout); past it the approver is "
        "told the decision is not yet durable, and an approved call waits on until it is",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class StoreConfig(_Model):
    """Where requests and the audit log live."""

    url: str = Field(
        default="memory://",
        description="redis://host:6379/0, rediss://..., unix:///path, "
        "redis+cluster://host:port[,host:port] (a Redis Cluster's seed nodes), "
        "redis+sentinel://host:port[,host:port]/SERVICE (a Sentinel-monitored primary), "
        "or memory:// (embedded)",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    durability: DurabilityConfig = Field(default_factory=DurabilityConfig)
    prefix: str = Field(default="gatekeeper", pattern=r"^[^{}\s]+$")
    audit_chains: int = Field(
        default=1,
        ge=1,
        le=64,
        description="hash chains the audit log is sealed into, each agent's events in one, "
        "each verifiable alone; on a Redis Cluster, a few per master spreads the log over "
        "them. Fixed for a deployment once used (it may go from 1 to more)",
    )
    max_connections: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Redis connections a process uses at most, for its blocking calls and for "
        "each event loop's async calls; waiting calls hold none",
    )
    lease: float = Field(
        default=60.0,
        ge=3,
        le=86400,
        description="seconds a waiting or running caller's lease lasts; renewed every third of "
        "it, so a caller gone this long leaves its request abandoned (or of unknown outcome)",
    )
    retention: float | None = Field(
        default=7 * 86400.0,
        gt=0,
        description="seconds a request's record is kept after it ends (null: for good); the "
        "audit log is the permanent record",
    )

    @field_validator("lease", "retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.startswith("memory://"):
            return url
        from .store._endpoints import parse_endpoint

        if not url.startswith(_STORE_SCHEMES):
            raise ValueError(f"must start with {', '.join(_STORE_SCHEMES[:-1])} or memory://")
        parse_endpoint(url)  # its ValueError says what is wrong
        return url


class AuditConfig(_Model):
    """Where the audit log goes once it is old: archived to files, trimmed from the store."""

    archive: str | None = Field(
        default=None,
        description="a directory (relative to this file) for archived audit events; "
        "`gatekeeper serve` and `gatekeeper audit archive` move events older than `keep` "
        "there and trim them from Redis (null: never trimmed)",
    )
    keep: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="seconds of the newest history kept in the store when archiving",
    )
    every: float = Field(
        default=3600.0,
        ge=1,
        description="seconds between archiving runs of `gatekeeper serve`",
    )
    max_events: int | None = Field(
        default=100_000,
        ge=10,
        description="the embedded store (memory://) keeps this many sealed events at most: "
        "the oldest tenth goes to `archive` when set, else is dropped (null: no bound)",
    )

    @field_validator("keep", "every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class DecisionsConfig(_Model):
    """The keys that sign and check decisions (see docs/security.md)."""

    signing_key: str | None = Field(
        default=None,
        description="path of the deciders' PEM private key; deciding processes only, "
        "never agents (relative to this file)",
    )
    trusted_keys: dict[str, str] = Field(
        default_factory=dict,
        description="key id -> base64 Ed25519 public key, for every process; several for rotation",
    )


class TelemetryConfig(_Model):
    """Traces and metrics (docs/observability.md); everything off by default."""

    traces: bool = Field(
        default=False,
        description="a span per guarded call and per decision, through the OpenTelemetry "
        "API (the `otel` extra; the SDK and exporter are the application's)",
    )
    metrics: bool = Field(
        default=False,
        description="Prometheus metrics (the `metrics` extra); `gatekeeper serve` serves "
        "them at /metrics",
    )
    trace_arguments: bool = Field(
        default=False,
        description="put the call's arguments on its span (they can be secrets)",
    )
    metrics_public: bool = Field(
        default=False,
        description="serve /metrics without a bearer token (default: an api token with scope read)",
    )
    max_label_values: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="distinct tool names, and agent names, a metric keeps; the rest "
        "are counted as `other`",
    )


class Defaults(_Model):
    timeout: float = Field(default=900.0, gt=0, description="seconds a held call waits")
    agent: str = Field(default="default", min_length=1)
    max_args_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    resume_within: float = Field(
        default=86400.0,
        gt=0,
        description="seconds after its expiry an approved call held for a resumed run "
        "(LangGraph interrupt, Agents SDK RunState, Pydantic AI deferred) may still be run",
    )

    @field_validator("timeout", "resume_within", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class Config(_Model):
    """The validated contents of a ``gatekeeper.yaml``."""

    version: Literal[1]
    store: StoreConfig = StoreConfig()
    approvers: tuple[Approver, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    defaults: Defaults = Defaults()
    decisions: DecisionsConfig | None = Field(
        default=None,
        description="signing and trusted keys (else $GATEKEEPER_SIGNING_KEY and "
        "$GATEKEEPER_TRUSTED_KEYS)",
    )
    policy: str | dict[str, Any] | None = Field(
        default=None, description="a path (relative to this file) or the policy inline"
    )
    web: WebSettings | None = Field(
        default=None, description="the web console (`gatekeeper serve`); needs secret_key"
    )
    alerts: AlertsConfig | None = Field(
        default=None,
        description="where halts, sequence hits, limits, denials, novelty and a late queue "
        "are announced (`gatekeeper serve`, `gatekeeper alerts`)",
    )
    mcp: McpConfig | None = Field(
        default=None,
        description="the MCP gateway (`gatekeeper mcp`): upstream servers, agents, limits",
    )
    audit: AuditConfig = AuditConfig()
    telemetry: TelemetryConfig = TelemetryConfig()

    # Set by load_config, not read from the file.
    source: str = Field(default="<config>", exclude=True)
    base_dir: str = Field(default=".", exclude=True)
    web_problem: str | None = Field(default=None, exclude=True)

    @property
    def store_url(self) -> str:
        """The store URL: ``$GATEKEEPER_REDIS_URL`` if set, else the file's ``store.url``."""
        return os.environ.get(ENV_REDIS_URL) or self.store.url

    def load_policy(self) -> Policy:
        if self.policy is None:
            return Policy.empty()
        if isinstance(self.policy, str):
            path = Path(self.base_dir, self.policy)
            return Policy.from_file(path)
        return Policy.from_mapping(self.policy, source=f"{self.source} (policy)")

    def build_store(self) -> Store:
        from .store import MemoryStore, RedisStore
        from .store._redis import Durability, RetryPolicy

        url = self.store_url
        if url.startswith("memory://"):
            return MemoryStore(max_events=self.audit.max_events, archive=self.audit_archive)
        from .store._endpoints import parse_endpoint

        try:
            parse_endpoint(url)
        except ValueError as exc:  # from the environment: the file's URL was checked on loading
            where = f"${ENV_REDIS_URL}" if os.environ.get(ENV_REDIS_URL) else "store.url"
            raise ConfigError(f"{where}: {exc}", source=self.source, field="store.url") from None
        return RedisStore(
            url,
            prefix=self.store.prefix,
            decision_keys=self.decision_keys(),
            max_connections=self.store.max_connections,
            lease=self.store.lease,
            retention=self.store.retention,
            retry=RetryPolicy(**self.store.retry.model_dump()),
            audit_chains=self.store.audit_chains,
            durability=Durability(**self.store.durability.model_dump()),
        )

    @property
    def audit_archive(self) -> str | None:
        """``audit.archive`` as a path (relative to this file's directory), or None."""
        if self.audit.archive is None:
            return None
        return str(Path(self.base_dir, self.audit.archive))

    def decision_keys(self) -> DecisionKeys:
        """The keys this config names, else those of the environment."""
        from ._signing import DecisionKeys

        if self.decisions is None:
            return DecisionKeys.from_env()
        path = self.decisions.signing_key
        if path is not None:
            path = str(Path(self.base_dir, path))
        return DecisionKeys.load(path, self.decisions.trusted_keys)

    def build_channels(self) -> list[Channel]:
        from .channels import ConsoleChannel

        channels: list[Channel] = []
        for spec in self.channels:
            if isinstance(spec, ConsoleChannelConfig):
                channels.append(ConsoleChannel(approver=spec.approver))
            elif isinstance(spec, WebhookChannelConfig):
                channels.append(self._webhook(spec))
            elif isinstance(spec, SlackChannelConfig):
                channels.append(self.slack_channel(spec))
        return channels

    def slack_channel(self, spec: SlackChannelConfig) -> SlackChannel:
        """The Slack channel ``spec`` describes; its bot token must be in the environment."""
        from slack_sdk import WebClient

        from .channels.slack import SlackChannel

        token = spec.secret("bot_token")
        if token is None:
            raise ConfigError(
                f"{self.source}: channels: slack: environment variable {spec.bot_token_env} "
                "(the bot token, xoxb-...) is not set",
                source=self.source,
                field="channels",
            )
        return SlackChannel(
            WebClient(token=token, base_url=spec.base_url),
            channel=spec.channel,
            dm=spec.dm,
            console_url=spec.console_url or (self.web.base_url if self.web else None),
            attempts=spec.attempts,
            max_wait=spec.max_wait,
            usergroup_ttl=spec.usergroup_ttl,
        )

    def slack_service(self, gate: Gatekeeper) -> SlackService | None:
        """What ``gatekeeper serve`` runs for the config's Slack channel (None without one)."""
        from .channels.slack import SlackService

        spec = next((c for c in self.channels if isinstance(c, SlackChannelConfig)), None)
        if spec is None:
            return None
        channel = self.slack_channel(spec)
        channel.bind(gate)
        signing_secret, app_token = spec.secret("signing_secret"), spec.secret("app_token")
        if signing_secret is None and app_token is None:
            raise ConfigError(
                f"{self.source}: channels: slack: set {spec.app_token_env} (Socket Mode) or "
                f"{spec.signing_secret_env} (HTTP request URL) so clicks can reach gatekeeper",
                source=self.source,
                field="channels",
            )
        return SlackService(
            gate,
            channel,
            signing_secret=signing_secret,
            app_token=app_token,
            team_id=spec.team_id,
            sweep_interval=spec.sweep_interval,
        )

    def _webhook(
        self, spec: WebhookChannelConfig, decision_secret: str | None = None
    ) -> WebhookChannel:
        from .channels import WebhookChannel

        console_url = spec.console_url or (self.web.base_url if self.web else None)
        return WebhookChannel(
            spec.url,
            secret=spec.secret,
            decision_secret=decision_secret,
            name=spec.name,
            timeout=spec.timeout,
            attempts=spec.attempts,
            max_wait=spec.max_wait,
            console_url=console_url,
            accept_decisions=spec.accept_decisions,
            approvers=spec.approvers,
        )

    def webhook_channels(self) -> list[WebhookChannel]:
        """The webhook channels, for the console to verify decisions (``create_app(webhooks=)``).

        Deciding side only: a channel that accepts decisions gets its decision
        secret from the variable ``decision_secret_env`` names, which must be
        set, at least 16 characters, and not the delivery secret.
        (:meth:`build_channels`, the agents' way, never reads it.)
        """
        hooks: list[WebhookChannel] = []
        for i, spec in enumerate(self.channels):
            if not isinstance(spec, WebhookChannelConfig):
                continue
            secret = None
            if spec.accept_decisions:
                try:
                    secret = spec.decision_secret()
                except ValueError as exc:
                    field = f"channels[{i}].decision_secret_env"
                    raise ConfigError(
                        f"{self.source}: {field}: {exc}", source=self.source, field=field
                    ) from None
            hooks.append(self._webhook(spec, secret))
        return hooks

    def alerter(self, gate: Gatekeeper) -> Alerter | None:
        """The :class:`~gatekeeper.alerts.Alerter` of the ``alerts:`` section (None without one).

        Reads the Slack bot token and the webhooks' secrets from the environment
        now; one that is unset or too short is a :class:`ConfigError` naming it.
        """
        spec = self.alerts
        if spec is None:
            return None
        from .alerts import Alerter, AlertTarget, WebhookAlerts

        targets: list[AlertTarget] = []
        if spec.slack is not None:
            targets.append(self._slack_alerts(spec.slack, spec))
        for i, hook in enumerate(spec.webhooks):
            field = f"alerts.webhooks[{i}].secret_env"
            secret = os.environ.get(hook.secret_env, "")
            problem = (
                f"environment variable {hook.secret_env} (the secret alerts are signed with) "
                "is not set"
                if not secret
                else f"the secret in {hook.secret_env} needs at least 16 characters"
                if len(secret) < 16
                else None
            )
            if problem is not None:
                raise ConfigError(
                    f"{self.source}: {field}: {problem}", source=self.source, field=field
                )
            targets.append(
                WebhookAlerts(
                    hook.url,
                    secret=secret,
                    name=hook.name,
                    timeout=hook.timeout,
                    attempts=spec.attempts,
                    max_wait=spec.max_wait,
                )
            )
        return Alerter(
            gate.store,
            targets,
            console_url=spec.console_url or (self.web.base_url if self.web else None),
            kinds=spec.kinds,
            deny_risk=spec.deny_risk,
            queue_age=spec.queue_age,
            window=spec.window,
            most=spec.most,
            every=spec.every,
            clock=gate.clock,
        )

    def _slack_alerts(self, slack: AlertSlackConfig, spec: AlertsConfig) -> SlackAlerts:
        from slack_sdk import WebClient

        from .channels.slack import SlackAlerts

        channel = next((c for c in self.channels if isinstance(c, SlackChannelConfig)), None)
        env = slack.bot_token_env or (channel.bot_token_env if channel else "SLACK_BOT_TOKEN")
        base_url = slack.base_url or (channel.base_url if channel else None)
        token = os.environ.get(env, "").strip()
        if not token:
            field = "alerts.slack.bot_token_env"
            raise ConfigError(
                f"{self.source}: {field}: environment variable {env} (the bot token, xoxb-...) "
                "is not set",
                source=self.source,
                field=field,
            )
        client = WebClient(token=token, base_url=base_url) if base_url else WebClient(token=token)
        return SlackAlerts(client, slack.channel, attempts=spec.attempts, max_wait=spec.max_wait)

    def build_gate(self, **overrides: Any) -> Gatekeeper:
        """A :class:`~gatekeeper.Gatekeeper` as this file describes it."""
        from ._gate import Gatekeeper

        options: dict[str, Any] = {
            "policy": self.load_policy(),
            "approvers": self.approvers,
            "default_agent": self.defaults.agent,
            "default_timeout": self.defaults.timeout,
            "max_args_bytes": self.defaults.max_args_bytes,
            "resume_within": self.defaults.resume_within,
        }
        t = self.telemetry
        if t.traces or t.metrics:
            from ._telemetry import Telemetry

            options["telemetry"] = Telemetry(
                traces=t.traces,
                metrics=t.metrics,
                trace_arguments=t.trace_arguments,
                metrics_public=t.metrics_public,
                max_label_values=t.max_label_values,
            )
        options.update(overrides)
        if "store" not in options:
            options["store"] = self.build_store()
        if "channels" not in options:
            options["channels"] = self.build_channels()
        return Gatekeeper(**options)

    def check(self, policy: Policy) -> None:
        """Cross-checks between the approvers, the channels and the policy."""
        names: set[str] = set()
        for i, approver in enumerate(self.approvers):
            if approver.name in names:
                raise ConfigError(
                    f"{self.source}: approvers[{i}].name: {approver.name!r} is listed twice",
                    source=self.source,
                    field=f"approvers[{i}].name",
                )
            names.add(approver.name)
        hooks: set[str] = set()
        for i, channel in enumerate(self.channels):
            decides_as = getattr(channel, "approver", None)  # channels that decide as one
            if decides_as is not None and decides_as not in names:
                raise ConfigError(
                    f"{self.source}: channels[{i}].approver: {decides_as!r} is not "
                    "one of the approvers",
                    source=self.source,
                    field=f"channels[{i}].approver",
                )
            if isinstance(channel, WebhookChannelConfig):
                if channel.name in hooks:
                    raise ConfigError(
                        f"{self.source}: channels[{i}].name: webhook {channel.name!r} is "
                        "listed twice",
                        source=self.source,
                        field=f"channels[{i}].name",
                    )
                hooks.add(channel.name)
                for j, name in enumerate(channel.approvers):
                    if name not in names:
                        raise ConfigError(
                            f"{self.source}: channels[{i}].approvers[{j}]: {name!r} is not "
                            "one of the approvers",
                            source=self.source,
                            field=f"channels[{i}].approvers[{j}]",
                        )
        if self.mcp is not None and self.mcp.elicit is not None and self.mcp.elicit not in names:
            raise ConfigError(
                f"{self.source}: mcp.elicit: {self.mcp.elicit!r} is not one of the approvers",
                source=self.source,
                field="mcp.elicit",
            )
        members: dict[str | None, int] = {None: len(names)}
        for approver in self.approvers:
            for group in approver.groups:
                members[group] = members.get(group, 0) + 1
        needs = [("defaults.approval", policy.document.defaults.approval)] + [
            (f"rule '{r.id}'", r.approval) for r in policy.rules if r.approval is not None
        ]
        for where, spec in needs:
            if spec is None or (spec.group is None and not self.approvers):
                continue
            have = members.get(spec.group, 0)
            if have < spec.quorum:
                who = f"group {spec.group!r}" if spec.group else "the approvers"
                raise ConfigError(
                    f"{self.source}: policy {where} needs {spec.quorum} approver(s) from "
                    f"{who}, but the config lists {have}",
                    source=self.source,
                    field="approvers",
                )


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``path``, else ``$GATEKEEPER_CONFIG``, else ./gatekeeper.yaml."""
    chosen = path or os.environ.get(ENV_CONFIG) or DEFAULT_FILE
    return Path(chosen)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, interpolate and validate a config file; the policy is loaded and cross-checked."""
    file = find_config(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        hint = " (run `gatekeeper init` to write one)" if not file.exists() else ""
        raise ConfigError(
            f"{source}: can't read the config: {exc.strerror}{hint}", source=source
        ) from None
    return parse_config(text, source=source, base_dir=str(file.parent))


def parse_config(text: str, *, source: str = "<config>", base_dir: str = ".") -> Config:
    """Validate config ``text`` (YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: YAML syntax error: {exc}", source=source) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the config must be a mapping, starting with 'version: 1'", source=source
        )
    data = dict(data)
    web = data.pop("web", None)
    data = _interpolate(data, source, [])
    web_problem: str | None = None
    if web is not None:
        # The console's secrets (${GATEKEEPER_WEB_SECRET}) are needed only by
        # the commands that serve it; every other command works without them.
        try:
            data["web"] = _interpolate(web, source, ["web"])
        except ConfigError as exc:
            web_problem = str(exc)
    try:
        config = Config.model_validate(
            {**data, "source": source, "base_dir": base_dir, "web_problem": web_problem}
        )
    except ValidationError as exc:
        raise _config_error(exc, data, source, text) from None
    try:
        policy = config.load_policy()
    except PolicyError as exc:
        raise ConfigError(f"{source}: policy: {exc}", source=source, field="policy") from exc
    config.check(policy)
    return config


def _interpolate(value: Any, source: str, path: list[str | int]) -> Any:
    if isinstance(value, str):
        return _substitute(value, source, path)
    if isinstance(value, Mapping):
        return {k: _interpolate(v, source, [*path, k]) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, source, [*path, i]) for i, v in enumerate(value)]
    return value


def _substitute(text: str, source: str, path: list[str | int]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is not None:
                return default
            field = _dotted(path)
            raise ConfigError(
                f"{source}: {field}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)",
                source=source,
                field=field,
            )
        return value

    return _VAR.sub(replace, text)


def _config_error(
    exc: ValidationError, data: Mapping[str, Any], source: str, text: str
) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = _real_path(data, list(first["loc"]))
    if first["type"] == "extra_forbidden" and loc and loc[-1] != first["loc"][-1]:
        loc.append(first["loc"][-1])
    field = _dotted(loc) or None
    line = _yaml_line(text, loc)
    where = f"{source}:{line}" if line else source
    message = f"{where}: {field}: {_problem(first)}" if field else f"{where}: {_problem(first)}"
    if first["type"] == "extra_forbidden":
        message = f"{where}: {field}: unknown key"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ConfigError(message, source=source, field=field)


def starter_config(*, store_url: str = "memory://", docs: str = "docs") -> str:
    """The commented ``gatekeeper.yaml`` that ``gatekeeper init`` writes.

    ``store_url`` is the store used when ``$GATEKEEPER_REDIS_URL`` is unset;
    ``docs`` is where the comments send the reader (a URL, or the docs folder).
    """
    template = (resources.files("gatekeeper") / "templates" / "gatekeeper.yaml").read_text("utf-8")
    return template.replace("@STORE_URL@", store_url).replace("@DOCS@", docs)
