"""Button clicks and modal submissions from Slack, whichever way they arrive.

Socket Mode and the HTTP request URL both hand the decoded payload to
:meth:`SlackInteractions.handle`, which answers at once with what Slack's
acknowledgement must carry and returns the slow part (deciding, updating the
message, telling the user) as ``work`` to run after the acknowledgement, so
Slack's 3-second deadline is always met.

Every decision goes through ``gate.approve`` / ``gate.deny`` /
``gate.respond``: the same approver checks and the same atomic store
transition as the CLI and the web console. A click by someone who is not an
approver of the request changes nothing and gets an ephemeral answer only
they see. Deny (Decline, on a question) and Respond (Answer) open a modal
first; what is typed there arrives as a ``view_submission``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._decisions import MAX_RESPONSE_CHARS, durability_note
from ..._errors import GatekeeperError, RequestNotFound, StoreUnavailable
from ...logs import get_logger
from ...models import ApprovalRequest
from ._blocks import (
    ACTION_APPROVE,
    ACTION_APPROVE_GRANT,
    ACTION_DENY,
    ACTION_DENY_COMMENT,
    ACTION_RESPOND,
    GRANT_SECONDS,
    not_approver,
    parse_button_value,
)
from ._channel import MessageRef, SlackChannel
from ._escape import code
from ._modals import (
    COMMENT_BLOCK,
    COMMENT_INPUT,
    COMMENT_LIMIT,
    DENY_MODAL,
    RESPOND_MODAL,
    RESPONSE_BLOCK,
    RESPONSE_INPUT,
    deny_modal,
    parse_modal_metadata,
    respond_modal,
)

if TYPE_CHECKING:
    from ..._gate import Gatekeeper

__all__ = ["Reply", "SlackInteractions"]

log = get_logger("gatekeeper.slack")

_INPUT_BLOCK = {DENY_MODAL: COMMENT_BLOCK, RESPOND_MODAL: RESPONSE_BLOCK}
_DECIDING = (ACTION_APPROVE, ACTION_APPROVE_GRANT, ACTION_DENY, ACTION_DENY_COMMENT, ACTION_RESPOND)


@dataclass(frozen=True)
class Reply:
    """What to acknowledge with (``body``; None = an empty 200) and what to do after."""

    body: dict[str, Any] | None = None
    work: Callable[[], None] | None = None


@dataclass(frozen=True)
class _Click:
    user: str
    channel: str
    ts: str
    trigger_id: str | None


class SlackInteractions:
    """Turns Slack interaction payloads into decisions on the gate."""

    def __init__(self, gate: Gatekeeper, channel: SlackChannel, *, team_id: str | None = None):
        self.gate = gate
        self.channel = channel
        self.team_id = team_id

    # -- the fast part: parse and acknowledge ------------------------------------------------
    def handle(self, payload: Mapping[str, Any]) -> Reply:
        """The acknowledgement for ``payload`` and the work to do after it."""
        try:
            kind = payload.get("type")
            modal = _get(payload, "view", "callback_id") if kind == "view_submission" else None
            workspaces = {
                _get(payload, "team", "id"),
                _get(payload, "user", "team_id"),
                _get(payload, "enterprise", "id"),
            }
            if self.team_id is not None and self.team_id not in workspaces:
                log.warning("slack: ignored a payload from workspace(s) %r", workspaces)
                if modal in _INPUT_BLOCK:
                    problem = "This workspace may not decide requests."
                    return Reply(body=_modal_error(_INPUT_BLOCK[modal], problem))
                return Reply()
            if kind == "block_actions":
                return self._block_action(payload)
            if modal == DENY_MODAL:
                return self._deny_modal(payload)
            if modal == RESPOND_MODAL:
                return self._respond_modal(payload)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("slack: ignored a malformed %r payload: %s", payload.get("type"), exc)
            return Reply()
        return Reply()

    def _block_action(self, payload: Mapping[str, Any]) -> Reply:
        action = payload["actions"][0]
        action_id = action["action_id"]
        if action_id not in _DECIDING:
            return Reply()  # "Open in console" is a link; Slack reports its click too
        request_id, digest = parse_button_value(str(action["value"]))
        container = payload.get("container") or {}
        click = _Click(
            user=str(payload["user"]["id"]),
            channel=str(container.get("channel_id") or _get(payload, "channel", "id")),
            ts=str(container.get("message_ts") or _get(payload, "message", "ts")),
            trigger_id=payload.get("trigger_id"),
        )
        if action_id in (ACTION_DENY, ACTION_DENY_COMMENT):
            # A denial needs a reason (the agent reads it): Deny asks for it in a modal.
            # Slack's trigger_id lives about 3 s: open the modal before anything slow
            # (the approver is checked when the reason is submitted).
            return Reply(work=lambda: self._open_modal(click, request_id, respond=False))
        if action_id == ACTION_RESPOND:
            # The text the agent gets instead of a run (a question's answer): also a modal.
            return Reply(work=lambda: self._open_modal(click, request_id, respond=True))

        # Approve + matching: the same approval, and a standing approval for GRANT_SECONDS
        # (refused before anything is recorded when the request can't carry one).
        grant_for = GRANT_SECONDS if action_id == ACTION_APPROVE_GRANT else None

        def decide(req: ApprovalRequest, approver: str) -> ApprovalRequest:
            return self.gate.approve(
                req.id,
                approver=approver,
                via=f"slack:{click.user}",
                expect_digest=digest,
                grant_for=grant_for,
            )

        # Painted again even if another process painted this state first: that one may
        # have read the grants before this approval's standing approval was kept.
        deciding = self._deciding(decide, force=grant_for is not None)
        return Reply(work=lambda: self._guarded(click, request_id, deciding))

    def _deny_modal(self, payload: Mapping[str, Any]) -> Reply:
        click, request_id, comment = _submitted(payload, COMMENT_BLOCK, COMMENT_INPUT)
        if not comment or len(comment) > COMMENT_LIMIT:
            problem = (
                "Say why; the agent reads this."
                if not comment
                else f"At most {COMMENT_LIMIT:,} characters."
            )
            return Reply(body=_modal_error(COMMENT_BLOCK, problem))

        def decide(req: ApprovalRequest, approver: str) -> ApprovalRequest:
            return self.gate.deny(
                req.id, approver=approver, comment=comment, via=f"slack:{click.user}"
            )

        return Reply(work=lambda: self._guarded(click, request_id, self._deciding(decide)))

    def _respond_modal(self, payload: Mapping[str, Any]) -> Reply:
        click, request_id, response = _submitted(payload, RESPONSE_BLOCK, RESPONSE_INPUT)
        if not response or len(response) > MAX_RESPONSE_CHARS:
            problem = (
                "Write what the agent gets back."
                if not response
                else f"At most {MAX_RESPONSE_CHARS:,} characters."
            )
            return Reply(body=_modal_error(RESPONSE_BLOCK, problem))

        def decide(req: ApprovalRequest, approver: str) -> ApprovalRequest:
            # Refused here (and nothing recorded) when the rule says respond: false.
            return self.gate.respond(
                req.id, approver=approver, response=response, via=f"slack:{click.user}"
            )

        return Reply(work=lambda: self._guarded(click, request_id, self._deciding(decide)))

    # -- the slow part, after the acknowledgement -------------------------------------------
    def _guarded(
        self, click: _Click, request_id: str, step: Callable[[_Click, ApprovalRequest, str], None]
    ) -> None:
        """Find the request and the approver, run ``step``; any failure is told, not raised."""
        try:
            try:
                req = self.gate.get(request_id)
            except RequestNotFound:
                self._tell(click, "There is no such request any more. Nothing changed.")
                return
            approver = self.channel.approvers.resolve(click.user, req)
            if approver is None:
                log.warning("slack: %s is not an approver of request %s", click.user, req.id)
                self._tell(click, not_approver(req))
                return
            step(click, req, approver.name)
        except StoreUnavailable as exc:
            log.warning("slack: click on %s: store unavailable: %s", request_id, exc)
            self._tell(
                click,
                "gatekeeper could not reach its store, so your decision may not have been "
                "recorded. Check the request in the console.",
            )
        except GatekeeperError as exc:
            # Slack refused, a group could not be read, ...: nothing was decided; say so.
            log.warning("slack: click on %s failed: %s", request_id, exc)
            self._tell(click, f"gatekeeper could not do that: {code(exc.message, 500)}")
        except Exception:
            log.exception("slack: click on %s failed", request_id)
            self._tell(click, "gatekeeper could not do that (an internal error). Nothing changed.")

    def _deciding(
        self, decide: Callable[[ApprovalRequest, str], ApprovalRequest], *, force: bool = False
    ) -> Callable[[_Click, ApprovalRequest, str], None]:
        def step(click: _Click, req: ApprovalRequest, approver: str) -> None:
            ref: MessageRef = (click.channel, click.ts)
            try:
                after = decide(req, approver)
            except StoreUnavailable:
                raise  # outcome unknown: said so by _guarded
            except GatekeeperError as exc:
                # Already decided, expired, the digest moved on, not in the group:
                # nothing changed. Repaint the message with the truth and say why.
                self._tell(click, f"Nothing changed: {code(exc.message, 500)}")
                self._repaint(self.gate.get(req.id), ref, force=True)
                return
            self._repaint(after, ref, force=force)
            note = durability_note(after)
            if note:  # recorded, but a failover now could lose it: the approver is told
                self._tell(click, note)

        return step

    def _open_modal(self, click: _Click, request_id: str, *, respond: bool) -> None:
        try:
            req = self.gate.get(request_id)
            if req.status.decided or not click.trigger_id:
                self._tell(click, f"Nothing changed: the request is already {req.status.value}.")
                self._repaint(req, (click.channel, click.ts), force=True)
                return
            if respond and not self.gate._may_respond(req):
                # A forged or stale Respond button: its rule allows no written answer.
                self._tell(
                    click,
                    "Nothing changed: this request can't be answered in place of running "
                    "the tool (its rule sets respond: false). Approve or deny it.",
                )
                self._repaint(req, (click.channel, click.ts), force=True)
                return
            build = respond_modal if respond else deny_modal
            self.channel.call(
                "views.open",
                self.channel.client.views_open,
                trigger_id=click.trigger_id,
                view=build(req, channel_id=click.channel, message_ts=click.ts),
            )
        except Exception as exc:
            log.warning("slack: could not open the comment form for %s: %s", request_id, exc)
            self._tell(click, "gatekeeper could not open the form. Nothing changed.")

    def _repaint(self, req: ApprovalRequest, ref: MessageRef, *, force: bool = False) -> None:
        """Show ``req`` on its messages; a Slack failure is audited, the decision stands."""
        try:
            self.channel.show(req, also=[ref], force=force)
        except GatekeeperError as exc:
            self.gate._channel_failed(self.channel, req, exc, now=True)

    def _tell(self, click: _Click, text: str) -> None:
        try:
            self.channel.tell(click.channel, click.user, text)
        except GatekeeperError as exc:
            log.warning("slack: could not tell %s: %s", click.user, exc)


def _submitted(payload: Mapping[str, Any], block: str, action: str) -> tuple[_Click, str, str]:
    """Who submitted a modal, for which request and message, and what they typed (stripped)."""
    view = payload["view"]
    request_id, channel, ts = parse_modal_metadata(str(view["private_metadata"]))
    value = view["state"]["values"][block][action].get("value") or ""
    click = _Click(user=str(payload["user"]["id"]), channel=channel, ts=ts, trigger_id=None)
    return click, request_id, str(value).strip()


def _modal_error(block: str, problem: str) -> dict[str, Any]:
    """An acknowledgement that keeps the modal open and shows ``problem`` under ``block``."""
    return {"response_action": "errors", "errors": {block: problem}}


def _get(payload: Mapping[str, Any], *path: str) -> Any:
    value: Any = payload
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
