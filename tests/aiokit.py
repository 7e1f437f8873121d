"""A store's async face (``store.aio``) behind its blocking methods, for the contract suite.

``AsyncFace(store)`` answers every method the async face has by running the
coroutine on an event loop of its own (a thread), and waiting for it; the
rest (``flush``, ``audit_entries``, ``close``...) the blocking store answers.
The store contract suite runs against it, so each transition, query and
wait is shown to behave the same on both faces.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from gatekeeper.store import Store


class AsyncFace:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = getattr(store, "clock", None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aio-face", daemon=True)
        self._thread.start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def __getattr__(self, name: str) -> Any:
        aio = self.store.aio
        method = getattr(aio, name, None)
        if method is not None and inspect.iscoroutinefunction(method):

            def on_the_async_face(*args: Any, **kwargs: Any) -> Any:
                return self._run(method(*args, **kwargs))

            return on_the_async_face
        found: Callable[..., Any] = getattr(self.store, name)
        return found

    def close(self) -> None:
        async def shut_down() -> None:
            aclose = getattr(self.store.aio, "aclose", None)
            if aclose is not None:
                await aclose()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._run(shut_down())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
            self.store.close()
