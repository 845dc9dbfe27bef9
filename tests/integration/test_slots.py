"""Slots, not packed lines: a plan's steps fill every free slot, longest first, never more
than ``max_concurrent_steps`` at once and never two on one repository (SPEC §3).

Real runs of timed ``noop`` steps in both modes (embedded: the worker's threads are the
slots; distributed: the plan's Redis semaphore holds the limit even for a worker with
more threads than the limit)."""

from __future__ import annotations

from datetime import datetime

import pytest

from overlord import runner
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState
from overlord.tasks.runtime import INPROCESS_WORKER_ENV, Runtime
from tests import dispatch_helpers
from tests.dispatch_helpers import Env, env_fixture, mode_fixture, noop_plan, redis_db_url
from tests.kit import build_workspace, peak_overlap

__all__ = ["env_fixture", "mode_fixture"]

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def spans(plan: DispatchPlan, ids: list[str] | None = None) -> list[tuple[datetime, datetime]]:
    out = []
    for s in plan.steps:
        if ids is None or s.id in ids:
            assert s.started_at and s.ended_at
            out.append((s.started_at, s.ended_at))
    return out


def overlap(plan: DispatchPlan, a: str, b: str) -> bool:
    sa, sb = plan.step(a), plan.step(b)
    assert sa.started_at and sa.ended_at and sb.started_at and sb.ended_at
    return sa.started_at < sb.ended_at and sb.started_at < sa.ended_at


def run(env: Env, plan: DispatchPlan) -> DispatchPlan:
    config = env.config
    plan.state = PlanState.QUEUED
    runner.store_for(config).save(plan)
    done = runner.run(config, plan.id)
    assert done.state is PlanState.SUCCEEDED, (done.state, done.error)
    return done


def test_uneven_suites_fill_every_slot_longest_first(env: Env) -> None:
    env.configure(dispatch={"max_concurrent_steps": 3})
    seconds = [0.1, 0.1, 0.6, 0.1, 0.45, 0.1, 0.1, 0.1, 0.1]
    done = run(env, noop_plan("uneven", [[s] for s in seconds]))
    assert peak_overlap(spans(done)) == 3  # every slot used, never more
    first = sorted(done.steps, key=lambda s: s.started_at or datetime.max)[:3]
    assert {"s3", "s5"} <= {s.id for s in first}  # the long ones start at once
    # the short ones run beside the long ones instead of behind them
    short = [s.id for s in done.steps if s.id not in ("s3", "s5")]
    assert sum(overlap(done, "s3", s) for s in short) >= 2


def test_multi_stage_dag_runs_both_fan_outs_in_parallel(env: Env) -> None:
    env.configure(dispatch={"max_concurrent_steps": 3})

    def st(sid: str, after: list[str], seconds: float) -> DispatchStep:
        return DispatchStep(
            id=sid,
            kind=ActionKind.NOOP,
            params={"seconds": seconds},
            depends_on=after,
            estimate=seconds,
        )

    plan = DispatchPlan(
        task="stages",
        steps=[
            st("A", [], 0.05),
            st("B", ["A"], 0.4),
            st("C", ["A"], 0.4),
            st("D", ["B", "C"], 0.05),
            st("E", ["D"], 0.4),
            st("F", ["D"], 0.4),
            st("G", ["E", "F"], 0.05),
        ],
    )
    plan.validate_dag()
    done = run(env, plan)
    assert overlap(done, "B", "C") and overlap(done, "E", "F")
    for later, earlier in [("D", "B"), ("D", "C"), ("E", "D"), ("G", "F")]:
        assert done.step(later).started_at >= done.step(earlier).ended_at  # type: ignore[operator]


def test_same_repository_never_overlaps(env: Env) -> None:
    env.configure(dispatch={"max_concurrent_steps": 5})
    projects = ["core", "core", "api", "core", "web", "api"]
    steps = [
        DispatchStep(
            id=f"s{i}",
            kind=ActionKind.NOOP,
            project=p,
            params={"seconds": 0.2},
            estimate=0.2,
        )
        for i, p in enumerate(projects, 1)
    ]  # no dependencies at all: only the compiler and the repository lock order them
    done = run(env, DispatchPlan(task="same repo", steps=steps))
    for project in set(projects):
        same = [s.id for s in done.steps if s.project == project]
        assert peak_overlap(spans(done, same)) == 1, project
    assert peak_overlap(spans(done)) >= 2


def test_distributed_limit_holds_on_a_worker_with_more_threads(
    tmp_path,
    git_env,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.delenv(INPROCESS_WORKER_ENV, raising=False)
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    env = Env(ws, "distributed", redis_db_url(dispatch_helpers.DB_DISTRIBUTED))
    config = env.configure(dispatch={"max_concurrent_steps": 2})
    plan = noop_plan("wide", [[0.25]] * 6)
    plan.state = PlanState.QUEUED
    runner.store_for(config).save(plan)
    # one worker with 6 threads: only the plan's semaphore keeps it at 2
    with Runtime(config, embedded=False, worker=True, concurrency=6):
        runner.run(config, plan.id, detach=True)
        done = runner.wait(config, plan.id, timeout=60)
    assert done.state is PlanState.SUCCEEDED, done.error
    assert peak_overlap(spans(done)) == 2
