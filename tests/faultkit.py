"""A TCP proxy in front of a real redis-server that can lose a reply: a real fault, on demand.

``ReplyDropper(port)`` listens on a free port and passes bytes both ways. Set
``drop_replies = 1`` and the next reply the server sends is swallowed: the
command ran in Redis, but its caller never hears so and, after its socket
timeout, tries again — the fault that makes retried writes land twice. Set
``drop_ratio`` (0 to 1) and each chunk of replies is lost with that chance
(``seed`` fixes the draws), on every connection: commands' replies and the
messages of pub/sub subscriptions alike.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading


class ReplyDropper:
    def __init__(self, target_port: int, host: str = "127.0.0.1", *, seed: int = 0) -> None:
        self.target = (host, target_port)
        self.drop_replies = 0
        self.drop_ratio = 0.0
        self.dropped = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://{host}:{self.port}/0"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:  # the server is gone (stopped, or being restarted): as Redis would
                client.close()
                continue
            self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if replies:
                    with self._lock:
                        if self.drop_replies > 0:
                            self.drop_replies -= 1
                            self.dropped += 1
                            continue  # lost on the way back
                        if self.drop_ratio and self._random.random() < self.drop_ratio:
                            self.dropped += 1
                            continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()
