"""Where each port (``overlord.ports``) gets its implementation: one factory per port.

Code that needs the plan store asks ``plan_store(config)``, slots ``slots(...)``, a minion
backend ``minion_backend(config)``, the executor ``executor(config)``; it never constructs
an adapter itself, so another implementation is a change here, not at every call site. The adapters
are imported inside the factories: importing this module loads no infrastructure.

Tests may put another implementation (``overlord.testing``) in place of the plan store of
one ``state_url`` with ``replaced_store`` (every code path that reads a configuration with
that ``state_url`` then uses it), of the minion backend with ``replaced_minions``, and of
the executor with ``replaced_executor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from overlord import defaults
from overlord.core.config import Config
from overlord.ports import Executor, MinionBackend, PlanStore, Slots

#: state_url → the store used in place of the state database's (tests only).
_STORES: dict[str, PlanStore] = {}
#: The minion backend used in place of the configured one (tests only).
_MINIONS: list[MinionBackend] = []
#: Makes the executor used in place of Celery's (tests only).
_EXECUTORS: list[Callable[[Config], Executor]] = []


def plan_store(config: Config) -> PlanStore:
    """The plan store of ``config.state_url``: the state database (SQLite, PostgreSQL)."""
    url = config.state_url or ""
    replaced = _STORES.get(url)
    if replaced is not None:
        return replaced
    from overlord.adapters.sql.store import Store

    return Store(url)


def slots(
    name: str,
    limit: int,
    *,
    broker: str | None,
    lease_seconds: float = defaults.SLOT_LEASE_SECONDS,
    poll: float = 0.05,
) -> Slots:
    """``limit`` slots called ``name``: on a Redis ``broker`` one semaphore with leases
    across every process and machine (``poll``: seconds between a waiter's tries); without
    one (or on another transport) among this process's threads."""
    if broker and broker.startswith(("redis", "unix", "socket")):
        from overlord.routing.broker import client
        from overlord.routing.semaphore import Semaphore

        return Semaphore(client(broker), name, limit, lease_seconds, poll=poll)
    from overlord.local_slots import LocalSlots

    return LocalSlots.shared(name, limit)


@contextmanager
def replaced_store(store: PlanStore) -> Iterator[PlanStore]:
    """Within the block, ``plan_store`` of a configuration whose ``state_url`` is
    ``store.url`` answers ``store``."""
    _STORES[store.url] = store
    try:
        yield store
    finally:
        _STORES.pop(store.url, None)


def minion_backend(config: Config) -> MinionBackend:
    """Where code work runs: ``minions.backend`` when set, else Docker when an engine
    answers; else ``SandboxUnavailable`` (exit 2): never silently on the host."""
    if _MINIONS:
        return _MINIONS[-1]
    from overlord.adapters.containers.docker import backend_named, choose_backend

    return backend_named(choose_backend(config), config)


@contextmanager
def replaced_minions(backend: MinionBackend) -> Iterator[MinionBackend]:
    """Within the block, ``minion_backend`` answers ``backend`` (in every thread)."""
    _MINIONS.append(backend)
    try:
        yield backend
    finally:
        _MINIONS.remove(backend)


def executor(config: Config) -> Executor:
    """Where a plan's steps run: Celery, embedded (no ``broker_url``) or on the broker."""
    if _EXECUTORS:
        return _EXECUTORS[-1](config)
    from overlord.tasks.executor import CeleryExecutor

    return CeleryExecutor(config)


@contextmanager
def replaced_executor(make: Callable[[Config], Executor]) -> Iterator[None]:
    """Within the block, ``executor(config)`` answers ``make(config)``."""
    _EXECUTORS.append(make)
    try:
        yield
    finally:
        _EXECUTORS.remove(make)
