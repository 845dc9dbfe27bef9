"""``overlord models``, the state-database health cache, the start-up and periodic checks."""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import Config
from overlord.routing.check import at_startup, cached, health_cache, in_flight_now, refresh
from overlord.routing.dbcache import DbHealthCache
from overlord.routing.health import HealthRecord, RedisHealthCache, utcnow
from overlord.routing.semaphore import Semaphore
from tests.openai_server import ScriptedOpenAI


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a health check against it times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, models: dict[str, Any], **extra: Any) -> Config:
    path = tmp_path / "overlord.yml"
    path.write_text(yaml.safe_dump({"projects": {}, "models": models, **extra}, sort_keys=False))
    return config_module.load(path)


def run(config: Config, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--config", str(config.source), "models", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in args else out


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in doc["endpoints"]}


def test_db_cache_round_trip(tmp_path: Path) -> None:
    cache = DbHealthCache(f"sqlite:///{tmp_path / 'state.db'}")
    assert cache.get("a") is None and cache.all() == {}
    first = HealthRecord("a", True, "HTTP 200", utcnow(), 0.012)
    cache.put(first)
    assert cache.get("a") == first
    later = HealthRecord("a", False, "connection refused", utcnow() + timedelta(seconds=1))
    cache.put(later)
    cache.put(HealthRecord("b", True, "HTTP 204", utcnow()))
    assert cache.get("a") == later
    assert set(cache.all()) == {"a", "b"}


def test_models_checks_health_when_nothing_is_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        {
            "local-14b": {"endpoint": "http://127.0.0.1:9/v1", "model": "q-14b", "tier": "local",
                          "concurrent": 2},
            "cloud": {"endpoint": "http://127.0.0.1:9/v1", "model": "c", "tier": "cloud-fast",
                      "concurrent": 5, "queue": "cloud-q"},
        },
    )  # fmt: skip
    code, doc = run(config, capsys, "--json")
    assert code == 0
    rows = by_name(doc)
    assert rows["local-14b"]["tier"] == "local" and rows["local-14b"]["queue"] == "local-14b"
    assert rows["cloud"]["queue"] == "cloud-q"
    # nothing cached: checked now (port 9 refuses), so "down", not "unknown"
    assert {r["health"] for r in rows.values()} == {"down"}
    assert all(r["last_check"] for r in rows.values())
    assert [(r["in_flight"], r["concurrent"]) for r in rows.values()] == [(0, 2), (0, 5)]
    code, text = run(config, capsys)
    assert code == 0 and "local-14b" in text and "0/2" in text and "ago" in text


def test_models_checks_again_only_past_health_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ScriptedOpenAI() as up:
        models = {"up": {"endpoint": up.url, "model": "m", "tier": "local"}}
        config = write_config(tmp_path, models)
        assert by_name(run(config, capsys, "--json")[1])["up"]["health"] == "up"
    # the server is gone; the fresh cached record is shown as it is ...
    assert by_name(run(config, capsys, "--json")[1])["up"]["health"] == "up"
    # ... until --check, or until it is older than health_interval
    assert by_name(run(config, capsys, "--check", "--json")[1])["up"]["health"] == "down"
    with ScriptedOpenAI() as again:
        config = write_config(
            tmp_path, {"up": {"endpoint": again.url, "model": "m", "tier": "local"}}
        )
        assert config.source and config.state_url
        past = (utcnow() - timedelta(hours=1)).timestamp()
        os.utime(config.source, (past, past))  # the config is older than every record
        cache = DbHealthCache(config.state_url)
        interval = config.dispatch.health_interval
        cache.put(HealthRecord("up", False, "old news", utcnow() - timedelta(seconds=10)))
        assert by_name(run(config, capsys, "--json")[1])["up"]["status"] == "old news"
        stale = utcnow() - timedelta(seconds=interval + 10)
        cache.put(HealthRecord("up", False, "old news", stale))
        assert by_name(run(config, capsys, "--json")[1])["up"]["health"] == "up"


def test_models_check_up_down_and_500_then_shows_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ScriptedOpenAI() as up, ScriptedOpenAI(health_status=500) as broken:
        config = write_config(
            tmp_path,
            {
                "up": {"endpoint": up.url, "model": "m", "tier": "local",
                       "health_check_url": up.health_url},
                "listing": {"endpoint": up.url, "model": "m", "tier": "local"},
                "broken": {"endpoint": broken.url, "model": "m", "tier": "cloud-fast",
                           "health_check_url": broken.health_url},
                "down": {"endpoint": f"http://127.0.0.1:{closed_port()}/v1", "model": "m",
                         "tier": "cloud-heavy"},
            },
        )  # fmt: skip
        code, doc = run(config, capsys, "--check", "--json")
    assert code == 0
    rows = by_name(doc)
    assert rows["up"]["health"] == "up" and rows["up"]["status"] == "HTTP 200"
    assert rows["listing"]["health"] == "up"  # GET {endpoint}/models
    assert rows["broken"]["health"] == "down" and rows["broken"]["status"] == "HTTP 500"
    assert rows["down"]["health"] == "down" and rows["down"]["status"] == "connection refused"
    # The results are cached in the state database (embedded mode) with their time.
    code, doc = run(config, capsys, "--json")
    again = by_name(doc)
    assert again["broken"]["health"] == "down" and again["broken"]["last_check"]
    assert again["up"]["health"] == "up"  # fresh in the cache: not checked again
    assert again["up"]["age_seconds"] is not None and again["up"]["age_seconds"] < 60
    code, text = run(config, capsys)
    assert "broken" in text and "down" in text and "ago" in text


