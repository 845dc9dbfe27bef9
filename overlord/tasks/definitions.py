"""Task definitions: thin wrappers that pass plan and step ids to ``overlord.steps``.

Task names are ``overlord.<kind>`` (``overlord.merge``, ``overlord.run-tests`` ...) and
their only arguments are the plan id and the step id, so Flower shows what runs and
never a secret; each message also carries a display name (``shadow``, from
``overlord.tasks.names``) that says which project a task runs on.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.canvas import Signature

from overlord import steps
from overlord.config import ActionKind, Config
from overlord.errors import StepFailed

#: Seconds between two checks, by the rollback, that no step of the plan is still running.
ROLLBACK_POLL = 0.2


def _config(task: Task) -> Config:
    config: Config | None = getattr(task.app, "overlord_config", None)
    if config is None:
        from overlord import config as config_module

        config = config_module.load(None)
        task.app.overlord_config = config  # type: ignore[attr-defined]
        from overlord import notify

        notify.install(config)
    return config


def step_task_name(kind: ActionKind) -> str:
    return f"overlord.{kind.value}"


def rollback_signature(app: Celery, plan_id: str) -> Signature:
    """``overlord.rollback`` of a plan, shown as ``rollback · PLAN``."""
    from overlord.tasks.names import plan_task_name

    return app.signature(
        "overlord.rollback",
        args=(plan_id,),
        queue="direct",
        shadow=plan_task_name("rollback", plan_id),
    )


def register(app: Celery) -> None:
    """Register every Overlord task on ``app``.

    ``shared=False``: Celery's default adds every task to each app created later in the
    process, where the first app's functions (and their closures) would win; each app
    built by ``make_app`` (one per runtime) gets its own tasks, which use ``self.app``.
    """

    def make_step_task(kind: ActionKind) -> None:
        # ``throws``: a failed step is expected and recorded; the worker logs it in one
        # line, without a traceback
        @app.task(name=step_task_name(kind), bind=True, shared=False, throws=(StepFailed,))
        def run_step(self: Task, plan_id: str, step_id: str) -> dict[str, Any]:
            return steps.execute(_config(self), plan_id, step_id, self.request.hostname or "worker")

    for kind in ActionKind:
        make_step_task(kind)

    @app.task(name="overlord.finish", bind=True, shared=False)
    def finish(self: Task, plan_id: str) -> str:
        return steps.finish(_config(self), plan_id).value

    @app.task(name="overlord.plan_failed", bind=True, shared=False)
    def plan_failed(self: Task, plan_id: str, cancelled: bool = False) -> bool:
        """Error callback of every step: fail the plan once, then start the rollback."""
        if steps.fail(_config(self), plan_id, cancelled=cancelled):
            rollback_signature(self.app, plan_id).apply_async()
            return True
        return False

    @app.task(name="overlord.rollback", bind=True, max_retries=None, shared=False)
    def rollback(self: Task, plan_id: str) -> list[str]:
        """Wait until no step of the plan runs, then undo completed steps in reverse."""
        from overlord.store import Store
        from overlord.tasks.compiler import compile_rollback

        config = _config(self)
        if steps.running_steps(config, plan_id):
            raise self.retry(countdown=ROLLBACK_POLL)
        assert config.state_url
        plan = Store(config.state_url).load(plan_id)
        order = steps.undo_order(plan)
        compile_rollback(self.app, plan, order).apply_async()
        return order

    @app.task(name="overlord.undo", bind=True, shared=False)
    def undo(self: Task, plan_id: str, step_id: str) -> dict[str, Any]:
        return steps.undo(_config(self), plan_id, step_id)

    @app.task(name="overlord.rollback_done", bind=True, shared=False)
    def rollback_done(self: Task, plan_id: str) -> str:
        return steps.finish_rollback(_config(self), plan_id).value
