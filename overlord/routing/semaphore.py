"""A global counting semaphore in Redis, with leases (SPEC §4.5: the ``concurrent`` limit
of an endpoint holds across all workers and machines together): the Redis implementation
of ``ports.Slots`` (``overlord.local_slots`` is the in-process one).

Slots live in a sorted set ``overlord:slots:<name>``: member = slot token, score = lease
expiry in milliseconds of the Redis server's clock (one clock for every machine). A Lua
script removes expired slots and takes one only while fewer than ``limit`` are held, in
one atomic step. A holder refreshes its lease while it works (``hold`` runs a heartbeat
thread); a slot of a SIGKILLed process comes back when its lease runs out.

A release also pushes a token to the list ``<key>:free``, on which waiters block (BLPOP)
between two tries: a freed slot is handed over at once, not at a waiter's next poll. The
poll stays as the fallback for slots that come back by lease expiry.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from overlord import defaults
from overlord.core.config import Config, ModelEndpoint
from overlord.errors import SlotTimeout

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

KEY_PREFIX = "overlord:slots:"

# Shared prologue: server time in ms, drop expired slots.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
# Keep the key only as long as its longest lease.
_EXPIRE = """
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now + 1000)) end
"""
# ARGV: token, limit, lease_ms. Returns 1 when the token holds a slot afterwards.
_ACQUIRE = (
    _PROLOGUE
    + """
local lease = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
"""
    + _EXPIRE
    + """
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
"""
    + _EXPIRE
    + """
  return 1
