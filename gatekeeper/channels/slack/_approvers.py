"""Who clicked: mapping a Slack user to a configured approver.

An approver is found by their own Slack user id (``slack_user_id``), or by
membership of a Slack user group (``slack_usergroup``), which is looked up
with ``usergroups.users.list`` and cached for ``ttl`` seconds. A user group
entry is one approver: two members of the same group count once toward a
quorum (list people one by one when a rule needs two of them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient

from ..._errors import ChannelError
from ...logs import get_logger
from ...models import ApprovalRequest, Approver
from ._retry import SlackCaller

__all__ = ["SlackApprovers"]

log = get_logger("gatekeeper.slack")


class SlackApprovers:
    """Finds the approver a Slack user acts as, for one request."""

    def __init__(
        self,
        approvers: Iterable[Approver],
        client: WebClient,
        *,
        call: SlackCaller,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.approvers = tuple(approvers)
        self.client = client
        self.call = call
        self.ttl = ttl
        self.clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self.lookups = 0  # usergroups.users.list calls made (tests read it)

    def members(self, usergroup: str) -> frozenset[str]:
        """The user ids of a Slack user group, from the cache while it is fresh."""
        now = self.clock()
        with self._lock:
            cached = self._members.get(usergroup)
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
        self.lookups += 1
        response = self.call(
            "usergroups.users.list", self.client.usergroups_users_list, usergroup=usergroup
        )
        users = response.get("users")
        if not isinstance(users, list):
            raise ChannelError(
                f"slack usergroups.users.list for {usergroup}: no user list in the answer",
                channel="slack",
            )
        found = frozenset(u for u in users if isinstance(u, str))
        with self._lock:
            self._members[usergroup] = (now, found)
        return found

    def resolve(self, user_id: str, request: ApprovalRequest | None) -> Approver | None:
        """The approver ``user_id`` decides ``request`` as, or None when there is none.

        Their own ``slack_user_id`` entry comes first; user groups are looked
        up only when that does not settle it.
        """
        for approver in self.approvers:
            if approver.slack_user_id == user_id and _may(approver, request):
                return approver
        for approver in self.approvers:
            if approver.slack_usergroup is None or not _may(approver, request):
                continue
            try:
                if user_id in self.members(approver.slack_usergroup):
                    return approver
            except ChannelError as exc:
                # Fail closed: a group we cannot read grants nothing.
                log.warning("slack: can't read user group %s: %s", approver.slack_usergroup, exc)
        return None

    def slack_ids(self) -> dict[str, str]:
        """Approver name -> Slack user id, for showing who decided as a mention."""
        return {a.name: a.slack_user_id for a in self.approvers if a.slack_user_id}


def _may(approver: Approver, request: ApprovalRequest | None) -> bool:
    return request is None or approver.may_decide(request)
