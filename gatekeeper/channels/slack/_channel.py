"""``SlackChannel``: a Block Kit message per held call, kept true until it is done.

The channel posts when a call is held (``notify``) and rewrites the message
with ``chat.update`` whenever the request changes (``update``, or
:meth:`SlackChannel.show` from ``gatekeeper serve``, which follows the
store's change feed). Which Slack messages show a request is remembered in
the store, so the process that posted and the process that handles a click
need not be the same one.

It uses slack-sdk's blocking ``WebClient``; async tool calls reach it through
a worker thread (the gate does that for channels without ``anotify``), so no
aiohttp is needed and the event loop is never blocked.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient

from ..._errors import ChannelError, GatekeeperError, TransitionRefused
from ..._grants import Grant, read_grant
from ...logs import get_logger, quoted
from ...models import ApprovalRequest, Approver, RequestStatus
from ._approvers import SlackApprovers
from ._blocks import reminder, request_message
from ._retry import SlackCaller

if TYPE_CHECKING:
    from ..._gate import Gatekeeper
    from ...store import Store

__all__ = ["MessageRef", "SlackChannel"]

log = get_logger("gatekeeper.slack")

MessageRef = tuple[str, str]  # (channel id, message ts)
_KEEP = 7 * 86400.0  # how long after expiry a message reference is kept
_MAX_DMS = 50
_APPROVED = (RequestStatus.APPROVED, RequestStatus.EXECUTING, RequestStatus.EXECUTED)


class SlackChannel:
    """Posts each held call to Slack and keeps the message in step with the request.

    Give it either ``channel`` (an id such as ``C0123ABCD``; every request is
    posted there) or ``dm=True`` (each approver who may decide the request
    gets a direct message). ``console_url`` adds an "Open in console" button.

    Example::

        from slack_sdk import WebClient
        gate.add_channel(SlackChannel(WebClient(token=os.environ["SLACK_BOT_TOKEN"]),
                                      channel="C0123ABCD"))
    """

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str | None = None,
        dm: bool = False,
        console_url: str | None = None,
        attempts: int = 5,
        max_wait: float = 30.0,
        usergroup_ttl: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (channel is None) == (not dm):
            raise ValueError("give SlackChannel either channel='C…' or dm=True")
        # Our policy retries; slack-sdk's own handlers would retry underneath it.
        client.retry_handlers = []
        self.client = client
        self.channel = channel
        self.dm = dm
        self.console_url = console_url
        self.call = SlackCaller(attempts=attempts, max_wait=max_wait, sleep=sleep)
        self.usergroup_ttl = usergroup_ttl
        self._gate: Gatekeeper | None = None
        self.approvers = SlackApprovers((), client, call=self.call, ttl=usergroup_ttl)

    # -- wiring ----------------------------------------------------------------------------
    def bind(self, gate: Gatekeeper) -> None:
        """Called by the gate when the channel is added: read its approvers and store."""
        self._gate = gate
        approvers: Iterable[Approver] = (gate.approvers or {}).values()
        self.approvers = SlackApprovers(
            approvers, self.client, call=self.call, ttl=self.usergroup_ttl
        )

    @property
    def gate(self) -> Gatekeeper:
        if self._gate is None:
            raise ChannelError("SlackChannel is not bound to a Gatekeeper yet", channel="slack")
        return self._gate

    @property
    def store(self) -> Store:
        return self.gate.store

    def _now(self) -> dt.datetime:
        return self.gate.clock.now()

    # -- the Channel protocol ----------------------------------------------------------------
    def notify(self, request: ApprovalRequest) -> None:
        """Post the request; every message posted is remembered before the next is tried."""
        message = self.render(request)
        targets = self._targets(request)
        if not targets:
            raise ChannelError(
                f"slack: nobody to message for request {request.id}: no approver of group "
                f"{request.group!r} has a slack_user_id or slack_usergroup",
                channel="slack",
            )
        refs: list[MessageRef] = []
        for target in targets:
            refs.append(self._post(target, message))
            self._remember(request, refs)
        self.store.remember(_shown_key(request.id), _version(request), self._ttl(request))

    def update(self, request: ApprovalRequest) -> None:
        """Rewrite every message of ``request`` to show where it is now."""
        self.show(request)

    # -- keeping messages true ------------------------------------------------------------------
    def render(self, request: ApprovalRequest) -> dict[str, Any]:
        return request_message(
            request,
            now=self._now(),
            console_url=self.console_url,
            slack_ids=self.approvers.slack_ids(),
            misses=self.gate.policy.misses(request.call),
            respond=self.gate._may_respond(request),
            grantable=self._grantable(request),
            grant=self._grant_of(request),
        )

    def _grantable(self, request: ApprovalRequest) -> bool:
        """Whether to offer "Approve + matching": the request can carry a standing approval."""
        if request.status is not RequestStatus.PENDING:
            return False
        try:
            self.gate.check_grantable(request)
        except TransitionRefused:
            return False
        return True

    def _grant_of(self, request: ApprovalRequest) -> Grant | None:
        """The standing approval ``request`` was approved with, if it is still kept.

        Read from the agent's own grants (which its gate may read too), each
        signature checked; one that can't be read is left out, never shown.
        """
        if request.status not in _APPROVED or request.is_question:
            return None
        try:
            stored, _ = self.store.grants_for(request.call.agent)
        except GatekeeperError as exc:
            log.warning("slack: grants of %s not read: %s", quoted(request.call.agent), exc)
            return None
        for signed in stored.values():
            try:
                grant = read_grant(self.store.decision_keys, signed)
            except (GatekeeperError, ValueError):
                continue
            if grant.kind == "standing" and grant.request_id == request.id:
                return grant
        return None

    def show(
        self, request: ApprovalRequest, *, also: Sequence[MessageRef] = (), force: bool = False
    ) -> bool:
        """``chat.update`` the request's messages (and ``also``) to show its current state.

        The state is read from the store right before each update, and read
        again after it: if the request moved on meanwhile, the messages are
        painted again, so a late update never leaves an older state showing.
        The state shown is noted in the store once Slack has taken it, and a
        process that finds it noted already skips the call (several try: the
        agent that waited, every ``gatekeeper serve``); ``force`` repaints
        anyway (a click on a message that looks stale). True when Slack was called.
        """
        called = False
        for _ in range(3):
            current = self.store.get(request.id)
            version = _version(current)
            refs = list(dict.fromkeys([*self.refs(current.id), *also]))
            if not refs:
                return called
            if not force and self.store.recall(_shown_key(current.id)) == version:
                return called
            self._paint(current, refs)
            called = True
            self.store.remember(_shown_key(current.id), version, self._ttl(current))
            if _version(self.store.get(request.id)) == version:
                return True
            force = True  # it moved on while we painted: paint the newer state over ours
        return called

    def _paint(self, request: ApprovalRequest, refs: Sequence[MessageRef]) -> None:
        message = self.render(request)
        failures: list[str] = []
        for channel, ts in refs:
            try:
                self.call(
                    "chat.update",
                    self.client.chat_update,
                    channel=channel,
                    ts=ts,
                    text=message["text"],
                    blocks=message["blocks"],
                )
            except ChannelError as exc:
                failures.append(str(exc))
        if failures:
            raise ChannelError("; ".join(failures), channel="slack")

    def remind(self, request: ApprovalRequest, *, mention: str | None) -> None:
        """Post a reminder in the thread of the request's first message."""
        refs = self.refs(request.id)
        if not refs:
            return
        channel, ts = refs[0]
        self._post(channel, reminder(request, now=self._now(), mention=mention), thread_ts=ts)

    def _post(
        self, channel: str, message: dict[str, Any], *, thread_ts: str | None = None
    ) -> MessageRef:
        """``chat.postMessage`` (links never unfurled); where the message landed."""
        response = self.call(
            "chat.postMessage",
            self.client.chat_postMessage,
            channel=channel,
            thread_ts=thread_ts,
            text=message["text"],
            blocks=message["blocks"],
            unfurl_links=False,
            unfurl_media=False,
        )
        return (str(response["channel"]), str(response["ts"]))

    def tell(self, channel: str, user: str, text: str) -> None:
        """An ephemeral message only ``user`` sees; ``text`` must already be escaped."""
        self.call(
            "chat.postEphemeral",
            self.client.chat_postEphemeral,
            channel=channel,
            user=user,
            text=text,
        )

    # -- where the messages are ------------------------------------------------------------
    def refs(self, request_id: str) -> list[MessageRef]:
        raw = self.store.recall(_refs_key(request_id))
        if raw is None:
            return []
        try:
            return [(str(c), str(t)) for c, t in json.loads(raw)]
        except (ValueError, TypeError):
            log.warning("slack: unreadable message references for %s", request_id)
            return []

    def _remember(self, request: ApprovalRequest, refs: Sequence[MessageRef]) -> None:
        self.store.remember(_refs_key(request.id), json.dumps(list(refs)), self._ttl(request))

    def _ttl(self, request: ApprovalRequest) -> float:
        left = (request.expires_at - self._now()).total_seconds()
        return max(left, 0.0) + _KEEP

    def _targets(self, request: ApprovalRequest) -> list[str]:
        if self.channel is not None:
            return [self.channel]
        users: list[str] = []
        for approver in self.approvers.approvers:
            if not approver.may_decide(request):
                continue
            if approver.slack_user_id:
                users.append(approver.slack_user_id)
            if approver.slack_usergroup:
                users.extend(sorted(self.approvers.members(approver.slack_usergroup)))
        return list(dict.fromkeys(users))[:_MAX_DMS]


def _refs_key(request_id: str) -> str:
    return f"slack:msg:{request_id}"


def _shown_key(request_id: str) -> str:
    return f"slack:shown:{request_id}"


def _version(request: ApprovalRequest) -> str:
    """What a message shows of a request: its status and how many votes it has."""
    return f"{request.status.value}:{len(request.decisions)}"
