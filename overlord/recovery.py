"""Nothing lost (SPEC §4.3): plans and step states are persisted before they are acted
on; a worker killed mid-step (SIGKILL), a broker restart or an overlord crash leaves a
plan that ``overlord resume`` finishes or ``overlord cancel`` rolls back; steps are
idempotent, so a redelivered step does not act twice.

Here, from any shell, reading the plan as persisted: ``resume`` (a stopped run is sent
again — the steps of a dead process reset first —, a failed push retried, a stopped
rollback finished) and ``cancel`` (everything the plan did rolled back, ``rollback``;
never after a push landed). A step left running by a process that died counts as
interrupted (``plan_owner`` tells whether the process lives).

The rest of the guarantee is where it acts: a plan is saved before anything runs it
(``dispatching.submit``) and every transition is a compare-and-set (``lifecycle``, the
plan store); a redelivered step finds its work done and does not act again
(``steps.execute``, each kind's ``done``); a lost worker's step is re-sent without a
person (``tasks.liveness``: heartbeats, the worker's watchdog and the following
``dispatch``), a broker restart survived (``tasks.kombu_fix``).
"""

from __future__ import annotations

from overlord import lifecycle, runner
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, PlanState, StepState
from overlord.errors import PlanError
from overlord.following import Follow
from overlord.lifecycle import Move
from overlord.plan_owner import owner_alive
from overlord.wiring import plan_store


def resume(
    config: Config, plan_id: str, *, follow: Follow | None = None, detach: bool = False
) -> DispatchPlan:
    """Finish a plan whose run stopped (a crash, a killed worker, a failed push)."""
    store = plan_store(config)
    plan = store.load(plan_id)
    if plan.state is PlanState.FAILING:
        return _roll_back(config, plan, follow=follow)
    if plan.state is PlanState.FAILED and plan.push_approved:
        failed_push = [
            s for s in plan.steps if s.kind is ActionKind.PUSH and s.state is StepState.FAILED
        ]
        if failed_push:
            for step in failed_push:
                store.set_step_state(plan.id, step.id, StepState.PENDING)
            return runner.push(config, plan.id, follow=follow, detach=detach)
    if plan.state in (PlanState.QUEUED, PlanState.RUNNING):
        if plan.owner.get("embedded") and owner_alive(plan.owner):
            raise PlanError(
                f"plan {plan.id} is still running in process {plan.owner.get('pid')}",
                f"wait for it, or stop that process first; `overlord plans show {plan.id}`",
            )
        if not owner_alive(plan.owner):
            store.reset_unfinished(plan.id)
        return runner.run(config, plan.id, follow=follow, detach=detach)
    if plan.state.waiting:
        raise PlanError(f"plan {plan.id} waits for approval", f"run `overlord approve {plan.id}`")
    raise PlanError(f"plan {plan.id} is {plan.state.value}: there is nothing to resume")


def cancel(config: Config, plan_id: str, *, follow: Follow | None = None) -> DispatchPlan:
    """Stop a plan and roll back what it did."""
    store = plan_store(config)
    plan = store.load(plan_id)
    if plan.state is PlanState.PENDING:
        lifecycle.move(store, plan.id, Move.CANCEL_PROPOSAL, error="cancelled")
        return store.load(plan.id)
    pushed = [
        s.project or s.id
        for s in plan.steps
        if s.kind is ActionKind.PUSH and s.state is StepState.SUCCEEDED
    ]
    if pushed:
        raise PlanError(
            f"plan {plan.id} already pushed {', '.join(pushed)} to the remote: a rollback would "
            "leave local and remote apart",
            f"fix what failed and `overlord resume {plan.id}`, or revert by hand",
        )
    acted = any(s.state is StepState.SUCCEEDED and s.undo for s in plan.steps)
    if plan.state is PlanState.REJECTED and not acted:
        raise PlanError(f"plan {plan.id} is rejected and changed nothing: nothing to cancel")
    if plan.state.terminal and plan.state not in (PlanState.FAILED, PlanState.REJECTED):
        raise PlanError(f"plan {plan.id} is {plan.state.value}: there is nothing to cancel")
    return _roll_back(config, plan, cancelled=True, follow=follow)


def _roll_back(
    config: Config, plan: DispatchPlan, *, cancelled: bool = False, follow: Follow | None = None
) -> DispatchPlan:
    """Start (or restart) the plan's rollback and follow it; a step its dead process left
    running is failed first (interrupted), so the rollback does not wait for it."""
    if not owner_alive(plan.owner):
        store = plan_store(config)
        for step in plan.steps:
            if step.state is StepState.RUNNING:
                store.finish(
                    plan.id, step.id, StepState.FAILED, error="interrupted: its process died"
                )
    return runner.rollback(config, plan.id, cancelled=cancelled, follow=follow)
