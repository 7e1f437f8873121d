"""Hardening of the audit archive, from a hostile review of #14.

Against a real redis-server and the real CLI: a crafted or hostile archive
directory gives one ``error:`` line or a BROKEN report, never a traceback,
and the archiver never writes outside it (no symbolic link is followed); two
archiving runs take turns; every chain is exported; an embedded store won't
mix its chain into another's archive; the cron commands prune; a report of
several chains still says what was archived.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import gatekeeper._archive as archive_mod
from gatekeeper import Gatekeeper, Policy, RedisStore, audit
from gatekeeper._archive import archive_audit, archive_files, read_archive, whole_chain
from gatekeeper.cli import main
from gatekeeper.store import MemoryStore
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import MANUAL_LEASE, held_event, make_request, vote

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}, audit_chains: {chains}, retention: {retention}}}
approvers:
  - {{name: alice, groups: [ops]}}
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def fill(store: Any, clock: ManualClock, n: int, agent: str = "billing-bot") -> None:
    for _ in range(n):
        req = make_request(clock, agent=agent)
        store.hold(req, held_event(req))
        store.decide(req.id, vote(clock, req, "alice"))
    store.flush()


def config(
    tmp_path: Path, server: RedisServer, prefix: str, chains: int = 1, retention: str = "7d"
) -> Path:
    cfg = tmp_path / "gatekeeper.yaml"
    cfg.write_text(CONFIG.format(url=server.url, prefix=prefix, chains=chains, retention=retention))
    return cfg


@pytest.fixture
def site(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[RedisStore, ManualClock, Path, Path]]:
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    cfg = config(tmp_path, redis_server, redis_prefix)
    fill(store, clock, 3)
    clock.advance(7200)
    fill(store, clock, 1)
    arch = tmp_path / "arch"
    archive_audit(store, arch, older_than=clock.now() - dt.timedelta(hours=1))
    assert archive_files(arch)
    yield store, clock, cfg, arch
    store.close()


Site = tuple[RedisStore, ManualClock, Path, Path]


def test_baseline_verify_with_archive_is_ok(site: Site) -> None:
    _store, _clock, cfg, arch = site
    code, out, err = run("-c", str(cfg), "audit", "verify", "--archive", str(arch))
    assert code == 0, (out, err)


def test_anchors_file_with_invalid_utf8_is_an_error_not_a_traceback(site: Site) -> None:
    _store, _clock, cfg, arch = site
    (arch / "anchors.jsonl").write_bytes(b'{"id":"1-0","a":"\xff"}\n')
    code, out, err = run("-c", str(cfg), "audit", "verify", "--archive", str(arch))
    assert code == 1 and err.startswith("error:"), (code, out, err)


def test_a_huge_seq_in_the_last_archived_line_is_an_error_not_a_traceback(site: Site) -> None:
    _store, _clock, cfg, arch = site
    ((_, _last, path),) = archive_files(arch)
    lines = path.read_bytes().splitlines()
    lines[-1] = b'{"body":{"seq":1e400},"hash":"x"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run("-c", str(cfg), "audit", "archive", str(arch), "--keep", "1s")
    assert code == 1 and err.startswith("error:"), (code, out, err)


def test_a_huge_seq_in_an_archived_line_is_reported_by_verify_not_a_traceback(site: Site) -> None:
    _store, _clock, cfg, arch = site
    ((_, _last, path),) = archive_files(arch)
    lines = path.read_bytes().splitlines()
    lines[1] = b'{"body":{"seq":1e400,"prev_hash":"x","event":{}},"hash":"x"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run("-c", str(cfg), "audit", "verify", "--archive", str(arch))
    assert code == 1 and "BROKEN" in out, (code, out, err)


def test_a_deeply_nested_archived_line_is_reported_not_a_traceback(site: Site) -> None:
    _store, _clock, cfg, arch = site
    ((_, _last, path),) = archive_files(arch)
    lines = path.read_bytes().splitlines()
    lines[1] = b"[" * 200000 + b"]" * 200000
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run("-c", str(cfg), "audit", "verify", "--archive", str(arch))
    assert code == 1 and "BROKEN" in out, (code, out, err)


def test_a_part_file_symlink_does_not_overwrite_a_file_outside_the_archive(
    site: Site, tmp_path: Path
) -> None:
    store, clock, cfg, arch = site
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    # The next file the archiver will write: events 7.. (4 events per request pair: held, approved)
    seq_next = archive_files(arch)[-1][1] + 1
    clock.advance(7200)
    fill(store, clock, 1)
    clock.advance(7200)

    # Make a symlink for every plausible name of the next file.
    for end in range(seq_next, seq_next + 10):
        name = f".audit-{seq_next:012d}-{end:012d}.jsonl.part"
        os.symlink(victim, arch / name)
    code, out, err = run("-c", str(cfg), "audit", "archive", str(arch), "--keep", "1h")
    assert victim.read_text() == "precious\n", (code, out, err, victim.read_text()[:200])


def test_an_anchors_symlink_does_not_append_to_a_file_outside_the_archive(
    site: Site, tmp_path: Path
) -> None:
    store, clock, cfg, arch = site
    victim = tmp_path / "victim2.txt"
    victim.write_text("")  # e.g. an empty log or config file of the operator's
    (arch / "anchors.jsonl").unlink(missing_ok=True)
    os.symlink(victim, arch / "anchors.jsonl")
    store._sealer._next_anchor = 0
    clock.advance(7200)
    fill(store, clock, 1)
    store.flush()
    code, out, err = run("-c", str(cfg), "audit", "archive", str(arch), "--keep", "1h")
    assert victim.read_text() == "", (code, out, err, victim.read_text()[:300])


def test_export_with_the_archive_has_every_chains_events(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(
        redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE, audit_chains=3
    )
    cfg = config(tmp_path, redis_server, redis_prefix, chains=3)
    agents = [f"bot-{i}" for i in range(6)]
    for a in agents:
        fill(store, clock, 1, agent=a)
    clock.advance(7200)
    for a in agents:
        fill(store, clock, 1, agent=a)
    total = sum(store.audit_head(c)[0] for c in range(3))
    assert total == 24
    # Without the archive: every chain's events.
    code, out, err = run("-c", str(cfg), "audit", "export")
    assert code == 0 and len(out.splitlines()) == 24, (code, err)
    arch = tmp_path / "arch"
    archive_audit(store, arch, older_than=clock.now() - dt.timedelta(hours=1))
    code, out, err = run("-c", str(cfg), "audit", "verify", "--archive", str(arch))
    assert code == 0, (out, err)
    code, out, err = run("-c", str(cfg), "audit", "export", "--archive", str(arch))
    lines = [json.loads(x) for x in out.splitlines()]
    store.close()
    assert code == 0, err
    assert len(lines) == 24, f"export --archive wrote {len(lines)} of 24 events: {err}"


def test_with_several_chains_the_console_and_api_still_say_what_was_trimmed(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(
        redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE, audit_chains=3
    )
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    for a in [f"bot-{i}" for i in range(6)]:
        fill(store, clock, 1, agent=a)
    clock.advance(7200)
    fill(store, clock, 1, agent="bot-0")
    archive_audit(store, tmp_path / "arch", older_than=clock.now() - dt.timedelta(hours=1))
    report = gate.verify_audit()
    trimmed_chains = [c for c, r in enumerate(report.chains) if r.trimmed is not None]
    gate.close()
    assert report.ok and trimmed_chains
    # What audit.html's banner and /api/audit/verify's trimmed_through read:
    assert report.trimmed is not None, (
        f"chains {trimmed_chains} were trimmed, but the combined report (console banner, "
        "API trimmed_through) says nothing was"
    )


def test_the_cron_command_also_drops_what_expired_requests_left(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(
        redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE, retention=1
    )
    req = make_request(clock)
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest)
    store.finish(req.id, ok=True, outcome="ok")
    store.flush()
    a = store.keys.of(req.call.agent)
    time.sleep(1.2)  # the record expired (store.retention)
    admin = redis.Redis.from_url(redis_server.url)
    assert not admin.exists(a.req(req.id))
    cfg = config(tmp_path, redis_server, redis_prefix, retention="1s")
    code, _out, err = run("-c", str(cfg), "audit", "archive", str(tmp_path / "arch"))
    assert code == 0, err
    left = admin.exists(a.votes(req.id)), admin.hexists(f"{a.tag}:claims", req.id)
    store.close()
    assert left == (0, False), (
        "after `gatekeeper audit archive` (the documented cron job) the expired request's "
        f"votes/claim mark are still there: {left}; only `gatekeeper serve` prunes, and the "
        "`gatekeeper sweep --prune` RedisStore.prune's docstring names does not exist"
    )


def test_the_embedded_store_refuses_an_archive_that_holds_a_chain_already(tmp_path: Path) -> None:
    """A restarted process (same audit.archive) starts a new chain at #1: mixing it into the
    old one's files would leave an archive that never verifies again."""
    clock = ManualClock()
    first = MemoryStore(clock=clock, max_events=10, archive=tmp_path)
    fill(first, clock, 10)
    assert archive_files(tmp_path)
    with pytest.raises(ValueError, match="already holds a chain"):
        MemoryStore(clock=clock, max_events=10, archive=tmp_path)
    assert audit.verify_chain(read_archive(tmp_path)).ok


