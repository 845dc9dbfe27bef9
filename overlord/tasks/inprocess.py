"""A Celery worker in a thread of this process (embedded mode, tests, benchmarks).

Celery's own ``celery.contrib.testing.worker.start_worker`` waits until the worker is
ready (~0.1 s) before it returns. A plan does not need to wait: its messages sit in the
broker until the worker consumes them, so ``in_process_worker`` returns at once and the
command records the plan's branches, saves its state and sends its canvas while the
worker starts. On exit it waits for the worker to be up (a worker stopped half-way
through its start could hang), then stops it and wakes its event loop so it stops now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

#: Level of the in-process worker's own log (the plan's progress is shown instead).
LOGLEVEL = "CRITICAL"


@contextmanager
def in_process_worker(
    app: Celery, *, concurrency: int, queues: list[str], shutdown_timeout: float = 30.0
) -> Iterator[Any]:
    """Start a thread-pool worker of ``app`` on ``queues``; yields at once (a list that
    holds the worker once it is built)."""
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.utils.nodenames import anon_nodename
    from celery.worker import state

    built = threading.Event()
    made: list[Any] = []  # the worker, or the exception that stopped it being built

    def build_and_run() -> None:
        # building the worker takes ~0.1 s too: done here, beside the caller's work
        try:
            setup_app_for_worker(app, LOGLEVEL, None)
            worker = TestWorkController(
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
            made.append(exc)
            raise
        else:
            made.append(worker)
        finally:
            built.set()
        worker.start()

    thread = threading.Thread(target=build_and_run, name="overlord-worker", daemon=True)
    thread.start()
    try:
        yield made
    finally:
        built.wait(shutdown_timeout)
        worker = made[0] if made and not isinstance(made[0], BaseException) else None
        if worker is not None:
            worker._on_started.wait(shutdown_timeout)
        state.should_terminate = 0
        hub = getattr(worker, "hub", None) if worker is not None else None
        if hub is not None:  # wake the event loop: left alone it sees the stop at its next poll
            hub.call_soon(_nothing)
        thread.join(shutdown_timeout)
        state.should_terminate = None
        if thread.is_alive():
            raise RuntimeError(f"the in-process worker did not stop within {shutdown_timeout:g} s")


def raise_if_failed(handle: list[Any], timeout: float = 30.0) -> None:
    """Wait until the worker of ``handle`` is built; raise what stopped it, if anything."""
    deadline = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if handle:
            break
        deadline.wait(0.005)
    if handle and isinstance(handle[0], BaseException):
        raise RuntimeError(f"the in-process worker could not start: {handle[0]}") from handle[0]


def _nothing() -> None:
    """A callback whose only effect is to wake the worker's event loop."""
