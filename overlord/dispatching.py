"""The dispatch use case: from a plan to its outcome, the same for every entry.

``overlord dispatch`` and ``overlord release --execute`` (``prepare``, then ``dispatch``:
the CLI only shows the plan and asks), ``overlord approve`` and ``reject``, and beat's
scheduled runs (``scheduled``) all go through here; ``overlord resume`` runs a plan
through the same ``runner.run``. The steps, in order:

1. planning (pure), with the endpoints' health gathered here at the edge
   (``routing.check.routed``: the cache, checked first when it holds nothing fresh,
   SPEC §4.5), and only when the plan has code work to route;
2. preflight: bad input refused before anything changes (``bad_input``, §4.7);
3. the approval verdict (``approval``, §4.1), and a person's answer when one is at hand
   (``Person``; beat has none, and never carries ``--yes``);
4. the plan saved, pending or queued, before anything acts on it (§4.3);
5. run and followed (``runner.run``); a push waits for a person's answer (§4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from overlord import defaults, lifecycle, runner, wiring
from overlord.bad_input import preflight
from overlord.core import approval, planner
from overlord.core.approval import Verdict
from overlord.core.config import Config
from overlord.core.parser import Intent
from overlord.core.plan import DispatchPlan, PlanState, StepState
from overlord.errors import OverlordError, PlanError
from overlord.following import Follow
from overlord.lifecycle import Move
from overlord.wiring import plan_store

#: What a person at hand is asked before a proposed plan runs.
RUN_QUESTION = "Run this plan?"
#: What a person at hand is asked before a plan's push.
PUSH_QUESTION = "All tests pass. Push to remote?"


class Person(Protocol):
    """A person at hand who answers a yes/no question (the CLI's prompt)."""

    def answers(self, question: str) -> bool: ...


#: How a run is followed: a context giving the ``Follow`` to call with each new state
#: (the CLI's live progress); by default nobody follows.
Following = Callable[[], AbstractContextManager[Follow | None]]


def _unfollowed() -> AbstractContextManager[Follow | None]:
    return nullcontext(None)


def plan_intents(
    config: Config, intents: list[Intent], *, tier: str | None = None, task: str | None = None
) -> DispatchPlan:
    """The plan for parsed ``intents`` (one plan, named ``task``), code work routed by the
    endpoints' health as known now."""
    from overlord.routing.check import routed

    return routed(
        config,
        lambda known: planner.plan_for_all(intents, config, tier=tier, task=task, known=known),
        models=planner.routes_models(intents),
    )


def prepare(config: Config, plan: DispatchPlan, *, yes: bool = False) -> Verdict:
    """Refuse bad input (preflight), expect each step's duration, and decide approval."""
    from overlord import durations

    preflight(config, plan)
    durations.expect(config, plan)
    return approval.decide(config, plan, yes=yes)


def submit(
    config: Config, plan: DispatchPlan, verdict: Verdict, *, person: bool = False
) -> DispatchPlan:
    """Persist the plan: pending (a proposal) or queued (approved, about to run), with the
    expected duration of each step (read here unless ``prepare`` read them)."""
    from overlord import durations

    if not durations.expected(config, plan):
        durations.expect(config, plan)
    plan.requires_approval = not verdict.execute
    plan.approval_reason = verdict.reason
    plan.person_approved = plan.person_approved or (person and verdict.execute)
    plan.state = PlanState.QUEUED if verdict.execute else PlanState.PENDING
    plan_store(config).save(plan)
    return plan


def dispatch(
    config: Config,
    plan: DispatchPlan,
    verdict: Verdict,
    *,
    person: Person | None = None,
    detach: bool = False,
    following: Following = _unfollowed,
) -> DispatchPlan:
    """A prepared plan to its outcome: a proposal asks the ``person`` at hand (no: saved
    and rejected), else is saved pending; an approved plan is saved and run, and its push
    waits for the person's answer."""
    answered = False
    if not verdict.execute and person is not None:
        if not person.answers(RUN_QUESTION):
            submit(config, plan, verdict)
            return reject(config, plan.id)
        answered = True
        verdict = approval.decide(config, plan, person=True)
    if verdict.execute and config.broker_url:
        from overlord.tasks.runtime import check_broker

        check_broker(config.broker_url)  # before saving: an unreachable broker changes nothing
    plan = submit(config, plan, verdict, person=answered)
    if plan.state is PlanState.PENDING:
        return plan
    with following() as follow:
        plan = runner.run(config, plan.id, detach=detach, follow=follow)
    return settle_push(config, plan, person=person, following=following)


def settle_push(
    config: Config,
    plan: DispatchPlan,
    *,
    person: Person | None,
    following: Following = _unfollowed,
) -> DispatchPlan:
    """A plan waiting for its push: the person at hand pushes (yes) or rejects it (no,
    local changes kept); with nobody at hand it keeps waiting for ``overlord approve``."""
    if plan.state is not PlanState.AWAITING_PUSH or person is None:
        return plan
    if person.answers(PUSH_QUESTION):
        with following() as follow:
            return runner.push(config, plan.id, follow=follow)
    return reject(config, plan.id)


def approve(
    config: Config, plan_id: str, *, follow: Follow | None = None, detach: bool = False
) -> DispatchPlan:
    """A person approves a pending plan (it runs, after the preflight again) or the push of
    a plan waiting for one."""
    store = plan_store(config)
    plan = store.load(plan_id)
    if plan.state is PlanState.AWAITING_PUSH:
        return runner.push(config, plan.id, follow=follow, detach=detach)
    if plan.state is not PlanState.PENDING:
        raise PlanError(f"plan {plan.id} is {plan.state.value}: there is nothing to approve")
    preflight(config, plan)
    if not lifecycle.move(store, plan.id, Move.APPROVE, person_approved=True):
        raise PlanError(f"plan {plan.id} was approved or changed meanwhile; nothing to do")
    store.event(plan.id, None, "approved", "approved by a person")
    return runner.run(config, plan.id, follow=follow, detach=detach)


def reject(config: Config, plan_id: str) -> DispatchPlan:
    """A person rejects a pending plan or its push (local changes are kept)."""
    from overlord.steps import remember_outcome

    store = plan_store(config)
    plan = store.load(plan_id)
    if not lifecycle.move(store, plan.id, Move.REJECT):
        raise PlanError(
            f"plan {plan.id} is {plan.state.value}: only a waiting plan can be rejected"
        )
    for step in plan.steps:
        if step.state is StepState.PENDING:
            store.finish(plan.id, step.id, StepState.SKIPPED)
    note = (
        "rejected: nothing pushed, local changes kept"
        if plan.state is PlanState.AWAITING_PUSH
        else "rejected"
    )
    store.update_doc(plan.id, add_notes=[note])
    rejected = store.load(plan.id)
    remember_outcome(config, rejected)
    return rejected


def scheduled(
    config: Config, plan: DispatchPlan, *, schedule: str, start: Callable[[str], None]
) -> dict[str, Any]:
    """A scheduled run (beat, §4.1): approved as a scheduled run (never ``--yes``), started
    with ``start(plan_id)`` (enqueued, not waited for); otherwise proposed — a failed
    preflight too, with why — at most one proposal per entry waiting for a person."""
    plan.scheduled_run = True
    plan.options = {**plan.options, "schedule": schedule}
    try:
        verdict = prepare(config, plan)
    except OverlordError as exc:
        verdict = approval.proposal(
            approval.decide(config, plan), f"preflight failed: {exc.message}"
        )
    if verdict.execute:
        plan = submit(config, plan, verdict)
    else:
        # firings of one entry may overlap (a worker runs several tasks at once, other
        # workers theirs): looking for a waiting proposal and saving one is one step
        with _entry_lock(config, schedule):
            waiting = _pending_for(config, schedule)
            if waiting is not None:  # one proposal per entry: the person has not answered
                return {
                    "schedule": schedule,
                    "plan": waiting,
                    "state": PlanState.PENDING.value,
                    "reason": f"still waiting for approval: `overlord approve {waiting}`",
                }
            plan = submit(config, plan, verdict)
    if plan.state is PlanState.QUEUED:
        start(plan.id)
    return {
        "schedule": schedule,
        "plan": plan.id,
        "state": plan_store(config).state(plan.id).value,
        "reason": verdict.reason,
    }


def _entry_lock(config: Config, schedule: str) -> AbstractContextManager[str]:
    """One holder at a time per schedule entry: across machines on the broker, else among
    this process's threads."""
    slots = wiring.slots(f"schedule:{schedule}", 1, broker=config.broker_url)
    return slots.hold(timeout=defaults.SCHEDULE_LOCK_TIMEOUT)


def _pending_for(config: Config, schedule: str) -> str | None:
    """The id of this entry's proposal that still waits for a person, if any."""
    store = plan_store(config)
    for row in store.list_plans("pending", limit=defaults.PENDING_PLANS_SCANNED):
        if store.load(row["id"]).options.get("schedule") == schedule:
            return str(row["id"])
    return None
