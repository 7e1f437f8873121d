"""Sessions: who is calling (agent), what they were granted (scopes) and why (reason).

The current session lives in a context variable, so it follows the code into
asyncio tasks and ``asyncio.to_thread`` on its own; for other threads use
:meth:`Session.wrap`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from ._canonical import first_surrogate
from ._clock import new_id
from ._errors import InvalidToolCall
from .logs import get_logger

__all__ = [
    "Session",
    "call_key",
    "check_call_key",
    "current_call_key",
    "current_session",
    "on_held",
    "tell_held",
]

R = TypeVar("R")

_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "gatekeeper_session", default=None
)
# The reset tokens of the sessions entered in *this* context, innermost last. Kept in
# a context variable (not on the Session) so tasks sharing one Session object may
# leave it in any order.
_entered: contextvars.ContextVar[tuple[contextvars.Token[Session | None], ...]] = (
    contextvars.ContextVar("gatekeeper_session_tokens", default=())
)


def current_session() -> Session | None:
    """The session the calling code runs in, or None outside any session."""
    return _current.get()


@dataclass(frozen=True)
class Session:
    """An agent at work: its name, granted scopes, stated reason and session id.

    Use it as a context manager, sync or async::

        with gate.session(agent="billing-bot", scopes={"orders:read"}, reason="refund A-1"):
            search_docs("refund policy")
    """

    agent: str
    scopes: frozenset[str] = frozenset()
    reason: str | None = None
    id: str = field(default_factory=new_id)

    @classmethod
    def create(
        cls,
        agent: str,
        *,
        scopes: Iterable[str] = (),
        reason: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        if not agent or not isinstance(agent, str):
            raise ValueError("a session needs an agent name")
        for what, text in (("agent name", agent), ("reason", reason), ("id", session_id)):
            code = first_surrogate(text) if isinstance(text, str) else None
            if code is not None:
                raise InvalidToolCall(
                    f"the session's {what} contains a lone surrogate ({code}), which is not "
                    "valid Unicode text and can't be shown to an approver or recorded"
                )
        return cls(
            agent=agent,
            scopes=frozenset(scopes),
            reason=reason,
            id=session_id or new_id(),
        )

    def __enter__(self) -> Session:
        _entered.set((*_entered.get(), _current.set(self)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tokens = _entered.get()
        _entered.set(tokens[:-1])
        _current.reset(tokens[-1])

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def wrap(self, fn: Callable[..., R]) -> Callable[..., R]:
        """``fn`` made to run inside this session, in whatever thread calls it.

        Example::

            pool.submit(session.wrap(refund), "A-1", 20.0)
        """

        @functools.wraps(fn)
        def in_session(*args: Any, **kwargs: Any) -> R:
            token = _current.set(self)
            try:
                return fn(*args, **kwargs)
            finally:
                _current.reset(token)

        return in_session


#: Longest idempotency key a call may carry (it is stored, and shown to approvers).
MAX_CALL_KEY = 256

_call_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gatekeeper_call_key", default=None
)


def check_call_key(key: object) -> str:
    """``key`` if it can name a call: a non-blank str of at most MAX_CALL_KEY characters."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_CALL_KEY:
        raise InvalidToolCall(
            f"a call key is a non-blank string of at most {MAX_CALL_KEY} characters, "
            f"got {type(key).__name__} of length {len(key) if isinstance(key, str) else '-'}"
        )
    if first_surrogate(key) is not None:
        raise InvalidToolCall("a call key must be valid Unicode (it holds a lone surrogate)")
    return key


@contextlib.contextmanager
def call_key(key: str) -> Iterator[str]:
    """Give the guarded call made inside this block an idempotency key.

    The same call made again under the same key — after a restart, or by a
    resumed run — re-attaches to the request it made before instead of
    asking the people twice (see docs/concepts.md, "Durable approvals").
    Framework adapters pass the framework's tool-call id on their own::

        with gatekeeper.call_key(f"refund:{order_id}"):
            refund(order_id, amount)
    """
    token = _call_key.set(check_call_key(key))
    try:
        yield key
    finally:
        _call_key.reset(token)


def current_call_key() -> str | None:
    """The key :func:`call_key` set for calls made here, if any."""
    return _call_key.get()


_on_held: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "gatekeeper_on_held", default=None
)


@contextlib.contextmanager
def on_held(callback: Callable[[Any], None]) -> Iterator[None]:
    """Call ``callback(request)`` when a guarded call made inside this block is held.

    It runs once the request is stored, before the call starts waiting, so a
    UI can show "waiting for approval (request ID)" instead of "running".
    Adapters use it to put the request into the framework's own stream (a
    LangGraph ``custom`` event). An error in the callback is logged, never
    raised: the call goes on waiting.
    """
    token = _on_held.set(callback)
    try:
        yield
    finally:
        _on_held.reset(token)


def tell_held(request: Any) -> None:
    """Call the :func:`on_held` callback of this context, if any, with ``request``."""
    callback = _on_held.get()
    if callback is None:
        return
    try:
        callback(request)
    except Exception:  # a UI hook must not break the call it reports on
        get_logger("gatekeeper.calls").exception("on_held callback failed")
