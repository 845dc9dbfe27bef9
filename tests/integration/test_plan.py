"""The plan model (SPEC §3): DAG validation, critical path, scope, and plans from text."""

from __future__ import annotations

import pytest

from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.core.scope import Impact
from overlord.errors import PlanError
from tests.dispatch_helpers import plan_of
from tests.kit import Workspace


def st(sid: str, after: list[str] | None = None, estimate: float = 1.0) -> DispatchStep:
    return DispatchStep(id=sid, kind=ActionKind.NOOP, depends_on=after or [], estimate=estimate)


def test_cycle_is_refused_with_the_cycle_named() -> None:
    plan = DispatchPlan(task="t", steps=[st("s1", ["s3"]), st("s2", ["s1"]), st("s3", ["s2"])])
    with pytest.raises(PlanError) as info:
        plan.validate_dag()
    assert "cycle" in info.value.message
    assert all(s in info.value.message for s in ("s1", "s2", "s3"))


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(PlanError, match="cycle"):
        DispatchPlan(task="t", steps=[st("s1", ["s1"])]).validate_dag()


def test_unknown_dependency_is_refused() -> None:
    plan = DispatchPlan(task="t", steps=[st("s1"), st("s2", ["s9"])])
    with pytest.raises(PlanError) as info:
        plan.validate_dag()
    assert "s2" in info.value.message and "s9" in info.value.message


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(PlanError, match="duplicate"):
        DispatchPlan(task="t", steps=[st("s1"), st("s1")]).validate_dag()


def test_estimated_duration_is_the_critical_path() -> None:
    # s1(2) -> s2(3) -> s4(1) ; s1 -> s3(10) -> s4 ; s5(4) alone: critical = 2 + 10 + 1
    plan = DispatchPlan(
        task="t",
        steps=[
            st("s1", estimate=2),
            st("s2", ["s1"], estimate=3),
            st("s3", ["s1"], estimate=10),
            st("s4", ["s2", "s3"], estimate=1),
            st("s5", estimate=4),
        ],
    )
    plan.validate_dag()
    assert plan.estimated_duration == pytest.approx(13)
    # independent steps: the longest one, not the sum
    flat = DispatchPlan(task="t", steps=[st(f"s{i}", estimate=i) for i in range(1, 5)])
    assert flat.estimated_duration == pytest.approx(4)
    assert DispatchPlan(task="t", steps=[]).estimated_duration == 0


def test_order_is_topological_and_stable() -> None:
    plan = DispatchPlan(
        task="t", steps=[st("s1", ["s3"]), st("s2"), st("s3"), st("s4", ["s1", "s2"])]
    )
    order = plan.order()
    assert order.index("s3") < order.index("s1") < order.index("s4")
    assert order.index("s2") < order.index("s4")
    assert order == ["s2", "s3", "s1", "s4"]


def test_states() -> None:
    assert not StepState.RUNNING.finished and StepState.UNDONE.finished
    assert PlanState.PENDING.waiting and PlanState.AWAITING_PUSH.waiting
    assert PlanState.ROLLED_BACK.terminal and not PlanState.FAILING.terminal


def test_unknown_step_lookup_is_a_plan_error() -> None:
    with pytest.raises(PlanError):
        DispatchPlan(task="t", steps=[st("s1")]).step("s2")


# --- plans from text: scope and same-repository ordering -----------------------------------


def test_run_tests_scope_is_read_only(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "run tests across all projects")
    assert [s.kind for s in plan.steps] == [ActionKind.RUN_TESTS] * 4
    assert all(not s.depends_on for s in plan.steps)
    scope = plan.scope
    assert scope.projects == ["api", "core", "tools", "web"]
    assert scope.read_only and not scope.destructive and scope.reversible
    assert not scope.affects_remote and scope.written_projects == []
    assert scope.estimated_impact is Impact.LOW


def test_update_scope_and_same_repo_order(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "update core to 0.2.0 in api and web")
    kinds = [(s.kind, s.project) for s in plan.steps]
    assert kinds == [
        (ActionKind.UPDATE_DEPENDENCY, "api"),
        (ActionKind.RUN_TESTS, "api"),
        (ActionKind.UPDATE_DEPENDENCY, "web"),
        (ActionKind.RUN_TESTS, "web"),
    ]
    # each project's tests run after its update; the projects are independent
    assert plan.step("s2").depends_on == ["s1"] and plan.step("s4").depends_on == ["s3"]
    assert plan.step("s3").depends_on == []
    scope = plan.scope
    assert scope.written_projects == ["api", "web"]
    assert not scope.read_only and scope.reversible and not scope.destructive
    assert scope.estimated_impact is Impact.MEDIUM  # two written projects
    assert scope.branches == ["api:develop", "web:develop"]


def test_clean_stale_scope_is_destructive(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "clean stale branches in core")
    assert plan.scope.destructive and plan.scope.estimated_impact is Impact.MEDIUM


def test_merge_on_the_shared_library_is_medium(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "merge develop to main in core")
    (step,) = plan.steps
    assert step.params["source"] == "develop" and step.params["target"] == "main"
    assert plan.scope.estimated_impact is Impact.MEDIUM  # core is a shared library
    assert plan_of(config, "merge develop to main in api").scope.estimated_impact is Impact.LOW


def test_plan_round_trips_through_the_store(synced_workspace: Workspace) -> None:
    from overlord.adapters.sql.store import Store

    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "update core to 0.2.0 in api and web")
    assert config.state_url
    store = Store(config.state_url)
    store.save(plan)
    loaded = store.load(plan.id[:6])
    assert loaded.model_dump(exclude={"updated_at"}) == plan.model_dump(exclude={"updated_at"})


def test_expected_wall_fills_slots_longest_first() -> None:
    # nine suites 4 s, 3 s, 1 s x7 on 3 slots: 4+1, 3+1+1, 1x5 -> 5 s
    seconds = [1, 1, 4, 1, 3, 1, 1, 1, 1]
    plan = DispatchPlan(task="t", steps=[st(f"s{i}", estimate=e) for i, e in enumerate(seconds)])
    assert plan.expected_wall(3) == pytest.approx(5)
    assert plan.expected_wall(1) == pytest.approx(sum(seconds))
    assert plan.expected_wall(9) == pytest.approx(4)
    # dependencies and one repository at a time
    chain = DispatchPlan(task="t", steps=[st("a", estimate=2), st("b", ["a"], estimate=3)])
    assert chain.expected_wall(5) == pytest.approx(5)
    same = [
        DispatchStep(id=f"s{i}", kind=ActionKind.NOOP, project="core", estimate=1) for i in range(3)
    ]
    assert DispatchPlan(task="t", steps=same).expected_wall(5) == pytest.approx(3)
    assert DispatchPlan(task="t", steps=[]).expected_wall(5) == 0
