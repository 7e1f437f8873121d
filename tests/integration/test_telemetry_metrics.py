"""``/metrics`` of a real console over HTTP, read with prometheus_client's own parser.

A scripted mix of calls (allowed, held then approved, held then denied, held
until expiry, refused by the policy) goes through a gate on a real Redis;
approvals and denials go through the console's API, as an approver's tool
would. The scrape must count exactly that mix, and the number of series must
not grow when the same mix runs again with new requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper import ApprovalDenied, ApprovalTimeout, Telemetry, ToolCallDenied
from gatekeeper.store import RedisStore
from gatekeeper.web import create_app
from tests.conftest import RedisServer
from tests.webkit import Console, LiveServer, bearer

pytestmark = pytest.mark.redis

BOB = bearer("tok-bob")
READER = bearer("tok-reader")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def served(
    redis_server: RedisServer, redis_prefix: str, counting: Any
) -> Iterator[tuple[Console, LiveServer]]:
    telemetry = counting(CollectorRegistry())
    console = Console(RedisStore(redis_server.url, prefix=redis_prefix), telemetry=telemetry)
    gate = console.gate

    @gate.guard
    def lookup(order_id: str) -> str:
        return f"order {order_id}"

    @gate.guard
    def drop_table(table: str) -> str:  # the policy denies it: never runs
        raise AssertionError("ran")

    console.tools.update(lookup=lookup, drop_table=drop_table)
    server = LiveServer(console.app)
    yield console, server
    server.stop()
    gate.close()


def scrape(server: LiveServer, headers: dict[str, str] = READER) -> Samples:
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.endswith("_created"):  # when a series began: not a count
                continue
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_the_mix(console: Console, server: LiveServer) -> None:
    """3 allowed, 2 approved, 1 denied by a person, 1 expired, 1 refused by the policy."""
    tools = console.tools
    with console.gate.session(agent="billing-bot"):
        for n in range(3):
            assert tools["lookup"](order_id=f"A-{n}") == f"order A-{n}"
        with pytest.raises(ToolCallDenied):
            tools["drop_table"](table="orders")
    api = f"{server.url}/api/v1/requests"
    for amount in (5.0, 7.0):
        agent = console.call("refund", order_id="A-1", amount=amount)
        r = httpx.post(f"{api}/{agent.request.id}/approve", json={}, headers=BOB, timeout=10)
        assert r.status_code == 200, r.text
        assert agent.outcome() == f"refunded {amount} on A-1"
    agent = console.call("note", text="hello")
    body = {"comment": "not now"}
    r = httpx.post(f"{api}/{agent.request.id}/deny", json=body, headers=BOB, timeout=10)
    assert r.status_code == 200, r.text
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    agent = console.call("quick_note", text="nobody looks")  # expires after 0.3 s
    with pytest.raises(ApprovalTimeout):
        agent.outcome()


def expected(times: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the mix run ``times`` times must show: every counter and histogram count."""
    bot = "billing-bot"

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(labels.items())))

    return {
        key("gatekeeper_calls_total", verdict="allow", tool="lookup", agent=bot): 3 * times,
        key("gatekeeper_calls_total", verdict="deny", tool="drop_table", agent=bot): times,
        key("gatekeeper_calls_total", verdict="require_approval", tool="refund", agent=bot): (
            2 * times
        ),
        key("gatekeeper_calls_total", verdict="require_approval", tool="note", agent=bot): times,
        key(
            "gatekeeper_calls_total", verdict="require_approval", tool="quick_note", agent=bot
        ): times,
        key("gatekeeper_decisions_total", outcome="approved", channel="api-token"): 2 * times,
        key("gatekeeper_decisions_total", outcome="denied", channel="api-token"): times,
        key("gatekeeper_approval_latency_seconds_count", outcome="approved"): 2 * times,
        key("gatekeeper_approval_latency_seconds_count", outcome="denied"): times,
        key("gatekeeper_approval_latency_seconds_bucket", outcome="approved", le="+Inf"): (
            2 * times
        ),
        key("gatekeeper_approval_latency_seconds_bucket", outcome="denied", le="+Inf"): times,
        key("gatekeeper_expired_total"): times,
        key("gatekeeper_tampering_refusals_total"): 0,
        key("gatekeeper_store_retries_total"): 0,
        # The series the example alert rules read, there at 0 from the start.
        key("gatekeeper_abandoned_total", status="abandoned"): 0,
        key("gatekeeper_abandoned_total", status="outcome_unknown"): 0,
        key("gatekeeper_store_errors_total", error="StoreError"): 0,
        key("gatekeeper_store_errors_total", error="StoreUnavailable"): 0,
        key("gatekeeper_pending_requests"): 0,
        key("gatekeeper_oldest_pending_age_seconds"): 0,
    }


def counts(samples: Samples) -> dict[Any, float]:
    """Every counter and histogram count of the scrape (the latency's sum is a time)."""
    return {
        k: v
        for k, v in samples.items()
        if k[0].endswith(("_total", "_count"))
        or k[0] in ("gatekeeper_pending_requests", "gatekeeper_oldest_pending_age_seconds")
        or (k[0].endswith("_bucket") and dict(k[1]).get("le") == "+Inf")
    }


