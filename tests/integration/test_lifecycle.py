"""Every entry is gated (SPEC §4.6): task messages forged on the broker, as someone with
access to Redis or Flower's API would send them, act only when the plan's recorded state
allows exactly that action; otherwise they are refused, recorded, and change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from overlord import lifecycle, runner
from overlord.adapters.sql.store import Store
from overlord.core import config as config_module
from overlord.core import planner
from overlord.core.config import ActionKind
from overlord.core.plan import PlanState, StepState
from overlord.lifecycle import View, _Step
from tests.dispatch_helpers import (
    add_merge_and_tag,
    cli,
    configure,
    plan_of,
    redis_db_url,
    run_plan,
)
from tests.integration.test_worker_cli import start_worker, stop
from tests.kit import Workspace, workspace_snapshot

#: A Redis database of its own (no other test module uses it).
DB = 15
P, S, K = PlanState, StepState, ActionKind


def _view(state: PlanState, push_approved: bool = False, **steps: tuple[Any, ...]) -> View:
    """steps: id → (state, kind, depends_on[, has_undo])."""
    return View(
        state,
        push_approved,
        None,
        {
            i: _Step(v[0], v[1], list(v[2]), bool(v[3]) if len(v) > 3 else False)
            for i, v in steps.items()
        },
    )


# --- the table and the gate, as data ----------------------------------------------------


def test_every_plan_move_has_sources_and_a_target() -> None:
    assert set(lifecycle.PLAN_MOVES) == set(lifecycle.Move)
    for sources, target in lifecycle.PLAN_MOVES.values():
        assert sources and target not in (P.PENDING,)
    assert all(not lifecycle.STEP_MOVES[s] for s in (S.SKIPPED, S.UNDONE))


def test_a_step_runs_only_in_a_running_plan_after_its_dependencies() -> None:
    plan = _view(P.RUNNING, s1=(S.SUCCEEDED, K.MERGE, []), s2=(S.PENDING, K.TAG, ["s1"]))
    assert lifecycle.admit_step(plan, "s2", K.TAG) is None
    assert "not tag" in (lifecycle.admit_step(plan, "s1", K.TAG) or "")
    assert "succeeded" in (lifecycle.admit_step(plan, "s1", K.MERGE) or "")
    waiting = _view(P.RUNNING, s1=(S.PENDING, K.MERGE, []), s2=(S.PENDING, K.TAG, ["s1"]))
    assert "depends on s1" in (lifecycle.admit_step(waiting, "s2", K.TAG) or "")
    for state in (P.PENDING, P.AWAITING_PUSH, P.SUCCEEDED, P.FAILING, P.ROLLED_BACK):
        frozen = _view(state, s1=(S.PENDING, K.MERGE, []))
        assert "not running" in (lifecycle.admit_step(frozen, "s1", K.MERGE) or "")
    assert "no step" in (lifecycle.admit_step(plan, "s9", K.TAG) or "")


def test_push_needs_the_persons_approval_and_every_other_step() -> None:
    steps: dict[str, tuple[Any, ...]] = {
        "s1": (S.SUCCEEDED, K.TAG, []),
        "s2": (S.SUCCEEDED, K.RUN_TESTS, []),
        "s3": (S.PENDING, K.PUSH, ["s1", "s2"]),
    }
    assert "approved" in (lifecycle.admit_step(_view(P.RUNNING, **steps), "s3", K.PUSH) or "")
    assert lifecycle.admit_step(_view(P.RUNNING, True, **steps), "s3", K.PUSH) is None
    steps["s4"] = (S.SKIPPED, K.RUN_TESTS, [])
    assert "every other" in (
        lifecycle.admit_step(_view(P.RUNNING, True, **steps), "s3", K.PUSH) or ""
    )


def test_scheduled_runs_only_a_configured_entry() -> None:
    assert lifecycle.admit_scheduled({"nightly"}, "nightly") is None
    assert "no schedule entry" in (lifecycle.admit_scheduled({"nightly"}, "other") or "")
    assert lifecycle.admit_scheduled({"nightly"}, ["nightly"]) is not None


def test_plan_failed_finish_and_rollback_messages() -> None:
    ok = _view(P.RUNNING, s1=(S.SUCCEEDED, K.MERGE, [], True), s2=(S.PENDING, K.PUSH, ["s1"]))
    assert "no step" in (lifecycle.admit_plan_failed(ok, False) or "")
    assert "person" in (lifecycle.admit_plan_failed(ok, True) or "")
    assert lifecycle.admit_finish(ok) is None  # the push waits for its approval
    approved = _view(P.RUNNING, True, s1=(S.SUCCEEDED, K.MERGE, []), s2=(S.PENDING, K.PUSH, []))
    assert "pending" in (lifecycle.admit_finish(approved) or "")
    failed = _view(P.RUNNING, s1=(S.FAILED, K.MERGE, [], True))
    assert lifecycle.admit_plan_failed(failed, False) is None
    assert "rollback" in (lifecycle.admit_finish(failed) or "")
    for state in (P.SUCCEEDED, P.AWAITING_PUSH, P.RUNNING, P.ROLLED_BACK):
        assert lifecycle.admit_rollback(_view(state)) is not None
    failing = _view(P.FAILING, s1=(S.SUCCEEDED, K.MERGE, [], True), s2=(S.FAILED, K.TAG, [], True))
    assert lifecycle.admit_rollback(failing) is None
    assert lifecycle.admit_undo(failing, "s1") is None
    assert "not undone" in (lifecycle.admit_rollback_done(failing, {"s2"}, []) or "")
    assert lifecycle.admit_rollback_done(failing, {"s1", "s2"}, []) is None
    pushed = _view(P.FAILED, s1=(S.SUCCEEDED, K.PUSH, []), s2=(S.FAILED, K.PUSH, []))
    assert "landed" in (lifecycle.admit_plan_failed(pushed, False) or "")


# --- forged messages against a real worker --------------------------------------------


def _plans(ws: Workspace) -> dict[str, str]:
    """A plan in each state, on the workspace's repos (embedded runs); name → id."""
    config = configure(ws, autonomy={"global": "proactive"})
    store = runner.store_for(config)
    out: dict[str, str] = {}
    res = cli(ws.config_path, "release", "core", "0.2.0", "--execute", "--push", "--yes", "--json")
    assert res.code == 3 and res.json()["state"] == "awaiting-push", res.out + res.err
    out["awaiting-push"] = res.json()["id"]
    done = run_plan(config, plan_of(config, "tag tools 9.0.0"), yes=True)
    assert done.state is P.SUCCEEDED
    out["succeeded"] = done.id
    b = planner.PlanBuilder(config, "tag then fail", kind="dispatch")
    tag = b.add(K.TAG, "tools", "tag", name="v9.1.0", ref="main", branches=["main"])
    b.add(K.NOOP, None, "fail", after=[tag], fail=True)
    failed = run_plan(config, b.build(), yes=True)
    assert failed.state is P.ROLLED_BACK
    out["rolled-back"] = failed.id
    for state in (P.PENDING, P.RUNNING, P.REJECTED):
        b = planner.PlanBuilder(config, f"frozen {state.value}", kind="dispatch")
        add_merge_and_tag(b)
        plan = b.build()
        plan.state = state
        store.save(plan)
        out[state.value] = plan.id
    return out


