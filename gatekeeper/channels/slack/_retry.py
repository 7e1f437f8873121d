"""Calling the Slack Web API with a bounded, polite retry.

slack-sdk's own retry handlers are switched off (``retry_handlers=[]``) so
that one policy, written with tenacity, decides: a 429 waits exactly what
``Retry-After`` says (capped), a 5xx or a dropped connection backs off
exponentially, anything else (``channel_not_found``, ``invalid_auth``) fails
at once. After ``attempts`` tries, or once the next wait would pass
``max_wait`` seconds in all, the call raises :class:`~gatekeeper.ChannelError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ..._errors import ChannelError
from ...logs import get_logger

__all__ = ["SlackCaller", "retry_after"]

log = get_logger("gatekeeper.slack")


def retry_after(exc: BaseException) -> float | None:
    """Seconds Slack asked us to wait (a 429's ``Retry-After``), else None."""
    if not isinstance(exc, SlackApiError):
        return None
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500
    # urllib's URLError, a refused connection, a timeout: the network, not Slack's answer.
    return isinstance(exc, OSError)


class SlackCaller:
    """Runs one Web API call under the retry policy; ``sleep`` is injectable for tests.

    Example::

        call = SlackCaller(attempts=5, max_wait=30)
        response = call("chat.postMessage", client.chat_postMessage, channel="C1", text="hi")
    """

    def __init__(
        self,
        *,
        attempts: int = 5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.max_wait = max_wait
        self.sleep = sleep

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc) if exc is not None else None
        # No Retry-After: 0.5 s doubling per attempt up to 8 s, plus up to 0.5 s of jitter.
        backoff = min(8.0, 0.5 * 2 ** (state.attempt_number - 1)) + random.uniform(0, 0.5)  # noqa: S311
        wait = asked if asked is not None else backoff
        waited = state.idle_for
        if waited + wait > self.max_wait:
            # Waiting that long would pass the bound: give up now, loudly.
            raise _OutOfTime(wait, waited) from exc
        log.info("slack: retrying in %.1fs after %s", wait, exc)
        return wait

    def __call__(
        self, method: str, func: Callable[..., SlackResponse], /, **kwargs: Any
    ) -> SlackResponse:
        """``func(**kwargs)``, retried; a final failure is a ChannelError naming ``method``."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(_transient),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(func, **kwargs)
        except _OutOfTime as exc:
            cause = exc.__cause__
            raise ChannelError(
                f"slack {method}: gave up: waiting {exc.wait:.0f}s more would pass the "
                f"{self.max_wait:.0f}s bound ({_describe(cause)})",
                channel="slack",
            ) from cause
        except (SlackClientError, OSError) as exc:
            raise ChannelError(f"slack {method}: {_describe(exc)}", channel="slack") from exc


class _OutOfTime(Exception):
    def __init__(self, wait: float, waited: float) -> None:
        super().__init__(f"would wait {wait}s after {waited}s")
        self.wait = wait
        self.waited = waited


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, SlackApiError):
        data = getattr(exc.response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        status = getattr(exc.response, "status_code", "?")
        return f"HTTP {status}, {error or 'no error code'}"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
