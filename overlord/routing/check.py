"""Where health records live, and when endpoints are checked (SPEC §4.5).

- The cache: Redis (``broker_url``) in distributed mode, shared by every worker and
  machine; the state database in embedded mode (``routing.dbcache``).
- ``at_startup``: when the cache holds no fresh record at all, check every endpoint at
  once (bounded by about one timeout); otherwise just read the cache.
- ``refresh``: check every endpoint now (the periodic ``overlord.health`` task and
  ``overlord models --check``).
- ``recheck_down``: check again the endpoints a cached record says are down (planning,
  when the cache would leave no endpoint at all).
- ``cached``: read only, never checks, never raises.
- ``in_flight_now``: slots in use per endpoint, from the broker's semaphores (0 without one).
- ``routed``: planning at the edge. Planning itself is pure and reads only the ``Known``
  it is handed; the entries that plan (``overlord dispatch``, scheduled runs) gather it
  here — the cache, checked first when it holds nothing fresh — and, when it would leave
  no endpoint, check the ones it says are down and plan again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from overlord import defaults
from overlord.core.config import Config
from overlord.errors import EndpointUnavailable
from overlord.routing.endpoints import Known
from overlord.routing.health import (
    HealthCache,
    HealthRecord,
    check_all,
    check_many,
    refresh_if_stale,
    utcnow,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def health_cache(config: Config) -> HealthCache:
    """The cache this configuration's dispatchers and workers share."""
    if config.broker_url:
        from overlord.routing.broker import client
        from overlord.routing.health import RedisHealthCache

        return RedisHealthCache(client(config.broker_url))
    from overlord.routing.dbcache import DbHealthCache

    assert config.state_url
    return DbHealthCache(config.state_url)


def cached(config: Config, cache: HealthCache | None = None) -> dict[str, HealthRecord]:
    """The cached record of each configured endpoint; {} when the cache cannot be read."""
    try:
        records = (cache or health_cache(config)).all()
    except Exception as exc:  # an unreachable cache means "unknown", which routes as healthy
        log.warning("health cache unreadable: %s", exc)
        return {}
    return {name: r for name, r in records.items() if name in config.models}


def fresh(config: Config, records: dict[str, HealthRecord]) -> dict[str, HealthRecord]:
    """The records younger than ``dispatch.health_interval`` and than the configuration
    file: a record taken before the config changed (a moved endpoint) is stale."""
    now = utcnow()
    limit = config.dispatch.health_interval
    try:
        edited = config.source.stat().st_mtime if config.source else 0.0
    except OSError:
        edited = 0.0
    return {
        name: r
        for name, r in records.items()
        if r.age(now) <= limit and r.checked_at.timestamp() >= edited
    }


def refresh(
    config: Config, cache: HealthCache | None = None, *, timeout: float = defaults.HEALTH_TIMEOUT
) -> dict[str, HealthRecord]:
    """Check every endpoint now (all at once) and store the results."""
    return _keep(cache or health_cache(config), check_all(config, timeout))


def _keep(store: HealthCache, records: dict[str, HealthRecord]) -> dict[str, HealthRecord]:
    """Store fresh check results (a cache that fails to write only costs a warning)."""
    for record in records.values():
        try:
            store.put(record)
        except Exception as exc:
            log.warning("health of %s not cached: %s", record.endpoint, exc)
    return records


def at_startup(
    config: Config, cache: HealthCache | None = None, *, timeout: float = defaults.HEALTH_TIMEOUT
) -> dict[str, HealthRecord]:
    """The cache when it holds a fresh record; else check every endpoint at once first."""
    store = cache or health_cache(config)
    records = cached(config, store)
    if not config.models or fresh(config, records):
        return records
    return {**records, **refresh(config, store, timeout=timeout)}


def for_display(
    config: Config,
    cache: HealthCache | None = None,
    *,
    timeout: float = defaults.HEALTH_SHOW_TIMEOUT,
) -> dict[str, HealthRecord]:
    """Every endpoint's record for ``overlord models``: the cached one when it is fresh
    (younger than ``health_interval`` and the config), else checked now, all at once."""
    store = cache or health_cache(config)
    records = cached(config, store)
    up_to_date = fresh(config, records)
    stale = [e for name, e in config.models.items() if name not in up_to_date]
    if not stale:
        return records
    return {**records, **_keep(store, check_many(stale, timeout))}


def recheck_down(
    config: Config,
    records: dict[str, HealthRecord],
    cache: HealthCache | None = None,
    *,
    timeout: float = defaults.HEALTH_TIMEOUT,
) -> dict[str, HealthRecord]:
    """Check again, all at once, the endpoints ``records`` say are down, unless that was
    just seen: a cached failure may be old news when no endpoint would take the work."""
    now = utcnow()
    down = [
        config.models[name]
        for name, record in records.items()
        if not record.healthy
        and record.age(now) > defaults.HEALTH_RECHECK_AFTER
        and name in config.models
    ]
    if not down:
        return records
    return {**records, **_keep(cache or health_cache(config), check_many(down, timeout))}


def current(
    config: Config, cache: HealthCache | None = None, *, timeout: float = defaults.HEALTH_TIMEOUT
) -> dict[str, HealthRecord]:
    """Every endpoint's record, checking (all at once) only the missing or stale ones.

    For workers, just before a step calls a model; never raises.
    """
    store = cache or health_cache(config)
    try:
        return refresh_if_stale(config, store, timeout=timeout)
    except Exception as exc:
        log.warning("health refresh failed: %s", exc)
        return cached(config, store)


def in_flight_now(config: Config, url: str | None = None) -> dict[str, int]:
    """Slots in use per endpoint on broker ``url`` (default the config's); {} without one."""
    url = url or config.broker_url
    if not url or not config.models:
        return {}
    from overlord.routing.broker import client
    from overlord.routing.semaphore import in_flight

    try:
        return in_flight(client(url), config)
    except Exception as exc:
        log.warning("slots in use unknown (broker %s): %s", url, exc)
        return {}


def routed(config: Config, decide: Callable[[Known], T], *, models: bool = True) -> T:
    """``decide(known)`` — a plan, a route — with what is known of the endpoints: the
    health cache (every endpoint checked at once first when it holds no fresh record, as
    at start) and the slots in use. When ``decide`` finds no endpoint, the ones the cache
    says are down are checked again (unless that was just seen) and it decides once more.
    ``models=False``: there is nothing to route (chores), so nothing is read or checked."""
    if not models or not config.models:
        return decide(Known())
    records, in_flight = at_startup(config), in_flight_now(config)
    try:
        return decide(Known(records, in_flight))
    except EndpointUnavailable:
        rechecked = recheck_down(config, records)
        if rechecked == records:
            raise
        return decide(Known(rechecked, in_flight))
