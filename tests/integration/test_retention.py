"""Retention on a real Redis (and a real Redis Cluster): memory bounded by time, not history.

A request's record expires ``store.retention`` after it ends, and ``prune``
drops what it left behind (signed votes, its claim mark, index entries,
``where``), so after retention nothing of it is in Redis. The audit stream is
archived and trimmed with ``gatekeeper audit archive``; ``gatekeeper audit
verify`` checks what is left, ``--archive`` the whole chain, and the console
says what was trimmed instead of showing a shorter past as if it were all.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gatekeeper import Gatekeeper
from gatekeeper._clock import SystemClock
from gatekeeper._errors import GatekeeperError, RequestNotFound
from gatekeeper.cli import main
from gatekeeper.models import RequestStatus
from gatekeeper.store import RedisStore
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.storekit import held_event, make_request, vote
from tests.webkit import SECRET_KEY, TestClient

RETAIN = 1.0


@pytest.fixture(params=["one-node", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    name = "redis_server" if request.param == "one-node" else "redis_cluster"
    where = request.getfixturevalue(name)
    return str(where.url)


@pytest.fixture
def store(url: str, redis_prefix: str) -> Iterator[RedisStore]:
    made = RedisStore(url, prefix=redis_prefix, retention=RETAIN)
    yield made
    made.close()


def keys_naming(store: RedisStore, rid: str) -> list[str]:
    """Every key of the deployment with the request id in its name, on every node."""
    client: Any = store.client
    return sorted(k.decode() for k in client.scan_iter(match=f"*{rid}*", count=1000))


def leftovers(store: RedisStore, rid: str, agent: str) -> dict[str, Any]:
    a = store.keys.of(agent)
    c: Any = store.client
    return {
        "keys": keys_naming(store, rid),
        "where": c.hexists(store.keys.where, rid),
        "index": c.zscore(a.requests, rid),
        "claim": c.hexists(f"{a.tag}:claims", rid),
    }


def test_after_retention_an_ended_request_leaves_nothing_in_redis(store: RedisStore) -> None:
    clock = SystemClock()
    ran = make_request(clock)
    store.hold(ran, held_event(ran))
    store.decide(ran.id, vote(clock, ran, "alice"))
    store.claim(ran.id, args_digest=ran.args_digest)
    store.finish(ran.id, ok=True, outcome="refunded")
    denied = make_request(clock)
    store.hold(denied, held_event(denied))
    store.decide(denied.id, vote(clock, denied, "alice", approve=False, comment="no"))
    waiting = make_request(clock, timeout=3600)
    store.hold(waiting, held_event(waiting))
    before = leftovers(store, ran.id, "billing-bot")
    assert before["where"] and before["index"] is not None and before["claim"]
    assert any(":dec:" in k for k in before["keys"])  # the signed votes

    assert store.prune() == 0  # nothing has expired yet
    time.sleep(RETAIN + 0.5)
    for gone in (ran, denied):
        with pytest.raises(RequestNotFound):
            store.get(gone.id)
    assert store.get(waiting.id).status is RequestStatus.PENDING

    assert store.prune() == 2
    for gone in (ran, denied):
        assert leftovers(store, gone.id, "billing-bot") == {
            "keys": [],
            "where": False,
            "index": None,
            "claim": False,
        }
    still = leftovers(store, waiting.id, "billing-bot")
    assert still["where"] and still["index"] is not None and still["keys"]
    assert store.prune() == 0


def test_a_keyed_calls_call_key_expires_with_its_request(store: RedisStore) -> None:
    """The pointer from a call key to its request goes with the request (the scripts accept
    only a real call key of the request's agent there: see test_trust_boundary_where)."""
    clock = SystemClock()
    req = make_request(clock, key="refund:42")
    store.hold(req, held_event(req))
    pointer = store.keys.of("billing-bot").call_key("refund:42")
    client: Any = store.client
    assert client.exists(pointer)
    store.decide(req.id, vote(clock, req, "alice", approve=False))
    assert 0 < client.pttl(pointer) <= RETAIN * 1000
    time.sleep(RETAIN + 0.5)
    assert not client.exists(pointer)


def test_an_agent_cannot_prune_what_the_deciders_signed(
    redis_server: Any, redis_prefix: str
) -> None:
    """An expired request's votes are the deciders' keys: the agent's ACL user can't drop them."""
    from tests.aclkit import RoleSplitStore

    clock = SystemClock()
    split = RoleSplitStore(redis_server.url, redis_prefix, clock)
    try:
        req = make_request(clock)
        split.hold(req, held_event(req))
        split.decide(req.id, vote(clock, req, "alice", approve=False, comment="no"))
        agent = split.agent("billing-bot")
        agent.retention = 0.001
        split.decider.retention = 0.001
        r = redis.Redis.from_url(redis_server.url)
        r.delete(split.keys.of("billing-bot").req(req.id))  # as if its record had expired
        votes = split.keys.of("billing-bot").votes(req.id)
        assert r.exists(votes)
        time.sleep(0.01)
        with pytest.raises(GatekeeperError):
            agent.prune()
        assert r.exists(votes)
        assert split.decider.prune() == 1
        assert not r.exists(votes)
        r.close()
    finally:
        split.close()


CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}, retention: 1s}}
approvers:
  - {{name: alice, groups: [ops]}}