def test_metrics_count_the_mix_exactly_and_their_series_stay_fixed(
    served: tuple[Console, LiveServer],
) -> None:
    console, server = served
    run_the_mix(console, server)
    first = scrape(server)
    assert counts(first) == expected(1)
    # Every approval here took well under a second: all in the lowest bucket but one.
    assert value(first, "gatekeeper_approval_latency_seconds_bucket", outcome="approved", le="5.0")
    assert value(first, "gatekeeper_audit_sealer_backlog") >= 0

    run_the_mix(console, server)
    second = scrape(server)
    assert counts(second) == expected(2)
    # New requests, new request ids, new arguments: not one new series.
    assert set(second) == set(first)


def test_pending_and_the_oldest_ones_age_are_read_from_the_store_at_scrape_time(
    served: tuple[Console, LiveServer],
) -> None:
    console, server = served
    agent = console.call("note", text="waiting")
    samples = scrape(server)
    assert value(samples, "gatekeeper_pending_requests") == 1
    assert value(samples, "gatekeeper_oldest_pending_age_seconds") > 0
    api = f"{server.url}/api/v1/requests/{agent.request.id}/deny"
    assert httpx.post(api, json={"comment": "no"}, headers=BOB, timeout=10).status_code == 200
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    assert value(scrape(server), "gatekeeper_pending_requests") == 0


def test_metrics_need_a_read_token_unless_made_public(
    served: tuple[Console, LiveServer], redis_server: RedisServer, redis_prefix: str
) -> None:
    _, server = served
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
    bad = httpx.get(f"{server.url}/metrics", headers=bearer("wrong"), timeout=10)
    assert bad.status_code == 401
    scrape(server, READER)  # a token with scope read is enough
    public = Console(
        RedisStore(redis_server.url, prefix=redis_prefix),
        telemetry=Telemetry(metrics=True, registry=CollectorRegistry(), metrics_public=True),
    )
    open_server = LiveServer(public.app)
    try:
        assert httpx.get(f"{open_server.url}/metrics", timeout=10).status_code == 200
    finally:
        open_server.stop()
        public.gate.close()


def test_metrics_off_means_no_metrics_endpoint(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    console = Console(RedisStore(redis_server.url, prefix=redis_prefix))
    app = create_app(console.gate, console.settings)
    assert "/metrics" not in {getattr(r, "path", None) for r in app.routes}
    console.gate.close()


def listening(port: int, within: float = 15.0) -> None:
    """Return once something accepts connections on ``port`` (uvicorn offers no event)."""
    import socket
    import time

    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


SERVE_CONFIG = """\
version: 1
store: {{url: "{url}", prefix: "{prefix}"}}
approvers:
  - {{name: bob}}
policy:
  version: 1
  default: allow
  rules:
    - {{id: refunds, match: {{tool: refund}}, verdict: require_approval}}
web:
  secret_key: "{secret}"
  api_tokens:
    - {{name: prometheus, token_sha256: "{prometheus}", scopes: [read]}}
    - {{name: bob-bot, token_sha256: "{bob}", scopes: [read, decide], approver: bob}}
telemetry: {{metrics: true, traces: true}}
"""


def test_a_real_gatekeeper_serve_serves_metrics_from_its_config(
    tmp_path: Any, redis_server: RedisServer, redis_prefix: str
) -> None:
    """``gatekeeper serve`` in a process of its own: /metrics as its gatekeeper.yaml says."""
    import hashlib
    import os
    import subprocess
    import sys
    import threading

    from gatekeeper import Gatekeeper
    from tests.conftest import _free_port

    def sha(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    config = tmp_path / "gatekeeper.yaml"
    config.write_text(
        SERVE_CONFIG.format(
            url=redis_server.url,
            prefix=redis_prefix,
            secret="w" * 40,
            prometheus=sha("prom-token"),
            bob=sha("bob-token"),
        )
    )
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "gatekeeper.cli", "serve", "--config", str(config)]
    with subprocess.Popen(
        [*argv, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as serve:
        try:
            assert serve.stdout is not None
            assert serve.stdout.readline().startswith("gatekeeper console on")
            base = f"http://127.0.0.1:{port}"
            listening(port)  # the line comes as uvicorn starts, before it listens
            assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
            prometheus = bearer("prom-token")

            def read() -> Samples:
                response = httpx.get(f"{base}/metrics", headers=prometheus, timeout=10)
                assert response.status_code == 200, response.text
                return {
                    (s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(response.text)
                    for s in family.samples
                }

            gate = Gatekeeper.from_config(config)  # the agent, in this process

            @gate.guard
            def refund(order_id: str) -> str:
                return f"refunded {order_id}"

            outcome: list[str] = []
            agent = threading.Thread(target=lambda: outcome.append(refund("A-1")))
            agent.start()
            for _ in range(500):
                if gate.pending():
                    break
                threading.Event().wait(0.01)
            (held,) = gate.pending()
            assert value(read(), "gatekeeper_pending_requests") == 1
            approve = f"{base}/api/v1/requests/{held.id}/approve"
            r = httpx.post(approve, json={}, headers=bearer("bob-token"), timeout=10)
            assert r.status_code == 200, r.text
            agent.join(10)
            assert outcome == ["refunded A-1"]
            after = read()
            labels = {"outcome": "approved", "channel": "api-token"}
            assert value(after, "gatekeeper_decisions_total", **labels) == 1
            assert (
                value(after, "gatekeeper_approval_latency_seconds_count", outcome="approved") == 1
            )
            assert value(after, "gatekeeper_pending_requests") == 0
            gate.close()
        finally:
            serve.terminate()
            serve.wait(15)
