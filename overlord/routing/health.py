"""Health of model endpoints: checks, and a small cache of their results (SPEC §4.5).

A check is one GET of ``health_check_url`` or, without one, of ``{endpoint}/models``
(the OpenAI-compatible model listing): a 2xx answer is healthy, anything else (another
status, a timeout, a refused connection) is unhealthy with the reason. Checks never
raise. ``check_all`` runs every check at once, so it takes at most about one timeout.

The API key (``api_key_env``) is only ever sent as ``Authorization: Bearer`` to the
endpoint's own origin, and never appears in a status text or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests

from overlord import defaults
from overlord.core.config import Config, ModelEndpoint

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthRecord:
    """The result of one health check (or of a failure seen at call time)."""

    endpoint: str
    healthy: bool
    status: str  # "HTTP 200", "connection refused", "timed out after 3.0 s", ...
    checked_at: datetime  # UTC
    latency: float | None = None  # seconds; None when no answer came back

    def age(self, now: datetime | None = None) -> float:
        """Seconds since the check."""
        return ((now or utcnow()) - self.checked_at).total_seconds()

    def to_json(self) -> str:
        return json.dumps(
            {
                "endpoint": self.endpoint,
                "healthy": self.healthy,
                "status": self.status,
                "checked_at": self.checked_at.isoformat(),
                "latency": self.latency,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> HealthRecord:
        data: dict[str, Any] = json.loads(text)
        checked = datetime.fromisoformat(data["checked_at"])
        if checked.tzinfo is None:
            checked = checked.replace(tzinfo=UTC)
        latency = data.get("latency")
        return cls(
            endpoint=str(data["endpoint"]),
            healthy=bool(data["healthy"]),
            status=str(data.get("status", "")),
            checked_at=checked,
            latency=None if latency is None else float(latency),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_url(endpoint: ModelEndpoint) -> str:
    """The URL a check GETs."""
    return endpoint.health_check_url or endpoint.endpoint.rstrip("/") + "/models"


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port) == (y.scheme, y.hostname, y.port)


def _api_key(endpoint: ModelEndpoint) -> str | None:
    if not endpoint.api_key_env:
        return None
    return os.environ.get(endpoint.api_key_env) or None


def _describe(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "unknown host"
        return "cannot connect"
    return type(exc).__name__


def check(endpoint: ModelEndpoint, timeout: float = defaults.HEALTH_TIMEOUT) -> HealthRecord:
    """Check one endpoint now. Never raises."""
    url = check_url(endpoint)
    headers = {"Accept": "application/json"}
    key = _api_key(endpoint)
    if key and _same_origin(url, endpoint.endpoint):
        headers["Authorization"] = f"Bearer {key}"
    started = time.monotonic()
    try:
        # stream=True: the status line and headers are enough; the body is never read.
        with requests.get(url, headers=headers, timeout=(timeout, timeout), stream=True) as resp:
            latency = time.monotonic() - started
            code = resp.status_code
        healthy = 200 <= code < 300
        status = f"HTTP {code}"
    except requests.RequestException as exc:
        latency, healthy, status = None, False, _describe(exc, timeout)
    except Exception as exc:  # a check must never take the dispatcher down
        latency, healthy, status = None, False, f"check failed: {type(exc).__name__}"
    if key and key in status:
        status = status.replace(key, "***")
    record = HealthRecord(endpoint.name, healthy, status, utcnow(), latency)
    log.debug("health %s: %s (%s)", endpoint.name, "up" if healthy else "down", status)
    return record


def check_many(
    endpoints: Iterable[ModelEndpoint], timeout: float = defaults.HEALTH_TIMEOUT
) -> dict[str, HealthRecord]:
    """Check ``endpoints`` concurrently; returns after at most about one ``timeout``."""
    targets = list(endpoints)
    if not targets:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="overlord-health")
    try:
        futures = {e.name: pool.submit(check, e, timeout) for e in targets}
        # requests' timeout is per phase (connect, then read); cap the whole batch.
        wait_all(futures.values(), timeout=timeout + 0.5)
        results: dict[str, HealthRecord] = {}
        for name, future in futures.items():
            if future.done():
                results[name] = future.result()
            else:
                status = f"timed out after {timeout:g} s"
                results[name] = HealthRecord(name, False, status, utcnow(), None)
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def check_all(config: Config, timeout: float = defaults.HEALTH_TIMEOUT) -> dict[str, HealthRecord]:
    """Check every endpoint of ``config.models`` at once."""
    return check_many(config.models.values(), timeout)


@runtime_checkable
class HealthCache(Protocol):
    """Where the last health record of each endpoint is kept."""

    def get(self, name: str) -> HealthRecord | None: ...

    def put(self, record: HealthRecord) -> None: ...

    def all(self) -> dict[str, HealthRecord]: ...


class MemoryHealthCache:
    """A cache for one process (tests, embedded runs)."""

    def __init__(self) -> None:
        self._records: dict[str, HealthRecord] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> HealthRecord | None:
        with self._lock:
            return self._records.get(name)

    def put(self, record: HealthRecord) -> None:
        with self._lock:
            self._records[record.endpoint] = record

    def all(self) -> dict[str, HealthRecord]:
        with self._lock:
            return dict(self._records)


class RedisHealthCache:
    """A cache shared by every worker and machine: one JSON string per endpoint."""

    def __init__(self, redis_client: Redis, prefix: str = "overlord:health:") -> None:
        self.redis = redis_client
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return self.prefix + name

    def get(self, name: str) -> HealthRecord | None:
        raw = self.redis.get(self._key(name))
        return _decode(raw)

    def put(self, record: HealthRecord) -> None:
        self.redis.set(self._key(record.endpoint), record.to_json())

    def all(self) -> dict[str, HealthRecord]:
        keys = list(self.redis.scan_iter(match=self.prefix + "*", count=200))
        if not keys:
            return {}
        records = (_decode(raw) for raw in self.redis.mget(keys))
        return {r.endpoint: r for r in records if r is not None}


def _decode(raw: Any) -> HealthRecord | None:
    if raw is None:
        return None
    try:
        return HealthRecord.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry counts as unknown, and is rewritten by the next check


def refresh_if_stale(
    config: Config,
    cache: HealthCache,
    max_age: float | None = None,
    *,
    timeout: float = defaults.HEALTH_TIMEOUT,
) -> dict[str, HealthRecord]:
    """Every endpoint's record, checking (all at once) only those missing or too old.

    ``max_age`` defaults to ``config.dispatch.health_interval``.
    """
    limit = config.dispatch.health_interval if max_age is None else max_age
    now = utcnow()
    records: dict[str, HealthRecord] = {}
    stale: list[ModelEndpoint] = []
    for name, endpoint in config.models.items():
        record = cache.get(name)
        if record is None or record.age(now) > limit:
            stale.append(endpoint)
        else:
            records[name] = record
    for name, record in check_many(stale, timeout).items():
        cache.put(record)
        records[name] = record
    return records


def mark_unhealthy(cache: HealthCache, name: str, reason: str) -> HealthRecord:
    """Record that a step found endpoint ``name`` failing when it called it."""
    record = HealthRecord(name, False, reason, utcnow(), None)
    cache.put(record)
    return record
