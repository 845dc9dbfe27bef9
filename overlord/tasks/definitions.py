"""Task definitions: thin wrappers that pass plan and step ids to ``overlord.steps``.

Task names are ``overlord.<kind>`` (``overlord.merge``, ``overlord.run-tests`` ...) and
their only arguments are the plan id and the step id, so Flower shows what runs and
never a secret; each message also carries a display name (``shadow``, from
``overlord.tasks.names``) that says which project a task runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.canvas import Signature

from overlord import defaults, lifecycle, steps
from overlord import rollback as rollbacks
from overlord.core.config import ActionKind, Config
from overlord.errors import StepFailed
from overlord.lifecycle import View
from overlord.tasks.compiler import compile_rollback
from overlord.tasks.names import plan_task_name, step_task_name
from overlord.tasks.slots import plan_slot


def _config(task: Task) -> Config:
    config: Config | None = getattr(task.app, "overlord_config", None)
    if config is None:
        from overlord.core import config as config_module

        config = config_module.load(None)
        task.app.overlord_config = config  # type: ignore[attr-defined]
        from overlord import notify

        notify.install(config)
    return config


def rollback_signature(app: Celery, plan_id: str) -> Signature:
    """``overlord.rollback`` of a plan, shown as ``rollback · PLAN``."""
    return app.signature(
        "overlord.rollback",
        args=(plan_id,),
        queue=defaults.DIRECT_QUEUE,
        shadow=plan_task_name("rollback", plan_id),
    )


def _gate(
    task: Task, plan_id: Any, step_id: Any, check: Callable[[View], str | None]
) -> dict[str, Any] | None:
    """None when the message fits the plan as recorded; else it is refused (recorded as
    an event on the plan, from which worker) and its answer is returned. SPEC §4.6."""
    from overlord.wiring import plan_store

    config = _config(task)
    assert config.state_url
    store = plan_store(config)
    worker = task.request.hostname or "worker"
    ids_ok = isinstance(plan_id, str) and (step_id is None or isinstance(step_id, str))
    plan = lifecycle.view(store, plan_id) if ids_ok else None
    if plan is None:
        return lifecycle.refuse(
            store, None, None, task.name, worker, f"no plan {str(plan_id)[:40]!r}"
        )
    why = check(plan)
    if why is None:
        return None
    return lifecycle.refuse(store, plan_id, step_id, task.name, worker, why)


def register(app: Celery) -> None:
    """Register every Overlord task on ``app``; each passes ``overlord.lifecycle``'s gate
    before it acts.

    ``shared=False``: Celery's default adds every task to each app created later in the
    process, where the first app's functions (and their closures) would win; each app
    built by ``make_app`` (one per runtime) gets its own tasks, which use ``self.app``.
    """

    def make_step_task(kind: ActionKind) -> None:
        # ``throws``: a failed step is expected and recorded; the worker logs it in one
        # line, without a traceback
        @app.task(name=step_task_name(kind), bind=True, shared=False, throws=(StepFailed,))
        def run_step(self: Task, plan_id: str, step_id: str) -> dict[str, Any]:
            refused = _gate(
                self, plan_id, step_id, lambda p: lifecycle.admit_step(p, step_id, kind)
            )
            if refused is not None:
                return refused
            from overlord.tasks.liveness import heartbeat

            config = _config(self)
            worker = self.request.hostname or "worker"
            # one of the plan's max_concurrent_steps slots first (distributed), then the
            # step's heartbeat, so a lost worker's step is sent again
            with (
                plan_slot(self.app, config, plan_id, step_id),
                heartbeat(self.app, plan_id, step_id, worker),
            ):
                return steps.execute(config, plan_id, step_id, worker)

    for kind in ActionKind:
        make_step_task(kind)

    @app.task(name="overlord.finish", bind=True, shared=False)
    def finish(self: Task, plan_id: str) -> str | dict[str, Any]:
        refused = _gate(self, plan_id, None, lifecycle.admit_finish)
        if refused is not None:
            return refused
        return steps.finish(_config(self), plan_id).value

    @app.task(name="overlord.plan_failed", bind=True, shared=False)
    def plan_failed(self: Task, plan_id: str, cancelled: bool = False) -> bool | dict[str, Any]:
        """Error callback of every step: fail the plan once, then start the rollback."""
        refused = _gate(
            self, plan_id, None, lambda p: lifecycle.admit_plan_failed(p, cancelled is not False)
        )
        if refused is not None:
            return refused
        if rollbacks.fail(_config(self), plan_id):
            rollback_signature(self.app, plan_id).apply_async()
            return True
        return False

    @app.task(name="overlord.rollback", bind=True, max_retries=None, shared=False)
    def rollback(self: Task, plan_id: str) -> list[str] | dict[str, Any]:
        """Wait until no step of the plan runs, then undo completed steps in reverse."""
        from overlord.wiring import plan_store

        refused = _gate(self, plan_id, None, lifecycle.admit_rollback)
        if refused is not None:
            return refused
        config = _config(self)
        if rollbacks.running_steps(config, plan_id):
            raise self.retry(countdown=defaults.ROLLBACK_POLL)
        assert config.state_url
        plan = plan_store(config).load(plan_id)
        order = rollbacks.undo_order(plan)
        compile_rollback(self.app, plan, order).apply_async()
        return order

    @app.task(name="overlord.undo", bind=True, shared=False)
    def undo(self: Task, plan_id: str, step_id: str) -> dict[str, Any]:
        refused = _gate(self, plan_id, step_id, lambda p: lifecycle.admit_undo(p, step_id))
        if refused is not None:
            return refused
        return rollbacks.undo(_config(self), plan_id, step_id)

    @app.task(name="overlord.rollback_done", bind=True, shared=False)
    def rollback_done(self: Task, plan_id: str) -> str | dict[str, Any]:
        refused = _gate(
            self, plan_id, None, lambda p: rollbacks.check_rollback_done(_config(self), plan_id, p)
        )
        if refused is not None:
            return refused
        return rollbacks.finish_rollback(_config(self), plan_id).value
