"""Endpoint health checks against real HTTP servers on 127.0.0.1, and the health caches."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from overlord.core.config import Config, ModelEndpoint, parse
from overlord.routing import choose
from overlord.routing.health import (
    HealthCache,
    HealthRecord,
    MemoryHealthCache,
    RedisHealthCache,
    check,
    check_all,
    mark_unhealthy,
    refresh_if_stale,
)
from tests.conftest import TEST_REDIS_HOST, TEST_REDIS_PORT, redis_client_or_skip

TIMEOUT = 0.4
SLOW = 1.5  # a slow handler answers after this many seconds (well beyond TIMEOUT)
KEY = "sk-test-Zq81-secret"


@pytest.fixture(scope="module")
def _server() -> Iterator[HTTPServer]:
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_server: HTTPServer) -> Iterator[HTTPServer]:
    _server.clear()
    yield _server
    _server.clear()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(models: dict[str, Any], **dispatch: Any) -> Config:
    data: dict[str, Any] = {"models": models}
    if dispatch:
        data["dispatch"] = dispatch
    return parse(yaml.safe_dump(data), Path("/nonexistent/overlord.yml"))


def endpoint(name: str, url: str, **extra: Any) -> ModelEndpoint:
    spec = {"endpoint": url, "model": "m", "tier": "local", **extra}
    return make_config({name: spec}).models[name]


def slow(_request: Request) -> Response:
    time.sleep(SLOW)
    return Response("late")


# --- check ------------------------------------------------------------------


def test_up_endpoint_is_healthy(server: HTTPServer) -> None:
    server.expect_request("/health").respond_with_data("ok")
    ep = endpoint("local-14b", server.url_for("/v1"), health_check_url=server.url_for("/health"))
    record = check(ep, timeout=TIMEOUT)
    assert record.healthy and record.status == "HTTP 200" and record.endpoint == "local-14b"
    assert record.latency is not None and 0 <= record.latency < TIMEOUT
    assert record.checked_at.tzinfo is not None
    assert abs((datetime.now(UTC) - record.checked_at).total_seconds()) < 5


def test_without_health_url_the_model_listing_is_checked(server: HTTPServer) -> None:
    server.expect_request("/v1/models").respond_with_json({"data": [{"id": "m"}]})
    record = check(endpoint("local-30b", server.url_for("/v1/")), timeout=TIMEOUT)
    assert record.healthy
    assert [r.path for r, _ in server.log] == ["/v1/models"]


def test_server_error_is_unhealthy(server: HTTPServer) -> None:
    server.expect_request("/health").respond_with_data("boom", status=500)
    ep = endpoint("e", server.url_for("/v1"), health_check_url=server.url_for("/health"))
    record = check(ep, timeout=TIMEOUT)
    assert not record.healthy and record.status == "HTTP 500"


def test_closed_port_is_unhealthy_and_does_not_raise() -> None:
    record = check(endpoint("e", f"http://127.0.0.1:{closed_port()}/v1"), timeout=TIMEOUT)
    assert not record.healthy and record.status == "connection refused"
    assert record.latency is None


def test_unresolvable_host_is_unhealthy() -> None:
    record = check(endpoint("e", "http://no-such-host.invalid/v1"), timeout=TIMEOUT)
    assert not record.healthy


def test_slow_endpoint_times_out(server: HTTPServer) -> None:
    server.expect_request("/v1/models").respond_with_handler(slow)
    started = time.monotonic()
    record = check(endpoint("e", server.url_for("/v1")), timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert not record.healthy and record.status == f"timed out after {TIMEOUT:g} s"
    assert elapsed < SLOW


def test_check_all_runs_checks_at_once(server: HTTPServer) -> None:
    names = [f"slow-{i}" for i in range(5)]
    for name in names:
        server.expect_request(f"/{name}").respond_with_handler(slow)
    server.expect_request("/up").respond_with_data("ok")
    models: dict[str, Any] = {
        name: {
            "endpoint": server.url_for("/v1"),
            "model": "m",
            "tier": "local",
            "health_check_url": server.url_for(f"/{name}"),
        }
        for name in names
    }
    models["up"] = {"endpoint": server.url_for("/v1"), "model": "m", "tier": "local"}
    models["up"]["health_check_url"] = server.url_for("/up")
    models["gone"] = {"endpoint": f"http://127.0.0.1:{closed_port()}/v1", "model": "m"}
    models["gone"]["tier"] = "cloud-fast"
    started = time.monotonic()
    records = check_all(make_config(models), timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * TIMEOUT, f"{len(names)} slow checks took {elapsed:.2f} s"
    assert set(records) == {*names, "up", "gone"}
    assert records["up"].healthy
    assert not any(records[n].healthy for n in names)
    assert records["gone"].status == "connection refused"


# --- the API key ------------------------------------------------------------------


def _recorder(seen: list[dict[str, str]], status: int = 200) -> Any:
    def handler(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response("{}", status=status)

    return handler


def test_key_is_sent_as_bearer_to_the_endpoint_itself(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERLORD_TEST_KEY", KEY)
    seen: list[dict[str, str]] = []
    server.expect_request("/v1/models").respond_with_handler(_recorder(seen))
    ep = endpoint("cloud", server.url_for("/v1"), api_key_env="OVERLORD_TEST_KEY")
    assert check(ep, timeout=TIMEOUT).healthy
    assert seen[0]["Authorization"] == f"Bearer {KEY}"


def test_no_header_without_the_variable(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OVERLORD_TEST_KEY", raising=False)
    seen: list[dict[str, str]] = []
    server.expect_request("/v1/models").respond_with_handler(_recorder(seen))
    ep = endpoint("cloud", server.url_for("/v1"), api_key_env="OVERLORD_TEST_KEY")
    assert check(ep, timeout=TIMEOUT).healthy
    assert "Authorization" not in seen[0]


def test_key_is_not_sent_to_a_health_url_of_another_origin(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERLORD_TEST_KEY", KEY)
    seen: list[dict[str, str]] = []
    server.expect_request("/health").respond_with_handler(_recorder(seen))
    ep = endpoint(
        "cloud",
        f"http://127.0.0.1:{closed_port()}/v1",
        api_key_env="OVERLORD_TEST_KEY",
        health_check_url=server.url_for("/health"),
    )
    assert check(ep, timeout=TIMEOUT).healthy
    assert "Authorization" not in seen[0]


def test_key_never_appears_in_status_or_logs(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OVERLORD_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    seen: list[dict[str, str]] = []
    server.expect_request("/v1/models").respond_with_handler(_recorder(seen, status=401))
    ep = endpoint("cloud", server.url_for("/v1"), api_key_env="OVERLORD_TEST_KEY")
    record = check(ep, timeout=TIMEOUT)
    assert not record.healthy and record.status == "HTTP 401"
    assert KEY not in record.to_json() and KEY not in caplog.text


# --- caches -------------------------------------------------------------------


def record(name: str, healthy: bool = True, age: float = 0.0) -> HealthRecord:
    when = datetime.now(UTC) - timedelta(seconds=age)
    return HealthRecord(name, healthy, "HTTP 200" if healthy else "HTTP 503", when, 0.01)


def exercise_cache(cache: HealthCache) -> None:
    assert isinstance(cache, HealthCache)
    assert cache.get("a") is None and cache.all() == {}
    first = record("a")
    cache.put(first)
    cache.put(record("b", healthy=False))
    assert cache.get("a") == first
    assert set(cache.all()) == {"a", "b"} and not cache.all()["b"].healthy
    cache.put(record("a", healthy=False))
    got = cache.get("a")
    assert got is not None and not got.healthy
    assert got.checked_at.tzinfo is not None


def test_memory_cache() -> None:
    exercise_cache(MemoryHealthCache())


def test_redis_cache_on_fakeredis() -> None:
    exercise_cache(RedisHealthCache(fakeredis.FakeRedis()))
    exercise_cache(RedisHealthCache(fakeredis.FakeRedis(decode_responses=True)))


def test_redis_cache_ignores_a_damaged_entry() -> None:
    client = fakeredis.FakeRedis()
    cache = RedisHealthCache(client)
    client.set("overlord:health:x", "not json")
    cache.put(record("y"))
    assert cache.get("x") is None and set(cache.all()) == {"y"}


@pytest.fixture
def real_redis() -> Iterator[redis.Redis]:
    client = redis_client_or_skip()
    yield client
    client.close()


@pytest.mark.redis
def test_redis_cache_on_real_redis(real_redis: redis.Redis) -> None:
    prefix = f"overlord-test:{uuid.uuid4().hex}:health:"
    try:
        exercise_cache(RedisHealthCache(real_redis, prefix=prefix))
        # another client (another worker) sees the same records
        other = RedisHealthCache(
            redis.Redis(host=TEST_REDIS_HOST, port=TEST_REDIS_PORT, decode_responses=True), prefix
        )
        got = other.get("b")
        assert got is not None and not got.healthy and got.status == "HTTP 503"
        assert real_redis.get(prefix + "a") is not None
    finally:
        keys = list(real_redis.scan_iter(match=prefix + "*"))
        if keys:
            real_redis.delete(*keys)


# --- refresh_if_stale and mark_unhealthy ----------------------------------------


def two_endpoints(server: HTTPServer) -> Config:
    server.expect_request("/a").respond_with_data("ok")
    server.expect_request("/b").respond_with_data("no", status=503)
    models = {
        name: {
            "endpoint": server.url_for("/v1"),
            "model": f"m-{name}",
            "tier": "local",
            "health_check_url": server.url_for(f"/{name}"),
        }
        for name in ("a", "b")
    }
    models["c"] = {"endpoint": server.url_for("/v1"), "model": "cloud", "tier": "cloud-fast"}
    server.expect_request("/v1/models").respond_with_data("[]")
    return make_config(models, health_interval=60)


def test_refresh_checks_missing_entries_then_uses_the_cache(server: HTTPServer) -> None:
    config = two_endpoints(server)
    cache = MemoryHealthCache()
    first = refresh_if_stale(config, cache, timeout=TIMEOUT)
    assert {n: r.healthy for n, r in first.items()} == {"a": True, "b": False, "c": True}
    assert len(server.log) == 3
    again = refresh_if_stale(config, cache, timeout=TIMEOUT)
    assert again == first and len(server.log) == 3  # fresh: nothing checked


def test_refresh_rechecks_only_stale_entries(server: HTTPServer) -> None:
    config = two_endpoints(server)
    cache = MemoryHealthCache()
    cache.put(record("a", healthy=False, age=61))  # older than health_interval
    cache.put(record("b", healthy=True, age=10))
    cache.put(record("c", healthy=True, age=10))
    records = refresh_if_stale(config, cache, timeout=TIMEOUT)
    assert [r.path for r, _ in server.log] == ["/a"]
    assert records["a"].healthy and records["b"].healthy
    assert cache.get("a") == records["a"]
    refresh_if_stale(config, cache, max_age=5, timeout=TIMEOUT)
    # "a" was just checked; "b" and "c" are 10 s old
    assert sorted(r.path for r, _ in server.log) == ["/a", "/b", "/v1/models"]


def test_mark_unhealthy_makes_routing_fall_back(server: HTTPServer) -> None:
    config = two_endpoints(server)
    cache = MemoryHealthCache()
    cache.put(record("a"))
    cache.put(record("b"))
    assert choose(config, "local", health=cache.all(), in_flight={}).endpoint == "a"
    marked = mark_unhealthy(cache, "a", "HTTP 502 from chat/completions")
    assert not marked.healthy and cache.get("a") == marked
    assert choose(config, "local", health=cache.all(), in_flight={}).endpoint == "b"
    mark_unhealthy(cache, "b", "connection reset")
    choice = choose(config, "local", health=cache.all(), in_flight={})
    assert choice.endpoint == "c"
    assert "a down (HTTP 502 from chat/completions)" in choice.reason
