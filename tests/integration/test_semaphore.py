"""The global per-endpoint semaphore (Redis ZSET + Lua, leases, heartbeat).

The unit tests run on real Redis at 127.0.0.1:6379, and also on fakeredis when it can run
Lua (needs the optional ``lupa`` package).
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
import yaml

from overlord.core.config import parse
from overlord.errors import StepFailed
from overlord.routing.semaphore import Semaphore, SlotTimeout, in_flight
from tests.conftest import TEST_REDIS_HOST, TEST_REDIS_PORT, redis_client_or_skip

Factory = Callable[..., Semaphore]


def _real_client() -> redis.Redis:
    client: redis.Redis = redis_client_or_skip()
    return client


# fakeredis runs Lua scripts only when the optional ``lupa`` package is installed.
BACKENDS = ["real", "fake"] if importlib.util.find_spec("lupa") else ["real"]
pytestmark = pytest.mark.redis


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fake":
        yield fakeredis.FakeRedis()
        return
    real = _real_client()
    yield real
    real.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    value = f"overlord-test:{uuid.uuid4().hex}:slots:"
    yield value
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def make(client: redis.Redis, prefix: str) -> Factory:
    def factory(name: str = "ep", limit: int = 2, lease: float = 5.0) -> Semaphore:
        return Semaphore(client, name, limit, lease, prefix=prefix)

    return factory


# --- unit logic -------------------------------------------------------------------


def test_acquire_up_to_the_limit_then_none(make: Factory) -> None:
    sem = make(limit=2)
    a, b = sem.acquire(timeout=0), sem.acquire(timeout=0)
    assert a and b and a != b
    assert sem.in_use() == 2
    assert sem.acquire(timeout=0) is None
    assert sem.release(a) is True and sem.release(a) is False
    assert sem.in_use() == 1
    assert sem.acquire("mine", timeout=0) == "mine"
    assert set(sem.holders()) == {b, "mine"}


def test_acquire_is_idempotent_per_token(make: Factory) -> None:
    sem = make(limit=2)
    assert sem.acquire("step-1:try-1", timeout=0) == "step-1:try-1"
    assert sem.acquire("step-1:try-1", timeout=0) == "step-1:try-1"
    assert sem.in_use() == 1
    sem.acquire("other", timeout=0)
    # full, yet the holder of a slot still gets its own back
    assert sem.acquire("step-1:try-1", timeout=0) == "step-1:try-1"
    assert sem.in_use() == 2


def test_two_instances_share_the_limit(make: Factory) -> None:
    worker_a, worker_b = make(limit=1), make(limit=1)
    assert worker_a.acquire(timeout=0)
    assert worker_b.acquire(timeout=0) is None
    assert make(name="other-endpoint", limit=1).acquire(timeout=0)


def test_lease_expiry_frees_the_slot(make: Factory) -> None:
    sem = make(limit=1, lease=0.3)
    token = sem.acquire(timeout=0)
    assert token and sem.acquire(timeout=0) is None
    time.sleep(0.4)
    assert sem.in_use() == 0
    assert sem.refresh(token) is False
    assert sem.acquire(timeout=0)


def test_refresh_extends_the_lease(make: Factory) -> None:
    sem = make(limit=1, lease=0.4)
    token = sem.acquire(timeout=0)
    assert token
    for _ in range(4):
        time.sleep(0.2)
        assert sem.refresh(token)
    assert sem.in_use() == 1
    assert sem.refresh("nobody") is False


def test_acquire_waits_for_a_release(make: Factory) -> None:
    sem = make(limit=1)
    token = sem.acquire(timeout=0)
    assert token
    threading.Timer(0.2, sem.release, args=(token,)).start()
    started = time.monotonic()
    got = sem.acquire(timeout=3, poll=0.02)
    assert got and 0.15 < time.monotonic() - started < 1.5


def test_acquire_timeout_returns_none_in_time(make: Factory) -> None:
    sem = make(limit=1)
    sem.acquire(timeout=0)
    started = time.monotonic()
    assert sem.acquire(timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 0.6


def test_hold_keeps_the_slot_beyond_its_lease_and_releases_it(make: Factory) -> None:
    sem = make(limit=1, lease=0.3)
    with sem.hold() as token:
        time.sleep(1.0)  # more than three leases
        assert sem.in_use() == 1 and sem.holders() == [token]
        assert sem.acquire(timeout=0) is None
    assert sem.in_use() == 0


def test_hold_releases_on_error(make: Factory) -> None:
    sem = make(limit=1)
    with pytest.raises(RuntimeError), sem.hold():
        raise RuntimeError("step failed")
    assert sem.in_use() == 0


def test_hold_times_out_with_a_one_line_error(make: Factory) -> None:
    sem = make(name="local-14b", limit=1)
    sem.acquire(timeout=0)
    with pytest.raises(SlotTimeout) as info, sem.hold(timeout=0.1):
        pass
    assert isinstance(info.value, StepFailed)
    assert "local-14b" in str(info.value) and "1/1 in use" in str(info.value)
    assert "\n" not in str(info.value)


def test_key_expires_with_its_last_lease(make: Factory, client: redis.Redis) -> None:
    sem = make(limit=1, lease=2.0)
    sem.acquire(timeout=0)
    ttl = int(client.pttl(sem.key))
    assert 0 < ttl <= 3000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Semaphore(fakeredis.FakeRedis(), "x", 0)
    with pytest.raises(ValueError):
        Semaphore(fakeredis.FakeRedis(), "x", 1, lease_seconds=0)


def test_in_flight_per_endpoint(client: redis.Redis, prefix: str) -> None:
    models = {
        "local-14b": {"endpoint": "http://a/v1", "model": "m", "tier": "local", "concurrent": 2},
        "cloud-fast": {"endpoint": "http://b/v1", "model": "m", "tier": "cloud-fast"},
    }
    # in_flight uses the default key prefix: use fresh endpoint names to stay isolated
    unique = prefix.replace(":", "-")
    renamed = {f"{unique}{k}": v for k, v in models.items()}
    config = parse(yaml.safe_dump({"models": renamed}), Path("/nonexistent/overlord.yml"))
    sems = {n: Semaphore.for_endpoint(client, e) for n, e in config.models.items()}
    try:
        sems[f"{unique}local-14b"].acquire(timeout=0)
        sems[f"{unique}local-14b"].acquire(timeout=0)
        assert in_flight(client, config) == {f"{unique}local-14b": 2, f"{unique}cloud-fast": 0}
        assert sems[f"{unique}cloud-fast"].limit == 1
    finally:
        client.delete(*(s.key for s in sems.values()))


# --- integration with real Redis ------------------------------------------------------


@pytest.fixture
def real_prefix() -> Iterator[tuple[redis.Redis, str]]:
    client = _real_client()
    value = f"overlord-test:{uuid.uuid4().hex}:slots:"
    yield client, value
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_many_threads_never_exceed_the_limit(real_prefix: tuple[redis.Redis, str]) -> None:
    client, prefix = real_prefix
    limit, threads, rounds = 3, 10, 8
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "done": 0, "redis_max": 0}
    errors: list[BaseException] = []

    def worker() -> None:
        # each thread is a separate "worker" with its own connection pool
        sem = Semaphore(
            redis.Redis(host=TEST_REDIS_HOST, port=TEST_REDIS_PORT),
            "busy",
            limit,
            5.0,
            prefix=prefix,
        )
        try:
            for _ in range(rounds):
                with sem.hold(timeout=30, poll=0.005):
                    with lock:
                        state["now"] += 1
                        state["max"] = max(state["max"], state["now"])
                    state["redis_max"] = max(state["redis_max"], sem.in_use())
                    time.sleep(0.005)
                    with lock:
                        state["now"] -= 1
                        state["done"] += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors
    assert state["done"] == threads * rounds
    assert state["max"] <= limit and state["redis_max"] <= limit
    assert state["max"] == limit  # the limit was actually reached, not just respected
    assert Semaphore(client, "busy", limit, prefix=prefix).in_use() == 0


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import redis
    from overlord.routing.semaphore import Semaphore
    host, port = sys.argv[2], int(sys.argv[3])
    sem = Semaphore(redis.Redis(host=host, port=port), "killed", 1, 1.0, prefix=sys.argv[1])
    with sem.hold(timeout=5) as token:
        print(token, flush=True)
        time.sleep(120)
    """
)


@pytest.mark.slow
def test_slot_of_a_sigkilled_holder_returns_after_its_lease(
    real_prefix: tuple[redis.Redis, str],
) -> None:
    client, prefix = real_prefix
    sem = Semaphore(client, "killed", 1, 1.0, prefix=prefix)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, prefix, TEST_REDIS_HOST, str(TEST_REDIS_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        token = proc.stdout.readline().strip()
        assert token
        time.sleep(1.6)  # longer than the lease: the holder's heartbeat keeps the slot
        assert sem.holders() == [token]
        assert sem.acquire(timeout=0) is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        killed = time.monotonic()
        mine = sem.acquire(timeout=3, poll=0.02)
        freed_after = time.monotonic() - killed
        assert mine is not None and mine != token
        assert freed_after < 1.5, f"slot came back after {freed_after:.2f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
