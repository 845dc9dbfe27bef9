"""Rollback (SPEC §4.2): when a step fails and ``rollback_on_failure`` is on, the undo of
every completed step runs in reverse order of completion. Afterwards every local branch
and tag of every touched repo points where it pointed before the plan, working trees are
as they were, no remote ref has changed, and the plan records what was undone.

- ``fail``: a failed step (or a cancel) moves the plan to failing, once — the rollback
  follows — unless ``rollback_on_failure`` is off (failed, the state kept for
  inspection) or a push already landed (never rolled back, and said so);
- ``running_steps``: the rollback waits until no step runs (one far past its timeout
  counts as lost with its worker, and failed);
- ``undo_order`` / ``undo``: what to compensate, latest first, and one step's
  compensation (its kind's undo, which checks the repository first, under the repository
  lock); an undo never raises: a failed one is reported and the rest go on;
- ``check_rollback_done`` / ``finish_rollback``: every repository back on its branch
  (``checkout.restore_branches``), the plan settled as rolled back, cancelled or
  "rollback incomplete" (what could not be undone named), with what was undone.

The Celery tasks (``tasks.definitions``: ``plan_failed``, ``rollback``, ``undo``,
``rollback_done``) call these; ``runner.rollback`` starts a rollback and follows it.
Nothing here imports Celery.
"""

from __future__ import annotations

from typing import Any

from overlord import defaults, lifecycle
from overlord.adapters.git.checkout import restore_branches
from overlord.adapters.git.locks import repo_lock
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, PlanState, StepState, now
from overlord.errors import OverlordError
from overlord.kinds import registry as kind_registry
from overlord.kinds.base import Context
from overlord.steps import SOFT_FAIL, remember_outcome, step_project
from overlord.wiring import plan_store


def undo_order(plan: DispatchPlan) -> list[str]:
    """Steps to compensate, latest first: steps that recorded an undo but did not
    complete (failed, interrupted), then completed ones in reverse order of completion.
    Every undo checks the repository first, so undoing a step that never acted is safe."""
    unfinished = [
        s.id
        for s in plan.steps
        if s.undo
        and s.kind is not ActionKind.PUSH
        and s.state in (StepState.FAILED, StepState.RUNNING, StepState.SKIPPED)
    ]
    # a completed step that recorded nothing (run-tests, noop) has nothing to compensate:
    # it stays succeeded and is not reported as undone
    done = [s for s in plan.steps if s.state is StepState.SUCCEEDED and s.undo]
    done.sort(key=lambda s: s.finished_seq or 0, reverse=True)
    return unfinished + [s.id for s in done if s.kind is not ActionKind.PUSH]


def undo(config: Config, plan_id: str, step_id: str) -> dict[str, Any]:
    """Compensate one step; never raises (the rollback goes on and reports)."""
    assert config.state_url
    store = plan_store(config)
    project = step_project(store, plan_id, step_id)
    try:
        with repo_lock(config.projects[project].path if project else None):
            # read under the lock: a second rollback of the plan (a resume meanwhile)
            # finds the step undone by the first and does not report it twice
            step = store.load_step(plan_id, step_id)
            if step.state is StepState.UNDONE:
                return {"step": step_id, "state": "undone"}
            message = (
                kind_registry.action(step.kind).undo(Context(config, plan_id, step), step.undo)
                if step.undo
                else "nothing recorded"
            )
            if step.state is StepState.SUCCEEDED:
                # a completed step becomes "undone"; a failed or interrupted one keeps
                # its state (it did not succeed), the compensation is in its events
                store.set_step_state(plan_id, step_id, StepState.UNDONE)
    except Exception as exc:  # report, keep undoing the rest
        text = exc.message if isinstance(exc, OverlordError) else f"{type(exc).__name__}: {exc}"
        store.event(plan_id, step_id, "undo-failed", text)
        return {"step": step_id, "state": "undo-failed", "error": text}
    store.event(plan_id, step_id, "undo", message)
    return {"step": step_id, "state": "undone", "message": message}


