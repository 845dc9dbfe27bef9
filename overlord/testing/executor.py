"""``InlineExecutor``: the plan executor (``ports.Executor``) in the calling thread.

It runs what the Celery tasks run (``overlord.steps``), each behind the same lifecycle
gate (``overlord.lifecycle``), one step at a time in the plan's order: a failed step
stops the line and starts the rollback, as the canvas's error callback does; the push
phase reports every push and settles the plan; the rollback undoes completed steps in
reverse order of completion. No broker, no worker, no thread: when ``run_steps`` returns,
the plan has settled. For unit tests of what surrounds execution (approval, resume,
cancel, the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from overlord import lifecycle, rollback, steps, wiring
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, StepState
from overlord.errors import StepFailed
from overlord.lifecycle import View

if TYPE_CHECKING:
    from overlord.ports import Executor
WORKER = "inline"


class InlineExecutor:
    """Runs a plan's steps one after another in this thread."""

    embedded = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = wiring.plan_store(config)

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def idle_queues(self, queues: set[str]) -> list[str]:
        return []  # it is its own worker

    def holders(self, plan_id: str) -> list[str]:
        return []  # nothing runs once a call returns

    def recover(self, plan_id: str) -> list[str]:
        return []  # no worker to lose

    def run_steps(self, plan: DispatchPlan) -> None:
        todo = [
            plan.step(s)
            for s in plan.order()
            if plan.step(s).kind is not ActionKind.PUSH
            and plan.step(s).state in (StepState.PENDING, StepState.RUNNING)
        ]
        for step in todo:
            kind, sid = step.kind, step.id
            check = partial(lifecycle.admit_step, step_id=sid, kind=kind)
            if not self._admitted(plan.id, sid, kind.value, check):
                return
            try:
                steps.execute(self.config, plan.id, sid, WORKER)
            except StepFailed:
                self._failed(plan.id)
                return
        if self._admitted(plan.id, None, "finish", lifecycle.admit_finish):
            steps.finish(self.config, plan.id)

    def run_push(self, plan: DispatchPlan) -> None:
        for step in plan.steps:
            pending = (StepState.PENDING, StepState.RUNNING, StepState.FAILED)
            if step.kind is ActionKind.PUSH and step.state in pending:
                sid = step.id
                check = partial(lifecycle.admit_step, step_id=sid, kind=ActionKind.PUSH)
                if self._admitted(plan.id, sid, "push", check):
                    steps.execute(self.config, plan.id, sid, WORKER)  # records its own failure
        if self._admitted(plan.id, None, "finish", lifecycle.admit_finish):
            steps.finish(self.config, plan.id)

    def run_rollback(self, plan_id: str) -> None:
        if not self._admitted(plan_id, None, "rollback", lifecycle.admit_rollback):
            return
        rollback.running_steps(self.config, plan_id)  # none runs now: a running one was lost
        for sid in rollback.undo_order(self.store.load(plan_id)):
            if self._admitted(plan_id, sid, "undo", partial(lifecycle.admit_undo, step_id=sid)):
                rollback.undo(self.config, plan_id, sid)

        def done(view: View) -> str | None:
            return rollback.check_rollback_done(self.config, plan_id, view)

        if self._admitted(plan_id, None, "rollback_done", done):
            rollback.finish_rollback(self.config, plan_id)

    def _failed(self, plan_id: str) -> None:
        """What the canvas's error callback does: fail the plan once, then roll back."""
        check = partial(lifecycle.admit_plan_failed, cancelled=False)
        if self._admitted(plan_id, None, "plan_failed", check) and rollback.fail(
            self.config, plan_id
        ):
            self.run_rollback(plan_id)

    def _admitted(
        self, plan_id: str, step_id: str | None, what: str, check: Callable[[View], str | None]
    ) -> bool:
        """The lifecycle gate: False (and the refusal recorded) when the plan's recorded
        state does not allow ``what`` now."""
        view = lifecycle.view(self.store, plan_id)
        why = "no such plan" if view is None else check(view)
        if why is None:
            return True
        lifecycle.refuse(self.store, plan_id if view else None, step_id, what, WORKER, why)
        return False


if TYPE_CHECKING:  # mypy checks that it is an Executor
    _check: Executor = InlineExecutor(Config())
