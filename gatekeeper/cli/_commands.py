"""What each ``gatekeeper`` command does; ``cli/__init__.py`` only parses arguments."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import getpass
import json
import re
import socket
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from .._archive import ArchiveError, archive_audit, archive_files, whole_log
from .._canonical import digest, to_json_safe
from .._config import load_config, starter_config
from .._decisions import durability_note
from .._errors import (
    ConfigError,
    GatekeeperError,
    NotAuthorized,
    RequestNotFound,
    TransitionRefused,
)
from .._gate import Gatekeeper
from .._progress import Tally
from .._replay import events_from_export, events_from_store, replay
from .._report import (
    gate_report,
    parse_time,
    render_html,
    render_json,
    render_markdown,
    window_start,
)
from .._report._format import window as report_window
from .._retention import Keeping
from .._sweep import advice
from .._sweep import sweep as run_sweep
from .._text import inline, quoted_block
from .._usage import amount as _amount
from .._usage import limit_usage
from .._usage import span as _span
from ..audit import StoredEvent, Trimmed, draft, entry_chain, parse_event
from ..channels.console import describe_request
from ..models import ApprovalRequest, HaltScope, RequestStatus, ToolCall, utc
from ..policy import Policy, parse_duration
from ..web._present import ARGS_LIMIT, args_view, shown_in_full
from . import _alerting as alerting
from ._progress import progress_bar, wanted

__all__ = ["IO", "shared_gate"]

_HEX = re.compile(r"[0-9a-fA-F]{8,64}")


@dataclass
class IO:
    out: TextIO
    err: TextIO
    inp: TextIO

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def refuse(self, text: str) -> int:
        """Nothing was done, on purpose: ``refused: ...`` on stderr, exit status 1."""
        self.err.write(f"refused: {text}\n")
        return 1

    def fail(self, text: str) -> int:
        """It could not be done: ``error: ...`` on stderr, exit status 1."""
        self.err.write(f"error: {text}\n")
        return 1


def shared_gate(config_path: str | None) -> Gatekeeper:
    """The gate of the config file, on its shared store (the CLI never prompts)."""
    config = load_config(config_path)
    if config.store_url.startswith("memory://"):
        raise ConfigError(
            f"{config.source}: store.url is memory://, which lives inside one process; the CLI "
            "needs the store the agents share (set store.url or $GATEKEEPER_REDIS_URL "
            "to a Redis URL)",
            source=config.source,
            field="store.url",
        )
    return config.build_gate(channels=[])


def init(path: Path, *, force: bool, io: IO) -> int:
    if path.exists() and not force:
        return io.refuse(f"{path} exists; use --force to overwrite it")
    host, port = LOCAL_REDIS
    found = redis_answers(host, port)
    redis_here = found == "open"
    store_url = f"redis://{host}:{port}/0" if redis_here else "memory://"
    path.write_text(starter_config(store_url=store_url, docs=DOCS_URL), encoding="utf-8")
    io.say(f"wrote {path}; check it with: gatekeeper policy check {path}")
    if redis_here:
        io.say(
            f"store: the Redis at {host}:{port}, so agents, `gatekeeper pending` and the "
            "console share the requests"
        )
    else:
        why = (
            f"the Redis at {host}:{port} wants a password"
            if found == "password"
            else f"no Redis answered at {host}:{port}"
        )
        io.say(
            f"note: {why}, so the store is memory://: requests "
            "live inside the agent's own process, and `gatekeeper pending`, `approve` and "
            "`serve` can't see them. To decide from another terminal, start a Redis "
            "(redis-server --daemonize yes) and export "
            f"GATEKEEPER_REDIS_URL=redis://{host}:{port}/0, or edit store.url."
        )
    io.say(f"next: {DOCS_URL}/quickstart.md")
    return 0


# Where `gatekeeper init` looks for a Redis to put in the starter config.
LOCAL_REDIS = ("localhost", 6379)
# The documentation of the release a user installed (there is no published site yet).
DOCS_URL = "https://github.com/gatekeeper-dev/gatekeeper/blob/main/docs"


def redis_answers(host: str, port: int, timeout: float = 0.3) -> str | None:
    """Whether a Redis answers PING at host:port: "open", "password" (it wants one) or None.

    Only PING is sent, with a short timeout: nothing is read from or written to the store.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError:
        return None
    if reply.startswith(b"+PONG"):
        return "open"
    if reply.startswith((b"-NOAUTH", b"-WRONGPASS")):
        return "password"
    return None