def _messages(store: Store, plans: dict[str, str]) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Every task name with the ids of every plan and step (a running plan's first step,
    which may legitimately run, is left out)."""
    out: list[tuple[str, list[Any], dict[str, Any]]] = []
    for name, plan_id in plans.items():
        plan = store.load(plan_id)
        for step in plan.steps:
            if name == "running" and not step.depends_on:
                continue
            for kind in {step.kind, K.PUSH, K.MERGE}:
                out.append((f"overlord.{kind.value}", [plan_id, step.id], {}))
            out.append(("overlord.undo", [plan_id, step.id], {}))
        for task in ("overlord.finish", "overlord.plan_failed", "overlord.rollback"):
            out.append((task, [plan_id], {}))
        out.append(("overlord.rollback_done", [plan_id], {}))
        out.append(("overlord.plan_failed", [plan_id], {"cancelled": True}))
    out.append(("overlord.merge", ["nosuchplan", "s1"], {}))
    out.append(("overlord.scheduled", ["nosuchentry"], {}))
    out.append(("overlord.health", [], {}))
    return out


def _states(store: Store, plans: dict[str, str]) -> dict[str, Any]:
    return {
        pid: (p.state, p.push_approved, [(s.id, s.state, s.undo) for s in p.steps])
        for pid, p in ((pid, store.load(pid)) for pid in plans.values())
    }


@pytest.mark.slow
@pytest.mark.redis
def test_forged_messages_on_every_queue_change_nothing(
    synced_workspace: Workspace, tmp_path: Path
) -> None:
    ws = synced_workspace
    plans = _plans(ws)
    broker = redis_db_url(DB)
    model = {"endpoint": "http://127.0.0.1:9/v1", "model": "m", "tier": "local"}
    config = configure(ws, broker_url=broker, models={"local-14b": model})
    store = runner.store_for(config)
    before, states = workspace_snapshot(ws), _states(store, plans)
    events_before = {pid: len(store.events(pid)) for pid in plans.values()}
    worker = start_worker(ws.config_path, [], tmp_path / "worker.log", "--hostname", "gate@test")
    client = Celery("forger", broker=broker, backend=broker)
    try:
        results = []
        messages = _messages(store, plans)
        for queue in ("direct", "local-14b"):
            for name, args, kwargs in messages:
                results.append(client.send_task(name, args=args, kwargs=kwargs, queue=queue))
        answers = [r.get(timeout=120, propagate=False) for r in results]
    finally:
        assert stop(worker) == 0
    assert workspace_snapshot(ws) == before
    assert _states(store, plans) == states
    refused = [a for a in answers if isinstance(a, dict) and "refused" in a]
    # all but health (it only refreshes the endpoints' health cache)
    assert len(refused) == len(answers) - 2, [a for a in answers if a not in refused]
    release = plans["awaiting-push"]
    events = store.events(release)[events_before[release] :]
    assert events and all(e["kind"] == "refused" for e in events)
    assert any(
        "overlord.push from gate@test refused: no person approved" in e["message"] for e in events
    )
    assert config_module.load(ws.config_path).broker_url == broker
