"""One thread per process that renews the heartbeats of the steps it runs
(``tasks.liveness``).

A thread started and joined for each running step cost every step a start and a join,
under the GIL of a worker busy with other steps. Here each holder registers a function
to call every ``interval`` seconds (``add``) and takes it back when done (``remove``).
Guarantee: once ``remove`` returns, its function is not running and never runs again,
so a holder may then clean up (delete its key) without a renewal writing it again. The
thread starts with the first registration and ends when none is left; a forked child
starts with none of its parent's. A renewal that raises is logged and tried again at its
next turn.

Leases that hold a limit or a repository (``routing.semaphore``) keep a thread each: one
renewal stalled on a dead connection must not let every lease of the process run out.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Renewer:
    """Functions called every so many seconds, by one thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int]] = []  # (when, id) heap
        self._work: dict[int, tuple[float, Callable[[], None]]] = {}  # id: (interval, fn)
        self._next_id = 0
        self._running: int | None = None
        self._thread: threading.Thread | None = None

    def add(self, interval: float, fn: Callable[[], None]) -> int:
        """Call ``fn`` every ``interval`` seconds from now on; returns its id."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
            self._work[ident] = (interval, fn)
            heapq.heappush(self._due, (time.monotonic() + interval, ident))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="overlord-renewer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return ident

    def remove(self, ident: int) -> None:
        """Stop calling ``ident``'s function; returns once it is not running."""
        with self._cond:
            self._work.pop(ident, None)
            while self._running == ident:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                ident = self._next_due()
                if ident is None:
                    self._thread = None
                    return
                interval, fn = self._work[ident]
                self._running = ident
            try:
                fn()
            except Exception as exc:  # a hiccup (Redis): tried again at the next turn
                log.warning("renewal failed: %s", exc)
            with self._cond:
                self._running = None
                if ident in self._work:
                    heapq.heappush(self._due, (time.monotonic() + interval, ident))
                self._cond.notify_all()

    def _next_due(self) -> int | None:
        """Wait (holding the condition) for the next registered function that is due;
        None once nothing is registered."""
        while self._work:
            while self._due and self._due[0][1] not in self._work:
                heapq.heappop(self._due)  # removed meanwhile
            if not self._due:
                return None
            when, ident = self._due[0]
            left = when - time.monotonic()
            if left <= 0:
                heapq.heappop(self._due)
                return ident
            self._cond.wait(left)
        return None


RENEWER = Renewer()
# a forked child (a pool process) holds nothing of its parent's, and has no thread
os.register_at_fork(after_in_child=lambda: Renewer.__init__(RENEWER))
