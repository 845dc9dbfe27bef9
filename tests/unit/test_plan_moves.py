"""Plan-level decisions on the in-memory plan store (no database, no broker, no git):
what ``reject``, a failing step, the rollback's bookkeeping and the lifecycle gate record;
``approve`` and ``resume`` with the inline executor."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest

from overlord import dispatching, lifecycle, recovery, rollback, wiring
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState, now
from overlord.errors import PlanError
from overlord.testing.executor import InlineExecutor
from overlord.testing.memory_store import MemoryPlanStore

URL = "memory://plan-moves"


@pytest.fixture
def store() -> Iterator[MemoryPlanStore]:
    with wiring.replaced_store(MemoryPlanStore(URL)) as replaced:
        assert isinstance(replaced, MemoryPlanStore)
        yield replaced


def config(**dispatch: object) -> Config:
    return Config.model_validate({"state_url": URL, "dispatch": dispatch})


def saved(store: MemoryPlanStore, state: PlanState) -> DispatchPlan:
    plan = DispatchPlan(
        task="two steps",
        steps=[
            DispatchStep(id="s1", kind=ActionKind.NOOP, timeout=10),
            DispatchStep(id="s2", kind=ActionKind.PUSH, project="core", depends_on=["s1"]),
        ],
        state=state,
    )
    store.save(plan)
    return plan


def test_reject_skips_what_was_waiting(store: MemoryPlanStore) -> None:
    plan = saved(store, PlanState.PENDING)
    rejected = dispatching.reject(config(), plan.id)
    assert rejected.state is PlanState.REJECTED and rejected.notes == ["rejected"]
    assert {s.state for s in rejected.steps} == {StepState.SKIPPED}
    with pytest.raises(PlanError, match="only a waiting plan"):
        dispatching.reject(config(), plan.id)


def test_a_failed_step_fails_the_plan_once(store: MemoryPlanStore) -> None:
    plan = saved(store, PlanState.RUNNING)
    store.claim(plan.id, "s1", "w")
    store.finish(plan.id, "s1", StepState.FAILED, error="boom")
    assert rollback.fail(config(), plan.id)  # the caller starts the rollback
    assert not rollback.fail(config(), plan.id)  # once per plan
    failing = store.load(plan.id)
    assert failing.state is PlanState.FAILING and failing.error == "s1: boom"


def test_with_rollback_off_a_failed_plan_is_left_as_it_is(store: MemoryPlanStore) -> None:
    plan = saved(store, PlanState.RUNNING)
    store.claim(plan.id, "s1", "w")
    store.finish(plan.id, "s1", StepState.FAILED, error="boom")
    assert not rollback.fail(config(rollback_on_failure=False), plan.id)
    left = store.load(plan.id)
    assert left.state is PlanState.FAILED
    assert left.notes == ["rollback_on_failure is off: state left for inspection"]


def test_a_step_running_far_past_its_timeout_is_lost(store: MemoryPlanStore) -> None:
    plan = saved(store, PlanState.RUNNING)
    store.claim(plan.id, "s1", "w")
    assert rollback.running_steps(config(), plan.id) == ["s1"]
    store._steps[plan.id]["s1"]["started_at"] = now() - timedelta(seconds=10 + 61)
    assert rollback.running_steps(config(), plan.id) == []
    lost = store.load_step(plan.id, "s1")
    assert lost.state is StepState.FAILED and "lost" in (lost.error or "")


def test_a_refused_message_is_recorded_naming_only_real_steps(store: MemoryPlanStore) -> None:
    plan = saved(store, PlanState.SUCCEEDED)
    view = lifecycle.view(store, plan.id)
    assert view is not None and view.state is PlanState.SUCCEEDED
    assert lifecycle.admit_step(view, "s1", ActionKind.NOOP) is not None
    lifecycle.refuse(store, plan.id, "s1", "overlord.noop", "w1", "the plan is not running")
    lifecycle.refuse(store, plan.id, "s9", "overlord.noop", "w1", "no such step")
    refused = [e for e in store.events(plan.id) if e["kind"] == "refused"]
    assert [e["step_id"] for e in refused] == ["s1", None]
    assert refused[0]["message"].startswith("overlord.noop from w1 refused")
    assert lifecycle.view(store, "nosuchplan") is None


def noops(store: MemoryPlanStore, state: PlanState) -> DispatchPlan:
    plan = DispatchPlan(
        task="two no-ops",
        steps=[
            DispatchStep(id="s1", kind=ActionKind.NOOP),
            DispatchStep(id="s2", kind=ActionKind.NOOP, depends_on=["s1"]),
        ],
        state=state,
    )
    store.save(plan)
    return plan


def test_approve_runs_a_pending_plan_to_its_end_inline(store: MemoryPlanStore) -> None:
    plan = noops(store, PlanState.PENDING)
    with wiring.replaced_executor(InlineExecutor):
        done = dispatching.approve(config(), plan.id)
    assert done.state is PlanState.SUCCEEDED and done.person_approved
    assert [s.state for s in done.steps] == [StepState.SUCCEEDED, StepState.SUCCEEDED]
    assert [e["kind"] for e in store.events(plan.id)].count("approved") == 1


def test_resume_finishes_a_plan_whose_process_died(store: MemoryPlanStore) -> None:
    plan = noops(store, PlanState.RUNNING)
    dead = {"pid": 2**22 + 7, "host": socket.gethostname(), "embedded": True}  # no such pid
    store.update_doc(plan.id, owner=dead)
    store.claim(plan.id, "s1", "dead-worker")
    with wiring.replaced_executor(InlineExecutor):
        done = recovery.resume(config(), plan.id)
    assert done.state is PlanState.SUCCEEDED
    assert done.step("s1").attempts == 2 and done.step("s1").worker == "inline"
