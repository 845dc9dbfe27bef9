"""The Celery application: JSON only, late acks, one queue per endpoint plus ``direct``.

``make_app`` builds a fresh app for one broker (the embedded private Redis server, or the
configured Redis) with every task registered; ``app`` at module level serves
``celery -A overlord.tasks ...`` and reads ``$OVERLORD_CONFIG``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import worker_process_shutdown

from overlord import defaults
from overlord.core.config import Config


def _drain_notifications(**_: Any) -> None:
    """A pool process shutting down (it exits without ``atexit``): let its webhook
    deliveries finish, or record them as cut short."""
    import sys

    webhooks = sys.modules.get("overlord.webhooks")
    if webhooks is not None:
        webhooks.drain()


worker_process_shutdown.connect(_drain_notifications, weak=False)


class _NamedAMQP(AMQP):
    """Task messages whose ``task-sent`` event carries the display name (``shadow``) too.

    Celery puts the registered name in that event; when it reaches Flower after the
    worker's ``task-received`` (a chain's next task is taken at once), Flower's state
    keeps the earlier event's name, and the task list would read ``overlord.undo``."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = message.headers.get("shadow")  # Celery passes it by position or by name
        if shadow and message.sent_event:
            message.sent_event["name"] = shadow
        return message


def visibility_timeout(config: Config) -> int:
    """Longer than any step may run: a shorter one makes Redis redeliver running steps."""
    longest = config.dispatch.step_timeout_default
    return max(longest * 2, longest + defaults.VISIBILITY_MARGIN, 3600)


def queues(config: Config) -> list[str]:
    """Every queue a plan may use: ``direct`` for git steps, one per model endpoint."""
    return [defaults.DIRECT_QUEUE, *(e.queue_name for e in config.models.values())]


def make_app(config: Config | None, broker_url: str | None = None, **conf: Any) -> Celery:
    """A Celery app for ``config`` on ``broker_url`` (default: the config's ``broker_url``)."""
    from overlord.tasks import definitions, health, kombu_fix, redis_fix, results, scheduled

    kombu_fix.apply()  # a worker survives a broker restart
    redis_fix.apply()  # a new Redis client does not read the package metadata again
    broker = broker_url or (config.broker_url if config else None) or "redis://127.0.0.1:6379/0"
    app = Celery("overlord", set_as_current=False, amqp=_NamedAMQP)
    app.conf.update(
        broker_url=broker,
        result_backend=results.backend_url(broker),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_allow_error_cb_on_chord_header=True,
        task_default_queue=defaults.DIRECT_QUEUE,
        task_create_missing_queues=True,
        result_expires=7 * 24 * 3600,
        # One backend per app, shared by its threads (the in-process worker's included),
        # so a runtime can drop its result subscriptions before its broker stops.
        result_backend_thread_safe=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout(config) if config else 3600,
            # A prompt sweep of messages taken by a worker that died (celery-lab.md).
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # one list per priority, so a freed slot takes the step with the longest
            # expected rest of its plan first (``tasks.compiler.priorities``)
            "priority_steps": list(range(defaults.STEP_PRIORITIES)),
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
        **conf,
    )
    app.overlord_config = config  # type: ignore[attr-defined]
    if config is not None:
        from overlord import notify

        notify.install(config)  # transitions made by this app's tasks notify webhooks
    definitions.register(app)
    scheduled.register(app)
    health.register(app)  # after scheduled: it adds to the beat schedule
    return app


def _from_env() -> Celery:
    """The app ``celery -A overlord.tasks`` uses: configured from ``$OVERLORD_CONFIG``."""
    from overlord.core import config as config_module
    from overlord.errors import OverlordError

    try:
        config: Config | None = config_module.load(os.environ.get("OVERLORD_CONFIG"))
    except OverlordError:
        config = None
    # inside Compose the broker is the `redis` service, whatever the config says
    broker = os.environ.get("OVERLORD_BROKER_URL")
    if config is not None and broker:
        config.broker_url = broker
    return make_app(config, broker)