audit: {{archive: archive, keep: 1s}}
policy:
  version: 1
  default: require_approval
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def test_archive_verify_export_and_the_console_after_trimming(
    tmp_path: Path, redis_server: Any, redis_prefix: str
) -> None:
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(CONFIG.format(url=redis_server.url, prefix=redis_prefix))
    gate = Gatekeeper.from_config(config, channels=[RecordingChannel()])
    store = gate.store
    clock = SystemClock()
    old = []
    for _ in range(3):
        req = make_request(clock)
        store.hold(req, held_event(req))
        store.decide(req.id, vote(clock, req, "alice", approve=False, comment="no"))
        old.append(req)
    store.flush()
    time.sleep(1.5)
    recent = make_request(clock)
    store.hold(recent, held_event(recent))
    store.flush()
    assert store.audit_head()[0] == 7

    code, out, err = run("--config", str(config), "audit", "archive")
    assert code == 0, err
    assert "archived 6 events" in out and "trimmed 6" in out and "ends at event #6" in out
    assert "dropped what 3 request(s) past store.retention left behind" in out
    archive = tmp_path / "archive"
    assert sorted(p.name for p in archive.iterdir()) == [
        ".lock",  # held by one archiving run at a time
        "anchors.jsonl",  # the signed anchors of the head, kept beside the events
        "audit-000000000001-000000000006.jsonl",
    ]
    assert [json.loads(e.body)["seq"] for e in store.audit_entries()] == [7]

    code, out, _ = run("--config", str(config), "audit", "verify")
    assert code == 0 and "ok: 1 events, chain intact" in out
    assert "events #1-#6" in out and "--archive DIR" in out
    code, out, _ = run("--config", str(config), "audit", "verify", "--archive", str(archive))
    assert code == 0 and "ok: 7 events, chain intact" in out
    exported = tmp_path / "all.jsonl"
    code, _, err = run(
        "--config", str(config), "audit", "export", "--archive", str(archive), "-o", str(exported)
    )
    assert code == 0
    assert [json.loads(x)["seq"] for x in exported.read_text().splitlines()] == list(range(1, 8))
    code, out, err = run("--config", str(config), "audit", "export")
    assert code == 0 and len(out.splitlines()) == 1 and "events #1-#6" in err
    # The same archive can't be checked against a store that is not its own.
    code, _, err = run("--config", str(config), "audit", "archive", str(tmp_path / "elsewhere"))
    assert code == 1 and "files are missing" in err
    assert store.prune() == 0  # the archiving run pruned them already

    settings = WebSettings(secret_key=SECRET_KEY)
    with TestClient(create_app(gate, settings)) as client:
        value, _ = new_session(settings, "alice")
        client.cookies.set("gk_session", value)
        page = client.get("/audit").text
        assert 'id="trimmed"' in page and "Events #1–#6" in page
        assert "Chain intact:</strong> 1 event after the archived ones" in page
        page = client.get("/history").text
        note = re.search(r'<p id="retention"[^>]*>(.*?)</p>', page, re.S)
        assert note and "1 second after they end" in note.group(1)
        assert "in its archive" in note.group(1)
        assert re.findall(r'data-id="([^"]+)"', page) == [recent.id]
        gone = client.get(f"/requests/{old[0].id}")
        assert gone.status_code == 404 and "store.retention" in gone.text
    store.close()