# -- requests -------------------------------------------------------------------------------
def _left(req: ApprovalRequest) -> str:
    seconds = int((req.expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds())
    if seconds <= 0:
        return "expired"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


#: The statuses `pending --all` lists besides pending: not over, or over and needing a person.
NEEDS_A_LOOK = (
    RequestStatus.APPROVED,
    RequestStatus.EXECUTING,
    RequestStatus.OUTCOME_UNKNOWN,
    RequestStatus.ABANDONED,
)


def pending(gate: Gatekeeper, *, limit: int, as_json: bool, io: IO, every: bool = False) -> int:
    requests = gate.pending(limit=limit)
    if every:
        for wanted in NEEDS_A_LOOK:
            requests += gate.store.history(status=wanted, limit=limit)
    if as_json:
        for req in requests:
            io.say(_ascii_json(req.model_dump(mode="json")))
        return 0
    if not requests:
        io.say("no pending requests" if not every else "no requests waiting or needing a look")
        return 0
    status = f"{'STATUS':<15}  " if every else ""
    io.say(
        f"{'ID':<26}  {status}{'RISK':<8}  {'LEFT':>7}  {'VOTES':>5}  {'AGENT':<16}  "
        f"{'TOOL':<20}  ARGS"
    )
    now = gate.clock.now()
    for stored in requests:
        # As a transition now would find it (a dead caller's lease has run out).
        req = stored.model_copy(update={"status": stored.effective_status(now)})
        args = json.dumps(req.args, ensure_ascii=False, sort_keys=True)
        if req.question is not None:
            args = f"asks: {req.question}"
        left = _left(req) if req.status is RequestStatus.PENDING else "-"
        status = f"{req.status.value:<15}  " if every else ""
        io.say(
            f"{req.id:<26}  {status}{req.classification.risk.value:<8}  {left:>7}  "
            f"{len(req.approvals)}/{req.quorum:<3}  {inline(req.call.agent, 16):<16}  "
            f"{inline(req.call.tool, 20):<20}  {inline(args, 60)}"
        )
        todo = advice(req) if every else ""
        if todo:
            io.say(f"{'':<26}  -> {todo}")
    return 0


def limits(gate: Gatekeeper, *, as_json: bool, io: IO) -> int:
    """Current usage of every limit of the policy, per limit and per agent."""
    rows = limit_usage(gate.policy, gate.store.behaviour_usage(), gate.clock.now())
    if as_json:
        for row in rows:
            io.say(_ascii_json({**dataclasses.asdict(row), "full": row.full}))
        return 0
    if not gate.policy.limits:
        io.say("the policy has no limits")
        return 0
    if not rows:
        io.say("no limit has been used in its window")
        return 0
    io.say(f"{'LIMIT':<20}  {'KIND':<10}  {'AGENT':<16}  {'PER':<10}  {'USED':>12}  WINDOW")
    for row in rows:
        used = f"{_amount(row.used)}/{_amount(row.max)}"
        window = "running now" if row.kind == "concurrent" else _span(row.window_s)
        full = "  FULL" if row.full else ""
        io.say(
            f"{inline(row.limit, 20):<20}  {row.kind:<10}  {inline(row.agent, 16):<16}  "
            f"{row.per:<10}  {used:>12}  {window}{full}"
        )
    return 0


def known(gate: Gatekeeper, *, agent: str | None, as_json: bool, io: IO) -> int:
    """What each agent has done that a novelty rule watches: tools used, values seen."""
    rows = [r for r in gate.store.known_values() if agent is None or r[0] == agent]
    if as_json:
        for who, key, digest, entry in rows:
            rule = key.removeprefix("new:")
            at = utc(int(entry.get("at", 0))).isoformat()
            io.say(
                _ascii_json(
                    {"agent": who, "rule": rule, "value": entry.get("s"), "since": at, "id": digest}
                )
            )
        return 0
    if not rows:
        io.say("nothing is known yet" + (f" for agent {inline(agent, 60)}" if agent else ""))
        return 0
    io.say(f"{'AGENT':<16}  {'RULE':<20}  {'ID':<12}  {'SINCE (UTC)':<19}  VALUE")
    for who, key, digest, entry in rows:
        since = utc(int(entry.get("at", 0))).strftime("%Y-%m-%d %H:%M:%S")
        io.say(
            f"{inline(who, 16):<16}  {inline(key.removeprefix('new:'), 20):<20}  "
            f"{digest[:12]:<12}  {since:<19}  {inline(str(entry.get('s', '')), 80)}"
        )
    return 0


def forget(
    gate: Gatekeeper, rule: str, given: str, *, agent: str, approver: str | None, io: IO
) -> int:
    """Make a known value new again: the agent's next such call asks a person."""
    if not approver:
        raise NotAuthorized("say who you are: --as NAME (an approver from the config)", approver="")
    gate.approver(approver)
    key = f"new:{rule}"
    found = [
        (digest, entry)
        for who, k, digest, entry in gate.store.known_values()
        if who == agent and k == key and (digest.startswith(given) or entry.get("s") == given)
    ]
    if len(found) != 1:
        what = "nothing known" if not found else f"{len(found)} known values"
        return io.refuse(
            f"{what} for agent {inline(agent, 60)} under rule {inline(rule, 60)} match "
            f"{inline(given, 80)}; give the ID `gatekeeper known` shows"
        )
    digest, entry = found[0]
    gate.store.forget_known(agent, key, digest)
    event = draft(
        "novelty.forgotten",
        at_ms=int(gate.clock.now().timestamp() * 1000),
        actor=approver,
        # In the deployment's journal, which only deciders write (not the agent's).
        data={"agent": agent, "rule": rule, "value": entry.get("s"), "id": digest},
    )
    gate.store.record([event])
    io.say(
        f"forgot {inline(str(entry.get('s')), 80)} for agent {inline(agent, 60)}: its next "
        "such call asks a person"
    )
    return 0


def sweep(gate: Gatekeeper, *, io: IO) -> int:
    """Sweep once: requests whose caller is gone become abandoned or of unknown outcome;
    and what requests past their retention left behind is dropped."""
    moved = run_sweep(gate)
    pruned = gate.store.prune()
    if pruned:
        io.say(f"dropped what {pruned} request(s) past store.retention left behind")
    if not moved:
        io.say("nothing to sweep: every live request has its caller")
        return 0
    for req in moved:
        io.say(
            f"{req.id}  {req.status.value:<15}  {inline(req.call.agent, 16)}  "
            f"{inline(req.call.tool, 30)}"
        )
        io.say(f"{'':<26}  -> {advice(req)}")
    return 0


def resolve_outcome(
    gate: Gatekeeper, given: str, *, approver: str | None, ran: bool, comment: str, io: IO
) -> int:
    """Record what a person found about a request of unknown outcome."""
    if not approver:
        raise NotAuthorized("say who you are: --as NAME (an approver from the config)", approver="")
    if not comment.strip():
        return io.refuse("say what you found: -m 'what you checked and saw'; nothing recorded")
    gate.approver(approver)  # who you are comes first: a stranger learns nothing more
    req = resolve(gate, given)
    after = gate.store.resolve(req.id, by=approver, ran=ran, comment=comment)
    gate._tell("update", after)
    what = "ran" if ran else "did not run"
    io.say(
        f"{after.id}: recorded by {inline(approver, 80)} that {inline(after.call.tool, 60)} "
        f"{what}; it is {after.status.value}"
    )
    return 0


# How far back `show`, `approve` and `deny` look for an id prefix, besides every pending request.
RECENT = 1000


def resolve(gate: Gatekeeper, given: str) -> ApprovalRequest:
    """A request by id, or by the start of the id of exactly one request.

    A prefix is looked up among the pending requests and the newest
    :data:`RECENT` of any status; an ambiguous one is refused with the candidates.
    """
    try:
        return gate.get(given)
    except RequestNotFound:
        if not given:
            raise
    found = {r.id: r for r in gate.pending(limit=RECENT) if r.id.startswith(given)}
    for r in gate.store.history(limit=RECENT):
        if r.id.startswith(given):
            found.setdefault(r.id, r)
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise GatekeeperError(
            f"no request has the id {given!r} or an id starting with it "
            f"(among the pending requests and the newest {RECENT:,}); "
            "`gatekeeper pending` lists the pending ones"
        )
    candidates = "; ".join(
        f"{r.id} ({r.status.value}, {inline(r.call.tool, 40)})"
        for r in sorted(found.values(), key=lambda r: r.id)[:10]
    )
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    raise GatekeeperError(
        f"{given!r} is the start of {len(found)} requests' ids: {candidates}{more}; "
        "give more of the id"
    )


def show(gate: Gatekeeper, given: str, *, as_json: bool, io: IO) -> int:
    req = resolve(gate, given)
    if as_json:
        io.say(_ascii_json(req.model_dump(mode="json"), indent=2))
        return 0
    # In full, however long: `approve` trusts that what `show` printed is what runs.
    io.say(describe_request(req, args_limit=sys.maxsize))
    if not shown_in_full(req.args):
        io.say(f"  args sha256 (all of it, for approve --digest): {req.args_digest}")
    io.say(f"  status:  {req.status.value}")
    problem = gate.trust_problem(req)
    if problem:
        io.say(f"  TAMPERING: not what the deciders signed: {inline(problem, 2000)}")
    for d in req.decisions:
        verb = "approved" if d.approve else "answered" if d.response is not None else "denied"
        note = f": {inline(d.comment, 500)}" if d.comment else ""
        edited = " (edited the arguments)" if d.edited else ""
        who = f"{inline(d.approver, 80)} via {inline(d.via, 40)}"
        io.say(f"    {d.at:%H:%M:%S} {verb} by {who}{edited}{note}")
    if req.response is not None:
        io.say("  response (what the agent got instead of the tool's result):")
        io.say(quoted_block(req.response, 8000))
    if req.outcome:
        io.say("  outcome (the tool's words, ⏎ where it broke a line):")
        io.say(quoted_block(req.outcome, 2000))
    io.say("  history:")
    for entry in gate.store.audit_entries():
        event = parse_event(entry.body, entry.hash)
        if event.request_id == req.id and event.agent == req.call.agent:
            io.say(
                f"    #{event.seq} {event.at:%Y-%m-%d %H:%M:%S} {event.kind} "
                f"({inline(event.actor, 80)})"
            )
    return 0


def decide(
    gate: Gatekeeper,
    given: str,
    *,
    approve: bool,
    approver: str | None,
    comment: str | None,
    edited: dict[str, Any] | None,
    digest: str | None,
    io: IO,
    grant_for: str | None = None,
    bounds: list[str] | None = None,
) -> int:
    if not approver:
        raise NotAuthorized("say who you are: --as NAME (an approver from the config)", approver="")
    seconds, lowered = None, None
    if grant_for is not None or bounds:
        try:
            seconds, lowered = _grant_options(grant_for, bounds or [])
        except ValueError as exc:
            return io.fail(f"{exc}; nothing recorded")
    if not approve and not (comment or "").strip():
        return io.refuse(
            f"a denial needs a reason, and the agent reads it: gatekeeper deny {inline(given, 80)} "
            "-m 'why'; nothing recorded"
        )
    if digest is not None and not _HEX.fullmatch(digest):
        return io.fail(
            f"--digest {inline(digest, 80)}: give at least 8 hex digits of the arguments' sha256, "
            f"as `gatekeeper show {given}` prints it"
        )
    gate.approver(approver)  # who you are comes first: a stranger learns nothing more
    req = resolve(gate, given)
    if req.status is not RequestStatus.PENDING:
        by = f" by {inline(req.decided_by, 80)}" if req.decided_by else ""
        return io.refuse(f"{req.id} is already {req.status.value}{by}; nothing recorded")
    if approve and edited is None and any(d.approver == approver for d in req.approvals):
        return _already_voted(req, approver, io)
    if approve and req.edited and not digest and not edited:
        # Another approver changed the arguments: a bare approve would count
        # toward arguments this person may not have looked at.
        return io.refuse(
            f"the arguments of {req.id} were edited by an approver; review them with "
            f"`gatekeeper show {req.id}` and approve with --digest and the digest it prints"
        )
    if approve and not shown_in_full(req.args) and digest != req.args_digest:
        return io.refuse(
            f"the arguments of {req.id} are over {ARGS_LIMIT // 1024} KiB "
            f"({args_view(req.args).total_chars:,} characters as JSON), too many to approve "
            f"unseen: read them whole with `gatekeeper show {req.id}` and approve with "
            "--digest and the full sha256 it prints"
        )
    try:
        if approve:
            after = gate.approve(
                req.id,
                approver=approver,
                comment=comment,
                args=edited,
                via="cli",
                expect_digest=digest,
                grant_for=seconds,
                bounds=lowered,
            )
        else:
            after = gate.deny(req.id, approver=approver, comment=comment, via="cli")
    except TransitionRefused as exc:  # e.g. its caller is gone: say why, nothing recorded
        return io.refuse(f"{exc}; nothing recorded")
    except ValueError as exc:  # a bound raised, not lowered: refused before anything was
        return io.refuse(f"{exc}; nothing recorded")
    if after.status is RequestStatus.PENDING and len(after.decisions) == len(req.decisions):
        return _already_voted(after, approver, io)  # the store found the same vote there
    io.say(_decided(after, approver))
    note = durability_note(after)
    if note:
        io.say(f"warning: {note}")
    if seconds is not None:
        made = [g for g in gate.grants(after.call.agent) if g.request_id == after.id]
        for grant in made:
            io.say(f"standing approval {grant.id}: {inline(grant.describe(), 200)}")
    return 0


def _grant_options(grant_for: str | None, bounds: list[str]) -> tuple[float, dict[str, float]]:
    """``--for 1h`` and ``--max amount=50`` as seconds and bounds."""
    if grant_for is None:
        raise ValueError("--max narrows a standing approval: give --for DURATION too")
    seconds = parse_duration(grant_for)
    lowered: dict[str, float] = {}
    for item in bounds:
        name, sep, number = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            lowered[name] = float(number)
        except ValueError:
            raise ValueError(f"--max {inline(item, 60)}: write NAME=NUMBER") from None
    return seconds, lowered


def grants(gate: Gatekeeper, *, agent: str | None, as_json: bool, io: IO) -> int:
    """The standing approvals and earned autonomy in force, per agent."""
    found = gate.grants(agent)
    if as_json:
        for g in found:
            io.say(_ascii_json(g.model_dump(mode="json")))
        return 0
    if not found:
        io.say("no grants in force" + (f" for agent {inline(agent, 60)}" if agent else ""))
        return 0
    io.say(f"{'ID':<18}  {'KIND':<9}  {'AGENT':<16}  {'BY':<20}  COVERS")
    for g in found:
        io.say(
            f"{g.id:<18}  {g.kind:<9}  {inline(g.agent, 16):<16}  {inline(g.by, 20):<20}  "
            f"{inline(g.describe(), 120)}"
        )
    return 0


def revoke(
    gate: Gatekeeper, grant_id: str, *, approver: str | None, reason: str | None, io: IO
) -> int:
    """Revoke a grant at once (audited as grant.revoked or autonomy.demoted)."""
    if not approver:
        raise NotAuthorized("say who you are: --as NAME (an approver from the config)", approver="")
    gate.approver(approver)
    try:
        grant = gate.revoke_grant(grant_id, by=approver, reason=reason)
    except KeyError:
        return io.refuse(f"no grant {inline(grant_id, 60)} (see `gatekeeper grants`)")
    io.say(f"revoked {grant.id}: {inline(grant.describe(), 160)}")
    return 0


def respond(
    gate: Gatekeeper,
    given: str,
    *,
    approver: str | None,
    text: str,
    comment: str | None,
    io: IO,
) -> int:
    """Answer a request instead of running its tool: ``text`` is what the agent gets."""
    if not approver:
        raise NotAuthorized("say who you are: --as NAME (an approver from the config)", approver="")
    text = text.rstrip("\n")
    if not text.strip():
        return io.refuse(
            f"a response needs words, and the agent reads them: gatekeeper respond "
            f"{inline(given, 80)} --text 'the result'; nothing recorded"
        )
    gate.approver(approver)  # who you are comes first: a stranger learns nothing more
    req = resolve(gate, given)
    if req.status is not RequestStatus.PENDING:
        by = f" by {inline(req.decided_by, 80)}" if req.decided_by else ""
        return io.refuse(f"{req.id} is already {req.status.value}{by}; nothing recorded")
    try:
        after = gate.respond(req.id, approver=approver, response=text, comment=comment, via="cli")
    except ValueError as exc:  # too long: say so, record nothing
        return io.refuse(f"{exc}; nothing recorded")
    io.say(_decided(after, approver))
    note = durability_note(after)
    if note:
        io.say(f"warning: {note}")
    return 0


def _already_voted(req: ApprovalRequest, approver: str, io: IO) -> int:
    return io.refuse(
        f"{req.id}: {inline(approver, 80)} already approved these arguments; a vote counts "
        f"once, so it still has {len(req.approvals)} of {req.quorum} approvals; nothing recorded"
    )


_RELEASED = (
    RequestStatus.APPROVED,
    RequestStatus.EXECUTING,
    RequestStatus.EXECUTED,
    RequestStatus.FAILED,
)


def _decided(req: ApprovalRequest, approver: str) -> str:
    if req.status is RequestStatus.PENDING:
        return (
            f"{req.id}: your approval is recorded; {len(req.approvals)} of {req.quorum} "
            "approvals, waiting for more"
        )
    if req.status in _RELEASED:  # the agent may already be running it
        edited = " with edited arguments" if req.edited else ""
        who = f"{req.id}: approved{edited} by {inline(req.decided_by, 80)}"
        if req.parked and req.lease_until is not None:
            return (
                f"{who}; it runs when the agent's run resumes "
                f"(until {req.lease_until:%Y-%m-%d %H:%M} UTC)"
            )
        if req.awaiting_replicas:
            return f"{who}; the agent's call runs once a Redis replica has the approval"
        return f"{who}; the agent's call runs now"
    if req.status is RequestStatus.DENIED:
        what = "question declined" if req.is_question else "denied"
        return f"{req.id}: {what} by {inline(req.decided_by, 80)}; the call will not run"
    if req.status is RequestStatus.RESPONDED:
        if req.is_question:
            return f"{req.id}: answered by {inline(req.decided_by, 80)}; the agent gets your answer"
        return (
            f"{req.id}: answered by {inline(req.decided_by, 80)}; the tool will not run, "
            "and the agent gets your text as its result"
        )
    return f"{req.id}: {req.status.value}"


def halt_or_resume(gate: Gatekeeper, args: argparse.Namespace, io: IO) -> int:
    target = {"agent": args.agent, "session": args.session, "everything": bool(args.all)}
    what = (
        "every agent"
        if args.all
        else (f"agent {args.agent}" if args.agent else f"session {args.session}")
    )
    if args.command == "halt":
        # Stopping is always allowed; it is recorded under the name given.
        by = args.approver or f"cli:{getpass.getuser()}"
        cancelled = gate.halt(**target, by=by, reason=args.reason)
        io.say(f"halted {what}; cancelled {len(cancelled)} pending request(s)")
        return 0
    if not args.approver:
        raise NotAuthorized("resuming needs an approver: --as NAME", approver="")
    gate.approver(args.approver)
    if gate.resume(**target, by=args.approver):
        io.say(f"resumed {what}")
        return 0
    return io.refuse(f"{what} was not halted; nothing resumed")


def halts(gate: Gatekeeper, io: IO) -> int:
    found = gate.store.halts()
    if not found:
        io.say("nothing is halted")
    for h in found:
        reason = f": {inline(h.reason, 200)}" if h.reason else ""
        what = (
            "every agent"
            if h.scope is HaltScope.ALL
            else f"{h.scope.value} {inline(h.target, 100)}"
        )
        io.say(f"{what} halted by {inline(h.by, 80)} at {h.at:%Y-%m-%d %H:%M:%S}{reason}")
    return 0


# -- audit ----------------------------------------------------------------------------------------
def audit_tail(gate: Gatekeeper, n: int, *, as_json: bool, io: IO) -> int:
    last = deque(gate.store.audit_entries(), maxlen=max(n, 0))
    for entry in last:
        event = parse_event(entry.body, entry.hash)
        if as_json:
            io.say(_ascii_json(event.model_dump(mode="json")))
            continue
        subject = " ".join(inline(x, 60) for x in (event.tool, event.request_id) if x)
        chain = entry_chain(entry.entry_id)[0] if "/" in entry.entry_id else 0
        place = f"{chain}/{event.seq}" if chain else str(event.seq)
        io.say(
            f"#{place:<6} {event.at:%Y-%m-%d %H:%M:%S}  {event.kind:<18} "
            f"{inline(event.actor, 40):<24} {subject}"
        )
    return 0


def audit_verify(
    gate: Gatekeeper, io: IO, *, archive: str | None = None, no_progress: bool = False
) -> int:
    try:
        with progress_bar(io.err, "verifying", no_progress=no_progress) as bar:
            report = gate.verify_audit(archive=archive, progress=bar)
    except ArchiveError as exc:
        return io.fail(str(exc))
    if report.ok:
        n = report.anchors
        held = (
            f"; {n} signed anchor{'s' if n != 1 else ''} hold{'s' if n == 1 else ''}" if n else ""
        )
        if report.chains:
            io.say(f"ok: {report.count} events in {len(report.chains)} chains, all intact{held}")
            for c, part in enumerate(report.chains):
                cut = f" after {part.trimmed.seq} archived" if part.trimmed is not None else ""
                io.say(f"  chain {c}: {part.count} events{cut}, head {part.head_hash[:16]}")
            return 0
        io.say(f"ok: {report.count} events, chain intact, head {report.head_hash[:16]}{held}")
        if report.trimmed is not None:
            io.say(trimmed_note(report.trimmed))
        elif archive is not None:
            io.say(f"  (from event #1: {len(archive_files(archive))} archive files in {archive})")
        return 0
    where = f"entry {report.entry_id}" if report.entry_id else "the end of the log"
    seq = f" (event #{report.seq})" if report.seq is not None else ""
    io.say(
        f"BROKEN at {where}{seq}: {report.problem}; the {report.count} events before it are intact"
    )
    return 1


def audit_export(
    gate: Gatekeeper,
    output: str | None,
    io: IO,
    *,
    archive: str | None = None,
    no_progress: bool = False,
) -> int:
    chains = gate.store.audit_chains
    if archive is None:
        for c in range(chains):
            base = gate.store.audit_base(c)
            if base.seq:
                io.err.write(trimmed_note(base, chain=c if chains > 1 else None).strip() + "\n")
    entries = (
        whole_log(gate.store, archive)
        if archive
        else ((entry_chain(e.entry_id)[0], e) for e in gate.store.audit_entries())
    )
    target = open(output, "w", encoding="utf-8") if output else io.out  # noqa: SIM115
    count = 0
    try:
        # The events on a terminal are their own progress; a bar on the same
        # screen (stderr is the terminal too) would be drawn among them.
        on_screen = not output and wanted(io.out)
        with progress_bar(io.err, "exporting", no_progress=no_progress or on_screen) as bar:
            if bar is None:
                count = _export(entries, target)
            else:
                tally = Tally(bar, audit_total(gate, whole=archive is not None))
                count = _export(tally.over(entries), target)
                tally.end()
    except _Unreadable as exc:
        return io.fail(f"audit entry {exc.args[0]} is not a readable event")
    except ArchiveError as exc:
        return io.fail(str(exc))
    finally:
        if output:
            target.close()
    if output:
        io.say(f"wrote {count} events to {output}")
    return 0


class _Unreadable(Exception):
    """An entry of the log that is not an event: ``args[0]`` is its id."""


def _export(entries: Iterable[tuple[int, StoredEvent]], target: TextIO) -> int:
    count = 0
    for chain, entry in entries:
        try:
            event = parse_event(entry.body, entry.hash)
        except (ValueError, KeyError, TypeError):
            raise _Unreadable(entry.entry_id) from None
        if chain:  # of an audit chain other than 0: said in the line
            line = {**event.model_dump(mode="json"), "chain": chain}
            target.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            target.write(event.model_dump_json() + "\n")
        count += 1
    return count


def audit_total(gate: Gatekeeper, *, whole: bool) -> int:
    """How many events the store's chains hold (``whole``: from event #1, archived ones too)."""
    store = gate.store
    total = 0
    for c in range(store.audit_chains):
        total += store.audit_head(c)[0] - (0 if whole else store.audit_base(c).seq)
    return total


def trimmed_note(base: Trimmed, *, chain: int | None = None) -> str:
    """What a reader of the store alone does not see: the events archived and trimmed."""
    when = f" (up to {base.at:%Y-%m-%d %H:%M:%S} UTC)" if base.at else ""
    of = f" of chain {chain}" if chain is not None else ""
    return (
        f"  events #1-#{base.seq}{of}{when} were archived and trimmed from the store: "
        "`gatekeeper audit verify --archive DIR` checks them too"
    )


def audit_archive(
    gate: Gatekeeper, config_path: str | None, directory: str | None, keep: str | None, io: IO
) -> int:
    config = load_config(config_path)
    target = directory or config.audit_archive
    if not target:
        return io.fail("where to? give a directory, or set audit.archive in the config")
    try:
        seconds = parse_duration(keep) if keep else config.audit.keep
    except ValueError as exc:
        return io.fail(f"--keep: {exc}")
    cutoff = gate.clock.now() - dt.timedelta(seconds=seconds)
    pruned = gate.store.prune()
    if pruned:
        io.say(f"dropped what {pruned} request(s) past store.retention left behind")
    try:
        result = archive_audit(gate.store, target, older_than=cutoff)
    except ArchiveError as exc:
        return io.fail(str(exc))
    names = ", ".join(p.name for p in result.files) or "no new file"
    io.say(
        f"archived {result.archived} events older than {cutoff:%Y-%m-%d %H:%M:%S} UTC to "
        f"{target} ({names}); trimmed {result.trimmed} from the store; the archive ends at "
        f"event #{result.through}"
    )
    return 0


def report(
    gate: Gatekeeper, *, since: str, until: str | None, fmt: str, output: str | None, io: IO
) -> int:
    now = gate.clock.now()
    try:
        start = window_start(since, now)
    except ValueError as exc:
        return io.fail(f"--since: {exc}")
    try:
        end = parse_time(until) if until else None
    except ValueError as exc:
        return io.fail(f"--until: {exc}")
    if end is not None and start is not None and end < start:
        return io.fail(f"--until {inline(until, 60)} is before --since {inline(since, 60)}")
    built = gate_report(gate, since=start, until=end)
    draw = {"md": render_markdown, "html": render_html, "json": render_json}[fmt]
    text = draw(built)
    if not output:
        io.out.write(text if text.endswith("\n") else text + "\n")
        return 0
    Path(output).write_text(text, encoding="utf-8")
    io.say(f"wrote the report of {built.events} events ({report_window(built)}) to {output}")
    return 0


# -- policies ---------------------------------------------------------------------------
_CONFIG_KEYS = frozenset(
    {"store", "approvers", "channels", "defaults", "policy", "decisions", "web"}
)


def _is_config(file: str) -> bool:
    """A gatekeeper.yaml (as opposed to a bare policy file)."""
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # let the policy loader report it
    return isinstance(data, dict) and bool(_CONFIG_KEYS & data.keys())


def policy_check(file: str, io: IO) -> int:
    if _is_config(file):
        config = load_config(file)
        policy = config.load_policy()
        io.say(
            f"ok: config {file}: {len(config.approvers)} approver(s), "
            f"{len(config.channels)} channel(s), store {config.store.url}"
        )
    else:
        policy = Policy.from_file(file)
    doc = policy.document
    behaviour = ""
    if doc.sequences or doc.limits:
        behaviour = f", {len(doc.sequences)} sequence(s), {len(doc.limits)} limit(s)"
    io.say(
        f"ok: policy {policy.source}: {len(doc.rules)} rule(s){behaviour}, "
        f"default {doc.default.value}"
    )
    return 0


def policy_replay(
    config_path: str | None,
    file: str,
    *,
    since: str | None,
    source: str | None,
    as_json: bool,
    io: IO,
    no_progress: bool = False,
) -> int:
    """Run the candidate policy in ``file`` over the recorded log; print what would change."""
    candidate = load_config(file).load_policy() if _is_config(file) else Policy.from_file(file)
    start = None
    if since:
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=parse_duration(since))
    with progress_bar(io.err, "replaying", no_progress=no_progress) as bar:
        if source:
            with open(source, encoding="utf-8") as lines:
                events = events_from_export(lines)
                report = replay(candidate, events, since=start, progress=bar)
        else:
            gate = shared_gate(config_path)
            total = audit_total(gate, whole=False) if bar is not None else None
            events = events_from_store(gate.store.audit_entries())
            report = replay(candidate, events, since=start, progress=bar, total=total)
    if as_json:
        io.say(_ascii_json(report.as_json()))
        return 0
    window = f" since {start:%Y-%m-%d %H:%M} UTC" if start else ""
    io.say(
        f"replayed {report.calls:,} call(s){window} under {candidate.source}: "
        f"{report.same:,} the same, {report.changed:,} changed"
        + (f" ({report.skipped:,} refused by a halt then, not compared)" if report.skipped else "")
    )
    for (recorded, now), count in sorted(report.changes.items()):
        io.say(f"  {recorded} -> {now}: {count:,}")
        for c in report.examples.get((recorded, now), []):
            why = inline("; ".join(c.reasons), 160)
            io.say(
                f"    {c.at:%Y-%m-%d %H:%M:%S}  {inline(c.agent, 20)}  {inline(c.tool, 24)}  "
                f"{c.call_id}  {why}"
            )
    return 0


