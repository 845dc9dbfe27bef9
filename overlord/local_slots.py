"""In-process slots: the ``ports.Slots`` of one process's threads (no broker).

At most ``limit`` holders of a name at once among the threads of this process: an
endpoint's ``concurrent`` when no broker holds the global semaphore, and a plan's
``max_concurrent_steps`` in embedded mode (its in-process worker runs that many threads,
so there a step never waits). The same rules as the Redis semaphore
(``routing.semaphore``): a token that holds a slot holds it again without taking a second
one, and a waiter is woken the moment a slot is released. Pure: threads only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from overlord.errors import SlotTimeout

if TYPE_CHECKING:
    from overlord.ports import Slots
#: (name, limit) → the slots every thread of this process shares (``LocalSlots.shared``).
_SHARED: dict[tuple[str, int], LocalSlots] = {}
_SHARED_LOCK = threading.Lock()


class LocalSlots:
    """At most ``limit`` holders of ``name`` at once among this process's threads."""

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self.limit = limit
        self._held: set[str] = set()
        self._freed = threading.Condition()

    @classmethod
    def shared(cls, name: str, limit: int) -> LocalSlots:
        """The slots of ``name`` with ``limit`` that every thread of this process uses."""
        with _SHARED_LOCK:
            found = _SHARED.get((name, limit))
            if found is None:
                found = _SHARED[(name, limit)] = cls(name, limit)
            return found

    def in_use(self) -> int:
        with self._freed:
            return len(self._held)

    @contextmanager
    def hold(self, token: str | None = None, timeout: float | None = None) -> Iterator[str]:
        """Hold a slot for the ``with`` block (``timeout=None`` waits as long as it takes,
        ``0`` tries once); ``SlotTimeout`` when none became free in time."""
        token = token or uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._freed:
            while token not in self._held and len(self._held) >= self.limit:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SlotTimeout(f"endpoint {self.name}: no free slot within {timeout:g} s")
                self._freed.wait(left)
            self._held.add(token)
        try:
            yield token
        finally:
            with self._freed:
                self._held.discard(token)
                self._freed.notify_all()


if TYPE_CHECKING:  # mypy checks that it is a Slots
    _check: Slots = LocalSlots("check", 1)
