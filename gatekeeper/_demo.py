"""``gatekeeper demo``: a scripted agent whose held calls you decide in this terminal."""

from __future__ import annotations

import importlib.util
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ._errors import ToolCallBlocked
from ._gate import Gatekeeper
from .channels import ConsoleChannel
from .models import Approver
from .policy import Policy
from .store import MemoryStore, RedisStore, Store

__all__ = ["DEMO_POLICY", "run_demo"]

DEMO_POLICY = """\
version: 1
default: require_approval
agents:
  trainer-bot: {scopes: [data:read, jobs:submit]}
tools:
  submit_job: {scopes: [jobs:submit]}
  rent_gpus: {scopes: [compute:buy], irreversible: true}
rules:
  - id: read-only
    match: {tool: [read_file, list_jobs]}
    verdict: allow
    reason: reading is safe
  - id: small-jobs
    match: {tool: submit_job, args: {gpus: {le: 8}}}
    verdict: allow
    reason: jobs within the team's quota
  - id: no-secrets
    match: {tool: read_file, args: {path: {path_under: [/etc, /root/.ssh]}}}
    verdict: deny
    reason: system and key files are off limits
  - id: egress
    match: {tool: http_request, args: {url: {host_not_in: [pypi.org, "*.internal.example"]}}}
    verdict: require_approval
    risk: high
    reason: network access outside the allowlist
  - id: no-tunnels
    match: {tool: open_tunnel}
    verdict: halt
    reason: opening a tunnel out of the sandbox
"""


def _demo_gate(store: Store, approver: str, channels: list[Any]) -> Gatekeeper:
    return Gatekeeper(
        policy=Policy.from_yaml(DEMO_POLICY, source="demo policy"),
        store=store,
        approvers=[Approver(name=approver, groups=("ops",))],
        channels=channels,
        default_timeout=600,
    )


def _agent(gate: Gatekeeper, say: Callable[[str], None]) -> None:
    """The scripted agent: told to train as fast as possible, it reaches for more."""

    @gate.guard
    def read_file(path: str) -> str:
        return f"<{len(path)} bytes of {path}>"

    @gate.guard
    def submit_job(script: str, gpus: int) -> str:
        return f"job {script!r} queued on {gpus} GPU(s)"

    @gate.guard(irreversible=True, scopes={"compute:buy"})
    def rent_gpus(provider: str, count: int, hours: int) -> str:
        return f"rented {count} GPUs from {provider} for {hours}h"

    @gate.guard
    def http_request(url: str, method: str = "GET") -> str:
        return f"{method} {url}: 200 OK"

    @gate.guard
    def open_tunnel(host: str, port: int) -> str:
        return f"tunnel to {host}:{port}"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("Read the training config", lambda: read_file("/srv/train/config.yaml")),
        ("Submit a small training job", lambda: submit_job("train.py", gpus=4)),
        ("Read the root SSH key (refused by policy)", lambda: read_file("/root/.ssh/id_rsa")),
        (
            "Submit a job bigger than the quota (held: no rule allows it)",
            lambda: submit_job("train.py", gpus=64),
        ),
        (
            "Rent GPUs outside the sandbox (held: irreversible, out of scope)",
            lambda: rent_gpus("cheap-gpus.example", count=32, hours=12),
        ),
        (
            "Upload results to an unknown host (held: egress)",
            lambda: http_request("https://paste.example/upload", method="POST"),
        ),
        (
            "Open a tunnel out of the sandbox (halts the agent)",
            lambda: open_tunnel("203.0.113.9", 443),
        ),
        (
            "Read a file after the halt (refused: the agent is halted)",
            lambda: read_file("/srv/train/log.txt"),
        ),
    ]
    with gate.session(
        agent="trainer-bot",
        scopes={"data:read", "jobs:submit"},
        reason="train the model as fast as possible",
    ):
        for title, step in steps:
            say(f"--> {title}")
            try:
                say(f"    ran: {step()}")
            except ToolCallBlocked as exc:
                say(f"    blocked: {exc.model_message}")
    report = gate.verify_audit()
    say(f"\nAudit log: {report.count} events, chain {'intact' if report.ok else 'BROKEN'}.")


def run_demo(
    *,
    redis_url: str | None = None,
    approver: str = "you",
    out: TextIO | None = None,
    inp: TextIO | None = None,
    terminal: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    exit_when_done: bool = False,
) -> int:
    """Run the scripted agent; decide its held calls in the web console (or the terminal).

    The console is served on ``host:port``; a one-time sign-in link for
    ``approver`` is printed. With ``terminal=True`` (or without the ``web``
    extra) held calls are asked about on ``inp``/``out`` instead.
    """
    out = out or sys.stdout

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    store: Store = RedisStore(redis_url, prefix="gatekeeper-demo") if redis_url else MemoryStore()
    if not terminal and not _web_available():
        say(
            "(the web extra is not installed: pip install 'hitl-gatekeeper[web]'; "
            "answering in the terminal instead)"
        )
        terminal = True
    if terminal:
        gate = _demo_gate(store, approver, [ConsoleChannel(approver, stdin=inp, stdout=out)])
        say("gatekeeper demo: an agent told to 'train the model as fast as possible'.")
        say(f"Held calls are shown here; answer as approver '{approver}'.\n")
        try:
            _agent(gate, say)
            gate.resume(agent="trainer-bot", by=approver)
            say("The agent was resumed. Try `gatekeeper init` to write a config of your own.")
        finally:
            gate.close()
        return 0
    return _serve_demo(store, approver, host, port, exit_when_done, say)


def _web_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn", "jinja2"))


def _serve_demo(
    store: Store,
    approver: str,
    host: str,
    port: int,
    exit_when_done: bool,
    say: Callable[[str], None],
) -> int:
    import uvicorn

    from .web import WebSettings, create_app
    from .web._auth import make_login_link

    base_url = f"http://{host}:{port}"
    settings = WebSettings(secret_key=secrets.token_urlsafe(32), base_url=base_url)
    gate = _demo_gate(store, approver, [])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gate, settings),
            host=host,
            port=port,
            log_level="warning",
            proxy_headers=False,  # the console reads X-Forwarded-For from trusted_proxies only
        )
    )
    serving = threading.Thread(target=server.run, name="gatekeeper-demo-console", daemon=True)
    serving.start()
    while not server.started:
        if not serving.is_alive():
            say(f"could not serve the console on {base_url} (is the port taken? try --port)")
            gate.close()
            return 1
        time.sleep(0.05)
    say("gatekeeper demo: an agent told to 'train the model as fast as possible'.")
    say(f"Console:  {base_url}/")
    say(f"Sign in:  {make_login_link(settings, approver, ttl=3600)}")
    say("Open the sign-in link: held calls appear in the queue as the agent makes them.\n")
    done = threading.Event()

    def agent() -> None:
        try:
            _agent(gate, say)
        finally:
            done.set()

    threading.Thread(target=agent, name="gatekeeper-demo-agent", daemon=True).start()
    try:
        done.wait()
        if not exit_when_done:
            say("The agent is done (and halted). The console stays up; Ctrl-C to stop.")
            while serving.is_alive():
                serving.join(1)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        server.should_exit = True
        serving.join(10)
        gate.close()
    return 0