def policy_schema(io: IO) -> int:
    io.say(json.dumps(Policy.json_schema(), indent=2, sort_keys=True))
    return 0


def policy_explain(
    file: str,
    tool: str,
    args: dict[str, Any],
    *,
    agent: str,
    scopes: list[str],
    tool_scopes: list[str],
    irreversible: bool,
    io: IO,
) -> int:
    policy = load_config(file).load_policy() if _is_config(file) else Policy.from_file(file)
    json_args = to_json_safe(args)
    call = ToolCall(
        id="explain",
        tool=tool,
        args=json_args,
        args_digest=digest(json_args),
        agent=agent,
        session_id="explain",
        granted_scopes=tuple(sorted(scopes)),
        required_scopes=tuple(sorted(tool_scopes)),
        irreversible=irreversible,
        created_at=dt.datetime.now(dt.timezone.utc),
    )
    cls = policy.classify(call)
    io.say(f"verdict: {cls.verdict.value}")
    io.say(f"risk:    {cls.risk.value}")
    io.say(f"rules:   {', '.join(cls.rules) or '(none)'}")
    io.say("reasons:")
    for reason in cls.reasons:
        io.say(f"  - {inline(reason, 500)}")
    misses = policy.misses(call)
    if misses:
        io.say("not matched:")
        for miss in misses:
            io.say(f"  - {inline(miss, 500)}")
    if cls.verdict.value == "require_approval":
        a = cls.approval
        timeout = f"{a.timeout:g}s" if a.timeout else "the config default"
        io.say(f"approval: {a.quorum} approver(s) from {a.group or 'any group'}, waits {timeout}")
    if cls.verdict.value == "halt":
        io.say(f"halts:   the {cls.halt_scope.value}")
    return 0


