"""Running one step, undoing one step, finishing a plan: the code every Celery task calls.

Nothing here imports Celery: tasks load ids, call these functions, and these record
every transition in the state database before and after acting (SPEC §4.2, §4.3).
"""

from __future__ import annotations

from typing import Any

from overlord import lifecycle
from overlord.checkout import head_name
from overlord.config import ActionKind, Config
from overlord.errors import OverlordError, StepFailed
from overlord.git import Git
from overlord.kinds import registry as kind_registry
from overlord.kinds.base import Context
from overlord.locks import repo_lock
from overlord.plan import DispatchPlan, PlanState, StepState, now
from overlord.ports import PlanStore
from overlord.secrets import redact
from overlord.wiring import plan_store

#: Step kinds whose failure is recorded without failing the plan's canvas: the push
#: phase reports every repo and lets ``overlord resume`` retry what is left.
SOFT_FAIL = {ActionKind.PUSH}


#: (state_url, plan, step) → project: a step's project never changes, so a worker reads
#: it once (the lock must be taken before the step's state is read and claimed).
_PROJECTS: dict[tuple[str, str, str], str | None] = {}


def _step_project(store: PlanStore, plan_id: str, step_id: str) -> str | None:
    key = (store.url, plan_id, step_id)
    if key not in _PROJECTS:
        if len(_PROJECTS) > 10_000:
            _PROJECTS.clear()
        _PROJECTS.update(
            {(store.url, plan_id, s): p for s, p in store.step_projects(plan_id).items()}
        )
    return _PROJECTS.get(key)


def execute(config: Config, plan_id: str, step_id: str, worker: str) -> dict[str, Any]:
    """Run a step once: claim it, check whether it already acted, prepare, act, record."""
    assert config.state_url
    store = plan_store(config)
    project = _step_project(store, plan_id, step_id)
    with repo_lock(config.projects[project].path if project else None):
        prior = store.claim(plan_id, step_id, worker)
        if prior is None:
            return {"step": step_id, "state": "not-run"}
        ctx = Context(config, plan_id, prior)
        action = kind_registry.action(prior.kind)
        undo: dict[str, Any] = {}
        try:
            if prior.undo and action.done(ctx, prior.undo):
                output = "already done (redelivered): not acting again"
            else:
                undo = action.prepare(ctx)
                if undo:  # nothing to record for read-only steps
                    store.record_undo(plan_id, step_id, undo)
                output = action.run(ctx, undo)
        except OverlordError as exc:
            store.finish(
                plan_id,
                step_id,
                StepState.FAILED,
                output=getattr(exc, "output", ""),
                error=exc.message,
            )
            if prior.kind in SOFT_FAIL:
                return {"step": step_id, "state": "failed", "error": exc.message}
            # the worker logs this message: it quotes output, so never a secret
            raise StepFailed(
                redact(f"step {step_id} ({prior.kind.value}) failed: {exc.message}")
            ) from None
        except Exception as exc:  # an unexpected bug must still fail the step, not hang the plan
            store.finish(plan_id, step_id, StepState.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise StepFailed(
                redact(f"step {step_id} ({prior.kind.value}) crashed: {exc}")
            ) from None
        # the undo record now also says where the step left each ref (``after``)
        store.finish(plan_id, step_id, StepState.SUCCEEDED, output=output, undo=undo)
    return {"step": step_id, "state": "succeeded"}


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
    project = _step_project(store, plan_id, step_id)
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


def restore_branches(config: Config, plan: DispatchPlan) -> list[str]:
    """Check out, in every touched repo, the branch that was checked out before the plan."""
    problems = []
    for project, original in plan.original_branches.items():
        if original is None or project not in config.projects:
            continue
        git = Git(config.projects[project].path)
        try:
            with repo_lock(git.path):
                if head_name(git) != original:
                    git.checkout(original)
        except OverlordError as exc:
            problems.append(f"{project}: {exc.message}")
    return problems


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


def finish(config: Config, plan_id: str) -> PlanState:
    """After the last step of a phase: succeeded, awaiting the push, or failed pushes."""
    assert config.state_url
    store = plan_store(config)
    plan = store.load(plan_id)
    if plan.state is not PlanState.RUNNING:
        return plan.state
    # a step interrupted inside ``on_branch`` (a killed worker) left its repo on another
    # branch; its redelivery found the work done and did not act, so put it back here
    problems = restore_branches(config, plan)
    if problems:
        store.update_doc(plan_id, add_notes=[f"not restored: {'; '.join(problems)}"])
    failed = [s for s in plan.steps if s.state is StepState.FAILED]
    pending_push = [
        s for s in plan.steps if s.kind is ActionKind.PUSH and s.state is StepState.PENDING
    ]
    if failed:
        names = ", ".join(f"{s.project or s.id}" for s in failed)
        error = f"push failed for {names}; fix the remote, then `overlord resume {plan_id}`"
        lifecycle.move(store, plan_id, lifecycle.Move.PUSH_FAILED, error=error)
    elif pending_push:
        lifecycle.move(store, plan_id, lifecycle.Move.AWAIT_PUSH)
        return PlanState.AWAITING_PUSH
    else:
        lifecycle.move(store, plan_id, lifecycle.Move.SUCCEED)
    final = store.load(plan_id)
    remember_outcome(config, final)
    return final.state


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


#: Seconds past its timeout after which a running step counts as lost with its worker.
LOST_MARGIN = 60


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
        if started and (now() - started).total_seconds() > step.timeout + LOST_MARGIN:
            store.finish(
                plan_id, step.id, StepState.FAILED, error="lost: its worker stopped answering"
            )
            continue
        running.append(step.id)
    return running


def remember_outcome(config: Config, plan: DispatchPlan) -> None:
    """Record the outcome in cross-project memory and the durations of its steps (never
    fails the plan)."""
    from overlord import durations, memory

    try:
        assert config.state_url
        durations.learn(config.state_url, plan)
    except Exception:
        pass

    failed_run = plan.state in (PlanState.FAILED, PlanState.ROLLED_BACK)
    categories = ["release"] if plan.kind == "release" else []
    if failed_run:
        categories.append("failure")  # a failed release is both
    elif not categories:
        categories = ["dispatch"]
    failed = [f"{s.id} {s.kind.value} {s.project or ''}: {s.error}" for s in plan.steps if s.error]
    said = plan.task
    if plan.translation is not None:
        said += f" (understood as: {'; '.join(plan.translation.lines)})"
    content = f"{said} -> {plan.state.value}" + (f"; failed: {'; '.join(failed)}" if failed else "")
    try:
        assert config.state_url
        projects: list[str | None] = list(plan.projects) or [None]
        for project in projects:
            scans = [
                s.output.strip()
                for s in plan.steps
                if s.kind is ActionKind.SCAN and s.project == project and s.output.strip()
            ]
            for category in categories:
                memory.remember(
                    config.state_url,
                    category,
                    "; ".join([content, *scans]),
                    project=project,
                    metadata={
                        "plan": plan.id,
                        "state": plan.state.value,
                        "undone": plan.undone,
                        **_translation_meta(plan),
                    },
                )
    except Exception:
        pass


def _translation_meta(plan: DispatchPlan) -> dict[str, Any]:
    t = plan.translation
    if t is None:
        return {}
    return {"original": t.original, "translation": t.lines, "translated_by": t.endpoint}
