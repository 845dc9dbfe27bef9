"""The Redis that holds the global endpoint slots (SPEC §4.5), as seen from a step.

A step's action only gets a ``Context`` (config, plan, step). The slots live on the broker
the step's Celery app uses: ``config.broker_url`` in distributed mode, the
private Redis server in embedded mode. ``broker_url`` finds it, in this order:

1. the app of the Celery task running in this thread (``celery.current_task``);
2. a URL set by the runtime with ``set_broker_url`` (embedded runtime);
3. ``$OVERLORD_BROKER_URL``;
4. ``config.broker_url``.

Kombu's ``redis+socket:///path`` URLs are turned into redis-py ``unix:///path`` ones.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from overlord import defaults
from overlord.core.config import Config

if TYPE_CHECKING:
    from redis import Redis

#: Environment variable naming the broker a step's semaphore uses (overrides the config).
BROKER_ENV = "OVERLORD_BROKER_URL"
#: Environment variable: seconds of a slot's lease (tests use a short one).

_override: str | None = None
_clients: dict[str, Redis] = {}
_lock = threading.Lock()


def set_broker_url(url: str | None) -> None:
    """Record the broker of the runtime this process runs (None forgets it)."""
    global _override
    _override = url


def _task_broker() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    task = current_task
    if task is None or not getattr(task, "request", None) or task.request.id is None:
        return None
    url = task.app.conf.broker_url
    return str(url) if url else None


def broker_url(config: Config) -> str | None:
    """The broker of the step running now; None when there is none (no global slots)."""
    return _task_broker() or _override or os.environ.get(BROKER_ENV) or config.broker_url


def redis_url(url: str) -> str:
    """A redis-py URL for a kombu broker URL (``redis+socket://`` → ``unix://``)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    if url.startswith("socket://"):
        return "unix://" + url.removeprefix("socket://")
    return url


def client(url: str) -> Redis:
    """A shared redis-py client for ``url`` (one connection pool per URL and process)."""
    import redis

    key = redis_url(url)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = redis.Redis.from_url(
                key,
                socket_connect_timeout=defaults.REDIS_CONNECT_TIMEOUT,
                socket_timeout=defaults.REDIS_SOCKET_TIMEOUT,
            )
            _clients[key] = found
        return found


def lease_seconds(config: Config) -> float:
    """Lease of a global slot (``dispatch.slot_lease_seconds``)."""
    return float(config.dispatch.slot_lease_seconds)