# -- the web console ----------------------------------------------------------------------------
def _web_config(config_path: str | None) -> Any:
    config = load_config(config_path)
    if config.web_problem is not None:
        raise ConfigError(config.web_problem, source=config.source, field="web")
    if config.web is None:
        raise ConfigError(
            f"{config.source}: the web console needs a 'web:' section with secret_key "
            "(for example secret_key: ${GATEKEEPER_WEB_SECRET})",
            source=config.source,
            field="web",
        )
    return config


def serve(config_path: str | None, *, host: str, port: int, demo: bool, io: IO) -> int:
    """Run the web console (and its API) until interrupted.

    A ``memory://`` store lives in this process alone: no agent could put a
    request in front of this console, so it is served only when ``demo`` says so.
    """
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:
        raise GatekeeperError(
            f"the web console needs the 'web' extra: pip install 'hitl-gatekeeper[web]' ({exc})"
        ) from None
    config = _web_config(config_path)
    if config.store_url.startswith("memory://") and not demo:
        return io.refuse(
            f"{config.source}: store.url is memory://, which lives inside this one process: "
            "no agent can reach it, so nothing would ever show in this console. Set store.url "
            "or $GATEKEEPER_REDIS_URL to the agents' Redis (or pass --demo to serve the empty "
            "embedded store anyway; `gatekeeper demo` serves one with a scripted agent)"
        )
    gate = config.build_gate(channels=[])
    try:
        slack = config.slack_service(gate)
        alerts = config.alerter(gate)
        app = create_app(
            gate,
            config.web,
            slack=slack,
            webhooks=config.webhook_channels(),
            alerts=alerts,
            keeping=Keeping(config.audit_archive, config.audit.keep, config.audit.every),
        )
        io.say(f"gatekeeper console on http://{host}:{port} (public URL {config.web.base_url})")
        if slack is not None:
            ways = [w for w, on in (("Socket Mode", slack.socket), ("HTTP", slack.verifier)) if on]
            io.say(f"Slack interactivity over {' and '.join(ways)}")
        if alerts is not None:
            io.say(alerting.describe(alerts))
        # Everything built so far (the app, the store's clients, a cluster's slot
        # table) lives as long as the process: frozen, it is out of the collector's
        # sight, and a full collection walks only what requests made since (on a
        # cluster this took the queue's p99 from about 95 to 35 ms; docs/performance.md,
        # "W1 on a 3-master Redis Cluster"). Start-up garbage is collected first, as
        # frozen objects are never freed.
        gc.collect()
        gc.freeze()
        # The console reads X-Forwarded-For itself, from web.trusted_proxies only;
        # uvicorn's proxy_headers would believe anyone connecting from 127.0.0.1.
        # log_config=None: uvicorn's records go to the handler main() set up, in
        # the format chosen there (--log-format), not to handlers of its own.
        uvicorn.run(
            app, host=host, port=port, log_level="info", log_config=None, proxy_headers=False
        )
    finally:
        gate.close()
    return 0


