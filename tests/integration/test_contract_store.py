"""The plan store's contract (``ports.PlanStore``), once per implementation: the state
database on SQLite (a file: the per-step writes take ``hotpath``'s DB-API path) and on
PostgreSQL, and the in-memory store the unit tests use."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord import defaults, wiring
from overlord.adapters.sql.store import Store
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.errors import PlanNotFound
from overlord.ports import PlanStore
from overlord.testing.memory_store import MemoryPlanStore
from tests.integration.test_db import needs_pg, pg_database, sqlite_database
from tests.integration.test_store_concurrency import _at_once

PASSWORD_URL = "redis://user:hunter2-secret@example:6379/0"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[needs_pg, pytest.mark.postgres]),
        "memory",
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlanStore]:
    if request.param == "memory":
        yield MemoryPlanStore()
        return
    manager = pg_database() if request.param == "postgresql" else sqlite_database(tmp_path)
    with manager as url:
        yield Store(url)


def make_plan(task: str = "three steps", **fields: object) -> DispatchPlan:
    steps = [
        DispatchStep(id="s1", kind=ActionKind.NOOP, project="core", params={"seconds": 0.1}),
        DispatchStep(id="s2", kind=ActionKind.NOOP, project="api", depends_on=["s1"]),
        DispatchStep(id="s3", kind=ActionKind.NOOP, depends_on=["s1"], estimate=2.5),
    ]
    return DispatchPlan(task=task, steps=steps, state=PlanState.QUEUED, **fields)  # type: ignore[arg-type]


def running(store: PlanStore, **fields: object) -> DispatchPlan:
    plan = make_plan(**fields)
    store.save(plan)
    assert store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    return plan


def kinds(store: PlanStore, plan_id: str) -> list[str]:
    return [e["kind"] for e in store.events(plan_id)]


# --- plans -------------------------------------------------------------------------------


def test_a_saved_plan_reads_back_as_saved(store: PlanStore) -> None:
    plan = make_plan(notes=["first"], options={"schedule": "nightly"}, scheduled_run=True)
    store.save(plan)
    loaded = store.load(plan.id)
    assert loaded.model_dump(exclude={"updated_at"}) == plan.model_dump(exclude={"updated_at"})
    assert [s.id for s in loaded.steps] == ["s1", "s2", "s3"]  # in the plan's order
    assert store.load(plan.id[:5]).id == plan.id  # a unique prefix works
    assert store.resolve_id(plan.id[:4]) == plan.id
    assert store.state(plan.id) is PlanState.QUEUED
    assert store.step_projects(plan.id) == {"s1": "core", "s2": "api", "s3": None}
    assert store.load_step(plan.id, "s2").depends_on == ["s1"]
    assert kinds(store, plan.id) == ["created"]


def test_unknown_and_ambiguous_ids_are_refused(store: PlanStore) -> None:
    with pytest.raises(PlanNotFound):
        store.load("nope")
    with pytest.raises(PlanNotFound):
        store.resolve_id("")
    with pytest.raises(PlanNotFound):
        store.state("nope")
    with pytest.raises(PlanNotFound):
        store.transition("nope", PlanState.RUNNING)
    assert store.gate_view("nope") is None
    one, two = make_plan(), make_plan()
    one.id, two.id = "abc1234567", "abc7654321"
    store.save(one)
    store.save(two)
    with pytest.raises(PlanNotFound, match="ambiguous"):
        store.resolve_id("abc")
    with pytest.raises(PlanNotFound):
        store.load_step(one.id, "s9")


def test_plans_are_listed_newest_first(store: PlanStore) -> None:
    plans = [make_plan(f"task {i}") for i in range(3)]
    for plan in plans:
        store.save(plan)
        time.sleep(0.002)  # distinct creation times
    store.transition(plans[1].id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    rows = store.list_plans()
    assert [r["id"] for r in rows] == [p.id for p in reversed(plans)]
    assert set(rows[0]) == {"id", "task", "kind", "state", "created_at", "updated_at"}
    assert rows[0]["task"] == "task 2" and isinstance(rows[0]["created_at"], str)
    assert [r["id"] for r in store.list_plans("running")] == [plans[1].id]
    assert len(store.list_plans(limit=2)) == 2


def test_transitions_are_compare_and_set(store: PlanStore) -> None:
    plan = make_plan()
    store.save(plan)
    assert store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED], owner={"pid": 1})
    assert not store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    assert store.transition(
        plan.id, PlanState.FAILING, error=f"broke at {PASSWORD_URL}", add_notes=["n1"]
    )  # no ``expect``: from any state
    loaded = store.load(plan.id)
    assert loaded.state is PlanState.FAILING and loaded.owner == {"pid": 1}
    assert loaded.error is not None and "hunter2" not in loaded.error  # redacted
    assert loaded.notes == ["n1"]
    assert kinds(store, plan.id) == ["created", "plan", "plan"]
    state, doc, rows = store.gate_view(plan.id) or ("", {}, [])
    assert state == "failing" and doc["owner"] == {"pid": 1}
    assert {r["step_id"]: r["state"] for r in rows} == {s: "pending" for s in ("s1", "s2", "s3")}
    assert all(set(r) >= {"step_id", "state", "data", "undo"} for r in rows)


def test_document_updates_append_notes_and_lose_nothing(store: PlanStore) -> None:
    plan = make_plan(notes=["saved"])
    store.save(plan)
    store.update_doc(plan.id, add_notes=["a"], approval_reason="why")
    store.update_doc(plan.id, add_notes=["b"])
    threads = [
        threading.Thread(target=store.update_doc, args=(plan.id,), kwargs={"add_notes": [str(i)]})
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = store.load(plan.id)
    assert loaded.notes[:3] == ["saved", "a", "b"]
    assert sorted(loaded.notes[3:]) == [str(i) for i in range(8)]
    assert loaded.approval_reason == "why"


def test_a_transition_in_this_process_ends_a_wait(store: PlanStore) -> None:
    plan = make_plan()
    store.save(plan)
    timer = threading.Timer(
        0.05, store.transition, args=(plan.id, PlanState.RUNNING), kwargs={"expect": None}
    )
    started = time.monotonic()
    timer.start()
    store.wait_for_transition(5.0)
    timer.join()
    assert time.monotonic() - started < 2.5
    assert store.state(plan.id) is PlanState.RUNNING


def test_a_transition_since_the_count_was_read_ends_a_wait_at_once(store: PlanStore) -> None:
    """The follower reads the count, then the state, then waits: a transition between the
    state's read and the wait must not be slept through."""
    plan = make_plan()
    store.save(plan)
    seen = store.transitions()
    assert store.transition(plan.id, PlanState.RUNNING)
    assert store.transitions() != seen
    started = time.monotonic()
    store.wait_for_transition(5.0, after=seen)
    assert time.monotonic() - started < 2.5
    started = time.monotonic()
    store.wait_for_transition(0.05, after=store.transitions())  # none since: it waits
    assert time.monotonic() - started >= 0.04


