"""Every entry (SPEC §4.6): the plan and step lifecycle — one table of allowed
transitions — and the gate every Celery task passes before it acts, whoever sent it.

``PLAN_MOVES`` names every plan transition with the states it may start from; ``move``
is the single place a plan changes state (everything else calls it), and it tells
``notify`` (the webhooks) of each committed move. ``STEP_MOVES`` is the step table.

``admit_*`` functions read the plan as recorded and say whether a task message fits it:
a step runs only in a running plan, in a state that allows it, with every dependency
succeeded, and never in a plan a model translated that no person approved; a push only when the plan records a person's push approval and every other
step succeeded; ``plan_failed`` only when a step of the plan is recorded failed;
``rollback``/``undo``/``rollback_done`` only for a failing (or cancelling) plan, and
``rollback_done`` only once every step to undo was undone; ``finish`` only when no step
is pending or running. A message that does not fit is refused: ``refuse`` records it as
an event on the plan (what, from which worker) and nothing else changes.

``overlord.scheduled`` runs only an entry of ``schedule:`` (``admit_scheduled``), and its
plan meets the autonomy policy as any scheduled run; ``overlord.health`` takes no
argument (Celery refuses any) and only refreshes the endpoints' health cache.

(A cancel is a failing plan whose error is ``cancelled``: the same rollback runs.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from overlord import notify
from overlord.core.config import ActionKind
from overlord.core.plan import PlanState, StepState
from overlord.ports import PlanStore

log = logging.getLogger("overlord.lifecycle")

P = PlanState


class Move(StrEnum):
    """A named plan transition (see ``PLAN_MOVES``)."""

    APPROVE = "approve"  # a person approved a proposal
    REJECT = "reject"  # a person rejected a proposal or a push
    CANCEL_PROPOSAL = "cancel-proposal"  # cancelled before anything ran
    START = "start"  # the steps are enqueued (or re-enqueued by resume)
    APPROVE_PUSH = "approve-push"  # a person approved the push (or its retry)
    AWAIT_PUSH = "await-push"  # every step passed; the push waits for a person
    SUCCEED = "succeed"
    PUSH_FAILED = "push-failed"  # a push was rejected: resume retries it
    FAIL = "fail"  # a step failed: the rollback follows
    FAIL_AND_KEEP = "fail-and-keep"  # a step failed, rollback_on_failure is off
    CANCEL = "cancel"  # a person cancelled: the rollback follows
    ROLLED_BACK = "rolled-back"
    CANCELLED = "cancelled"
    ROLLBACK_INCOMPLETE = "rollback-incomplete"


#: Every plan transition: the states it may start from, and where it goes.
PLAN_MOVES: dict[Move, tuple[frozenset[PlanState], PlanState]] = {
    Move.APPROVE: (frozenset({P.PENDING}), P.QUEUED),
    Move.REJECT: (frozenset({P.PENDING, P.AWAITING_PUSH}), P.REJECTED),
    Move.CANCEL_PROPOSAL: (frozenset({P.PENDING}), P.CANCELLED),
    Move.START: (frozenset({P.QUEUED, P.RUNNING}), P.RUNNING),
    Move.APPROVE_PUSH: (frozenset({P.AWAITING_PUSH, P.FAILED}), P.RUNNING),
    Move.AWAIT_PUSH: (frozenset({P.RUNNING}), P.AWAITING_PUSH),
    Move.SUCCEED: (frozenset({P.RUNNING}), P.SUCCEEDED),
    Move.PUSH_FAILED: (frozenset({P.RUNNING}), P.FAILED),
    Move.FAIL: (frozenset({P.RUNNING, P.QUEUED}), P.FAILING),
    Move.FAIL_AND_KEEP: (frozenset({P.RUNNING, P.QUEUED}), P.FAILED),
    Move.CANCEL: (
        frozenset({P.RUNNING, P.QUEUED, P.AWAITING_PUSH, P.FAILING, P.FAILED, P.REJECTED}),
        P.FAILING,
    ),
    Move.ROLLED_BACK: (frozenset({P.FAILING}), P.ROLLED_BACK),
    Move.CANCELLED: (frozenset({P.FAILING}), P.CANCELLED),
    Move.ROLLBACK_INCOMPLETE: (frozenset({P.FAILING}), P.FAILED),
}

S = StepState

#: Every step transition (from → allowed next states).
STEP_MOVES: dict[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED}),
    # running → running: a redelivered step (its idempotency check decides); → pending:
    # ``resume`` after the process that ran it died
    S.RUNNING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.SKIPPED, S.PENDING}),
    S.SUCCEEDED: frozenset({S.UNDONE}),
    S.FAILED: frozenset({S.PENDING}),  # a failed push, retried by ``resume``
    S.SKIPPED: frozenset(),
    S.UNDONE: frozenset(),
    S.CANCELLED: frozenset(),
}


def move(store: PlanStore, plan_id: str, name: Move, **doc: Any) -> bool:
    """Make the plan transition ``name`` if the plan is in one of its source states;
    True when this call moved it. The single place plan states change."""
    sources, target = PLAN_MOVES[name]
    moved = store.transition(plan_id, target, expect=sources, **doc)
    if moved:  # committed: the webhooks listening for ``target`` are told, in the background
        notify.entered(store.url, plan_id, target, cancelling=name is Move.CANCEL)
    return moved


def may_step(state: StepState, to: StepState) -> bool:
    return to in STEP_MOVES[state]


# --- the gate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    state: StepState
    kind: ActionKind
    depends_on: list[str]
    has_undo: bool


@dataclass(frozen=True)
class View:
    """What the gate reads of a plan: its state, push approval and steps."""

    state: PlanState
    push_approved: bool
    error: str | None
    steps: dict[str, _Step]
    person_needed: bool = False  # a model translated it and no person approved it yet

    def pushed(self) -> list[str]:
        """Push steps that landed on a remote."""
        return [
            i for i, s in self.steps.items() if s.kind is ActionKind.PUSH and s.state is S.SUCCEEDED
        ]

    def others_succeeded(self) -> bool:
        return all(
            s.state is S.SUCCEEDED for s in self.steps.values() if s.kind is not ActionKind.PUSH
        )


def view(store: PlanStore, plan_id: str) -> View | None:
    """The plan as recorded (two cheap reads), or None when there is no such plan."""
    found = store.gate_view(plan_id)
    if found is None:
        return None
    state, doc, rows = found
    steps = {
        r["step_id"]: _Step(
            StepState(r["state"]),
            ActionKind(str((r["data"] or {}).get("kind"))),
            list((r["data"] or {}).get("depends_on") or []),
            bool(r["undo"]),
        )
        for r in rows
    }
    translated = doc.get("translation") is not None
    return View(
        PlanState(state),
        bool(doc.get("push_approved")),
        doc.get("error"),
        steps,
        person_needed=translated and not doc.get("person_approved"),
    )


def admit_step(plan: View, step_id: str, kind: ActionKind) -> str | None:
    """Why the step task ``overlord.<kind>`` may not run ``step_id`` (None: it may)."""
    step = plan.steps.get(step_id)
    if step is None:
        return f"the plan has no step {step_id!r}"
    if step.kind is not kind:
        return f"step {step_id} is a {step.kind.value} step, not {kind.value}"
    if kind is ActionKind.PUSH and not plan.push_approved:
        return "no person approved the push"
    if plan.person_needed:
        return "a model translated the plan and no person approved it"
    if plan.state is not P.RUNNING:
        return f"the plan is {plan.state.value}, not running"
    if not may_step(step.state, S.RUNNING):
        return f"step {step_id} is {step.state.value}"
    waiting = [d for d in step.depends_on if plan.steps[d].state is not S.SUCCEEDED]
    if waiting:
        return f"step {step_id} depends on {', '.join(waiting)}, not succeeded"
    if kind is ActionKind.PUSH and not plan.others_succeeded():
        return "not every other step of the plan succeeded"
    return None


def admit_finish(plan: View) -> str | None:
    if plan.state is not P.RUNNING:
        return f"the plan is {plan.state.value}, not running"
    for step_id, step in plan.steps.items():
        pushing = step.kind is ActionKind.PUSH
        if step.state in (S.PENDING, S.RUNNING) and (plan.push_approved or not pushing):
            return f"step {step_id} is {step.state.value}"
        if step.state is S.FAILED and not pushing:
            return f"step {step_id} failed: the rollback settles the plan"
    return None


def admit_plan_failed(plan: View, cancelled: bool) -> str | None:
    if cancelled:
        return "a cancel is a person's command (`overlord cancel`), not a message"
    if plan.pushed():
        return "a push of the plan landed: the rollback would leave local and remote apart"
    if plan.state not in (P.RUNNING, P.QUEUED):
        return f"the plan is {plan.state.value}, not running"
    if not any(s.state is S.FAILED for s in plan.steps.values()):
        return "no step of the plan is recorded failed"
    return None


def admit_rollback(plan: View) -> str | None:
    if plan.state is not P.FAILING:
        return f"the plan is {plan.state.value}, not failing or cancelling"
    return None


def admit_undo(plan: View, step_id: str) -> str | None:
    refused = admit_rollback(plan)
    if refused:
        return refused
    step = plan.steps.get(step_id)
    if step is None:
        return f"the plan has no step {step_id!r}"
    if step.kind is ActionKind.PUSH or not step.has_undo:
        return f"step {step_id} has nothing to undo"
    return None


def admit_rollback_done(plan: View, undone: set[str], running: list[str]) -> str | None:
    """``undone``: steps an undo has reported on (their events)."""
    refused = admit_rollback(plan)
    if refused:
        return refused
    if running:
        return f"step {', '.join(running)} is still running"
    to_undo = (S.SUCCEEDED, S.FAILED, S.RUNNING, S.SKIPPED)  # as ``rollback.undo_order``
    left = [
        step_id
        for step_id, s in plan.steps.items()
        if s.has_undo
        and s.kind is not ActionKind.PUSH
        and s.state in to_undo
        and step_id not in undone
    ]
    if left:
        return f"step {', '.join(left)} is not undone yet"
    return None


def admit_scheduled(entries: set[str], name: object) -> str | None:
    """``overlord.scheduled`` runs only an entry of the configuration's ``schedule:``
    (its plan then meets the autonomy policy as a scheduled run, never ``--yes``)."""
    if not isinstance(name, str) or name not in entries:
        return f"no schedule entry {str(name)[:40]!r}"
    return None


def refuse(
    store: PlanStore, plan_id: str | None, step_id: str | None, task: str, worker: str, why: str
) -> dict[str, Any]:
    """Record a refused task message on its plan (None: no such plan, only logged);
    change nothing else."""
    text = f"{task} from {worker} refused: {why}"
    log.warning("plan %s: %s", plan_id or "-", text)
    if plan_id is not None:
        if step_id is not None and step_id not in store.step_projects(plan_id):
            step_id = None  # an event names only a step the plan has
        store.event(plan_id, step_id, "refused", text)
    return {"refused": why, "task": task}