@pytest.mark.parametrize("hosts", ["one host", "two hosts"])
def test_two_archiving_runs_take_turns_and_the_archive_verifies(
    hosts: str,
    tmp_path: Path,
    redis_server: RedisServer,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes archiving one directory (two consoles with the same audit.archive):
    the second waits for the first, then carries on from where it ended. On one host the
    file lock keeps them apart; hosts sharing the directory (NFS) don't share it, and the
    deployment's lock in Redis does."""
    import contextlib

    if hosts == "two hosts":
        monkeypatch.setattr(archive_mod, "_only_run", lambda root: contextlib.nullcontext())
    clock = ManualClock()
    a = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    b = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    fill(a, clock, 5)  # events 1-10
    clock.advance(600)
    fill(a, clock, 1)  # 11-12
    clock.advance(7200)
    fill(a, clock, 1)  # 13-14, kept
    real_write = archive_mod.write_archive
    writing, go_on = threading.Event(), threading.Event()

    def slow_write(directory: Any, entries: Any) -> Path:
        if threading.current_thread().name == "first":
            writing.set()
            go_on.wait(10)
        return real_write(directory, entries)

    monkeypatch.setattr(archive_mod, "write_archive", slow_write)
    results: dict[str, Any] = {}

    def archiver(store: RedisStore, cutoff: dt.datetime) -> None:
        name = threading.current_thread().name
        results[name] = archive_audit(store, tmp_path, older_than=cutoff)

    early = clock.now() - dt.timedelta(hours=2, minutes=5)
    first = threading.Thread(target=archiver, args=(a, early), name="first")
    late = clock.now() - dt.timedelta(hours=1)
    second = threading.Thread(target=archiver, args=(b, late), name="second")
    first.start()
    assert writing.wait(10)
    second.start()
    time.sleep(0.3)
    assert second.is_alive()  # waiting for the first run
    go_on.set()
    first.join(10)
    second.join(10)
    assert (results["first"].archived, results["second"].archived) == (10, 2)
    assert [(x, y) for x, y, _ in archive_files(tmp_path)] == [(1, 10), (11, 12)]
    report = audit.verify_chain(whole_chain(a, tmp_path), head=a.audit_head())
    assert not redis.Redis.from_url(redis_server.url).exists(f"{{{redis_prefix}}}:archiving")
    a.close()
    b.close()
    assert report.ok and report.count == 14