# --- steps --------------------------------------------------------------------------------


def test_claims_are_compare_and_set(store: PlanStore) -> None:
    plan = make_plan()
    store.save(plan)
    assert store.claim(plan.id, "s1", "w") is None  # the plan is not running yet
    assert store.load(plan.id).step("s1").state is StepState.SKIPPED
    plan = running(store)
    first = store.claim(plan.id, "s1", "w1")
    assert first is not None and first.attempts == 1 and first.worker == "w1"
    assert first.state is StepState.RUNNING and first.started_at is not None
    again = store.claim(plan.id, "s1", "w2")  # a redelivery may claim a running step again
    assert again is not None and again.attempts == 2 and again.worker == "w2"
    store.finish(plan.id, "s1", StepState.SUCCEEDED, output="ok")
    assert store.claim(plan.id, "s1", "w3") is None  # finished: never acts twice
    store.transition(plan.id, PlanState.FAILING, expect=[PlanState.RUNNING])
    assert store.claim(plan.id, "s2", "w") is None  # the plan failed: s2 must not act
    assert store.load_step(plan.id, "s2").state is StepState.SKIPPED
    with pytest.raises(PlanNotFound):
        store.claim(plan.id, "s9", "w")


def test_finishing_records_outcome_order_and_undo(store: PlanStore) -> None:
    plan = running(store)
    for sid in ("s1", "s3", "s2"):
        assert store.claim(plan.id, sid, "w") is not None
    store.record_undo(plan.id, "s1", {"branch": "main", "before": "abc"})
    assert store.load_step(plan.id, "s1").undo == {"branch": "main", "before": "abc"}
    long_output = "x" * (defaults.OUTPUT_TAIL + 100) + PASSWORD_URL
    store.finish(
        plan.id, "s1", StepState.SUCCEEDED, output=long_output, undo={"before": "abc", "after": "d"}
    )
    store.finish(plan.id, "s3", StepState.SUCCEEDED)
    store.finish(plan.id, "s2", StepState.FAILED, error=f"bad {PASSWORD_URL}", output="out")
    loaded = store.load(plan.id)
    s1, s2, s3 = loaded.step("s1"), loaded.step("s2"), loaded.step("s3")
    assert (s1.finished_seq, s3.finished_seq, s2.finished_seq) == (1, 2, None)
    assert s1.undo == {"before": "abc", "after": "d"} and s1.ended_at is not None
    assert len(s1.output) == defaults.OUTPUT_TAIL and "hunter2" not in s1.output
    assert s2.state is StepState.FAILED and s2.error and "hunter2" not in s2.error
    assert s2.output == "out"
    steps = [e for e in store.events(plan.id) if e["kind"] == "step"]
    assert [(e["step_id"], e["message"][:12]) for e in steps] == [
        ("s1", "-> succeeded"),
        ("s3", "-> succeeded"),
        ("s2", "-> failed: b"),
    ]
    assert all("hunter2" not in e["message"] for e in steps)


