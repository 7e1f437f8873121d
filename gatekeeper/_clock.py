"""Time and ids, injectable so expiry and timeouts are tested without waiting."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "new_id"]

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class Clock(Protocol):
    """Wall-clock time as an aware UTC datetime."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD.encode())


def new_id() -> str:
    """A 26-character, time-sortable, random id (ULID layout, lower-case Crockford base32).

    48 bits of milliseconds then 80 random bits, base32-encoded from the top:
    ids sort by creation time, and two ids of one millisecond still differ.
    """
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)
    # 4 zero bytes in front make 160 bits = 32 base32 digits; the first 6 are zeros.
    return base64.b32encode(bytes(4) + raw)[6:].translate(_TO_CROCKFORD).decode("ascii")
