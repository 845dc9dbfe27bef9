"""Scheduled runs (Celery beat, SPEC §4.1): ``overlord.scheduled`` and the beat schedule.

Beat sends ``overlord.scheduled`` with the schedule entry's *name* only. The task re-reads
the configuration, parses the entry's text, plans it, and lets the autonomy policy decide
with ``scheduled_run=True`` (never ``--yes``): an approved plan is enqueued on this app's
broker (the task does not wait for it); anything else is saved as a pending proposal that
``overlord plans`` shows and ``overlord approve ID`` runs.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery, Task

from overlord.config import Config
from overlord.errors import ConfigError, OverlordError
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
    from overlord import config as config_module

    if config.source is None:
        return config
    fresh = config_module.load(config.source)
    from overlord import notify

    notify.install(fresh)  # the webhooks as the file says now
    return fresh


def run_entry(config: Config, name: str, app: Celery) -> dict[str, Any]:
    """Plan the schedule entry ``name`` and run it (approved) or propose it (pending)."""
    from overlord import approval, runner
    from overlord.dispatching import plan_intents
    from overlord.parser import parse_all
    from overlord.plan import PlanState
    from overlord.registry import Registry

    config = _fresh(config)
    entry = config.schedule.get(name)
    if entry is None:
        raise ConfigError(
            f"schedule entry {name!r} is no longer in the configuration",
            "restart `overlord beat` after editing schedule:",
        )
    # several instructions work as in dispatch; text no form matches is never sent to a
    # model here: a translation needs a person, and a scheduled run has none
    plan = plan_intents(config, parse_all(entry.task, Registry(config)))
    plan.scheduled_run = True
    plan.options = {**plan.options, "schedule": name}
    verdict = approval.decide(config, plan)
    problem = None
    try:
        runner.preflight(config, plan)
    except OverlordError as exc:
        problem = exc.message
    if problem is not None:
        from overlord.approval import proposal

        verdict = proposal(verdict, f"preflight failed: {problem}")
    if not verdict.execute:
        waiting = _pending_for(config, name)
        if waiting is not None:  # one proposal per entry: the person has not answered yet
            return {
                "schedule": name,
                "plan": waiting,
                "state": PlanState.PENDING.value,
                "reason": f"still waiting for approval: `overlord approve {waiting}`",
            }
    plan = runner.submit(config, plan, verdict)
    if plan.state is PlanState.QUEUED:
        enqueue(config, plan.id, app, schedule=name)
    return {
        "schedule": name,
        "plan": plan.id,
        "state": runner.store_for(config).state(plan.id).value,
        "reason": verdict.reason,
    }


def _pending_for(config: Config, name: str) -> str | None:
    """The id of this entry's proposal that still waits for a person, if any."""
    from overlord import runner

    store = runner.store_for(config)
    for row in store.list_plans("pending", limit=200):
        if store.load(row["id"]).options.get("schedule") == name:
            return str(row["id"])
    return None


def enqueue(config: Config, plan_id: str, app: Celery, *, schedule: str) -> None:
    """Mark the queued plan running and send its canvas to the workers (no waiting)."""
    from overlord import lifecycle, runner
    from overlord.checkout import head_name
    from overlord.git import Git
    from overlord.tasks.compiler import compile_plan

    store = runner.store_for(config)
    plan = store.load(plan_id)
    branches: dict[str, str | None] = {}
    for project in plan.projects:
        try:
            branches[project] = head_name(Git(config.projects[project].path))
        except OverlordError:
            branches[project] = None
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "embedded": False,
        "schedule": schedule,
    }
    if not lifecycle.move(
        store,
        plan_id,
        lifecycle.Move.START,
        original_branches=branches,
        owner=owner,
    ):
        return
    plan = store.load(plan_id)
    compile_plan(app, plan).apply_async()
