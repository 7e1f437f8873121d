"""``/metrics`` against an agent that writes what its own Redis user may (review of #15).

Same set-up as ``test_trust_boundary``: the shipped ACL users on a real
redis-server; ``dep.attacker`` is a raw client logged in as billing-bot's
user. The console reads the queue gauges with the deciders' store. What one
agent writes in its own keys must not break, blank or falsify the scrape
that every operator's alerts read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper import StoreUnavailable, Telemetry
from gatekeeper._clock import SystemClock
from tests.storekit import held_event, make_request
from tests.trustkit import Deployment
from tests.webkit import Console, TestClient, bearer

pytestmark = pytest.mark.redis

READER = bearer("tok-reader")


class Ago:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def now(self) -> dt.datetime:
        return SystemClock().now() - dt.timedelta(seconds=self.seconds)


@pytest.fixture
def console(dep: Deployment) -> Iterator[Console]:
    c = Console(dep.decider, telemetry=Telemetry(metrics=True, registry=CollectorRegistry()))
    yield c
    c.gate.close()


def scrape(console: Console) -> dict[str, float]:
    # Not `with TestClient(...)`: that runs the app's lifespan, whose first sweep reads
    # every registered agent (the sweep's cost, not the scrape's: see docs/observability.md).
    r = TestClient(console.app).get("/metrics", headers=READER)
    assert r.status_code == 200, r.text[:500]
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
        if not s.labels
    }


def test_an_agent_rewriting_its_own_pending_request_does_not_break_metrics(
    dep: Deployment, console: Console
) -> None:
    mine = make_request(SystemClock(), agent="billing-bot")
    dep.agent.hold(mine, held_event(mine))
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(mine.id), "doc", "{not json")  # its own hash: allowed
    samples = scrape(console)  # 500 for every operator today
    assert "gatekeeper_pending_requests" in samples


def test_an_agent_cannot_hide_another_agents_old_request_from_the_oldest_age_gauge(
    dep: Deployment, console: Console
) -> None:
    victim = make_request(Ago(1200), agent="other-bot", timeout=3600)  # waited 20 minutes
    dep.decider.hold(victim, held_event(victim))
    assert scrape(console)["gatekeeper_oldest_pending_age_seconds"] >= 1200
    mine = make_request(SystemClock(), agent="billing-bot")
    dep.agent.hold(mine, held_event(mine))  # registers billing-bot, as any call does
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.zadd(a.pending, {"r-no-such-request": 1})  # its own index: allowed
    # GatekeeperQueueWaitingTooLong reads this gauge: it must still say 20 minutes.
    assert scrape(console)["gatekeeper_oldest_pending_age_seconds"] >= 1200


def test_an_expired_unswept_request_does_not_hide_the_oldest_waiting_one(
    dep: Deployment, console: Console
) -> None:
    gone = make_request(Ago(1800), agent="other-bot", timeout=60)  # expired, not swept yet
    dep.decider.hold(gone, held_event(gone))
    waiting = make_request(Ago(1200), agent="other-bot", timeout=3600)
    dep.decider.hold(waiting, held_event(waiting))
    assert scrape(console)["gatekeeper_oldest_pending_age_seconds"] >= 1200


def test_a_scrape_costs_a_bounded_number_of_redis_commands_whatever_agents_register(
    dep: Deployment, console: Console
) -> None:
    """The agent's user may SADD to the agents registry; each scrape reads every name."""
    scrape(console)
    dep.admin.config_resetstat()
    scrape(console)
    before = sum(v["calls"] for v in dep.admin.info("commandstats").values())
    names = [f"ghost-{n}" for n in range(5000)]
    for start in range(0, len(names), 1000):
        dep.attacker.sadd(dep.agent.keys.agents, *names[start : start + 1000])
    dep.admin.config_resetstat()
    t0 = time.perf_counter()
    scrape(console)
    took = time.perf_counter() - t0
    after = sum(v["calls"] for v in dep.admin.info("commandstats").values())
    print(f"commands per scrape: {before} -> {after}; scrape took {took:.2f}s")
    assert after <= before + 50


@pytest.mark.parametrize(
    "trace",
    [123, {"x": 1}, ["00"], "00-" + "A" * 32 + "-" + "b" * 16 + "-01", "x" * 10_000, None, True],
)
def test_a_garbled_trace_in_a_stored_request_reads_as_none_everywhere(
    dep: Deployment, trace: object
) -> None:
    mine = make_request(SystemClock(), agent="billing-bot")
    dep.agent.hold(mine, held_event(mine))
    a = dep.agent.keys.of("billing-bot")
    doc = json.loads(dep.admin.hget(a.req(mine.id), "doc"))
    doc["trace"] = trace
    dep.attacker.hset(a.req(mine.id), "doc", json.dumps(doc))
    assert dep.decider.get(mine.id).trace is None
    assert [r.trace for r in dep.decider.queue()[0]] == [None]


def test_a_scrape_with_redis_down_answers_at_once_with_store_up_0(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Not after the store's retries, and not with the queue gauges silently missing."""
    from gatekeeper.store import RedisStore
    from tests.conftest import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("down"))
    store = RedisStore(server.url, prefix="t15down")
    c = Console(store, telemetry=Telemetry(metrics=True, registry=CollectorRegistry()))
    try:
        up = scrape(c)
        assert up["gatekeeper_store_up"] == 1
        assert up["gatekeeper_pending_requests"] == 0
        server.stop()
        t0 = time.perf_counter()
        down = scrape(c)
        assert time.perf_counter() - t0 < 1.0
        assert down["gatekeeper_store_up"] == 0
        assert "gatekeeper_pending_requests" not in down
    finally:
        if server.proc.poll() is None:
            server.stop()
        with contextlib.suppress(StoreUnavailable):  # what it would flush has nowhere to go
            c.gate.close()


@pytest.mark.parametrize("where", ["redis_server", "redis_cluster"])
def test_the_gauges_read_every_agents_live_requests_on_one_node_and_on_a_cluster(
    request: pytest.FixtureRequest, redis_prefix: str, where: str
) -> None:
    from gatekeeper._telemetry_queue import QueueCollector
    from gatekeeper.store import RedisStore

    store = RedisStore(request.getfixturevalue(where).url, prefix=redis_prefix)
    try:
        for agent, ago in (("billing-bot", 300), ("other-bot", 900), ("third-bot", 60)):
            req = make_request(Ago(ago), agent=agent, timeout=3600)
            store.hold(req, held_event(req))
        gone = make_request(Ago(1800), agent="other-bot", timeout=60)  # expired, not swept
        store.hold(gone, held_event(gone))
        gauges = QueueCollector(store).read()
        assert gauges.up
        assert gauges.pending == 3
        assert gauges.registered == 3
        assert gauges.oldest_age is not None and 900 <= gauges.oldest_age < 960
    finally:
        store.close()
