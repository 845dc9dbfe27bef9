"""The periodic health check of model endpoints (SPEC §4.5): ``overlord.health``.

``register(app)`` adds the task and a beat entry every ``dispatch.health_interval``
seconds; the task checks every endpoint at once and stores the results in the shared
cache (Redis in distributed mode, the state database in embedded mode).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from overlord import defaults
from overlord.core.config import Config

TASK_NAME = "overlord.health"
BEAT_ENTRY = "overlord-health"


def register(app: Celery) -> None:
    """Register ``overlord.health`` on ``app`` and schedule it when the config has models."""
    config: Config | None = getattr(app, "overlord_config", None)
    if config is not None and config.models:
        schedule = dict(app.conf.beat_schedule or {})
        schedule[BEAT_ENTRY] = {
            "task": TASK_NAME,
            "schedule": float(config.dispatch.health_interval),
            "options": {"queue": defaults.DIRECT_QUEUE, "expires": config.dispatch.health_interval},
        }
        app.conf.beat_schedule = schedule

    @app.task(name=TASK_NAME, bind=True, shared=False)
    def health(self: Task) -> dict[str, Any]:
        from overlord.routing.check import refresh
        from overlord.tasks.definitions import _config

        records = refresh(_config(self))
        return {name: {"healthy": r.healthy, "status": r.status} for name, r in records.items()}