def web_hash_secret(io: IO) -> int:
    """Read a console secret (stdin, or a prompt twice) and print its scrypt hash."""
    from ..web._auth import hash_secret

    if io.inp.isatty():
        secret = getpass.getpass("console secret: ")
        if getpass.getpass("again: ") != secret:
            return io.fail("the two secrets differ; nothing printed")
    else:
        secret = io.inp.readline().rstrip("\r\n")
    if len(secret) < 8:
        return io.fail("the secret must be at least 8 characters")
    io.say(hash_secret(secret))
    return 0


def web_login_link(config_path: str | None, approver: str | None, ttl: str, io: IO) -> int:
    """Print a one-time sign-in link for ``approver``."""
    from ..policy import parse_duration
    from ..web._auth import make_login_link

    if not approver:
        raise NotAuthorized("say who the link signs in: --as NAME", approver="")
    config = _web_config(config_path)
    if approver not in {a.name for a in config.approvers}:
        raise NotAuthorized(f"{approver!r} is not a configured approver", approver=approver)
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise GatekeeperError(f"--ttl: {exc}") from None
    io.say(make_login_link(config.web, approver, ttl=seconds))
    return 0


def _ascii_json(value: Any, indent: int | None = None) -> str:
    """JSON for a terminal: every non-ASCII character escaped, so none can act on it."""
    return json.dumps(value, ensure_ascii=True, indent=indent)
