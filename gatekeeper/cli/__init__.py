"""The ``gatekeeper`` command: decide, halt, audit and check policies from a terminal.

Every command reads the same config file as the agents (``--config``, else
``$GATEKEEPER_CONFIG``, else ./gatekeeper.yaml); the store URL may come from
``$GATEKEEPER_REDIS_URL``. Agent-controlled text is made visible before it is
printed (see :mod:`gatekeeper._text`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._errors import ConfigError, GatekeeperError, NotAuthorized
from .._version import __version__
from . import _alerting as alerting
from . import _commands as cmd
from . import _logging as logs
from . import _mcp as mcp_cli
from . import _trust as trust

__all__ = ["main"]


_CONFIG_HELP = "config file (default: $GATEKEEPER_CONFIG or ./gatekeeper.yaml)"


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """``--config`` and ``--version``, which go before or after the command.

    After it they default to ``SUPPRESS``, so a subcommand that was not given
    ``--config`` leaves the value given before it (or None) alone.
    """
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    options.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS if suppress else None,
        help=_CONFIG_HELP,
    )
    options.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=argparse.SUPPRESS if suppress else None,
        help="log records on stderr as text or JSON lines (default: $GATEKEEPER_LOG_FORMAT "
        "or text)",
    )
    options.add_argument(
        "--log-level",
        choices=logs.LEVELS,
        default=argparse.SUPPRESS if suppress else None,
        help="least level of gatekeeper's log records (default: $GATEKEEPER_LOG_LEVEL, else "
        "info for serve, mcp serve and alerts (not --once), warning for the others)",
    )
    return options


def _no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (there is none unless stderr is a terminal; "
        "$NO_PROGRESS or TERM=dumb turn it off too)",
    )


class _Commands:
    """Adds subcommands that all accept the global options after their name too."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, metavar: str) -> None:
        self._sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
        self._globals = _global_options(suppress=True)

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self._sub.add_parser(name, parents=[self._globals], **kwargs)

    def group(self, name: str, dest: str, **kwargs: Any) -> _Commands:
        return _Commands(self.add_parser(name, **kwargs), dest, "SUBCOMMAND")


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one declaration per option
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="A person between an AI agent and the tool calls that matter.",
        parents=[_global_options(suppress=False)],
    )
    sub = _Commands(parser, "command", "COMMAND")

    p = sub.add_parser("init", help="write a commented starter gatekeeper.yaml")
    p.add_argument("path", nargs="?", default="gatekeeper.yaml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = sub.add_parser("pending", help="list requests waiting for a decision")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--all",
        action="store_true",
        help="also approved and running ones, and those whose caller is gone "
        "(abandoned, outcome unknown), with what to do",
    )

    p = sub.add_parser("limits", help="current usage of the policy's limits, per agent")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("grants", help="standing approvals and earned autonomy in force")
    p.add_argument("--agent", help="only this agent")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("revoke", help="revoke a standing approval (or autonomy) at once")
    p.add_argument("grant", help="the grant's id, as `gatekeeper grants` shows it")
    p.add_argument(
        "--as",
        dest="approver",
        default=os.environ.get("GATEKEEPER_APPROVER"),
        help="your approver name from the config (default: $GATEKEEPER_APPROVER)",
    )
    p.add_argument("--comment", "-m", help="why, for the audit log")

    p = sub.add_parser("known", help="what each agent has done that a novelty rule watches")
    p.add_argument("--agent", help="only this agent")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("forget", help="make a known value new again (its next call asks)")
    p.add_argument("rule", help="the novelty rule's id")
    p.add_argument("value", help="the ID `gatekeeper known` shows (or its start), or the value")
    p.add_argument("--agent", required=True, help="whose known value")
    p.add_argument(
        "--as",
        dest="approver",
        default=os.environ.get("GATEKEEPER_APPROVER"),
        help="your approver name from the config (default: $GATEKEEPER_APPROVER)",
    )

    sub.add_parser(
        "sweep",
        help="mark requests whose caller is gone as abandoned or of unknown outcome (once)",
    )

    p = sub.add_parser(
        "alerts", help="send the config's alerts without the console (serve sends them too)"
    )
    p.add_argument(
        "--once", action="store_true", help="send what is new (one window back) and exit"
    )

    p = sub.add_parser(
        "resolve", help="record whether a request of unknown outcome ran (after checking)"
    )
    p.add_argument("id", help="request id, or enough of its start to name one request")
    ran = p.add_mutually_exclusive_group(required=True)
    ran.add_argument("--ran", dest="ran", action="store_true", help="the tool did run")
    ran.add_argument("--not-run", dest="ran", action="store_false", help="the tool did not run")
    p.add_argument(
        "--as",
        dest="approver",
        default=os.environ.get("GATEKEEPER_APPROVER"),
        help="your approver name from the config (default: $GATEKEEPER_APPROVER)",
    )
    p.add_argument("--comment", "-m", required=True, help="what you found, for the audit log")

    p = sub.add_parser("show", help="everything about one request")
    p.add_argument("id", help="request id, or enough of its start to name one request")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "respond",
        help="answer a request instead of running its tool (or answer an agent's question)",
    )
    p.add_argument("id", help="request id, or enough of its start to name one request")
    p.add_argument(
        "--as",
        dest="approver",
        default=os.environ.get("GATEKEEPER_APPROVER"),
        help="your approver name from the config (default: $GATEKEEPER_APPROVER)",
    )
    p.add_argument(
        "--text",
        "-t",
        required=True,
        help="what the agent gets as the tool's result ('-': read it from stdin)",
    )
    p.add_argument("--comment", "-m", help="a note for the audit log (the agent does not read it)")

    for name, verb in (("approve", "approve"), ("deny", "deny")):
        p = sub.add_parser(name, help=f"{verb} a request")
        p.add_argument("id", help="request id, or enough of its start to name one request")
        p.add_argument(
            "--as",
            dest="approver",
            default=os.environ.get("GATEKEEPER_APPROVER"),
            help="your approver name from the config (default: $GATEKEEPER_APPROVER)",
        )
        p.add_argument("--comment", "-m", help="why (the agent reads a denial's comment)")
        if name == "approve":
            p.add_argument(
                "--args", dest="edited", help="approve these edited arguments (JSON object)"
            )
            p.add_argument(
                "--for",
                dest="grant_for",
                help="also let matching calls run without asking for this long (e.g. 1h; "
                "at most 7d): a standing approval",
            )
            p.add_argument(
                "--max",
                dest="bounds",
                action="append",
                default=[],
                help="with --for: lower the most a number argument may be (NAME=NUMBER)",
            )
            p.add_argument(
                "--digest",
                help="refuse unless the arguments' sha256 starts with this (8+ hex digits)",
            )

    for name in ("halt", "resume"):
        p = sub.add_parser(name, help=("stop" if name == "halt" else "restart") + " agents")
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--agent")
        target.add_argument("--session")
        target.add_argument("--all", action="store_true", help="every agent")
        p.add_argument(
            "--as",
            dest="approver",
            default=os.environ.get("GATEKEEPER_APPROVER"),
            help="who you are (resume needs a configured approver)",
        )
        if name == "halt":
            p.add_argument("--reason", "-m")

    sub.add_parser("halts", help="list the halts in force")

    audit = sub.group("audit", "audit_command", help="read and check the audit log")
    p = audit.add_parser("tail", help="the newest events")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p = audit.add_parser("verify", help="check the hash chain from the first event to the head")
    _no_progress(p)
    p.add_argument("--anchor", help="also check the log still holds this signed anchor's head")
    p.add_argument(
        "--archive",
        metavar="DIR",
        help="check the archived events in DIR too, from event #1 (see `audit archive`)",
    )
    audit.add_parser("anchor", help="print a signed statement of the chain's head (keep it)")
    p = audit.add_parser("export", help="write every event as JSON lines")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.add_argument("--archive", metavar="DIR", help="the archived events in DIR first")
    _no_progress(p)
    p = audit.add_parser(
        "archive",
        help="move sealed events older than --keep to JSON-lines files in DIR, then trim them "
        "from the store",
    )
    p.add_argument("directory", metavar="DIR", nargs="?", help="default: audit.archive")
    p.add_argument(
        "--keep", help="keep this much of the newest history in the store (default: audit.keep)"
    )

    p = sub.add_parser(
        "report", help="a transparency report: calls, decisions, halts, hits, policy versions"
    )
    p.add_argument(
        "--since",
        default="30d",
        help="start of the window: a duration back from now (30d, 12h), a UTC date or time "
        "(2026-05-01), or all (default: 30d)",
    )
    p.add_argument("--until", help="end of the window, a UTC date or time (default: now)")
    p.add_argument("--format", "-f", choices=("md", "html", "json"), default="md")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")

    policy = sub.group("policy", "policy_command", help="check, describe and try out policies")
    p = policy.add_parser("check", help="validate a policy file")
    p.add_argument("file")
    policy.add_parser("schema", help="print the policy file's JSON Schema (for editors)")
    p = policy.add_parser("explain", help="classify one call and say why")
    p.add_argument("file")
    p.add_argument("tool")
    p.add_argument("args", nargs="?", default="{}", help="the call's arguments as a JSON object")
    p.add_argument("--agent", default="default")
    p.add_argument("--scopes", default="", help="granted scopes, comma-separated")
    p.add_argument("--tool-scopes", default="", help="scopes the tool declares, comma-separated")
    p.add_argument("--irreversible", action="store_true", help="the tool declares irreversible")

    p = policy.add_parser(
        "replay", help="run a candidate policy over the recorded audit log: what would change"
    )
    p.add_argument("file", help="the candidate policy (or a gatekeeper.yaml holding one)")
    p.add_argument("--since", help="only calls since this long ago, e.g. 7d (default: all)")
    p.add_argument("--from", dest="source", help="an `audit export` file instead of the store")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    _no_progress(p)

    keys = sub.group("keys", "keys_command", help="decision signing keys")
    p = keys.add_parser("generate", help="write decider.pem and print the public key to trust")
    p.add_argument("--dir", default=".", help="where to write decider.pem (default: .)")
    p.add_argument("--id", dest="key_id", help="the key's id (default: from its hash)")
    p.add_argument("--force", action="store_true", help="replace an existing decider.pem")

    p = sub.add_parser("acl", help="print Redis ACL users for agents, deciders and auditors")
    p.add_argument("--agent", action="append", default=[], help="an agent name (repeat)")
    p.add_argument(
        "--role",
        action="append",
        choices=trust.ROLES,
        help="print only these users (repeat; default: all). `reset` sets new passwords",
    )
    p.add_argument(
        "--prefix", help="the store's prefix (default: the config's store.prefix, else gatekeeper)"
    )

    p = sub.add_parser("serve", help="run the web console and its JSON API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="serve even a memory:// store, which no other process can reach",
    )

    mcp = sub.group("mcp", "mcp_command", help="the MCP gateway: put the gate before MCP servers")
    p = mcp.add_parser("serve", help="run the gateway (stdio by default, --http for remote agents)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    p.add_argument("--host", help="HTTP address (default: the config's mcp.http.host)")
    p.add_argument("--port", type=int, help="HTTP port (default: the config's mcp.http.port)")
    p = mcp.add_parser("tools", help="the tools an agent is offered, from every upstream")
    p.add_argument("--agent", help="as this agent sees them (default: mcp.agent)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = mcp.add_parser(
        "accept", help="accept a tool's changed description and schema (its calls run again)"
    )
    p.add_argument("name", help="the tool's name as agents call it, e.g. git__git_commit")
    p = mcp.add_parser("token", help="make a bearer token for an agent and its config entry")
    p.add_argument("--agent", required=True, help="the agent it authenticates")
    p.add_argument("--scopes", default="", help="comma-separated scopes granted to its calls")

    web = sub.group("web", "web_command", help="web console helpers")
    web.add_parser(
        "hash-secret",
        help="hash an approver's console secret for web_secret_hash (reads stdin or prompts)",
    )
    p = web.add_parser("login-link", help="print a one-time sign-in link")
    p.add_argument(
        "--as",
        dest="approver",
        default=os.environ.get("GATEKEEPER_APPROVER"),
        help="the approver it signs in (default: $GATEKEEPER_APPROVER)",
    )
    p.add_argument("--ttl", default="15m", help="how long the link works (default 15m)")

    p = sub.add_parser(
        "demo", help="a scripted agent; decide its held calls in the web console it serves"
    )
    p.add_argument("--redis-url", help="use this Redis instead of the embedded store")
    p.add_argument("--approver", default="you", help="the name your decisions are recorded as")
    p.add_argument("--host", default="127.0.0.1", help="where the console listens")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--terminal", action="store_true", help="ask in this terminal, no console")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 refused or failed, 2 usage).

    A user's mistake is one ``error:`` or ``refused:`` line on stderr, never a
    traceback; a reader that stops early (``gatekeeper pending | head -1``)
    ends the command quietly.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    io = cmd.IO(out=out, err=err, inp=stdin or sys.stdin)
    try:
        try:
            default = logs.default_level(args)
            with logs.configured(err, fmt=args.log_format, level=args.log_level, default=default):
                code = _dispatch(args, io)
            out.flush()  # a closed pipe shows here, not at exit after main returned
            return code
        except NotAuthorized as exc:
            err.write(f"refused: {exc}\n")
            return 1
        except (ConfigError, GatekeeperError) as exc:
            err.write(f"error: {exc}\n")
            return 1
        except KeyboardInterrupt:
            err.write("interrupted\n")
            return 130
    except BrokenPipeError:
        return _reader_went_away(out)
    except OSError as exc:  # a file given on the command line: missing, unwritable, a directory
        err.write(f"error: {exc}\n")
        return 1


def _reader_went_away(out: TextIO) -> int:
    """Exit quietly after the reader of stdout closed it (as Python's docs recommend).

    Python flushes stdout again at exit and would print a second
    BrokenPipeError; pointing stdout at devnull gives that flush nowhere to fail.
    """
    if out is sys.stdout:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no real file (embedded or replaced)
            pass
    return 1


def _dispatch(args: argparse.Namespace, io: cmd.IO) -> int:
    command = args.command
    if command == "init":
        return cmd.init(Path(args.path), force=args.force, io=io)
    if command == "policy":
        if args.policy_command == "check":
            return cmd.policy_check(args.file, io)
        if args.policy_command == "schema":
            return cmd.policy_schema(io)
        if args.policy_command == "replay":
            return cmd.policy_replay(
                args.config,
                args.file,
                since=args.since,
                source=args.source,
                as_json=args.json,
                io=io,
                no_progress=args.no_progress,
            )
        return cmd.policy_explain(
            args.file,
            args.tool,
            _json_object(args.args, "args"),
            agent=args.agent,
            scopes=_csv(args.scopes),
            tool_scopes=_csv(args.tool_scopes),
            irreversible=args.irreversible,
            io=io,
        )
    if command == "keys":
        return trust.keys_generate(args.dir, args.key_id, force=args.force, io=io)
    if command == "acl":
        return trust.acl(args.prefix, args.agent, io, roles=args.role, config_path=args.config)
    if command == "serve":
        return cmd.serve(args.config, host=args.host, port=args.port, demo=args.demo, io=io)
    if command == "alerts":
        return alerting.alerts(args.config, once=args.once, io=io)
    if command == "mcp":
        if args.mcp_command == "serve":
            return mcp_cli.serve(args.config, http=args.http, host=args.host, port=args.port, io=io)
        if args.mcp_command == "tools":
            return mcp_cli.tools(args.config, agent=args.agent, as_json=args.json, io=io)
        if args.mcp_command == "accept":
            return mcp_cli.accept(args.config, args.name, io=io)
        return mcp_cli.token(args.agent, _csv(args.scopes), io=io)
    if command == "web":
        if args.web_command == "hash-secret":
            return cmd.web_hash_secret(io)
        return cmd.web_login_link(args.config, args.approver, args.ttl, io)
    if command == "demo":
        from .._demo import run_demo

        return run_demo(
            redis_url=args.redis_url,
            approver=args.approver,
            out=io.out,
            inp=io.inp,
            terminal=args.terminal,
            host=args.host,
            port=args.port,
        )
    gate = cmd.shared_gate(args.config)
    try:
        if command == "pending":
            return cmd.pending(gate, limit=args.limit, as_json=args.json, every=args.all, io=io)
        if command == "sweep":
            return cmd.sweep(gate, io=io)
        if command == "limits":
            return cmd.limits(gate, as_json=args.json, io=io)
        if command == "grants":
            return cmd.grants(gate, agent=args.agent, as_json=args.json, io=io)
        if command == "revoke":
            return cmd.revoke(gate, args.grant, approver=args.approver, reason=args.comment, io=io)
        if command == "known":
            return cmd.known(gate, agent=args.agent, as_json=args.json, io=io)
        if command == "forget":
            return cmd.forget(
                gate, args.rule, args.value, agent=args.agent, approver=args.approver, io=io
            )
        if command == "resolve":
            return cmd.resolve_outcome(
                gate, args.id, approver=args.approver, ran=args.ran, comment=args.comment, io=io
            )
        if command == "show":
            return cmd.show(gate, args.id, as_json=args.json, io=io)
        if command == "approve":
            edited = _json_object(args.edited, "--args") if args.edited else None
            return cmd.decide(
                gate,
                args.id,
                approve=True,
                approver=args.approver,
                comment=args.comment,
                edited=edited,
                digest=args.digest,
                io=io,
                grant_for=args.grant_for,
                bounds=args.bounds,
            )
        if command == "deny":
            return cmd.decide(
                gate,
                args.id,
                approve=False,
                approver=args.approver,
                comment=args.comment,
                edited=None,
                digest=None,
                io=io,
            )
        if command == "respond":
            text = io.inp.read() if args.text == "-" else args.text
            return cmd.respond(
                gate, args.id, approver=args.approver, text=text, comment=args.comment, io=io
            )
        if command == "report":
            return cmd.report(
                gate, since=args.since, until=args.until, fmt=args.format, output=args.output, io=io
            )
        if command in ("halt", "resume"):
            return cmd.halt_or_resume(gate, args, io)
        if command == "halts":
            return cmd.halts(gate, io)
        if command == "audit":
            if args.audit_command == "tail":
                return cmd.audit_tail(gate, args.n, as_json=args.json, io=io)
            if args.audit_command == "verify" and args.anchor:
                return trust.audit_verify_anchored(
                    gate, args.anchor, io, archive=args.archive, no_progress=args.no_progress
                )
            if args.audit_command == "verify":
                return cmd.audit_verify(
                    gate, io, archive=args.archive, no_progress=args.no_progress
                )
            if args.audit_command == "anchor":
                return trust.audit_anchor(gate, io)
            if args.audit_command == "archive":
                return cmd.audit_archive(gate, args.config, args.directory, args.keep, io)
            return cmd.audit_export(
                gate, args.output, io, archive=args.archive, no_progress=args.no_progress
            )
    finally:
        gate.close()
    raise AssertionError(f"unhandled command {command}")  # pragma: no cover


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise GatekeeperError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise GatekeeperError(f"{what} must be a JSON object, like '{{\"amount\": 500}}'")
    return value
