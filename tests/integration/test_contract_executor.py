"""The executor's contract (``ports.Executor``), once per implementation: Celery embedded
(a private broker and an in-process worker), Celery distributed (the test Redis, with an
in-process worker), and the inline executor unit tests use. Each runs plans through the
runner, on a real workspace: order, rollback, cancel, the push phase."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from overlord import defaults, dispatching, recovery, runner, wiring
from overlord.core import planner
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.tasks.executor import CeleryExecutor
from overlord.tasks.runtime import INPROCESS_WORKER_ENV
from overlord.testing.executor import InlineExecutor
from tests.dispatch_helpers import DB_DISTRIBUTED, Env, configure, redis_db_url
from tests.kit import build_workspace, git


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("distributed", marks=[pytest.mark.slow, pytest.mark.redis]),
        "inline",
    ]
)
def env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    broker = None
    if request.param == "distributed":
        broker = redis_db_url(DB_DISTRIBUTED)
        monkeypatch.setenv(INPROCESS_WORKER_ENV, "1")
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    result = Env(ws, request.param, broker)
    result.configure()
    if request.param != "inline":
        yield result
        return
    with wiring.replaced_executor(InlineExecutor):
        yield result


def started(plan: DispatchPlan, sid: str) -> datetime:
    value = plan.step(sid).started_at
    assert value is not None
    return value


def ended(plan: DispatchPlan, sid: str) -> datetime:
    value = plan.step(sid).ended_at
    assert value is not None
    return value


def queued(env: Env, plan: DispatchPlan) -> DispatchPlan:
    plan.state = PlanState.QUEUED
    runner.store_for(env.config).save(plan)
    return plan


def tag_then_fail(env: Env) -> DispatchPlan:
    b = planner.PlanBuilder(env.config, "tag then fail", kind="dispatch")
    tag = b.add(ActionKind.TAG, "tools", "tag", name="v9.1.0", ref="main", branches=["main"])
    b.add(ActionKind.NOOP, None, "fail", after=[tag], fail=True)
    return queued(env, b.build())


def test_steps_run_after_their_dependencies(env: Env) -> None:
    def noop(sid: str, after: list[str]) -> DispatchStep:
        return DispatchStep(
            id=sid, kind=ActionKind.NOOP, params={"seconds": 0.05}, depends_on=after
        )

    steps = [noop("A", []), noop("B", ["A"]), noop("C", ["A"]), noop("D", ["B", "C"])]
    plan = queued(env, DispatchPlan(task="diamond", steps=steps))
    done = runner.run(env.config, plan.id)
    assert done.state is PlanState.SUCCEEDED, (done.state, done.error)
    assert {s.state for s in done.steps} == {StepState.SUCCEEDED}
    assert started(done, "B") >= ended(done, "A") and started(done, "C") >= ended(done, "A")
    assert started(done, "D") >= max(ended(done, "B"), ended(done, "C"))
    assert done.owner["embedded"] is (env.mode != "distributed")


def test_a_failed_step_rolls_back_what_the_plan_did(env: Env) -> None:
    tools = env.ws.repos["tools"]
    plan = tag_then_fail(env)
    done = runner.run(env.config, plan.id)
    assert done.state is PlanState.ROLLED_BACK, (done.state, done.error)
    assert [s.state for s in done.steps] == [StepState.UNDONE, StepState.FAILED]
    assert done.undone == ["s1"]
    assert git(tools, "tag", "--list", "v9.1.0") == ""


def test_cancel_rolls_back_a_plan_left_failed(env: Env) -> None:
    config = env.configure(dispatch={"rollback_on_failure": False})
    tools = env.ws.repos["tools"]
    plan = tag_then_fail(env)
    left = runner.run(config, plan.id)
    assert left.state is PlanState.FAILED
    assert git(tools, "tag", "--list", "v9.1.0") == "v9.1.0"
    cancelled = recovery.cancel(config, plan.id)
    assert cancelled.state is PlanState.CANCELLED, (cancelled.state, cancelled.notes)
    assert git(tools, "tag", "--list", "v9.1.0") == ""


def test_the_push_phase_runs_after_a_persons_approval(env: Env) -> None:
    tools, remote = env.ws.repos["tools"], env.ws.remotes["tools"]
    b = planner.PlanBuilder(env.config, "tag and push", kind="dispatch")
    tag = b.add(ActionKind.TAG, "tools", "tag", name="v9.2.0", ref="main", branches=["main"])
    b.add(ActionKind.PUSH, "tools", "push the tag", after=[tag], branches=[], tags=["v9.2.0"])
    plan = queued(env, b.build())
    waiting = runner.run(env.config, plan.id)
    assert waiting.state is PlanState.AWAITING_PUSH, (waiting.state, waiting.error)
    assert git(remote, "tag", "--list", "v9.2.0") == ""  # nothing pushed without a person
    pushed = dispatching.approve(env.config, plan.id)
    assert pushed.state is PlanState.SUCCEEDED, (pushed.state, pushed.error)
    assert git(remote, "rev-parse", "v9.2.0") == git(tools, "rev-parse", "v9.2.0")


def test_an_open_executor_knows_no_idle_queue_holder_or_lost_step(env: Env) -> None:
    plan = tag_then_fail(env)
    with wiring.executor(env.config) as executor:
        assert executor.embedded is (env.mode != "distributed")
        assert executor.idle_queues({defaults.DIRECT_QUEUE}) == []  # it runs its own worker
        assert executor.holders(plan.id) == []
        assert executor.recover(plan.id) == []


def test_the_factory_gives_celery_or_a_replacement(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    config = configure(ws)
    assert isinstance(wiring.executor(config), CeleryExecutor)
    with wiring.replaced_executor(InlineExecutor):
        assert isinstance(wiring.executor(config), InlineExecutor)
    assert isinstance(wiring.executor(config), CeleryExecutor)
