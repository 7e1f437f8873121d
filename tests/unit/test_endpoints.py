"""store.url: one node, a Redis Cluster's seed nodes, a Sentinel service; and store.retry."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gatekeeper import ConfigError, StoreUnavailable
from gatekeeper._config import parse_config
from gatekeeper.store._endpoints import parse_endpoint


def test_one_node_urls_are_redis_pys_own() -> None:
    for url, tls in [
        ("redis://localhost:6379/0", False),
        ("rediss://u:p@h:6380/2", True),
        ("unix:///run/redis.sock", False),
    ]:
        endpoint = parse_endpoint(url)
        assert (endpoint.kind, endpoint.tls, endpoint.url) == ("node", tls, url)


def test_a_cluster_url_names_seed_nodes_and_credentials() -> None:
    endpoint = parse_endpoint(
        "rediss+cluster://gk-agent:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002"
    )
    assert endpoint.kind == "cluster" and endpoint.tls
    assert endpoint.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (endpoint.username, endpoint.password) == ("gk-agent", "s@cret")
    assert "s%40cret" not in endpoint.shown and ":***@" in endpoint.shown
    assert "s@cret" not in repr(endpoint)


def test_a_sentinel_url_names_sentinels_service_and_database() -> None:
    endpoint = parse_endpoint("redis+sentinel://:pw@s1:26380,s2/mymaster/3?sentinel_password=spw")
    assert endpoint.kind == "sentinel" and not endpoint.tls
    assert endpoint.nodes == (("s1", 26380), ("s2", 26379))  # a sentinel's own default port
    assert (endpoint.service, endpoint.db, endpoint.password) == ("mymaster", 3, "pw")
    assert endpoint.options == {"sentinel_password": "spw"}


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://x", "unknown Redis URL scheme 'http://'"),
        ("redis+mesh://h:1", "unknown Redis URL scheme 'redis+mesh://'"),
        ("redis+cluster://", "name at least one host:port"),
        ("redis+cluster://h:1/0", "a cluster URL has no path"),
        ("redis+cluster://h:99999", "'h:99999' is not host:port"),
        ("redis+sentinel://s1:26379", "a sentinel URL ends with /SERVICE"),
        ("redis+sentinel://s1/svc/x", "the database must be a number"),
        ("redis+cluster://u:topsecret@h:1?timeout=3", "unknown option 'timeout'"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)) as info:
        parse_endpoint(url)
    assert said in str(info.value)
    assert "topsecret" not in str(info.value)


def test_the_config_takes_cluster_and_sentinel_urls_and_a_retry_bound() -> None:
    config = parse_config(
        "version: 1\nstore:\n  url: redis+sentinel://s1,s2,s3/gk\n"
        "  retry: {attempts: 40, within: 30s, max_wait: 1}\n",
        source="g.yaml",
    )
    assert config.store.url == "redis+sentinel://s1,s2,s3/gk"
    retry = config.store.retry
    assert (retry.attempts, retry.within, retry.max_wait) == (40, 30.0, 1.0)
    quick = parse_config(
        "version: 1\nstore:\n  url: redis+sentinel://127.0.0.1:9/gk\n"
        "  retry: {attempts: 40, within: 0.2s, max_wait: 0.1}\n",
        source="g.yaml",
    )
    store = quick.build_store()  # makes clients; connects at its first command
    try:
        assert store.endpoint.kind == "sentinel"  # type: ignore[attr-defined]
        built = store.retry  # type: ignore[attr-defined]
        assert (built.attempts, built.within, built.max_wait) == (40, 0.2, 0.1)
    finally:
        # Its last flush finds no sentinel at port 9: given up within 0.2 s, and said plainly.
        with pytest.raises(StoreUnavailable) as info:
            store.close()
    said = str(info.value)
    assert "No master found for 'gk'" in said and "sentinel 127.0.0.1:9 - " in said
    assert "ConnectionPool" not in said and len(said) < 300
    defaults = parse_config("version: 1\n", source="g.yaml").store.retry
    assert (defaults.attempts, defaults.within, defaults.max_wait) == (5, 2.0, 0.5)


def test_the_config_refuses_a_bad_url_or_retry_by_line_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\nstore:\n  url: redis+cluster://h:1/0\n", source="g.yaml")
    assert str(info.value).startswith("g.yaml:3: store.url:")
    assert "a cluster URL has no path" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\nstore:\n  retry: {within: 0}\n", source="g.yaml")
    assert "store.retry.within" in str(info.value)


def test_a_stores_repr_never_shows_the_password(redis_cluster: Any) -> None:
    from gatekeeper import RedisStore

    store = RedisStore("redis://gk:hunter2@127.0.0.1:9/0", prefix="p")  # connects on first use
    assert "hunter2" not in repr(store) and "gk:***@127.0.0.1:9" in repr(store)
    with pytest.raises(StoreUnavailable) as info:  # its last flush finds no Redis there
        store.close()
    assert "hunter2" not in str(info.value)

    seeds = redis_cluster.url.removeprefix("redis+cluster://")
    with pytest.raises(StoreUnavailable) as info:  # a cluster client connects as it is made
        RedisStore(f"redis+cluster://gk:hunter2@{seeds}", prefix="p")
    assert str(info.value).startswith("Redis refused the credentials")
    assert "hunter2" not in str(info.value)


def test_a_cluster_that_can_not_be_reached_is_a_clear_error_at_once() -> None:
    from gatekeeper import RedisStore
    from gatekeeper.store import RetryPolicy

    with pytest.raises(StoreUnavailable) as info:
        RedisStore(
            "redis+cluster://gk:hunter2@127.0.0.1:9",
            retry=RetryPolicy(attempts=2, within=0.2),
        )
    said = str(info.value)
    assert said.startswith("Redis is unavailable: ") and "127.0.0.1:9" in said
    assert "hunter2" not in said


def test_a_cluster_error_over_a_read_that_timed_out_may_have_been_applied() -> None:
    import redis.exceptions as rexc

    from gatekeeper.store._redis import translate_redis_error

    # redis-py re-raises a try's error as "unreachable" when its topology refresh failed;
    # the try's read timed out after the command was sent: it may have run.
    try:
        try:
            raise rexc.TimeoutError("Timeout reading from 127.0.0.1:7000")
        except rexc.TimeoutError as timeout:
            raise rexc.RedisClusterUnreachableError(
                "Redis Cluster cannot be connected. Please provide at least one reachable node"
            ) from timeout
    except rexc.RedisClusterUnreachableError as exc:
        said = translate_redis_error(exc)
    assert isinstance(said, StoreUnavailable)
    assert said.context["applied"] == "unknown"
    try:
        try:
            raise rexc.ConnectionError("Error 111 connecting to 127.0.0.1:7000. Refused.")
        except rexc.ConnectionError as refused:
            raise rexc.RedisClusterException("Redis Cluster cannot be connected.") from refused
    except rexc.RedisClusterException as exc:
        never_sent = translate_redis_error(exc)
    assert never_sent.context["applied"] == "no"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis+sentinel://u:pw@s1/svc?sentinel_password=hunter2", "hunter2"),
        ("redis://h:6379/0?password=hunter2", "hunter2"),
        ("redis+cluster://u:hun/ter2@h:1", "hun/ter2"),
        ("redis+cluster://u:hunter2@h:1/0", "hunter2"),  # refused (a path), still hidden
        ("u:hunter2@127.0.0.1:6390/0", "hunter2"),  # no scheme at all: not echoed
    ],
)
def test_passwords_are_hidden_in_every_url_form(url: str, secret: str) -> None:
    try:
        shown = parse_endpoint(url).shown
    except ValueError as exc:
        shown = str(exc)
    assert secret not in shown
    assert "pw" not in shown.replace("password", "")


def test_hosts_tls_options_plus_signs_and_digits_are_read_strictly() -> None:
    assert parse_endpoint("redis+cluster://[::1]").nodes == (("::1", 6379),)
    assert parse_endpoint("redis+cluster://[::1]:7000,h").nodes == (("::1", 7000), ("h", 6379))
    ep = parse_endpoint("redis+sentinel://s/svc?sentinel_password=a+b%21")
    assert ep.options == {"sentinel_password": "a+b!"}  # "+" is a plus, as in the user part
    for bad, said in [
        ("redis+cluster://::1", "is not host:port (an IPv6 address goes in [brackets])"),
        ("redis+cluster://h:1?ssl_ca_certs=/ca.pem", "use rediss+cluster:// for TLS"),
        ("redis+sentinel://s/svc/\u0661", "the database must be a number"),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)):
            parse_endpoint(bad)
    assert parse_endpoint("rediss+cluster://h:1?ssl_ca_certs=/ca.pem").options == {
        "ssl_ca_certs": "/ca.pem"
    }


def test_a_bad_url_in_the_environment_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config("version: 1\nstore: {url: 'redis://localhost:6379/0'}\n", source="g")
    monkeypatch.setenv("GATEKEEPER_REDIS_URL", "redis+cluster://gk:hunter2@h:1/0")
    with pytest.raises(ConfigError) as info:
        config.build_store()
    assert str(info.value).startswith("$GATEKEEPER_REDIS_URL: redis+cluster://gk:***@h:1/0: ")
    assert "a cluster URL has no path" in str(info.value)


def test_the_wake_up_thread_outlives_a_cluster_it_can_not_reach_yet() -> None:
    import time

    from gatekeeper.store._wakes import Wakes

    wakes = Wakes(parse_endpoint("redis+cluster://127.0.0.1:9"), socket_timeout=1)
    try:
        woken = wakes.watch("r1", "{p:a}:decided")
        deadline = time.monotonic() + 5
        while wakes.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wakes.reconnects >= 2  # it kept trying, each time waking the waiters to re-read
        assert woken.is_set()
        assert wakes._thread is not None and wakes._thread.is_alive()
    finally:
        wakes.close()


def test_the_config_takes_a_durability_and_refuses_a_bad_one_by_field() -> None:
    """``store.durability`` reaches the store; a timeout the socket can't outlast is refused."""
    config = parse_config(
        "version: 1\nstore:\n  url: redis+sentinel://127.0.0.1:9/gk\n"
        "  durability: {replicas: 1, timeout: 250ms}\n",
        source="g.yaml",
    )
    assert (config.store.durability.replicas, config.store.durability.timeout) == (1, 0.25)
    defaults = parse_config("version: 1\n", source="g.yaml").store.durability
    assert (defaults.replicas, defaults.timeout) == (0, 1.0)
    for bad, field in (
        ("{replicas: -1}", "store.durability.replicas"),
        ("{replicas: 1, timeout: 10s}", "store.durability.timeout"),
        ("{replicas: 1, timeout: 0}", "store.durability.timeout"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(f"version: 1\nstore:\n  durability: {bad}\n", source="g.yaml")
        assert field in str(info.value)
    from gatekeeper.store import Durability, RedisStore

    with pytest.raises(ValueError, match="below the socket timeout"):
        RedisStore(
            "redis://127.0.0.1:9/0",
            durability=Durability(replicas=1, timeout=5.0),
            socket_timeout=2.0,
        )
