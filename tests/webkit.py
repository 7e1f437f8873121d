"""A console app on a real gate, API tokens and an agent thread, shared by the web tests."""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable
from typing import Any

from gatekeeper import Gatekeeper, Policy, Telemetry
from gatekeeper.models import Approver
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import ApiToken, WebSettings, create_app
from gatekeeper.web._auth import hash_secret

with warnings.catch_warnings():
    # starlette 1.x would rather run its test client on httpx2; httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TOKENS", "Agent", "Console", "TestClient", "bearer"]

SECRET_KEY = "k" * 40
ALICE_SECRET = "correct horse battery"
_ALICE_HASH = hash_secret(ALICE_SECRET)

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval, risk: high,
     approval: {group: finance}}
  - {id: pairs, match: {tool: wire}, verdict: require_approval, risk: critical,
     approval: {group: finance, quorum: 2}}
  - {id: notes, match: {tool: note}, verdict: require_approval, risk: low}
  - {id: quick, match: {tool: quick_note}, verdict: require_approval,
     approval: {timeout: 0.3}}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny}
"""

APPROVERS = (
    Approver(name="alice", groups=("finance",), web_secret_hash=_ALICE_HASH),
    Approver(name="bob", groups=("finance",)),
    Approver(name="carol"),
)

# token -> its configuration
TOKENS = {
    "tok-reader": ApiToken(name="reader", token_sha256="0" * 64, scopes=("read",)),
    "tok-bob": ApiToken(
        name="bob-bot", token_sha256="0" * 64, scopes=("read", "decide"), approver="bob"
    ),
    "tok-carol": ApiToken(
        name="carol-bot", token_sha256="0" * 64, scopes=("read", "decide"), approver="carol"
    ),
    "tok-admin": ApiToken(
        name="admin", token_sha256="0" * 64, scopes=("read", "decide", "admin"), approver="alice"
    ),
    "tok-halter": ApiToken(name="halter", token_sha256="0" * 64, scopes=("read", "admin")),
    "tok-billing-bot": ApiToken(
        name="billing-bot-automation",
        token_sha256="0" * 64,
        scopes=("read", "decide"),
        approver="bob",
        agent="billing-bot",
    ),
    "tok-billing-admin": ApiToken(
        name="billing-bot-operator",
        token_sha256="0" * 64,
        scopes=("read", "decide", "admin"),
        approver="alice",
        agent="billing-bot",
    ),
    "tok-ghost": ApiToken(
        name="ghost", token_sha256="0" * 64, scopes=("read", "decide"), approver="nobody"
    ),
}
TOKENS = {
    raw: tok.model_copy(update={"token_sha256": hashlib.sha256(raw.encode()).hexdigest()})
    for raw, tok in TOKENS.items()
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Console:
    """A gate with tools, a recording channel and the console app built on it."""

    def __init__(self, store: Store, telemetry: Telemetry | None = None, **settings: Any) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            approvers=APPROVERS,
            channels=[self.channel],
            telemetry=telemetry,
        )
        self.settings = WebSettings(
            secret_key=SECRET_KEY, api_tokens=tuple(TOKENS.values()), **settings
        )
        self.app = create_app(self.gate, self.settings)
        self.ran: list[tuple[str, dict[str, Any]]] = []
        gate = self.gate

        @gate.guard
        def refund(order_id: str, amount: float) -> str:
            self.ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        @gate.guard
        def wire(to: str, amount: float) -> str:
            self.ran.append(("wire", {"to": to, "amount": amount}))
            return "sent"

        @gate.guard
        def note(text: str) -> str:
            self.ran.append(("note", {"text": text}))
            return "noted"

        @gate.guard
        def quick_note(text: str) -> str:
            self.ran.append(("quick_note", {"text": text}))
            return "noted"

        self.tools: dict[str, Callable[..., Any]] = {
            "refund": refund,
            "wire": wire,
            "note": note,
            "quick_note": quick_note,
        }

    def call(self, tool: str, agent: str = "billing-bot", **kwargs: Any) -> Agent:
        """Make ``tool(**kwargs)`` in an agent thread; returns once its request is pending."""
        seen = len(self.channel.notified)
        agent_thread = Agent(self.gate, self.tools[tool], agent, kwargs)
        agent_thread.request = self.channel.wait_for_request(seen + 1)
        return agent_thread


class Agent(threading.Thread):
    """One guarded call made by an agent in a thread of its own."""

    def __init__(
        self, gate: Gatekeeper, tool: Callable[..., Any], agent: str, kwargs: dict[str, Any]
    ) -> None:
        super().__init__(daemon=True)
        self.gate, self.tool, self.agent, self.kwargs = gate, tool, agent, kwargs
        self.result: Any = None
        self.error: BaseException | None = None
        self.request: Any = None
        self.start()

    def run(self) -> None:
        try:
            with self.gate.session(agent=self.agent, reason="customer asked"):
                self.result = self.tool(**self.kwargs)
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 10.0) -> Any:
        """The call's result, or raises what it raised."""
        self.join(timeout)
        assert not self.is_alive(), "the agent is still waiting"
        if self.error is not None:
            raise self.error
        return self.result


class LiveServer:
    """The app served by a real uvicorn on a free port, in a thread (streaming tests)."""

    def __init__(self, app: Any) -> None:
        import socket
        import time

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:  # uvicorn offers no event to wait on
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
