"""Running one step and finishing a plan: the code every step task calls.

Nothing here imports Celery: tasks load ids, call these functions, and these record
every transition in the state database before and after acting (SPEC §4.3). Undoing
steps is ``overlord.rollback``.
"""

from __future__ import annotations

from typing import Any

from overlord import lifecycle
from overlord.adapters.git.checkout import restore_branches
from overlord.adapters.git.locks import repo_lock
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, PlanState, StepState
from overlord.core.secrets import redact
from overlord.errors import OverlordError, StepFailed
from overlord.kinds import registry as kind_registry
from overlord.kinds.base import Context
from overlord.ports import PlanStore
from overlord.wiring import plan_store

#: Step kinds whose failure is recorded without failing the plan's canvas: the push
#: phase reports every repo and lets ``overlord resume`` retry what is left.
SOFT_FAIL = {ActionKind.PUSH}


#: (state_url, plan, step) → project: a step's project never changes, so a worker reads
#: it once (the lock must be taken before the step's state is read and claimed).
_PROJECTS: dict[tuple[str, str, str], str | None] = {}


def step_project(store: PlanStore, plan_id: str, step_id: str) -> str | None:
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
    project = step_project(store, plan_id, step_id)
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
