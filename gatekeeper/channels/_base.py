"""The ``Channel`` protocol: where people are told about requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..models import ApprovalRequest

if TYPE_CHECKING:
    from .._gate import Gatekeeper

__all__ = ["AsyncChannel", "Channel"]


@runtime_checkable
class Channel(Protocol):
    """Tells people about a new request (``notify``) and about its outcome (``update``).

    A channel that lets people decide (buttons, a prompt) calls
    ``gate.approve`` / ``gate.deny``; it gets the gate from :meth:`bind`, which
    the :class:`~gatekeeper.Gatekeeper` calls once when the channel is added.
    A channel that raises never approves anything: the failure is audited and
    the request stays pending.
    """

    def bind(self, gate: Gatekeeper) -> None: ...

    def notify(self, request: ApprovalRequest) -> None: ...

    def update(self, request: ApprovalRequest) -> None: ...


@runtime_checkable
class AsyncChannel(Protocol):
    """Optional async face of a channel; async tool calls use it when present."""

    async def anotify(self, request: ApprovalRequest) -> None: ...

    async def aupdate(self, request: ApprovalRequest) -> None: ...
