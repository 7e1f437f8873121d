"""``ConsoleChannel``: ask in the terminal (local development, the demo)."""

from __future__ import annotations

import queue
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from .._decisions import durability_note
from .._errors import ConfigError, GatekeeperError
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
    what = "Question" if req.is_question else "Request"
    lines = [
        f"{what} {req.id}  [{cls.risk.value.upper()} risk]",
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
    needs = (
        f"one answer{group}"
        if req.is_question
        else f"{req.quorum} approval(s){group}; {len(req.approvals)} so far"
    )
    lines.append(f"  needs:   {needs}; expires {req.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    if req.question is not None:
        lines.append("  question (the agent's words, ⏎ where it broke a line):")
        lines.extend(_warnings(odd["args"]))
        lines.append(quoted_block(req.question, args_limit))
        return "\n".join(lines)
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

    Decisions are made as ``approver`` (a configured approver name). The
    prompt runs on a thread of its own: the agent, the request's timeout and
    the other channels never wait for it. Requests are asked about one at a
    time, oldest first; one decided elsewhere (the CLI, the console, Slack, or
    expiry) ends its prompt at once with a line saying who decided. Answers:
    ``y`` approves, ``n`` denies (a reason is required: the agent reads it),
    ``r`` responds: the line typed next is the tool's result, and the tool
    does not run (offered unless the rule sets ``respond: false``). A
    question from the agent is answered with ``a`` or declined with ``n``.
    Anything else is asked again.
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
        self._asks: queue.Queue[ApprovalRequest] = queue.Queue()
        # Lines typed, and _ENDED when the request being asked about was decided elsewhere.
        self._lines: queue.Queue[str | object] = queue.Queue()
        self._asking: str | None = None  # the request id of the open prompt
        self._state = threading.Lock()
        self._started = False
        self.idle = threading.Event()  # set while no prompt is open and none is waiting
        self.idle.set()

    def bind(self, gate: Gatekeeper) -> None:
        """Refused when ``gate``'s store holds no signing key: answers here are votes.

        Each answer is recorded, and signed, as ``approver`` by this process, so
        it must be one allowed to decide — local development with the embedded
        store (whose key pair is its own), never an agent that has only the
        trusted public keys.
        """
        if not gate.store.decision_keys.can_decide:
            raise ConfigError(
                f"the console (terminal) channel records answers as {self.approver!r} from "
                "this process, which holds no decision signing key: use it for local "
                "development with the embedded store (memory://), or in a process allowed "
                "to decide; agents get decisions from the web console, Slack or a webhook",
                field="channels",
            )
        self._gate = gate

    def _write(self, text: str) -> None:
        out = self._out or sys.stdout
        out.write(text)
        out.flush()

    def _start(self) -> None:
        with self._state:
            if self._started:
                return
            self._started = True
        threading.Thread(
            target=self._read_lines, name="gatekeeper-terminal-in", daemon=True
        ).start()
        threading.Thread(target=self._prompts, name="gatekeeper-terminal", daemon=True).start()

    def _read_lines(self) -> None:
        stream = self._in or sys.stdin
        for line in iter(stream.readline, ""):
            self._lines.put(line.strip())
        self._lines.put(_CLOSED)

    def notify(self, request: ApprovalRequest) -> None:
        """Queue ``request`` for the prompt and return at once."""
        if self._gate is None:
            raise RuntimeError("ConsoleChannel is not bound to a Gatekeeper")
        self.idle.clear()
        self._asks.put(request)
        self._start()

    def update(self, request: ApprovalRequest) -> None:
        with self._state:
            open_here = self._asking == request.id
        if open_here and request.status.value != "pending":
            self._lines.put(_ENDED)  # end the open prompt now
        who = f" by {inline(request.decided_by)}" if request.decided_by else ""
        self._write(f"\nRequest {request.id}: {request.status.value}{who}\n")

    def _answer(self, prompt: str) -> str | None:
        """One line typed after ``prompt``; None when the prompt was ended (decided, or EOF)."""
        self._write(prompt)
        line = self._lines.get()
        if line is _ENDED or line is _CLOSED:
            if line is _CLOSED:
                self._lines.put(_CLOSED)  # every later prompt ends too
            return None
        return str(line)

    def _prompts(self) -> None:
        while True:
            request = self._asks.get()
            try:
                self._ask_about(request)
            except Exception as exc:  # the prompt thread must outlive any one request
                self._write(f"Not recorded: {inline(str(exc), 1000)}\n")
            finally:
                with self._state:
                    self._asking = None
                    if self._asks.empty():
                        self.idle.set()

    def _ask_about(self, request: ApprovalRequest) -> None:
        gate = self._gate
        assert gate is not None
        current = gate.get(request.id)
        if current.status.value != "pending":
            return  # decided while it waited its turn
        with self._state:
            self._asking = request.id
        # A decision that landed between the read above and now is still seen: drop
        # any stale end-marker first, then check once more.
        _drain(self._lines, _ENDED)
        if gate.get(request.id).status.value != "pending":
            return
        self._write("\n" + describe_request(current) + "\n")
        whole = shown_whole(current)
        if not whole and not current.is_question:
            self._write(
                "The arguments are too long to show here in full, so they can't be "
                "approved here: read them with `gatekeeper show ID` (or in the web "
                "console) and approve there with their full sha256.\n"
            )
        choices, legend, prompt, hint = _choices(current, whole, gate._may_respond(current))
        self._write(f"{legend}.\n")
        while True:
            answer = self._answer(prompt.format(self.approver))
            if answer is None:
                return
            choice = choices.get(answer.lower())
            if choice is not None:
                break
            self._write(f"Please answer {hint}.\n")
        try:
            self._record(current, choice)
        except GatekeeperError as exc:
            self._write(f"Not recorded: {inline(str(exc), 1000)}\n")

    def _record(self, current: ApprovalRequest, choice: str) -> None:
        after = self._decide(current, choice)
        note = durability_note(after) if after is not None else None
        if note:
            self._write(f"Warning: {note}\n")

    def _decide(self, current: ApprovalRequest, choice: str) -> ApprovalRequest | None:
        gate = self._gate
        assert gate is not None
        if choice == "approve":
            comment = self._answer("Comment (optional): ")
            if comment is None:
                return None
            return gate.approve(
                current.id,
                approver=self.approver,
                comment=comment or None,
                via="console",
                expect_digest=current.args_digest,
            )
        if choice == "respond":
            ask = (
                "Your answer (the agent reads it): "
                if current.is_question
                else "The result the agent gets instead (the tool won't run): "
            )
            text = self._required(ask)
            if text is None:
                return None
            return gate.respond(current.id, approver=self.approver, response=text, via="console")
        why = "Why decline? " if current.is_question else "Why deny? "
        reason = self._required(why + "(required: the agent reads it) ")
        if reason is None:
            return None
        return gate.deny(current.id, approver=self.approver, comment=reason, via="console")

    def _required(self, prompt: str) -> str | None:
        """A non-blank line typed after ``prompt`` (asked again when blank); None if ended."""
        while True:
            line = self._answer(prompt)
            if line is None or line.strip():
                return line


def _choices(
    req: ApprovalRequest, whole: bool, may_respond: bool
) -> tuple[dict[str, str], str, str, str]:
    """For ``req``: typed word -> choice, the legend, the prompt, and the re-ask hint."""
    if req.is_question:
        picks = {"a": "respond", "answer": "respond", "n": "deny", "no": "deny"}
        legend = "a answers the question; n declines it (with a reason the agent reads)"
        return picks, legend, "Answer as {}? [a/n] ", "a or n"
    picks = {"n": "deny", "no": "deny"}
    keys, said = [], []
    if whole:
        picks.update(y="approve", yes="approve")
        keys.append("y")
        said.append("y approves")
    keys.append("n")
    said.append("n denies (with a reason the agent reads)")
    if may_respond:
        picks.update(r="respond", respond="respond")
        keys.append("r")
        said.append("r writes the result the agent gets instead, and the tool does not run")
    verb = "Approve" if whole else "Deny"
    hint = " or ".join(keys) if len(keys) < 3 else f"{', '.join(keys[:-1])} or {keys[-1]}"
    return picks, "; ".join(said), f"{verb} as {{}}? [{'/'.join(keys)}] ", hint


_ENDED = object()
_CLOSED = object()


def _drain(lines: queue.Queue[str | object], marker: object) -> None:
    """Remove ``marker`` entries from ``lines``, keeping the typed lines in order."""
    kept = []
    while True:
        try:
            item = lines.get_nowait()
        except queue.Empty:
            break
        if item is not marker:
            kept.append(item)
    for item in kept:
        lines.put(item)
