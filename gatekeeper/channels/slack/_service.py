"""What ``gatekeeper serve`` does for Slack while it runs.

- Keeps every Slack message true: it follows the store's change feed, so a
  decision from the web console, the CLI, another process or a halt rewrites
  the message even when the agent that posted it is gone.
- Sweeps: a pending request past its expiry is expired (the message then
  says so), and one pending longer than its rule's ``escalate_after`` gets a
  reminder in the message's thread mentioning the approver group, once.
- Receives clicks over Socket Mode when an app-level token is configured
  (the HTTP request URL is a route of the web app, see ``gatekeeper.web``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from slack_sdk.signature import SignatureVerifier

from ..._errors import GatekeeperError
from ...logs import get_logger
from ...models import ApprovalRequest, RequestStatus
from ._channel import SlackChannel
from ._interactions import SlackInteractions
from ._socket import SlackSocketMode

if TYPE_CHECKING:
    from ..._gate import Gatekeeper

__all__ = ["SlackService"]

log = get_logger("gatekeeper.slack")

_SWEEP_WINDOW = dt.timedelta(days=1)  # how far back a resync repaints decided requests
_EXPIRY_WINDOW = dt.timedelta(days=30)  # how far back the expiry sweep looks
_PAGE = 200


async def _all(
    page: Callable[[int], Awaitable[list[ApprovalRequest]]], *, most: int = 10_000
) -> list[ApprovalRequest]:
    """Every item of a paged store query (up to ``most``)."""
    found: list[ApprovalRequest] = []
    while len(found) < most:
        batch = await page(len(found))
        found.extend(batch)
        if len(batch) < _PAGE:
            break
    return found


class SlackService:
    """Slack interactivity, message upkeep and reminders for one ``gatekeeper serve``.

    Example::

        service = SlackService(gate, channel, signing_secret=..., app_token=...)
        app = create_app(gate, settings, slack=service)   # runs it with the app
    """

    def __init__(
        self,
        gate: Gatekeeper,
        channel: SlackChannel,
        *,
        signing_secret: str | None = None,
        app_token: str | None = None,
        team_id: str | None = None,
        sweep_interval: float = 15.0,
    ) -> None:
        if not signing_secret and not app_token:
            raise ValueError(
                "Slack needs a way to send clicks: a signing secret (HTTP request URL) "
                "or an app-level token (Socket Mode)"
            )
        if channel._gate is None:
            channel.bind(gate)
        self.gate = gate
        self.channel = channel
        self.interactions = SlackInteractions(gate, channel, team_id=team_id)
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.socket = (
            SlackSocketMode(self.interactions, app_token=app_token, web_client=channel.client)
            if app_token
            else None
        )
        self.sweep_interval = sweep_interval
        self.reminded = 0  # reminders posted by this process (tests read it)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the store, sweep and (with an app token) keep Socket Mode up, until cancelled."""
        tasks = [self._follow(), self._sweeping()]
        if self.socket is not None:
            tasks.append(self._connecting(self.socket))
        try:
            await asyncio.gather(*tasks)
        finally:
            if self.socket is not None:
                await asyncio.to_thread(self.socket.close)

    async def _connecting(self, socket: SlackSocketMode) -> None:
        """Connect Socket Mode, retrying with backoff: Slack or the token may be down at start."""
        delay = 1.0
        while True:
            try:
                await asyncio.to_thread(socket.start)
                return  # connected; slack-sdk reconnects by itself from here on
            except Exception as exc:
                log.error(
                    "slack: Socket Mode could not connect (retrying in %.0fs): %s", delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _follow(self) -> None:
        while True:
            try:
                async for request_id in self.gate.store.aio.changes():
                    if request_id:
                        await self._refresh(request_id)
                    else:
                        await self.resync()
            except Exception:  # the feed broke (Redis went away): open it again shortly
                log.exception("slack: the store's change feed failed; reopening")
                await asyncio.sleep(1.0)

    async def resync(self) -> None:
        """Repaint every request that may have changed unseen: all pending, the last day's others.

        The change feed asks for this (an empty id) when it starts, when it
        re-subscribed and when this reader fell behind and changes were dropped.
        """
        store = self.gate.store.aio
        since = self.gate.clock.now() - _SWEEP_WINDOW
        seen: set[str] = set()
        for page in (
            await _all(lambda offset: store.pending(limit=_PAGE, offset=offset)),
            await _all(lambda offset: store.history(since=since, limit=_PAGE, offset=offset)),
        ):
            for req in page:
                if req.id not in seen:
                    seen.add(req.id)
                    await self._refresh(req.id)

    async def _refresh(self, request_id: str) -> None:
        """Show one request on its messages; nothing that goes wrong here stops the loop."""
        try:
            req = await self.gate.store.aio.get(request_id)
        except GatekeeperError as exc:
            log.warning("slack: could not read request %s: %s", request_id, exc)
            return
        try:
            await asyncio.to_thread(self.channel.show, req)
        except Exception as exc:
            log.warning("slack: could not show request %s: %s", request_id, exc)
            with contextlib.suppress(GatekeeperError):
                await asyncio.to_thread(self.gate._channel_failed, self.channel, req, exc, now=True)

    async def _sweeping(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the sweep must outlive a bad moment (Redis restarting, ...)
                log.exception("slack: sweep failed")
            await asyncio.sleep(self.sweep_interval)

    # -- the sweep ---------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Expire what is overdue; remind about what waits longer than ``escalate_after``."""
        store = self.gate.store.aio
        now = self.gate.clock.now()
        since = now - _EXPIRY_WINDOW
        overdue = await _all(
            lambda offset: store.history(
                status=RequestStatus.EXPIRED, since=since, limit=_PAGE, offset=offset
            )
        )
        for req in overdue:  # "expired" includes pending requests past their expiry
            if req.status is RequestStatus.PENDING:
                with contextlib.suppress(GatekeeperError):
                    await store.expire(req.id)  # the change feed then repaints the message
        for req in await _all(lambda offset: store.pending(limit=_PAGE, offset=offset)):
            await self._maybe_remind(req, now)

    async def _maybe_remind(self, req: ApprovalRequest, now: dt.datetime) -> None:
        after = req.classification.approval.escalate_after
        if after is None or (now - req.created_at).total_seconds() < after:
            return
        if not await asyncio.to_thread(self.channel.refs, req.id):
            return
        ttl = max((req.expires_at - now).total_seconds(), 0.0) + 86400.0
        if not await self.gate.store.aio.use_once(f"slack:reminded:{req.id}", ttl):
            return
        try:
            await asyncio.to_thread(self.channel.remind, req, mention=self.mention(req))
            self.reminded += 1
        except GatekeeperError as exc:
            await asyncio.to_thread(self.gate._channel_failed, self.channel, req, exc, now=True)

    def mention(self, req: ApprovalRequest) -> str | None:
        """The Slack user group to mention for ``req``'s approver group, if one is known."""
        for approver in self.channel.approvers.approvers:
            if approver.slack_usergroup and approver.may_decide(req):
                return approver.slack_usergroup
        return None