end
return 0
"""
)
# ARGV: token, lease_ms. Returns 1 when the lease was extended, 0 when the slot was lost.
_REFRESH = (
    _PROLOGUE
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
"""
    + _EXPIRE
    + """
return 1
"""
)
_IN_USE = _PROLOGUE + "return redis.call('ZCARD', KEYS[1])\n"
# KEYS: slots, free list; ARGV: token, limit. Returns 1 when the token held a slot.
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], 1)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[2], 60000)
return 1
"""
#: Suffix of the list a release pushes to (waiters block on it).
FREE_SUFFIX = ":free"


class Semaphore:
    """At most ``limit`` holders of ``name`` at once, across every process using ``redis``."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        limit: int,
        lease_seconds: float = defaults.SLOT_LEASE_SECONDS,
        *,
        prefix: str = KEY_PREFIX,
        poll: float = 0.05,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.redis = redis
        self.name = name
        self.limit = limit
        self.lease_seconds = lease_seconds
        self.poll = poll  # seconds between two tries of a waiter (the fallback to BLPOP)
        self.key = prefix + name
        self.free_key = self.key + FREE_SUFFIX
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._refresh = redis.register_script(_REFRESH)
        self._in_use = redis.register_script(_IN_USE)

    @classmethod
    def for_endpoint(
        cls,
        redis: Redis,
        endpoint: ModelEndpoint,
        lease_seconds: float = defaults.SLOT_LEASE_SECONDS,
    ) -> Semaphore:
        """The semaphore enforcing ``endpoint.concurrent``."""
        return cls(redis, endpoint.name, endpoint.concurrent, lease_seconds)

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    def try_acquire(self, token: str) -> bool:
        """Take a slot for ``token`` if one is free (or it already holds one). Never waits."""
        result: Any = self._acquire(keys=[self.key], args=[token, self.limit, self._lease_ms])
        return int(result) == 1

    def acquire(
        self, token: str | None = None, timeout: float | None = None, poll: float | None = None
    ) -> str | None:
        """Take a slot; returns its token, or None when ``timeout`` seconds passed first.

        ``timeout=None`` waits as long as it takes; ``0`` tries once. Acquiring again with
        a token that already holds a slot returns it (lease renewed) without taking another.
        """
        token = token or uuid.uuid4().hex
        poll = self.poll if poll is None else poll
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.try_acquire(token):
                return token
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
            else:
                left = poll * 2
            # jitter so waiters on many machines do not poll in lock step
            self._wait(min(left, poll * random.uniform(0.5, 1.5)))

    def _wait(self, seconds: float) -> None:
        """Sleep until a holder releases a slot, or ``seconds`` passed."""
        if seconds < 0.001:  # BLPOP would read 0 as "forever"
            return
        try:
            self.redis.blpop([self.free_key], timeout=seconds)
        except Exception:  # e.g. an old server without float timeouts: poll instead
            time.sleep(seconds)

    def refresh(self, token: str) -> bool:
        """Extend the lease of ``token``'s slot; False when it no longer holds one."""
        result: Any = self._refresh(keys=[self.key], args=[token, self._lease_ms])
        return int(result) == 1

    def release(self, token: str) -> bool:
        """Give the slot back; False when ``token`` held none (already released or expired)."""
        result: Any = self._release(keys=[self.key, self.free_key], args=[token, self.limit])
        return int(result) == 1

    def in_use(self) -> int:
        """How many slots are held now (expired leases not counted)."""
        result: Any = self._in_use(keys=[self.key], args=[])
        return int(result)

    def holders(self) -> list[str]:
        """Tokens holding a slot now (for status displays)."""
        self.in_use()  # drops expired slots
        return [
            t.decode() if isinstance(t, bytes) else str(t)
            for t in self.redis.zrange(self.key, 0, -1)
        ]

    @contextlib.contextmanager
    def hold(
        self, token: str | None = None, timeout: float | None = None, poll: float | None = None
    ) -> Iterator[str]:
        """Hold a slot for the ``with`` block, renewing its lease every ``lease/3`` seconds.

        Raises ``SlotTimeout`` when no slot is free within ``timeout``.
        """
        got = self.acquire(token, timeout=timeout, poll=poll)
        if got is None:
            raise SlotTimeout(
                f"endpoint {self.name}: no free slot within {timeout:g} s "
                f"({self.in_use()}/{self.limit} in use)",
                f"wait and retry, or raise models.{self.name}.concurrent",
            )
        stop, retaken = threading.Event(), threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(got, stop, retaken), name=f"slot-{self.name}", daemon=True
        )
        beat.start()
        try:
            yield got
        finally:
            # Stop the heartbeat before the release (it never retakes a slot once stop is
            # set) but wait for it only after: the next holder need not wait for a thread.
            stop.set()
            try:
                self.release(got)
            except Exception as exc:  # the lease returns the slot anyway
                log.warning("slot %s of %s not released: %s", got, self.name, exc)
            beat.join(timeout=1.0)
            if retaken.is_set():  # the heartbeat retook a lost slot while we released
                with contextlib.suppress(Exception):
                    self.release(got)

    @property
    def beat_interval(self) -> float:
        """Seconds between two renewals of a held lease."""
        return self.lease_seconds / 3

    def _heartbeat(self, token: str, stop: threading.Event, retaken: threading.Event) -> None:
        while not stop.wait(self.beat_interval):
            try:
                if not self.refresh(token) and not stop.is_set():
                    # The lease ran out (a long pause?): take a slot again if one is free.
                    if self.try_acquire(token):
                        retaken.set()
                    else:
                        log.warning("slot %s of %s lost; no free slot to retake", token, self.name)
            except Exception as exc:  # Redis hiccup: keep trying until the lease is gone
                log.warning("slot %s of %s not refreshed: %s", token, self.name, exc)


def in_flight(redis: Redis, config: Config) -> dict[str, int]:
    """Slots in use per endpoint of ``config`` (what ``endpoints.choose`` wants)."""
    return {
        name: Semaphore.for_endpoint(redis, endpoint).in_use()
        for name, endpoint in config.models.items()
    }


def semaphores(redis: Redis, config: Config) -> Mapping[str, Semaphore]:
    """One semaphore per endpoint of ``config``."""
    return {name: Semaphore.for_endpoint(redis, e) for name, e in config.models.items()}