def test_routes_states_and_resets(store: PlanStore) -> None:
    plan = running(store)
    store.set_route(plan.id, "s1", "local-14b", "preferred")
    store.set_route(plan.id, "s2", "cloud-fast", "fallback: local down", tier="cloud-fast")
    s1, s2 = store.load_step(plan.id, "s1"), store.load_step(plan.id, "s2")
    assert (s1.endpoint, s1.route_reason, s1.tier) == ("local-14b", "preferred", None)
    assert (s2.endpoint, s2.tier and s2.tier.value) == ("cloud-fast", "cloud-fast")
    store.set_step_state(plan.id, "s3", StepState.UNDONE)
    assert store.load_step(plan.id, "s3").state is StepState.UNDONE
    claimed = store.claim(plan.id, "s1", "w1")
    assert claimed is not None
    # a lost step goes back to pending only while it is the same attempt of the same worker
    assert not store.reset_lost(plan.id, "s1", worker="w2", attempts=1)
    assert not store.reset_lost(plan.id, "s1", worker="w1", attempts=2)
    assert store.reset_lost(plan.id, "s1", worker="w1", attempts=1)
    assert store.load_step(plan.id, "s1").state is StepState.PENDING
    assert not store.reset_lost(plan.id, "s1", worker="w1", attempts=1)
    store.claim(plan.id, "s1", "w1")
    store.claim(plan.id, "s2", "w1")
    store.finish(plan.id, "s2", StepState.SUCCEEDED)
    store.reset_unfinished(plan.id)
    states = {s.id: s.state for s in store.load(plan.id).steps}
    assert states == {"s1": StepState.PENDING, "s2": StepState.SUCCEEDED, "s3": StepState.UNDONE}


def test_concurrent_finishes_get_distinct_places(store: PlanStore) -> None:
    plan = DispatchPlan(
        task="many",
        steps=[DispatchStep(id=f"s{i}", kind=ActionKind.NOOP) for i in range(12)],
        state=PlanState.QUEUED,
    )
    store.save(plan)
    store.transition(plan.id, PlanState.RUNNING)
    _at_once(lambda i: _claim_and_finish(store, plan.id, f"s{i}"), 12)
    order = [s.finished_seq for s in store.load(plan.id).steps]
    assert sorted(o or 0 for o in order) == list(range(1, 13))


def _claim_and_finish(store: PlanStore, plan_id: str, step_id: str) -> None:
    assert store.claim(plan_id, step_id, "w") is not None
    store.finish(plan_id, step_id, StepState.SUCCEEDED)


# --- events -------------------------------------------------------------------------------


def test_events_in_order_redacted(store: PlanStore) -> None:
    plan = make_plan()
    store.save(plan)
    store.event(plan.id, "s1", "undo", f"undid it at {PASSWORD_URL}")
    store.event(plan.id, None, "refused", "no")
    store.event("other-plan", None, "x", "not this plan's")
    events = store.events(plan.id)
    assert [e["kind"] for e in events] == ["created", "undo", "refused"]
    assert set(events[1]) >= {"id", "plan_id", "step_id", "at", "kind", "message"}
    assert events[1]["step_id"] == "s1" and events[2]["step_id"] is None
    assert "hunter2" not in events[1]["message"] and "***" in events[1]["message"]
    assert isinstance(events[1]["at"], str)
    assert events[0]["id"] < events[1]["id"] < events[2]["id"]


# --- the factory ---------------------------------------------------------------------------


def test_the_factory_gives_the_state_database_or_a_replacement(tmp_path: Path) -> None:
    config = Config.model_validate({"state_url": f"sqlite:///{tmp_path / 'o.db'}"})
    assert isinstance(wiring.plan_store(config), Store)
    memory = MemoryPlanStore(str(config.state_url))
    with wiring.replaced_store(memory):
        assert wiring.plan_store(config) is memory
    assert isinstance(wiring.plan_store(config), Store)
