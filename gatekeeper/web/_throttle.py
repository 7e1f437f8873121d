"""Sign-in attempt limits: which client is asking, and how often it may try.

Every attempt counts twice, in the store (shared by every console process):
once for the name tried from that client address (``login_attempts``), once
for the address whatever names it tries (``login_attempts_per_address``), so
neither guessing one approver's secret nor trying one secret on many names
goes fast. The client address is the connection's peer; ``X-Forwarded-For``
is believed only when the peer is one of ``trusted_proxies``, and then only up
to the first address that is not a trusted proxy (anything left of that the
client could have written itself). IPv6 clients count per /64, the block one
host usually holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._gate import Gatekeeper
    from ._settings import WebSettings

__all__ = ["TooManyAttempts", "check_attempts", "client_address"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TooManyAttempts(Exception):
    """Sign-in attempts from this client (for this name, or for any) are over the limit."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many sign-in attempts; try again later")
        self.retry_after = retry_after


def _address(text: str) -> _Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def client_address(settings: WebSettings, peer: str | None, forwarded_for: str = "") -> str:
    """Who sign-in attempts are counted against: an IPv4 address or an IPv6 /64.

    ``peer`` is the connection's address; ``forwarded_for`` the
    ``X-Forwarded-For`` header(s), comma-joined, read only when ``peer`` is a
    trusted proxy.
    """
    found = _address(peer or "")
    if found is None:
        return (peer or "unknown")[:100]
    networks = settings.proxy_networks
    if forwarded_for and any(found in net for net in networks):
        for hop in reversed(forwarded_for.split(",")):
            previous = _address(hop)
            if previous is None:
                break  # unreadable: count against the last proxy we trust
            found = previous
            if not any(found in net for net in networks):
                break
    if isinstance(found, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((found, 64), strict=False))
    return str(found)


def check_attempts(gate: Gatekeeper, settings: WebSettings, name: str, address: str) -> None:
    """Count one sign-in attempt for ``name`` from ``address``; TooManyAttempts when over a limit.

    Every attempt counts (right or wrong, known name or not), before any secret
    is checked: a refused attempt costs no password hashing.
    """
    named = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:32]
    window = settings.login_window
    per_name = gate.store.hit(f"login:name:{named}:{address}", window)
    per_address = gate.store.hit(f"login:address:{address}", window)
    if per_name > settings.login_attempts or per_address > settings.login_attempts_per_address:
        raise TooManyAttempts(window)
