"""A Celery worker in a thread of this process (embedded mode, tests, benchmarks).

Celery's own ``celery.contrib.testing.worker.start_worker`` builds the worker and waits
until it is ready (~0.1 s each) before it returns. A plan does not need to wait: its
messages sit in the broker until the worker consumes them, so ``in_process_worker``
builds and starts the worker in its own thread and returns at once, and the command
records the plan's branches, saves its state and sends its canvas meanwhile. On exit it
waits for the worker to be up (a worker stopped half-way through its start could hang),
then stops it and wakes its event loop so it stops now, and then lets the tasks its pool
still runs end (``finish_running_tasks``) while the broker is still up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

#: Level of the in-process worker's own log (the plan's progress is shown instead).
LOGLEVEL = "CRITICAL"


class WorkerHandle:
    """The worker being built in its thread, or what stopped it being built."""

    def __init__(self) -> None:
        self.built = threading.Event()
        self.worker: Any = None
        self.error: BaseException | None = None

    def raise_if_failed(self, timeout: float = 30.0) -> None:
        """Wait until the worker is built; raise what stopped it, if anything."""
        self.built.wait(timeout)
        if self.error is not None:
            raise RuntimeError(f"the in-process worker could not start: {self.error}")

    def ready(self, timeout: float = 30.0) -> bool:
        """Wait until the worker consumes its queues (answers remote control too)."""
        self.raise_if_failed(timeout)
        return self.worker is not None and bool(self.worker._on_started.wait(timeout))


@contextmanager
def in_process_worker(
    app: Celery, *, concurrency: int, queues: list[str], shutdown_timeout: float = 30.0
) -> Iterator[WorkerHandle]:
    """Start a thread-pool worker of ``app`` on ``queues``; yields its handle at once."""
    from celery._state import _set_task_join_will_block, task_join_will_block
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.utils.nodenames import anon_nodename
    from celery.worker import state

    handle = WorkerHandle()
    # the worker's pool sets this process-wide flag while it starts; put back what it was
    joins_blocked = task_join_will_block()

    def build_and_run() -> None:
        try:
            setup_app_for_worker(app, LOGLEVEL, None)
            handle.worker = TestWorkController(
                app=app,
                concurrency=concurrency,
                hostname=anon_nodename(),
                pool="threads",
                loglevel=LOGLEVEL,
                logfile=None,
                ready_callback=None,
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
                queues=queues,
            )
        except BaseException as exc:
            handle.error = exc
            raise
        finally:
            handle.built.set()
        handle.worker.start()

    thread = threading.Thread(target=build_and_run, name="overlord-worker", daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        handle.built.wait(shutdown_timeout)
        worker = handle.worker
        if worker is not None:
            worker._on_started.wait(shutdown_timeout)
        state.should_terminate = 0
        hub = getattr(worker, "hub", None) if worker is not None else None
        if hub is not None:  # wake the event loop: left alone it sees the stop at its next poll
            hub.call_soon(_nothing)
        deadline = time.monotonic() + shutdown_timeout
        thread.join(shutdown_timeout)
        state.should_terminate = None
        if worker is not None:
            finish_running_tasks(worker, max(deadline - time.monotonic(), 0.0))
        _set_task_join_will_block(joins_blocked)
        if thread.is_alive():
            raise RuntimeError(f"the in-process worker did not stop within {shutdown_timeout:g} s")


def finish_running_tasks(worker: Any, timeout: float) -> None:
    """Let the tasks the stopped ``worker``'s thread pool still runs end (at most
    ``timeout`` s), and drop those it took but has not started.

    The worker stops by a cold shutdown (``should_terminate``): its consumer takes no more
    messages, but the thread pool's ``terminate`` does nothing, so a task whose body just
    settled the plan (and ended the command's wait) may still be in Celery's tracer,
    storing its result, counting a chord's part or sending its body, sending a chain's
    next message or an error callback: all on the broker, which the caller stops next.
    A task not started yet is cancelled: the command is over, and what it would have done
    is still to do in the state database, where ``overlord resume`` finds it."""
    executor = getattr(getattr(worker, "pool", None), "executor", None)
    if executor is None:  # not a thread pool, or the pool was never created
        return
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + timeout
    for running in list(getattr(executor, "_threads", ())):  # Celery's pool reads it too
        running.join(max(deadline - time.monotonic(), 0.0))


def _nothing() -> None:
    """A callback whose only effect is to wake the worker's event loop."""
