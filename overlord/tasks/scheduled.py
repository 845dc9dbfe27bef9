"""Scheduled runs (Celery beat, SPEC §4.1): ``overlord.scheduled`` and the beat schedule.

Beat sends ``overlord.scheduled`` with the schedule entry's *name* only. The task re-reads
the configuration, parses the entry's text, and hands the plan to the dispatch use case
(``dispatching.scheduled``: approval with ``scheduled_run=True``, never ``--yes``): an
approved plan is enqueued on this app's broker (the task does not wait for it); anything
else is saved as a pending proposal that ``overlord plans`` shows and ``overlord approve
ID`` runs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from overlord.core.config import Config
from overlord.errors import ConfigError
from overlord.schedule import TASK_NAME, beat_schedule


def register(app: Celery) -> None:
    """Register the scheduled-run task and the beat schedule on ``app``."""
    config: Config | None = getattr(app, "overlord_config", None)
    if config is not None and config.schedule:
        app.conf.beat_schedule = beat_schedule(config)

    @app.task(name=TASK_NAME, bind=True, shared=False)
    def scheduled(self: Task, name: str) -> dict[str, Any]:
        from overlord import lifecycle
        from overlord.tasks.definitions import _config
        from overlord.wiring import plan_store

        config = _fresh(_config(self))
        why = lifecycle.admit_scheduled(set(config.schedule), name)
        if why is not None:
            assert config.state_url
            worker = self.request.hostname or "worker"
            return lifecycle.refuse(plan_store(config), None, None, TASK_NAME, worker, why)
        return run_entry(config, name, self.app)


def _fresh(config: Config) -> Config:
    """The configuration as the file says now (an entry may have changed since start)."""
    from overlord.core import config as config_module

    if config.source is None:
        return config
    fresh = config_module.load(config.source)
    from overlord import notify

    notify.install(fresh)  # the webhooks as the file says now
    return fresh


def run_entry(config: Config, name: str, app: Celery) -> dict[str, Any]:
    """Plan the schedule entry ``name`` and run it (approved) or propose it (pending)."""
    from overlord import dispatching
    from overlord.core.parser import parse_all
    from overlord.core.registry import Registry

    config = _fresh(config)
    entry = config.schedule.get(name)
    if entry is None:
        raise ConfigError(
            f"schedule entry {name!r} is no longer in the configuration",
            "restart `overlord beat` after editing schedule:",
        )
    # several instructions work as in dispatch; text no form matches is never sent to a
    # model here: a translation needs a person, and a scheduled run has none
    plan = dispatching.plan_intents(config, parse_all(entry.task, Registry(config)))
    return dispatching.scheduled(
        config,
        plan,
        schedule=name,
        start=lambda plan_id: enqueue(config, plan_id, app, schedule=name),
    )


def enqueue(config: Config, plan_id: str, app: Celery, *, schedule: str) -> None:
    """Mark the queued plan running and send its canvas to the workers (no waiting)."""
    from overlord import runner
    from overlord.plan_owner import owner_of
    from overlord.tasks.compiler import compile_plan
    from overlord.wiring import plan_store

    store = plan_store(config)
    if not runner.mark_started(
        config, store.load(plan_id), {**owner_of(False), "schedule": schedule}
    ):
        return
    compile_plan(app, store.load(plan_id)).apply_async()
