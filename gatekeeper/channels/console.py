"""``ConsoleChannel``: ask in the terminal (local development, the demo)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

from .._errors import GatekeeperError
from .._text import (
    TERMINAL_WIDTH,
    Lookalike,
    call_lookalikes,
    inline,
    lookalike_warnings,
    pretty_json,
    quoted_block,
    wrap_columns,
)
from ..models import ApprovalRequest

if TYPE_CHECKING:
    from .._gate import Gatekeeper

__all__ = ["ConsoleChannel", "describe_request", "json_block", "shown_whole"]


def describe_request(req: ApprovalRequest, *, args_limit: int = 20_000) -> str:
    """What an approver needs to decide, as terminal-safe text (arguments cut at ``args_limit``)."""
    call, cls = req.call, req.classification
    odd = call_lookalikes(call.tool, call.agent, req.args)
    lines = [
        f"Request {req.id}  [{cls.risk.value.upper()} risk]",
        f"  tool:    {inline(call.tool)}",
        *_warnings(odd["tool"]),
        f"  agent:   {inline(call.agent)}  (session {inline(call.session_id, 100)})",
        *_warnings(odd["agent"]),
    ]
    if call.reason:
        lines.append("  reason (the agent's words, ⏎ where it broke a line):")
        lines.append(quoted_block(call.reason, 1000))
    lines.append(f"  why held: {inline('; '.join(cls.reasons), 2000)}")
    if cls.rules:
        lines.append(f"  rules:   {', '.join(inline(r, 100) for r in cls.rules)}")
    lines.append(f"  scopes:  {_scopes(req)}")
    group = f" from group {req.group}" if req.group else ""
    lines.append(
        f"  needs:   {req.quorum} approval(s){group}; {len(req.approvals)} so far; "
        f"expires {req.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    label = "args (edited by an approver)" if req.edited else "args"
    lines.append(f"  {label}, sha256 {req.args_digest[:12]}:")
    lines.extend(_warnings(odd["args"]))
    lines.extend(json_block(pretty_json(req.args, args_limit)))
    return "\n".join(lines)


def _scopes(req: ApprovalRequest) -> str:
    # The policy's count (its agents:/tools: sections and the call's own), never the call's alone.
    cls = req.classification
    if cls.granted_scopes is None or cls.required_scopes is None:
        return "not recorded for this request"

    def names(scopes: tuple[str, ...]) -> str:
        return ", ".join(inline(s, 100) for s in scopes) or "none"

    text = f"granted {names(cls.granted_scopes)}; needed {names(cls.required_scopes)}"
    return text + (f" (MISSING {names(cls.missing_scopes)})" if cls.missing_scopes else "")


def _warnings(found: list[Lookalike]) -> list[str]:
    return [f"  \u26a0 LOOKALIKE {warning}" for warning in lookalike_warnings(found)]


def json_block(text: str, indent: str = "    ") -> list[str]:
    """Pretty JSON for the terminal, cut to fit: a cut line goes on after ``↪``.

    A long string value would otherwise wrap in the terminal and could start
    a line that passes for a field of ours, or for the end of the arguments.
    """
    room = TERMINAL_WIDTH - len(indent) - 2
    out: list[str] = []
    for line in text.splitlines():
        first, *rest = wrap_columns(line, room)
        out.append(indent + first)
        out.extend(f"{indent}\u21aa {piece}" for piece in rest)
    return out


def shown_whole(req: ApprovalRequest, limit: int = 20_000) -> bool:
    """Whether :func:`describe_request` shows ``req``'s arguments whole at ``limit``.

    Nobody approves what they were not shown: past it, the terminal offers Deny only.
    """
    return pretty_json(req.args, limit) == pretty_json(req.args, 1 << 62)


class ConsoleChannel:
    """Shows each held call in the terminal and asks the person there to decide.

    Decisions are made as ``approver`` (a configured approver name). Answers:
    ``y`` approves, ``n`` denies (a comment is asked for), anything else
    leaves the request pending for another channel or the CLI.
    """

    def __init__(
        self,
        approver: str,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.approver = approver
        self._in = stdin
        self._out = stdout
        self._gate: Gatekeeper | None = None
        self._lock = threading.Lock()  # one prompt at a time

    def bind(self, gate: Gatekeeper) -> None:
        self._gate = gate

    def _write(self, text: str) -> None:
        out = self._out or sys.stdout
        out.write(text)
        out.flush()

    def _ask(self, prompt: str) -> str:
        self._write(prompt)
        line = (self._in or sys.stdin).readline()
        return line.strip()

    def notify(self, request: ApprovalRequest) -> None:
        if self._gate is None:
            raise RuntimeError("ConsoleChannel is not bound to a Gatekeeper")
        with self._lock:
            self._write("\n" + describe_request(request) + "\n")
            whole = shown_whole(request)
            if whole:
                answer = self._ask(f"Approve as {self.approver}? [y/n/skip] ").lower()
            else:
                self._write(
                    "The arguments are too long to show here in full, so they can't be "
                    "approved here: read them with `gatekeeper show ID` (or in the web "
                    "console) and approve there with their full sha256.\n"
                )
                answer = self._ask(f"Deny as {self.approver}? [n/skip] ").lower()
            try:
                if whole and answer in ("y", "yes"):
                    comment = self._ask("Comment (optional): ") or None
                    self._gate.approve(
                        request.id,
                        approver=self.approver,
                        comment=comment,
                        via="console",
                        expect_digest=request.args_digest,
                    )
                elif answer in ("n", "no"):
                    comment = self._ask("Why deny? (the agent reads this): ") or None
                    self._gate.deny(
                        request.id, approver=self.approver, comment=comment, via="console"
                    )
                else:
                    self._write("Left pending.\n")
            except GatekeeperError as exc:
                self._write(f"Not recorded: {inline(str(exc), 1000)}\n")

    def update(self, request: ApprovalRequest) -> None:
        who = f" by {inline(request.decided_by)}" if request.decided_by else ""
        self._write(f"Request {request.id}: {request.status.value}{who}\n")
