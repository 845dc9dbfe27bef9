"""A running step's heartbeat key (``tasks.liveness.heartbeat``) on a real Redis: written
by the process's one renewal thread (``overlord.renewer``) from ``beat_every()`` after
the step started, renewed while it runs, deleted when it ends and never written again
after; a step shorter than that writes no key at all."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from overlord import defaults
from overlord.tasks import liveness
from overlord.tasks.app import make_app
from tests.conftest import redis_client_or_skip


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    redis_client_or_skip()
    monkeypatch.setattr(defaults, "HEARTBEAT", 0.05)
    monkeypatch.setattr(defaults, "LOST_WORKER_SECONDS", 0.3)
    yield make_app(None, redis_url)


def _key(plan: str, step: str) -> str:
    return f"{liveness.PREFIX}{plan}/{step}"


def test_set_renewed_and_deleted(app: object) -> None:
    client, plan = redis_client_or_skip(), uuid.uuid4().hex
    with liveness.heartbeat(app, plan, "s1", "w1@host"):  # type: ignore[arg-type]
        assert client.get(_key(plan, "s1")) is None  # not before beat_every()
        time.sleep(0.2)
        assert client.get(_key(plan, "s1")) == b"w1@host"
        time.sleep(0.8)  # over twice its expiry: only renewals keep it
        assert client.get(_key(plan, "s1")) == b"w1@host"
    assert client.get(_key(plan, "s1")) is None
    time.sleep(0.2)  # a renewal pass after the end writes nothing
    assert client.get(_key(plan, "s1")) is None


def test_one_thread_for_every_step(app: object) -> None:
    client, plan = redis_client_or_skip(), uuid.uuid4().hex
    started = threading.Barrier(6)
    done = threading.Event()

    def step(n: int) -> None:
        with liveness.heartbeat(app, plan, f"s{n}", "w1@host"):  # type: ignore[arg-type]
            started.wait()
            done.wait()

    threads = [threading.Thread(target=step, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.2)
    names = [t.name for t in threading.enumerate()]
    beats = [n for n in names if n.startswith("heartbeat") or n == "overlord-renewer"]
    assert beats == ["overlord-renewer"]  # not a thread per step
    assert all(client.get(_key(plan, f"s{n}")) for n in range(5))
    done.set()
    for thread in threads:
        thread.join()
    assert not any(client.get(_key(plan, f"s{n}")) for n in range(5))


def test_a_short_step_writes_no_key(app: object, monkeypatch: pytest.MonkeyPatch) -> None:
    client, plan = redis_client_or_skip(), uuid.uuid4().hex
    writes: list[str] = []
    real_set = client.set
    monkeypatch.setattr(liveness, "_redis", lambda _: client)
    monkeypatch.setattr(client, "set", lambda *a, **k: writes.append(a[0]) or real_set(*a, **k))
    for n in range(20):
        with liveness.heartbeat(app, plan, f"s{n}", "w1@host"):  # type: ignore[arg-type]
            pass
    time.sleep(0.3)
    assert writes == []


def test_a_step_run_twice_keeps_its_key_until_both_end(app: object) -> None:
    client, plan = redis_client_or_skip(), uuid.uuid4().hex
    with liveness.heartbeat(app, plan, "s1", "w1@host"):  # type: ignore[arg-type]
        with liveness.heartbeat(app, plan, "s1", "w1@host"):  # type: ignore[arg-type]
            time.sleep(0.2)
        time.sleep(0.5)
        assert client.get(_key(plan, "s1")) == b"w1@host"
    assert client.get(_key(plan, "s1")) is None