@pytest.mark.slow
def test_a_slow_endpoint_is_down_after_one_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], silent_server: str
) -> None:
    config = write_config(
        tmp_path, {"slow": {"endpoint": silent_server + "/v1", "model": "m", "tier": "local"}}
    )
    records = refresh(config, timeout=0.5)
    assert not records["slow"].healthy and records["slow"].status == "timed out after 0.5 s"
    assert cached(config)["slow"].status == "timed out after 0.5 s"


def test_at_startup_checks_only_when_nothing_is_fresh(tmp_path: Path) -> None:
    with ScriptedOpenAI() as server:
        config = write_config(
            tmp_path,
            {
                "a": {"endpoint": server.url, "model": "m", "tier": "local",
                      "health_check_url": server.health_url},
                "b": {"endpoint": server.url, "model": "m", "tier": "local",
                      "health_check_url": server.health_url},
            },
            dispatch={"health_interval": 300},
        )  # fmt: skip
        records = at_startup(config)
        assert server.health_checks == 2 and all(r.healthy for r in records.values())
        at_startup(config)
        assert server.health_checks == 2  # fresh entries: the cache is read, nobody waits
        # An old entry for one endpoint only still counts as "something fresh".
        cache = health_cache(config)
        cache.put(HealthRecord("a", True, "HTTP 200", utcnow() - timedelta(hours=1)))
        at_startup(config)
        assert server.health_checks == 2
        cache.put(HealthRecord("b", True, "HTTP 200", utcnow() - timedelta(hours=1)))
        at_startup(config)
        assert server.health_checks == 4


def test_periodic_health_task_checks_and_is_scheduled(tmp_path: Path) -> None:
    from overlord.tasks import health
    from overlord.tasks.app import make_app

    with ScriptedOpenAI(health_status=503) as server:
        config = write_config(
            tmp_path,
            {"a": {"endpoint": server.url, "model": "m", "tier": "local",
                   "health_check_url": server.health_url}},
            dispatch={"health_interval": 120},
        )  # fmt: skip
        app = make_app(config, "memory://")  # registers the task and its beat entry
        assert app.conf.beat_schedule[health.BEAT_ENTRY]["schedule"] == 120.0
        result = app.tasks[health.TASK_NAME]()
    assert result == {"a": {"healthy": False, "status": "HTTP 503"}}
    assert cached(config)["a"].status == "HTTP 503"


def test_distributed_mode_uses_redis_for_health_and_slots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    with ScriptedOpenAI() as server:
        config = write_config(
            tmp_path,
            {name: {"endpoint": server.url, "model": "m", "tier": "local", "concurrent": 3,
                    "health_check_url": server.health_url}},
            broker_url=redis_url,
        )  # fmt: skip
        client = redis.Redis.from_url(redis_url)
        semaphore = Semaphore.for_endpoint(client, config.models[name], lease_seconds=30)
        try:
            assert isinstance(health_cache(config), RedisHealthCache)
            with semaphore.hold():
                assert in_flight_now(config) == {name: 1}
                code, doc = run(config, capsys, "--check", "--json")
            row = by_name(doc)[name]
            assert (row["health"], row["in_flight"], row["concurrent"]) == ("up", 1, 3)
            assert RedisHealthCache(client).get(name) is not None
        finally:
            client.delete(f"overlord:health:{name}", semaphore.key)


def test_a_record_older_than_the_config_is_stale(tmp_path: Path) -> None:
    """An endpoint moved in the config is checked again, not trusted from the cache."""
    import os

    from overlord.routing.check import fresh

    config = write_config(
        tmp_path, {"m": {"endpoint": "http://127.0.0.1:9/v1", "model": "x", "tier": "local"}}
    )
    assert config.source is not None
    written = utcnow().timestamp() - 60
    os.utime(config.source, (written, written))  # written a minute ago
    record = HealthRecord("m", False, "connection refused", utcnow() - timedelta(seconds=30))
    assert fresh(config, {"m": record}) == {"m": record}
    os.utime(config.source)  # then edited after the check
    assert fresh(config, {"m": record}) == {}
