"""``gatekeeper mcp``: run the MCP gateway, accept changed tools, make agent tokens."""

from __future__ import annotations

import difflib
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from .._config import Config, load_config
from .._errors import ConfigError, GatekeeperError
from .._text import inline, pretty_json

if TYPE_CHECKING:
    from ._commands import IO

__all__ = ["accept", "serve", "token", "tools"]


def _gateway_module() -> Any:
    try:
        import gatekeeper_mcp
    except ImportError as exc:
        raise GatekeeperError(str(exc)) from None
    return gatekeeper_mcp


def _mcp_config(config_path: str | None) -> Config:
    config = load_config(config_path)
    if config.mcp is None:
        raise ConfigError(
            f"{config.source}: there is no mcp: section (its upstreams: the MCP servers to put "
            "behind the gate); see docs/mcp.md",
            source=config.source,
            field="mcp",
        )
    return config


def serve(
    config_path: str | None, *, http: bool, host: str | None, port: int | None, io: IO
) -> int:
    """Run the gateway: over stdio (this process's stdin/stdout), or over HTTP."""
    module = _gateway_module()
    import anyio

    from ..channels import ConsoleChannel

    config = _mcp_config(config_path)
    assert config.mcp is not None
    channels = config.build_channels()
    if not http and any(isinstance(c, ConsoleChannel) for c in channels):
        # Over stdio, stdin and stdout are the MCP client's: nobody could answer there.
        io.err.write(
            "warning: the console channel is left out: over stdio the terminal belongs to "
            "the MCP client\n"
        )
        channels = [c for c in channels if not isinstance(c, ConsoleChannel)]
    if config.store_url.startswith("memory://"):
        io.err.write(
            "warning: store.url is memory://: only this process sees held calls, so only "
            "mcp.elicit (asking through the MCP client) can approve them\n"
        )
    gate = config.build_gate(channels=channels)
    try:
        if config.mcp.elicit is not None and not gate.store.decision_keys.can_decide:
            # A person asked through the client whose answer could not count: refused up front.
            return io.fail(
                f"mcp.elicit names {config.mcp.elicit}, but this process holds no decision "
                "signing key, so an approval given through the MCP client could not be "
                "recorded: give the gateway decisions.signing_key (GATEKEEPER_SIGNING_KEY), "
                "or remove mcp.elicit"
            )
        if http and config.mcp.elicit is not None:
            io.err.write(
                "warning: mcp.elicit is ignored over HTTP: a remote agent's own client "
                "could answer for the person\n"
            )
        gateway = module.Gateway(
            gate, config.mcp, base_dir=config.base_dir, default_agent=config.defaults.agent
        )
        if not http:
            anyio.run(module.serve_stdio, gateway)
            return 0
        import uvicorn

        app = module.http_app(gateway)
        bind_host = host or config.mcp.http.host
        bind_port = config.mcp.http.port if port is None else port
        io.err.write(
            f"gatekeeper MCP gateway on http://{bind_host}:{bind_port}{config.mcp.http.path}\n"
        )
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning")
    finally:
        gate.close()
    return 0


def tools(config_path: str | None, *, agent: str | None, as_json: bool, io: IO) -> int:
    """The tools an agent is offered through the gateway, as it would list them."""
    module = _gateway_module()
    import anyio

    config = _mcp_config(config_path)
    assert config.mcp is not None
    gate = config.build_gate(channels=[])
    try:
        gateway = module.Gateway(
            gate, config.mcp, base_dir=config.base_dir, default_agent=config.defaults.agent
        )
        who = agent or gateway.stdio_identity.agent

        async def listing() -> Any:
            async with gateway.run_upstreams():
                try:
                    return await gateway.catalog()
                except module.PinsError as exc:  # returned: raised, the task group wraps it
                    return exc

        offers = anyio.run(listing)
        if isinstance(offers, module.PinsError):
            return io.fail(str(offers))
        down = {n: u.error for n, u in gateway.upstreams.items() if u.error}
    finally:
        gate.close()
    for name, offered in sorted(offers.items()):
        hidden = config.mcp.hide_denied and gate.policy.denies_outright(name, who, offered.upstream)
        if as_json:
            io.say(
                json.dumps(
                    {
                        "name": name,
                        "server": offered.upstream,
                        "tool": offered.original,
                        "irreversible": offered.irreversible,
                        "hidden": hidden,
                        "changed": offered.changed is not None,
                    },
                    ensure_ascii=True,
                )
            )
            continue
        notes = [
            n
            for n, on in (
                ("irreversible", offered.irreversible),
                ("hidden: denied", hidden),
                ("CHANGED: held until accepted", offered.changed is not None),
            )
            if on
        ]
        io.say(f"{inline(name, 60):<40}  {offered.upstream:<12}  {', '.join(notes)}")
    for error in sorted(down.values()):
        io.err.write(f"warning: {inline(error, 300)}\n")
    return 0


def accept(config_path: str | None, name: str, *, io: IO) -> int:
    """Pin the changed definition of tool ``name`` (as agents call it): its calls run again."""
    module = _gateway_module()
    config = _mcp_config(config_path)
    assert config.mcp is not None
    import datetime as dt
    from pathlib import Path

    pins = module.Pins(Path(config.base_dir, config.mcp.pins))
    owner = next((u for u in config.mcp.upstreams if name.startswith(u.tool_prefix)), None)
    if owner is None:
        return io.refuse(f"no upstream's tools are named like {inline(name, 200)}")
    key = f"{owner.name}/{name[len(owner.tool_prefix) :]}"
    try:
        before = pins.all().get(key, {}).get("definition") or {}
        pending = pins.accept(key, dt.datetime.now(dt.timezone.utc))
    except module.PinsError as exc:
        return io.refuse(str(exc))
    after = pending.get("definition") or {}
    description = after.get("description") or ""
    # What changed, line by line, as the upstream wrote it (made visible and bounded).
    old = pretty_json(before, limit=50_000).splitlines()
    new = pretty_json(after, limit=50_000).splitlines()
    diff = list(difflib.unified_diff(old, new, "pinned", "accepted", n=1, lineterm=""))
    for line in diff[:200]:
        io.say(inline(line, 300))
    if len(diff) > 200:
        io.say(f"... and {len(diff) - 200} more lines of difference")
    io.say(
        f"accepted the new definition of {inline(name, 200)} ({key}); its calls run again "
        "(a running gateway sees this within a second)"
    )
    io.say(f"description now: {inline(description, 300)}")
    return 0


def token(agent: str, scopes: list[str], *, io: IO) -> int:
    """A new bearer token for ``agent`` and the config entry (its sha256) that accepts it."""
    raw = "gk_mcp_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(raw.encode()).hexdigest()
    io.say(f"token (give it to the agent; it is not stored anywhere): {raw}")
    io.say("add under mcp.http.tokens:")
    entry = {"agent": agent, "token_sha256": digest}
    if scopes:
        entry["scopes"] = scopes  # type: ignore[assignment]
    io.say("  - " + json.dumps(entry, ensure_ascii=True))
    return 0
