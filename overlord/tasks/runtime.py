"""Where a plan's tasks run (SPEC §5).

- Embedded (no ``broker_url``): a private Redis server (``tasks.private_redis``) and an
  in-process Celery worker with a thread pool — the same tasks, chains, chords and error
  callbacks as a cluster. Both stop when the command ends; the state database, not the
  broker, keeps the plan, so ``overlord resume`` re-enqueues what is left in a new
  runtime.
- Distributed (``broker_url`` set): tasks go to the configured Redis and ``overlord
  worker`` processes run them. Tests (and benchmarks) may also start an in-process
  worker on it: ``Runtime(config, worker=True)``, or ``OVERLORD_INPROCESS_WORKER=1`` in
  the environment for every runtime the commands open (``overlord dispatch``, ``approve``,
  ``resume`` ...), so one process runs a distributed plan end to end.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery._state import _set_task_join_will_block, task_join_will_block

from overlord import defaults
from overlord.core.config import Config
from overlord.errors import BrokerUnavailable
from overlord.tasks.app import make_app, queues
from overlord.tasks.private_redis import PrivateRedis, reap_orphans

if TYPE_CHECKING:
    from overlord.tasks.inprocess import WorkerHandle
#: Set to 1 to run an in-process worker on the configured broker (tests, benchmarks).
INPROCESS_WORKER_ENV = "OVERLORD_INPROCESS_WORKER"


def idle_queues(
    app: Celery, wanted: set[str], timeout: float = defaults.INSPECT_TIMEOUT
) -> list[str]:
    """The queues in ``wanted`` that no live worker consumes (asked over the broker)."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:
        return []
    consumed = {q["name"] for queues in replies.values() for q in queues}
    return sorted(wanted - consumed)


def check_broker(url: str) -> None:
    """Fail fast, in one line, when the Redis broker does not answer."""
    import redis

    from overlord.core.secrets import mask_url, redact

    try:
        timeout = defaults.BROKER_CHECK_TIMEOUT
        redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerUnavailable(
            f"cannot reach the broker at {mask_url(url)}: {redact(str(exc))}",
            "start Redis, fix broker_url, or remove broker_url to run embedded",
        ) from None


class Runtime:
    """A Celery app (and, when wanted, a worker) for running plans of ``config``."""

    def __init__(
        self,
        config: Config,
        *,
        embedded: bool | None = None,
        worker: bool | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.config = config
        self.embedded = config.broker_url is None if embedded is None else embedded
        if worker is None:
            worker = self.embedded or os.environ.get(INPROCESS_WORKER_ENV, "") not in ("", "0")
        self.with_worker = worker
        # embedded: the worker's threads are the plan's slots (``tasks.slots``)
        self.concurrency = concurrency or config.dispatch.max_concurrent_steps
        self._stack = ExitStack()
        self.server: PrivateRedis | None = None
        self.app: Celery | None = None
        self.broker_url: str | None = None
        self._worker: WorkerHandle | None = None

    def __enter__(self) -> Runtime:
        try:
            self.broker_url = self._start_broker()
            self.app = make_app(self.config, self.broker_url)
            self.app.overlord_embedded = self.embedded  # type: ignore[attr-defined]
            if self.embedded:
                # task events are for Flower, which never sees a private server: sending
                # them cost a publish for every message sent, received, started and done
                self.app.conf.worker_send_task_events = False
                self.app.conf.task_send_sent_event = False
            self._stack.callback(_drop_result_subscriptions, self.app)
            if self.with_worker:
                # closing the worker waits for its pending Redis poll (a BRPOP) to time
                # out: a short poll lets a command end at once instead of ~1 s later (the
                # private server's clock ticks fast enough to honour 0.02 s)
                poll = defaults.WORKER_POLL_EMBEDDED if self.embedded else defaults.WORKER_POLL
                options = dict(self.app.conf.broker_transport_options or {})
                self.app.conf.broker_transport_options = {**options, "polling_interval": poll}
                # the worker's event loop, its step threads and this command pass each
                # other every message: a thread back from a Redis round trip waits for
                # the GIL up to the switch interval (5 ms by default) while another
                # computes, and a plan's start and each freed slot take a dozen of those
                self._stack.callback(sys.setswitchinterval, sys.getswitchinterval())
                sys.setswitchinterval(min(sys.getswitchinterval(), defaults.SWITCH_INTERVAL))
                self._start_worker()
            # Nothing here waits on a Celery result (the state database is the truth).
            # Declaring that, as a real worker process does, stops every ``apply_async``
            # from subscribing to its result channel: the subscriptions of a closed
            # runtime would otherwise be cancelled, when the results are collected, on a
            # broker that is gone, with ~20 s of reconnect retries. Restored on close.
            self._stack.callback(_set_task_join_will_block, task_join_will_block())
            _set_task_join_will_block(True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, signature: Any) -> None:
        """Send a canvas; with an in-process worker, also make sure that worker started
        (it is built while the command prepares the plan)."""
        signature.apply_async()
        if self._worker is not None:
            self._worker.raise_if_failed()

    def ready(self, timeout: float = 30.0) -> bool:
        """Wait until the in-process worker (started in the background) consumes its
        queues; False without one."""
        return self._worker is not None and self._worker.ready(timeout)

    def close(self) -> None:
        """Stop the worker (it takes no more messages, and the tasks it runs end, with
        what Celery does after their bodies), then the server; put back what was changed."""
        self._stack.close()

    def _start_broker(self) -> str:
        if not self.embedded:
            url = self.config.broker_url or "redis://127.0.0.1:6379/0"
            check_broker(url)
            return url
        reap_orphans()
        self.server = PrivateRedis.create()
        self._stack.callback(self.server.stop)
        return self.server.start()

    def _start_worker(self) -> None:
        from overlord.tasks.inprocess import in_process_worker

        assert self.app is not None
        self._worker = self._stack.enter_context(
            in_process_worker(
                self.app,
                concurrency=self.concurrency,
                queues=queues(self.config),
                shutdown_timeout=defaults.WORKER_SHUTDOWN_TIMEOUT,
            )
        )


def _drop_result_subscriptions(app: Celery) -> None:
    """Forget the result channels this app's client subscribed to (a chord's header
    results, when the chord is sent), while the broker still answers: once it is gone,
    collecting those results would make Celery unsubscribe from a dead server, retrying
    for ~20 s, in whatever later code the garbage collector happens to run in."""
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is None:
        return
    try:
        getattr(consumer, "subscribed_to", set()).clear()
        getattr(consumer, "_pending_unsubscribe", set()).clear()
        consumer.stop()
    except Exception:
        pass
