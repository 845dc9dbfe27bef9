"""The slots' contract (``ports.Slots``), once per implementation: the Redis semaphore with
leases (real Redis at OVERLORD_TEST_REDIS; also fakeredis when it can run Lua) and the
in-process slots (which are also what unit tests use: they need no broker)."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from overlord import wiring
from overlord.errors import SlotTimeout, StepFailed
from overlord.local_slots import LocalSlots
from overlord.ports import Slots
from overlord.routing.semaphore import Semaphore

Make = Callable[[int], Slots]
IMPLEMENTATIONS = ["redis", "local"] + (["fakeredis"] if importlib.util.find_spec("lupa") else [])


@pytest.fixture(params=IMPLEMENTATIONS)
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    if request.param == "local":
        yield lambda limit: LocalSlots(name, limit)
        return
    if request.param == "fakeredis":
        import fakeredis

        client = fakeredis.FakeRedis()
    else:
        url = request.getfixturevalue("redis_url")
        import redis

        client = redis.Redis.from_url(url)
    prefix = f"overlord-test:{name}:slots:"
    yield lambda limit: Semaphore(client, name, limit, lease_seconds=5, prefix=prefix, poll=0.01)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def peak_holders(slots: Slots, threads: int, seconds: float) -> int:
    """How many of ``threads`` held a slot at once, each holding one for ``seconds``."""
    lock, now, peak = threading.Lock(), [0], [0]

    def work() -> None:
        with slots.hold():
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            time.sleep(seconds)
            with lock:
                now[0] -= 1

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return peak[0]


def test_never_more_holders_than_the_limit(make: Make) -> None:
    slots = make(3)
    assert (slots.limit, slots.in_use()) == (3, 0)
    assert peak_holders(slots, threads=8, seconds=0.05) == 3
    assert slots.in_use() == 0


def test_a_token_holds_its_own_slot_again(make: Make) -> None:
    slots = make(1)
    with slots.hold(token="plan:s1") as token:
        assert token == "plan:s1"
        with slots.hold(token="plan:s1", timeout=0):  # a redelivery: no second slot
            assert slots.in_use() == 1
    assert slots.in_use() == 0
    with slots.hold() as generated:
        assert isinstance(generated, str) and generated


def test_a_full_set_times_out_naming_it(make: Make) -> None:
    slots = make(1)
    with slots.hold():
        started = time.monotonic()
        with pytest.raises(SlotTimeout) as info, slots.hold(timeout=0.2):
            pass
        assert 0.15 <= time.monotonic() - started < 2
        with pytest.raises(SlotTimeout), slots.hold(timeout=0):
            pass
        assert slots.in_use() == 1
    assert isinstance(info.value, StepFailed)  # a step that waited too long fails
    assert slots.name in info.value.message and "no free slot within" in info.value.message


def test_a_block_that_raises_releases_its_slot(make: Make) -> None:
    slots = make(1)
    with pytest.raises(RuntimeError), slots.hold():
        raise RuntimeError("the step failed")
    assert slots.in_use() == 0
    with slots.hold(timeout=0):
        pass


def test_a_waiter_gets_a_released_slot_at_once(make: Make) -> None:
    slots = make(1)
    waited: list[float] = []
    held = threading.Event()

    def holder() -> None:
        with slots.hold():
            held.set()
            time.sleep(0.2)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with slots.hold(timeout=10):
        waited.append(time.monotonic() - started)
    thread.join()
    assert 0.1 <= waited[0] < 1.0


def test_a_limit_below_one_is_refused(make: Make) -> None:
    with pytest.raises(ValueError):
        make(0)


def test_the_factory_uses_redis_with_a_broker_and_threads_without(redis_url: str) -> None:
    assert isinstance(wiring.slots("plan:x", 2, broker=redis_url), Semaphore)
    local = wiring.slots("endpoint-x", 2, broker=None)
    assert isinstance(local, LocalSlots) and local is wiring.slots("endpoint-x", 2, broker=None)
    assert isinstance(wiring.slots("endpoint-x", 2, broker="memory://"), LocalSlots)
