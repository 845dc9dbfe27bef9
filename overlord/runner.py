"""From a saved, approved plan to its outcome: execution by the executor
(``ports.Executor``) and following it (``run``, ``push``, ``rollback``). Approving,
rejecting and the whole dispatch are the use case in ``overlord.dispatching``; picking a
stopped plan up (``resume``, ``cancel``) is ``overlord.recovery``.

The state database is the source of truth: a plan is saved before anything is
enqueued, and every command here re-reads it, so any shell (or a new embedded runtime
after a crash) can pick a plan up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from overlord import defaults, lifecycle, wiring
from overlord.adapters.git import head_file, tested
from overlord.adapters.git.checkout import head_name
from overlord.adapters.git.git import Git
from overlord.core import approval
from overlord.core.config import Config
from overlord.core.plan import DispatchPlan, PlanState
from overlord.errors import OverlordError, PlanError
from overlord.following import Follow, wait
from overlord.lifecycle import Move
from overlord.plan_owner import owner_of
from overlord.rollback import fail
from overlord.wiring import plan_store as store_for  # the plan store's factory, by its old name

if TYPE_CHECKING:
    from overlord.ports import Executor
# --- running ------------------------------------------------------------------


def _record_branches(config: Config, plan: DispatchPlan) -> dict[str, str | None]:
    """What each repository has checked out before the plan runs: read from its HEAD file
    when that plainly names a branch, else asked of git (those all at once)."""
    from concurrent.futures import ThreadPoolExecutor

    branches: dict[str, str | None] = dict(plan.original_branches)
    new = [p for p in plan.projects if p not in branches]
    plain = {p: head_file.branch(config.projects[p].path) for p in new}
    wanted = [p for p in new if plain[p] is None]

    def head(project: str) -> str | None:
        try:
            return head_name(Git(config.projects[project].path))
        except OverlordError:
            return None

    if len(wanted) > 1:
        with ThreadPoolExecutor(max_workers=min(defaults.BRANCH_READ_THREADS, len(wanted))) as pool:
            plain.update(zip(wanted, pool.map(head, wanted), strict=True))
    else:
        plain.update((p, head(p)) for p in wanted)
    branches.update((p, plain[p]) for p in new)
    return branches


def mark_started(config: Config, plan: DispatchPlan, owner: dict[str, object]) -> bool:
    """Record what each repository has checked out and who runs the plan, and move it to
    running; False when its state no longer allows it."""
    return lifecycle.move(
        store_for(config),
        plan.id,
        Move.START,
        original_branches=_record_branches(config, plan),
        owner=owner,
    )


def run(
    config: Config, plan_id: str, *, detach: bool = False, follow: Follow | None = None
) -> DispatchPlan:
    """Execute a queued (approved) plan; follow it unless detached in distributed mode."""
    store = store_for(config)
    plan = store.load(plan_id)
    if plan.state not in (PlanState.QUEUED, PlanState.RUNNING):
        raise PlanError(f"plan {plan.id} is {plan.state.value}; only an approved plan runs")
    approval.require_person(plan)
    with wiring.executor(config) as executor:
        if not detach:
            _require_workers(executor, plan, {s.queue for s in plan.steps if not s.state.finished})
        if plan.state is PlanState.RUNNING and not executor.embedded:
            _refuse_if_busy(executor, plan)
        if not mark_started(config, plan, owner_of(executor.embedded)):
            raise PlanError(
                f"plan {plan.id} changed state meanwhile; see `overlord plans show {plan.id}`"
            )
        plan = store.load(plan.id)
        executor.run_steps(plan)
        if detach and not executor.embedded:
            return store.load(plan.id)
        return wait(
            config,
            plan.id,
            follow=follow,
            tick=_recovery(executor, config, plan.id),
            poll=_poll(executor),
        )


def _poll(executor: Executor) -> float:
    """Seconds between two reads of a followed plan's state: embedded, every transition
    is made in this process and ends the wait at once."""
    return defaults.FOLLOW_STATE_POLL_EMBEDDED if executor.embedded else defaults.FOLLOW_STATE_POLL


def _recovery(executor: Executor, config: Config, plan_id: str) -> Callable[[], list[str]] | None:
    """Distributed: what the following ``dispatch`` does every ``defaults.FOLLOW_TICK`` seconds: re-send
    the steps of lost workers (``Executor.recover``); the lines to show are every re-send
    of the plan not shown yet, by whoever noticed first (this process or a worker)."""
    if executor.embedded:
        return None
    store = store_for(config)
    shown: set[int] = set()

    def tick() -> list[str]:
        executor.recover(plan_id)
        resent = [e for e in store.events(plan_id) if e["kind"] == "re-sent"]
        new = [e for e in resent if e["id"] not in shown]
        shown.update(e["id"] for e in new)
        return [e["message"] for e in new]

    return tick


def _require_workers(executor: Executor, plan: DispatchPlan, queues: set[str]) -> None:
    """Distributed: refuse to wait on queues no worker consumes (it would wait forever)."""
    idle = executor.idle_queues(queues)
    if idle:
        starts = "; ".join(f"overlord worker --queue {q}" for q in idle)
        raise PlanError(
            f"no worker consumes queue {', '.join(idle)}: plan {plan.id} is saved, not started",
            f"start one ({starts}), then `overlord resume {plan.id}`; or pass --detach",
        )


def _refuse_if_busy(executor: Executor, plan: DispatchPlan) -> None:
    """Distributed resume: a worker still holding one of the plan's tasks (running it, or
    prefetched) means the plan is alive; sending its steps again would only race it."""
    holders = executor.holders(plan.id)
    if holders:
        raise PlanError(
            f"plan {plan.id} is still running: {', '.join(holders)}",
            f"wait for it (`overlord plans show {plan.id}`), or `overlord cancel {plan.id}`",
        )


def push(
    config: Config, plan_id: str, *, follow: Follow | None = None, detach: bool = False
) -> DispatchPlan:
    """A person approved the push: run the push phase."""
    store = store_for(config)
    with wiring.executor(config) as executor:
        if not detach:
            _require_workers(executor, store.load(plan_id), set())
        # exactly what was tested: a branch that moved since keeps the plan waiting
        tested.check_unmoved(config, store.load(plan_id))
        if not lifecycle.move(store, plan_id, Move.APPROVE_PUSH, push_approved=True):
            raise PlanError(f"plan {plan_id} is not waiting for a push")
        executor.run_push(store.load(plan_id))
        if detach and not executor.embedded:
            return store.load(plan_id)
        return wait(config, plan_id, follow=follow, poll=_poll(executor))


def rollback(
    config: Config, plan_id: str, *, cancelled: bool = False, follow: Follow | None = None
) -> DispatchPlan:
    """Start (or restart) the rollback of a plan and follow it to its end."""
    store = store_for(config)
    plan = store.load(plan_id)
    with wiring.executor(config) as executor:
        if plan.state is not PlanState.FAILING:
            if not fail(config, plan_id, cancelled=cancelled):
                return store.load(plan_id)
        store.update_doc(plan_id, owner=owner_of(executor.embedded))
        executor.run_rollback(plan_id)
        return wait(config, plan_id, follow=follow, poll=_poll(executor))
