"""``gatekeeper demo``: a scripted agent whose held calls you decide in this terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

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


def run_demo(
    *,
    redis_url: str | None = None,
    approver: str = "you",
    out: TextIO | None = None,
    inp: TextIO | None = None,
) -> int:
    """Run the scripted agent; held calls are asked about on ``inp``/``out``."""
    out = out or sys.stdout
    store: Store = RedisStore(redis_url, prefix="gatekeeper-demo") if redis_url else MemoryStore()
    gate = Gatekeeper(
        policy=Policy.from_yaml(DEMO_POLICY, source="demo policy"),
        store=store,
        approvers=[Approver(name=approver, groups=("ops",))],
        channels=[ConsoleChannel(approver, stdin=inp, stdout=out)],
        default_timeout=300,
    )

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

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
    say("gatekeeper demo: an agent told to 'train the model as fast as possible'.")
    say(f"Held calls are shown here; answer as approver '{approver}'.\n")
    try:
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
        gate.resume(agent="trainer-bot", by=approver)
        say("The agent was resumed. Try `gatekeeper init` to write a config of your own.")
    finally:
        gate.close()
    return 0
