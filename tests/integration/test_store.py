"""The plan store on both backends (SQLite and PostgreSQL), and a real plan on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.errors import PlanNotFound
from tests.integration.test_db import pg_database, state_url  # noqa: F401 - fixture over both backends
from tests.kit import Workspace, add_failing_test, workspace_snapshot


def two_step_plan() -> DispatchPlan:
    steps = [
        DispatchStep(id="s1", kind=ActionKind.NOOP),
        DispatchStep(id="s2", kind=ActionKind.NOOP, depends_on=["s1"]),
    ]
    return DispatchPlan(task="two no-ops", steps=steps, state=PlanState.QUEUED)


def test_claims_are_compare_and_set(state_url: str) -> None:  # noqa: F811
    store = Store(state_url)
    plan = two_step_plan()
    store.save(plan)
    assert store.claim(plan.id, "s1", "w") is None  # the plan is not running yet
    assert store.load(plan.id).step("s1").state is StepState.SKIPPED
    plan = two_step_plan()
    store.save(plan)
    assert store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    assert not store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    first = store.claim(plan.id, "s1", "w1")
    assert first is not None and first.attempts == 1 and first.worker == "w1"
    again = store.claim(plan.id, "s1", "w2")  # a redelivery may claim a running step again
    assert again is not None and again.attempts == 2
    store.record_undo(plan.id, "s1", {"before": "abc"})
    store.finish(
        plan.id, "s1", StepState.SUCCEEDED, output="ok", undo={"before": "abc", "after": "d"}
    )
    assert store.claim(plan.id, "s1", "w3") is None  # finished: never acts twice
    loaded = store.load(plan.id[:6])  # a unique prefix works
    assert loaded.step("s1").finished_seq == 1 and loaded.step("s1").undo["after"] == "d"
    store.transition(plan.id, PlanState.FAILING, expect=[PlanState.RUNNING])
    assert store.claim(plan.id, "s2", "w") is None  # the plan failed: s2 must not act
    assert store.load(plan.id).step("s2").state is StepState.SKIPPED
    assert [p["id"] for p in store.list_plans("failing")] == [plan.id]
    with pytest.raises(PlanNotFound):
        store.load("nope")


@pytest.mark.postgres
@pytest.mark.slow
def test_a_failing_plan_rolls_back_with_state_in_postgresql(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.conftest import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432)
    with pg_database() as url:
        text = workspace.config_path.read_text()
        lines = [ln for ln in text.splitlines() if not ln.startswith("state_url:")]
        workspace.config_path.write_text("\n".join([f"state_url: {url}", *lines]) + "\n")
        add_failing_test(workspace.repos["web"])
        before = workspace_snapshot(workspace)
        config = ["--config", str(workspace.config_path)]
        code = main([*config, "dispatch", "update core to 0.2.0 in api and web", "--yes"])
        out = capsys.readouterr().out
        assert code == 1, out
        assert "rolled-back" in out
        assert workspace_snapshot(workspace) == before
        assert main([*config, "plans", "--status", "rolled-back", "--json"]) == 0
        assert "update core to 0.2.0" in capsys.readouterr().out