def running_steps(config: Config, plan_id: str) -> list[str]:
    """Steps still running; one running far past its timeout is marked failed (lost)."""
    assert config.state_url
    store = plan_store(config)
    plan = store.load(plan_id)
    running = []
    for step in plan.steps:
        if step.state is not StepState.RUNNING:
            continue
        started = step.started_at
        if started and (now() - started).total_seconds() > step.timeout + defaults.LOST_STEP_MARGIN:
            store.finish(
                plan_id, step.id, StepState.FAILED, error="lost: its worker stopped answering"
            )
            continue
        running.append(step.id)
    return running


def fail(config: Config, plan_id: str, *, cancelled: bool = False) -> bool:
    """Move a running plan to failing (once); True when the caller must start the rollback."""
    assert config.state_url
    store = plan_store(config)
    plan = store.load(plan_id)
    failed = [s for s in plan.steps if s.state is StepState.FAILED]
    if failed and all(s.kind in SOFT_FAIL for s in failed) and not cancelled:
        return False  # the push phase settles in finish()
    error = (
        "cancelled"
        if cancelled
        else "; ".join(f"{s.id}: {s.error}" for s in failed) or "a step failed"
    )
    if not config.dispatch.rollback_on_failure and not cancelled:
        lifecycle.move(
            store,
            plan_id,
            lifecycle.Move.FAIL_AND_KEEP,
            error=error,
            add_notes=["rollback_on_failure is off: state left for inspection"],
        )
        remember_outcome(config, store.load(plan_id))
        return False
    if any(s.kind is ActionKind.PUSH and s.state is StepState.SUCCEEDED for s in plan.steps):
        return False  # a push landed: never rolled back (``overlord cancel`` says so too)
    move = lifecycle.Move.CANCEL if cancelled else lifecycle.Move.FAIL
    return lifecycle.move(store, plan_id, move, error=error)


def check_rollback_done(config: Config, plan_id: str, plan: lifecycle.View) -> str | None:
    """Why ``overlord.rollback_done`` may not settle the plan yet (None: it may): every
    step to undo must have been undone (or its undo reported failed)."""
    refused = lifecycle.admit_rollback(plan)
    if refused:
        return refused
    assert config.state_url
    events = plan_store(config).events(plan_id)
    undone = {e["step_id"] for e in events if e["kind"] in ("undo", "undo-failed")}
    running = [i for i, s in plan.steps.items() if s.state is StepState.RUNNING]
    return lifecycle.admit_rollback_done(plan, undone, running)


def finish_rollback(config: Config, plan_id: str) -> PlanState:
    """After the undo chain: restore branches, mark the rest skipped, settle the plan."""
    assert config.state_url
    store = plan_store(config)
    plan = store.load(plan_id)
    problems = restore_branches(config, plan)
    for step in plan.steps:
        if step.state in (StepState.PENDING, StepState.RUNNING):
            store.finish(plan_id, step.id, StepState.SKIPPED)
    undone = [s.id for s in store.load(plan_id).steps if s.state is StepState.UNDONE]
    failed_undos = [
        f"{e['step_id']} ({e['message']})"
        for e in store.events(plan_id)
        if e["kind"] == "undo-failed"
    ]
    cancelled = plan.error == "cancelled"
    # a push that landed is counted: such a plan never reads rolled-back
    pushed = [
        s.project or s.id
        for s in plan.steps
        if s.kind is ActionKind.PUSH and s.state is StepState.SUCCEEDED
    ]
    if failed_undos or problems or pushed:
        final = lifecycle.Move.ROLLBACK_INCOMPLETE
        left = failed_undos + problems + [f"{p} was pushed to its remote" for p in pushed]
        note = f"rollback incomplete: {', '.join(left)}"
    else:
        final = lifecycle.Move.CANCELLED if cancelled else lifecycle.Move.ROLLED_BACK
        note = f"rolled back: undid {', '.join(undone) or 'nothing'}"
    # once per plan, even if two rollbacks of it ran (a resume during a rollback)
    if lifecycle.move(store, plan_id, final, undone=undone, add_notes=[note]):
        remember_outcome(config, store.load(plan_id))
    return store.state(plan_id)
